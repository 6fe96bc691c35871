//! The live state: everything a request is decided under — the config, the
//! authenticator (issuers, their keys, the token cache), the policies, the
//! upstream — in one [`Live`] value behind one `ArcSwap`, replaced whole on
//! reload. A request takes the snapshot once, when it starts, and is decided,
//! forwarded and logged under it: a reload never decides a request by half
//! of each state.
//!
//! [`Reloader`] builds and validates a complete new [`Live`] before it swaps
//! it in; a broken config or policy file is logged with file:line and the
//! old state stays. Reloads come from SIGHUP and, with `policies.watch`, from
//! polling the config file, the schema and the policy files.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use pingora::upstreams::peer::HttpPeer;

use crate::authn::authenticator::Authenticator;
use crate::authn::jwks::IssuerKeys;
use crate::authz::reload::{files_fingerprint, LoadedPolicies, PolicyLoader};
use crate::authz::Diagnostic;
use crate::config::{Config, ConfigError, LogFormat};
use crate::headers::PreparedNames;
use crate::metrics::Metrics;
use crate::pipeline::callers::Callers;

/// How often the watcher reads the config, schema and policy files.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// How long a new issuer's first key fetch may hold up a reload (the swap
/// happens either way; an issuer without keys answers 503 for its tokens).
const FIRST_FETCH_WAIT: Duration = Duration::from_secs(5);

/// One consistent state.
pub struct Live {
    /// The validated config.
    pub config: Arc<Config>,
    /// Authentication: issuers and their keys.
    pub authn: Arc<Authenticator>,
    /// Callers known to the process: the token cache, certificate callers.
    pub callers: Arc<Callers>,
    /// The policy set.
    pub policies: Arc<LoadedPolicies>,
    /// Where allowed requests go (`None`: no proxy listener, decision
    /// service only).
    pub upstream: Option<HttpPeer>,
    /// `config.headers.identity`, prepared once.
    pub identity_headers: PreparedNames,
}

/// The current [`Live`], shared by the proxy, the admin listener and the
/// reloader.
pub struct LiveState {
    current: ArcSwap<Live>,
    /// Latched once every issuer has had usable keys (see [`LiveState::ready`]).
    became_ready: AtomicBool,
}

impl LiveState {
    /// The state in force now.
    pub fn load(&self) -> Arc<Live> {
        self.current.load_full()
    }

    /// Readiness (README, "Admin endpoints and metrics"): not ready until every
    /// issuer has had usable keys once; after that, one issuer's outage (or a
    /// new issuer that cannot fetch) never makes the process unready — that
    /// issuer's tokens get 503 and `/readyz` and the metrics say so.
    pub fn ready(&self) -> bool {
        if self.became_ready.load(Ordering::Relaxed) {
            return true;
        }
        let all = self
            .load()
            .authn
            .issuers()
            .iter()
            .all(|issuer| issuer.had_keys());
        if all {
            self.became_ready.store(true, Ordering::Relaxed);
        }
        all
    }
}

/// Why a reload was refused (the old state stays in force).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// The config file is invalid (the message names file, line or key).
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The schema or a policy is invalid.
    #[error("invalid policies:\n{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Policies(Vec<Diagnostic>),
    /// A setting that only a restart can change was changed.
    #[error("{file}: {key} changed ({detail}); it takes effect only after a restart, so nothing was reloaded")]
    NeedsRestart {
        /// The config file.
        file: String,
        /// The key.
        key: &'static str,
        /// Old → new.
        detail: String,
    },
    /// The upstream address does not resolve or its TLS files are unusable.
    #[error("{0}")]
    Upstream(crate::upstream::UpstreamError),
    /// Process setup (metrics registry, the HTTP client) failed.
    #[error("{0}")]
    Setup(String),
    /// An issuer's HTTP client (its `jwks.ca`) cannot be built.
    #[error("{0}")]
    HttpClient(#[from] crate::authn::jwks::HttpClientError),
}

/// Builds the first state and every reloaded one.
pub struct Reloader {
    state: Arc<LiveState>,
    config_path: PathBuf,
    loader: PolicyLoader,
    http: reqwest::Client,
    metrics: Metrics,
    set_log_format: Box<dyn Fn(LogFormat) + Send + Sync>,
    /// The refresh loop of every issuer in force, by key holder.
    refresh_loops: Mutex<Vec<(Arc<IssuerKeys>, tokio::task::AbortHandle)>>,
    /// One reload at a time (SIGHUP and the watcher may race).
    busy: tokio::sync::Mutex<()>,
}

