//! JWKS fetching and refreshing (the I/O half of authentication).
//!
//! Each issuer owns an [`IssuerKeys`]: the last good [`KeySet`] behind an
//! `ArcSwap` (readers never lock), refreshed by a background loop and, on an
//! unknown `kid`, by a single-flight, rate-limited refetch from the request
//! path. When refreshes fail the last good keys are kept for `max_stale`; an
//! issuer whose keys never loaded (or went stale) is unavailable (503) while
//! other issuers keep working.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;

use super::keys::{KeySet, KeySetError, SkippedKey};
use crate::config::{IssuerConfig, JwksSource};
use crate::metrics::Metrics;

mod client;
use client::BearerToken;
pub use client::{http_client, http_client_for, HttpClientError};

/// Timeout for one discovery or JWKS request.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a request waits for an unknown-`kid` refetch.
pub const REFETCH_WAIT: Duration = Duration::from_secs(3);

/// A key set together with when it was fetched.
#[derive(Debug)]
pub struct LoadedKeys {
    /// The keys.
    pub set: KeySet,
    /// When they were fetched (monotonic).
    pub fetched_at: Instant,
}

/// Why a fetch failed (logged and shown in `/readyz`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// Transport or HTTP status problem.
    #[error("{url}: {message}")]
    Http {
        /// The URL fetched.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The discovery document is not usable.
    #[error("discovery: {0}")]
    Discovery(String),
    /// Reading the static file failed.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The issuer's `bearer_token_file` is unreadable, empty or not a token
    /// (the message never quotes it).
    #[error("bearer_token_file {path}: {message}")]
    BearerToken {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The JWKS document is invalid or holds no usable key.
    #[error("{0}")]
    Keys(#[from] super::keys::KeySetError),
}

/// One issuer's keys and their lifecycle.
pub struct IssuerKeys {
    config: Arc<IssuerConfig>,
    http: reqwest::Client,
    metrics: Metrics,
    current: ArcSwapOption<LoadedKeys>,
    /// Unix seconds of the last successful fetch (0: never).
    last_success: AtomicI64,
    last_error: Mutex<Option<String>>,
    /// Single flight for request-path refetches: the time of the last one.
    refetch: tokio::sync::Mutex<Option<Instant>>,
}

/// The state of an issuer, for `/readyz` and logs.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IssuerStatus {
    /// Configured name.
    pub name: String,
    /// `ready` (usable keys), `degraded` (usable keys, but the last refresh
    /// failed), `stale` (keys older than `refresh` + `max_stale`: refreshes
    /// keep failing; its tokens get 503) or `never_loaded` (likewise).
    pub state: &'static str,
    /// Whether tokens of this issuer can be verified now.
    pub ready: bool,
    /// Usable keys loaded.
    pub keys: usize,
    /// Unix seconds of the last successful fetch, if any.
    pub last_success: Option<i64>,
    /// Age in seconds of the keys in use.
    pub keys_age_seconds: Option<u64>,
    /// The last fetch error, if the last fetch failed.
    pub last_error: Option<String>,
}

impl IssuerKeys {
    /// Creates the key holder for one issuer; nothing is fetched yet.
    pub fn new(config: Arc<IssuerConfig>, http: reqwest::Client, metrics: Metrics) -> IssuerKeys {
        // Series that exist from the start, so alerts see 0 rather than nothing.
        for result in ["success", "failure"] {
            metrics
                .jwks_refresh
                .with_label_values(&[&config.name, result]);
        }
        metrics.jwks_ready.with_label_values(&[&config.name]).set(0);
        IssuerKeys {
            config,
            http,
            metrics,
            current: ArcSwapOption::empty(),
            last_success: AtomicI64::new(0),
            last_error: Mutex::new(None),
            refetch: tokio::sync::Mutex::new(None),
        }
    }

    /// The issuer's configuration.
    pub fn config(&self) -> &Arc<IssuerConfig> {
        &self.config
    }

    /// The usable keys now: `None` when they never loaded or went stale.
    pub fn keys(&self) -> Option<Arc<LoadedKeys>> {
        self.current.load_full().filter(|loaded| self.fresh(loaded))
    }

    /// Whether the key with `fingerprint` is among the usable keys now;
    /// `None` when there are none (never loaded or stale).
    ///
    /// What a token-cache hit asks on every request: it borrows the keys
    /// instead of cloning their `Arc`, whose reference count every worker
    /// thread would otherwise bump.
    pub fn has_key(&self, fingerprint: u64) -> Option<bool> {
        let current = self.current.load();
        let loaded = current.as_deref().filter(|loaded| self.fresh(loaded))?;
        Some(loaded.set.contains(fingerprint))
    }

    /// A fresh fetch is expected every `refresh`; failures are tolerated for
    /// `max_stale` beyond that, then the keys are no longer trusted.
    fn fresh(&self, loaded: &LoadedKeys) -> bool {
        loaded.fetched_at.elapsed() <= self.config.refresh + self.config.max_stale
    }

    /// Fetches the keys now and installs them on success.
    ///
    /// # Errors
    /// [`FetchError`]; the previous keys are kept.
    pub async fn refresh(&self) -> Result<usize, FetchError> {
        let result = self.fetch().await;
        let issuer = &*self.config.name;
        match result {
            Ok(set) => {
                let count = set.len();
                self.current.store(Some(Arc::new(LoadedKeys {
                    set,
                    fetched_at: Instant::now(),
                })));
                let now = super::unix_now();
                self.last_success.store(now, Ordering::Relaxed);
                set_error(&self.last_error, None);
                let metrics = &self.metrics;
                metrics
                    .jwks_refresh
                    .with_label_values(&[issuer, "success"])
                    .inc();
                metrics
                    .jwks_keys
                    .with_label_values(&[issuer])
                    .set(i64::try_from(count).unwrap_or(i64::MAX));
                metrics
                    .jwks_last_success
                    .with_label_values(&[issuer])
                    .set(now);
                tracing::info!(issuer, keys = count, "jwks loaded");
                Ok(count)
            }
            Err(error) => {
                set_error(&self.last_error, Some(error.to_string()));
                self.metrics
                    .jwks_refresh
                    .with_label_values(&[issuer, "failure"])
                    .inc();
                tracing::warn!(issuer, %error, "jwks refresh failed; keeping the last good keys");
                Err(error)
            }
        }
    }

    /// Called from the request path when the issuer has no keys or a token names
    /// a `kid` we do not know: refetches at most once per `refetch_min_interval`
    /// (single flight: concurrent callers wait for the one fetch), then returns
    /// the current keys.
    pub async fn refetch_for_unknown_kid(&self) -> Option<Arc<LoadedKeys>> {
        let mut last = self.refetch.lock().await;
        let due = last.is_none_or(|at| at.elapsed() >= self.config.refetch_min_interval);
        if due {
            *last = Some(Instant::now());
            // Failures are logged and counted by `refresh`; the caller sees the keys we have.
            let _ = self.refresh().await;
        }
        drop(last);
        self.keys()
    }

    /// Status for `/readyz`.
    pub fn status(&self) -> IssuerStatus {
        let keys = self.keys();
        let last_success = self.last_success.load(Ordering::Relaxed);
        let last_error = self.last_error.lock().map_or(None, |guard| guard.clone());
        let state = match (&keys, last_success > 0) {
            (Some(_), _) if last_error.is_some() => "degraded",
            (Some(_), _) => "ready",
            (None, true) => "stale",
            (None, false) => "never_loaded",
        };
        IssuerStatus {
            name: self.config.name.to_string(),
            state,
            ready: keys.is_some(),
            keys: keys.as_ref().map_or(0, |k| k.set.len()),
            last_success: (last_success > 0).then_some(last_success),
            keys_age_seconds: keys.map(|k| k.fetched_at.elapsed().as_secs()),
            last_error,
        }
    }

    async fn fetch(&self) -> Result<KeySet, FetchError> {
        let document = match &self.config.jwks {
            JwksSource::File(path) | JwksSource::SpiffeBundle { path, .. } => {
                self.read_file(path).await?
            }
            JwksSource::Uri(uri) => self.get(uri).await?,
            JwksSource::Discovery => {
                let uri = self.discover().await?;
                self.get(&uri).await?
            }
        };
        // Parsing checks every key (an EC point costs a scalar
        // multiplication), so a large set runs off the async workers.
        let algorithms = self.config.algorithms.clone();
        let parsed =
            tokio::task::spawn_blocking(move || KeySet::from_jwks_json(&document, &algorithms))
                .await
                .map_err(|error| {
                    FetchError::Keys(KeySetError::InvalidDocument(error.to_string()))
                })?;
        let skipped = match &parsed {
            Ok(set) => set.skipped(),
            Err(KeySetError::NoUsableKeys { skipped }) => skipped.as_slice(),
            Err(_) => &[],
        };
        log_skipped(&self.config.name, skipped);
        Ok(parsed?)
    }

    /// A static JWKS file, refused beyond `jwks.max_bytes`.
    async fn read_file(&self, path: &std::path::Path) -> Result<Vec<u8>, FetchError> {
        let file_error = |message: String| FetchError::File {
            path: path.display().to_string(),
            message,
        };
        let max = self.config.jwks_fetch.max_bytes;
        let document = tokio::fs::read(path)
            .await
            .map_err(|error| file_error(error.to_string()))?;
        if document.len() > max {
            return Err(file_error(format!(
                "document larger than {max} bytes (jwks.max_bytes)"
            )));
        }
        Ok(document)
    }

    /// Resolves `jwks_uri` from the issuer's OpenID configuration. The document's
    /// `issuer` must equal the configured issuer (OpenID Connect Discovery §4.3).
    async fn discover(&self) -> Result<String, FetchError> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.config.issuer.trim_end_matches('/')
        );
        let body = self.get(&url).await?;
        let document: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|error| FetchError::Discovery(format!("{url}: not JSON: {error}")))?;
        let issuer = document.get("issuer").and_then(serde_json::Value::as_str);
        if issuer != Some(self.config.issuer.as_str()) {
            return Err(FetchError::Discovery(format!(
                "{url}: document issuer {issuer:?} does not match {:?}",
                self.config.issuer
            )));
        }
        let jwks_uri = document
            .get("jwks_uri")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| FetchError::Discovery(format!("{url}: no jwks_uri")))?;
        crate::config::check_fetch_url(jwks_uri)
            .map_err(|message| FetchError::Discovery(format!("{url}: jwks_uri {message}")))?;
        Ok(jwks_uri.to_string())
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>, FetchError> {
        let http_error = |message: String| FetchError::Http {
            url: url.to_string(),
            message,
        };
        let mut request = self.http.get(url).timeout(FETCH_TIMEOUT);
        if let Some(path) = &self.config.jwks_fetch.bearer_token_file {
            // The config and discovery already keep URLs to https (or
            // loopback http); checked again where the secret is attached.
            crate::config::check_fetch_url(url)
                .map_err(|why| http_error(format!("bearer token not sent: {why}")))?;
            let token = BearerToken::read(path).await?;
            request = request.header(reqwest::header::AUTHORIZATION, token.header_value());
        }
        let mut response = request
            .send()
            .await
            .map_err(|error| http_error(with_causes(&error)))?;
        if !response.status().is_success() {
            return Err(http_error(format!("HTTP {}", response.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|error| http_error(with_causes(&error)))?
        {
            let max = self.config.jwks_fetch.max_bytes;
            if body.len() + chunk.len() > max {
                return Err(http_error(format!(
                    "document larger than {max} bytes (jwks.max_bytes)"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Refreshes forever, every `refresh` (retrying failures sooner, with
    /// backoff); the task is aborted when the issuer is removed or at shutdown.
    /// Starts with a fetch unless keys were fetched within `refresh` (e.g.
    /// by a reload, just before the swap).
    pub async fn run(&self) {
        if let Some(keys) = self.current.load_full() {
            let age = keys.fetched_at.elapsed();
            if age < self.config.refresh {
                tokio::time::sleep(self.config.refresh - age).await;
            }
        }
        let mut failures: u32 = 0;
        loop {
            let delay = match self.refresh().await {
                Ok(_) => {
                    failures = 0;
                    self.config.refresh
                }
                Err(_) => {
                    failures = failures.saturating_add(1);
                    retry_delay(failures).min(self.config.refresh)
                }
            };
            tokio::time::sleep(delay).await;
        }
    }

    /// Whether this issuer has ever had usable keys (readiness: README, "Admin
    /// endpoints and metrics").
    pub fn had_keys(&self) -> bool {
        self.last_success.load(Ordering::Relaxed) > 0
    }
}

/// 1 s, 2 s, 4 s, … capped at 60 s.
/// One warning per skipped key per fetch, so an operator sees why a key
/// the issuer publishes is not counted (and never verifies).
fn log_skipped(issuer: &str, skipped: &[SkippedKey]) {
    for key in skipped {
        tracing::warn!(
            issuer,
            kid = key.kid.as_deref().unwrap_or(""),
            reason = key.reason,
            "jwks key skipped"
        );
    }
}

fn retry_delay(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.saturating_sub(1).min(6)).min(Duration::from_secs(60))
}

/// `error` and its sources, `: `-separated: reqwest's own message names only
/// the URL, the cause (e.g. an untrusted certificate) is in the chain.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.ends_with(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

fn set_error(slot: &Mutex<Option<String>>, value: Option<String>) {
    if let Ok(mut guard) = slot.lock() {
        *guard = value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An issuer refreshing every minute, trusted 1 minute past a failed refresh.
    fn issuer(dir: &std::path::Path) -> IssuerKeys {
        let yaml = "upstream: { address: 127.0.0.1:1 }\n\
                    issuers:\n  - name: t\n    issuer: https://t.example\n    \
                    jwks: { file: jwks.json, refresh: 1m, max_stale: 1m }\n    \
                    audiences: [a]\n    algorithms: [ES256]\n";
        std::fs::write(dir.join("jwks.json"), r#"{"keys":[]}"#).unwrap();
        let yaml = format!(
            "{yaml}policies: {{ dir: {}/policies }}\n",
            env!("CARGO_MANIFEST_DIR")
        );
        let config = crate::config::Config::from_yaml(&yaml, &dir.join("wisp.yaml")).unwrap();
        crate::server::install_crypto();
        let client = http_client().unwrap();
        IssuerKeys::new(
            Arc::new(config.issuers[0].clone()),
            client,
            Metrics::new().unwrap(),
        )
    }

    #[test]
    fn has_key_answers_from_fresh_keys_only() {
        let dir = tempfile::tempdir().unwrap();
        let keys = issuer(dir.path());
        assert_eq!(keys.has_key(1), None, "never loaded");

        let mut jwk = crate::authn::crypto::test_keys::p256().jwk;
        jwk["kid"] = "k".into();
        let jwks = serde_json::json!({ "keys": [jwk] }).to_string();
        let set =
            KeySet::from_jwks_json(jwks.as_bytes(), &[crate::config::Algorithm::ES256]).unwrap();
        let fingerprint = set.keys()[0].fingerprint;
        let install = |age: Duration| {
            keys.current.store(Some(Arc::new(LoadedKeys {
                set: set.clone(),
                fetched_at: Instant::now() - age,
            })));
        };

        install(Duration::ZERO);
        assert_eq!(keys.has_key(fingerprint), Some(true));
        assert_eq!(keys.has_key(fingerprint ^ 1), Some(false));
        // Past refresh but within max_stale: still trusted.
        install(Duration::from_secs(90));
        assert_eq!(keys.has_key(fingerprint), Some(true));
        assert!(keys.keys().is_some());
        // Past refresh + max_stale: no keys at all, as `keys()` says.
        install(Duration::from_secs(121));
        assert_eq!(keys.has_key(fingerprint), None);
        assert!(keys.keys().is_none());
    }

    #[test]
    fn retry_delay_backs_off_and_caps() {
        assert_eq!(retry_delay(1), Duration::from_secs(1));
        assert_eq!(retry_delay(2), Duration::from_secs(2));
        assert_eq!(retry_delay(4), Duration::from_secs(8));
        assert_eq!(retry_delay(50), Duration::from_secs(60));
    }
}