impl Reloader {
    /// Builds the first state from `config` (loaded from `config.source`).
    ///
    /// # Errors
    /// [`ReloadError`] when the policies or the upstream are unusable.
    pub fn start(
        config: Config,
        metrics: Metrics,
        http: reqwest::Client,
        set_log_format: Box<dyn Fn(LogFormat) + Send + Sync>,
    ) -> Result<Reloader, ReloadError> {
        let loader = PolicyLoader::new(metrics.clone());
        let policies = loader
            .load(&config.policies.schema, &config.policies.dir)
            .map_err(ReloadError::Policies)?;
        let authn = Authenticator::new(&config, http.clone(), metrics.clone())?;
        let upstream = config
            .upstream
            .as_ref()
            .map(crate::upstream::peer)
            .transpose()
            .map_err(ReloadError::Upstream)?;
        metrics.requests.set_issuers(&config);
        let callers = Callers::new(config.authn.token_cache_max_bytes, metrics.clone());
        let live = Live {
            identity_headers: PreparedNames::new(&config.headers.identity),
            callers: Arc::new(callers),
            config: Arc::new(config),
            authn: Arc::new(authn),
            policies,
            upstream,
        };
        Ok(Reloader {
            config_path: live.config.source.clone(),
            state: Arc::new(LiveState {
                current: ArcSwap::from_pointee(live),
                became_ready: AtomicBool::new(false),
            }),
            loader,
            http,
            metrics,
            set_log_format,
            refresh_loops: Mutex::new(Vec::new()),
            busy: tokio::sync::Mutex::new(()),
        })
    }

    /// The shared state.
    pub fn state(&self) -> &Arc<LiveState> {
        &self.state
    }

    /// Reloads the config file and the policies (SIGHUP, or a changed config
    /// file). Everything is validated before the swap; on error the old state
    /// stays, and the error is logged and counted.
    ///
    /// # Errors
    /// Why the reload was refused.
    pub async fn reload_config(&self) -> Result<(), ReloadError> {
        let _busy = self.busy.lock().await;
        let result = self.try_reload_config().await;
        let outcome = if result.is_ok() { "success" } else { "failure" };
        self.metrics
            .config_reload
            .with_label_values(&[outcome])
            .inc();
        match &result {
            Ok(()) => {
                self.metrics
                    .config_last_reload_success
                    .set(crate::authn::unix_now());
            }
            Err(error) => tracing::error!(
                file = %self.config_path.display(),
                %error,
                "config reload rejected; the previous config and policies stay in force"
            ),
        }
        result
    }

    async fn try_reload_config(&self) -> Result<(), ReloadError> {
        let config = Config::load(&self.config_path)?;
        let old = self.state.load();
        needs_restart(&old.config, &config)?;
        let policies = self
            .loader
            .load(&config.policies.schema, &config.policies.dir)
            .map_err(ReloadError::Policies)?;
        let upstream = config
            .upstream
            .as_ref()
            .map(crate::upstream::peer)
            .transpose()
            .map_err(ReloadError::Upstream)?;
        let authn = Arc::new(old.authn.rebuilt(&config, self.http.clone())?);
        // New or changed issuers fetch their keys before the swap, so their
        // tokens do not meet a 503 in between (bounded: the swap happens anyway).
        let new_issuers: Vec<_> = authn
            .issuers()
            .iter()
            .filter(|issuer| {
                !old.authn
                    .issuers()
                    .iter()
                    .any(|kept| Arc::ptr_eq(kept, issuer))
            })
            .cloned()
            .collect();
        let mut fetches = tokio::task::JoinSet::new();
        for issuer in new_issuers {
            fetches.spawn(async move {
                // Failures are logged and counted by `refresh`.
                let _ = tokio::time::timeout(FIRST_FETCH_WAIT, issuer.refresh()).await;
            });
        }
        while fetches.join_next().await.is_some() {}

        let summary = change_summary(&old, &config);
        let format_changed = old.config.log.format != config.log.format;
        self.metrics.requests.set_issuers(&config);
        let live = Live {
            identity_headers: PreparedNames::new(&config.headers.identity),
            callers: old.callers.for_reload(config.authn.token_cache_max_bytes),
            config: Arc::new(config),
            authn,
            policies,
            upstream,
        };
        let generation = live.policies.generation;
        let format = live.config.log.format;
        self.state.current.store(Arc::new(live));
        if format_changed {
            (self.set_log_format)(format);
        }
        self.sync_refresh_loops();
        tracing::info!(
            file = %self.config_path.display(),
            policy_generation = generation,
            changes = %summary,
            "config reloaded"
        );
        Ok(())
    }

    /// Reloads only the policies (their files changed); on error the old set
    /// stays in force.
    ///
    /// # Errors
    /// Every diagnostic of the rejected set.
    pub async fn reload_policies(&self) -> Result<(), ReloadError> {
        let _busy = self.busy.lock().await;
        let old = self.state.load();
        let schema = &old.config.policies.schema;
        let dir = &old.config.policies.dir;
        match self.loader.load(schema, dir) {
            Ok(policies) => {
                let generation = policies.generation;
                let count = policies.authorizer.policy_count();
                self.state.current.store(Arc::new(Live {
                    config: Arc::clone(&old.config),
                    authn: Arc::clone(&old.authn),
                    callers: Arc::clone(&old.callers),
                    policies,
                    upstream: old.upstream.clone(),
                    identity_headers: old.identity_headers.clone(),
                }));
                tracing::info!(policies = count, generation, "policies reloaded");
                Ok(())
            }
            Err(diagnostics) => {
                for diagnostic in &diagnostics {
                    tracing::error!(%diagnostic, "policy update rejected; the previous policies stay in force");
                }
                Err(ReloadError::Policies(diagnostics))
            }
        }
    }

    /// Starts the refresh loop of every issuer in force that has none, and
    /// stops those of issuers no longer configured.
    fn sync_refresh_loops(&self) {
        let live = self.state.load();
        let Ok(mut loops) = self.refresh_loops.lock() else {
            return;
        };
        loops.retain(|(issuer, handle)| {
            let kept = live
                .authn
                .issuers()
                .iter()
                .any(|current| Arc::ptr_eq(current, issuer));
            if !kept {
                handle.abort();
                self.metrics.forget_issuer(&issuer.config().name);
            }
            kept
        });
        for issuer in live.authn.issuers() {
            if loops
                .iter()
                .any(|(running, _)| Arc::ptr_eq(running, issuer))
            {
                continue;
            }
            let task = {
                let issuer = Arc::clone(issuer);
                tokio::spawn(async move { issuer.run().await })
            };
            loops.push((Arc::clone(issuer), task.abort_handle()));
        }
    }

    /// Runs until `shutdown`: the issuers' refresh loops, SIGHUP, the file
    /// watcher (with `policies.watch`) and the token cache's sweep.
    pub async fn run(&self, mut shutdown: pingora::server::ShutdownWatch) {
        use tokio::signal::unix::{signal, SignalKind};
        // Installed first: until then SIGHUP's default action would end the process.
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(hangup) => Some(hangup),
            Err(error) => {
                tracing::error!(%error, "cannot install the SIGHUP handler; reload by file change only");
                None
            }
        };
        self.sync_refresh_loops();
        let mut watched = self.watched_files();
        // A change seen, and since when it has stayed the same.
        let mut pending: Option<(WatchedFiles, tokio::time::Instant)> = None;
        let mut tick = tokio::time::interval(WATCH_INTERVAL);
        let mut sweep = tokio::time::interval(crate::pipeline::token_cache::SWEEP_INTERVAL);
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    tracing::info!("SIGHUP: reloading the config and the policies");
                    // Logged and counted by `reload_config`.
                    let _ = self.reload_config().await;
                    watched = self.watched_files();
                    pending = None;
                }
                _ = tick.tick() => {
                    let policies = self.state.load().config.policies.clone();
                    if !policies.watch {
                        continue;
                    }
                    let now = self.watched_files();
                    if now == watched {
                        pending = None;
                        continue;
                    }
                    // A file being written in steps: act once it has stayed
                    // the same for `policies.settle`.
                    let since = match &pending {
                        Some((seen, since)) if *seen == now => *since,
                        _ => tokio::time::Instant::now(),
                    };
                    if since.elapsed() < policies.settle {
                        if pending.as_ref().is_none_or(|(seen, _)| *seen != now) {
                            tracing::info!(
                                settle_ms = policies.settle.as_millis() as u64,
                                "watched files changed: loading once they stay unchanged"
                            );
                        }
                        pending = Some((now, since));
                        continue;
                    }
                    pending = None;
                    if now.config != watched.config {
                        tracing::info!(file = %self.config_path.display(), "config file changed: reloading");
                        let _ = self.reload_config().await;
                    } else {
                        tracing::info!("policy files changed: reloading");
                        let _ = self.reload_policies().await;
                    }
                    // What was read, loaded or not: a rejected file is not
                    // retried until it changes again.
                    watched = now;
                }
                _ = sweep.tick() => {
                    if let Some(cache) = self.state.load().callers.cache() {
                        cache.remove_expired(crate::authn::unix_now());
                    }
                }
            }
        }
        if let Ok(loops) = self.refresh_loops.lock() {
            for (_, handle) in loops.iter() {
                handle.abort();
            }
        }
    }

    fn watched_files(&self) -> WatchedFiles {
        let live = self.state.load();
        WatchedFiles {
            config: std::fs::read(&self.config_path).ok(),
            policies: files_fingerprint(&live.config.policies.schema, &live.config.policies.dir),
        }
    }
}

/// What the watcher compares between two polls.
#[derive(Debug, PartialEq, Eq)]
struct WatchedFiles {
    /// The config file's bytes (read through symlinks).
    config: Option<Vec<u8>>,
    /// [`files_fingerprint`] of the schema and policies in force.
    policies: u64,
}

/// Settings a running process cannot change: refused with their key.
fn needs_restart(old: &Config, new: &Config) -> Result<(), ReloadError> {
    let file = new.source.display().to_string();
    let changed = |key: &'static str, detail: String| ReloadError::NeedsRestart {
        file: file.clone(),
        key,
        detail,
    };
    if old.listen != new.listen {
        return Err(changed(
            "listen",
            format!("{} → {}", old.listen, new.listen),
        ));
    }
    if old.serves_proxy() != new.serves_proxy() {
        return Err(changed(
            "upstream",
            format!("the proxy listener: {} → {}", old.mode(), new.mode()),
        ));
    }
    if old.decision_service != new.decision_service {
        return Err(changed(
            "decision_service",
            "its listener and TLS settings".to_owned(),
        ));
    }
    if old.tls != new.tls {
        return Err(changed("tls", "the listener's TLS settings".to_owned()));
    }
    let admin = |config: &Config| config.admin.as_ref().map(|a| a.listen);
    if admin(old) != admin(new) {
        return Err(changed(
            "admin.listen",
            format!("{:?} → {:?}", admin(old), admin(new)),
        ));
    }
    if old.limits != new.limits {
        return Err(changed(
            "limits",
            "the proxy listener's connection limits".to_owned(),
        ));
    }
    if old.trust_domains != new.trust_domains {
        return Err(changed(
            "trust_domains",
            "the TLS listener verifies client certificates against them".to_owned(),
        ));
    }
    if old.threads != new.threads {
        return Err(changed(
            "threads",
            format!("{} → {}", old.threads, new.threads),
        ));
    }
    if old.shutdown_grace != new.shutdown_grace {
        return Err(changed(
            "shutdown_grace",
            format!("{:?} → {:?}", old.shutdown_grace, new.shutdown_grace),
        ));
    }
    Ok(())
}

/// What a reload changes, in a few words for the log.
fn change_summary(old: &Live, new: &Config) -> String {
    let mut changes = Vec::new();
    for issuer in &new.issuers {
        match old.config.issuers.iter().find(|o| o.name == issuer.name) {
            None => changes.push(format!("issuer {} added", issuer.name)),
            Some(previous) if previous != issuer => {
                changes.push(format!("issuer {} changed", issuer.name))
            }
            Some(_) => {}
        }
    }
    for issuer in &old.config.issuers {
        if !new.issuers.iter().any(|n| n.name == issuer.name) {
            changes.push(format!("issuer {} removed", issuer.name));
        }
    }
    if old.config.policies.mode != new.policies.mode {
        changes.push(format!("policies.mode {:?}", new.policies.mode));
    }
    if old.config.routes.public != new.routes.public {
        changes.push("routes.public".to_owned());
    }
    if changes.is_empty() {
        "issuers unchanged".to_owned()
    } else {
        changes.join(", ")
    }
}
