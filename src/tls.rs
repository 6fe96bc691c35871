//! The TLS listener's material: server certificate and the client trust
//! bundle of each SPIFFE trust domain, re-read when their files change, and
//! the handshake callback that turns the client certificate into a
//! [`PeerIdentity`](crate::authn::svid::PeerIdentity).
//!
//! - [`TlsMaterial::load`] reads the PEM files once at startup (fatal on error);
//!   [`TlsMaterial::watch`] polls them and [`TlsMaterial::reload`]s on change.
//!   A broken or half-written update is logged and the previous material kept.
//! - [`TlsMaterial::settings`] hands pingora a certificate resolver and a client
//!   verifier that read the current material per handshake (`rotate`), so new
//!   connections see a rotation at once and established ones are untouched.
//! - pingora's handshake callback applies the X509-SVID rules to the verified
//!   client leaf and stores a [`PeerCertificate`] with the connection;
//!   [`peer_certificate`] reads it back per request.
//!
//! Every rustls builder gets the ring provider explicitly ([`ring_provider`]).

mod bundle;
mod error;
mod files;
mod peer;
pub(crate) mod rotate;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use pingora::listeners::tls::TlsSettings;
use prometheus::IntGauge;
use rustls::crypto::CryptoProvider;

use crate::config::{ClientAuth, TlsConfig, TrustBundleFile};
use crate::metrics::Metrics;

pub use error::TlsError;
pub use peer::{peer_certificate, peer_certificate_in, PeerCertificate};

use files::FileStamp;
use peer::PeerCertificateCallback;
use rotate::{RotatingCertResolver, RotatingClientVerifier};

/// The one rustls crypto provider wisp uses: ring, the same as pingora's and
/// jsonwebtoken's, so one library does all of wisp's cryptography.
///
/// rustls 0.23.48 deprecates `ring::default_provider` because ring has no
/// post-quantum key exchange (X25519MLKEM768 needs aws-lc-rs). wisp keeps
/// ring on purpose: one provider for the TLS listener, the JWKS client and
/// token signatures alike. The `allow` keeps a `cargo update` from breaking
/// `clippy -D warnings`; changing providers is a decision made here, once.
#[must_use]
pub fn ring_provider() -> CryptoProvider {
    #[allow(deprecated)]
    rustls::crypto::ring::default_provider()
}

/// The TLS listener's current certificate, key and client trust bundle,
/// shared (via `Arc`) by the listener and the file watcher.
pub struct TlsMaterial {
    config: TlsConfig,
    trust_domains: Arc<[String]>,
    provider: Arc<CryptoProvider>,
    server: Arc<RotatingCertResolver>,
    /// `None` when `client_auth` is `none`.
    client: Option<Arc<RotatingClientVerifier>>,
    /// The file versions currently loaded; the lock also serializes reloads.
    stamps: Mutex<Stamps>,
    server_expiry: IntGauge,
    /// `cert="client_ca"`: the earliest CA over every trust domain's bundle.
    client_ca_expiry: Option<IntGauge>,
    rejections: prometheus::IntCounterVec,
}

/// Versions of the files behind the loaded material.
struct Stamps {
    server: [FileStamp; 2],
    /// One per `config.trust_bundles` entry, in that order.
    bundles: Vec<LoadedBundle>,
}

/// One trust domain's bundle as last loaded.
struct LoadedBundle {
    stamp: FileStamp,
    earliest_not_after: i64,
    /// `cert="client_ca:<trust domain>"`.
    expiry: IntGauge,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("config", &self.config)
            .field("trust_domains", &self.trust_domains)
            .finish_non_exhaustive()
    }
}

impl TlsMaterial {
    /// Reads the server chain and key and, unless `client_auth` is `none`, each
    /// trust domain's bundle; sets `wisp_tls_cert_expiry_timestamp_seconds`
    /// (`server`, `client_ca` for the earliest CA of all bundles, and
    /// `client_ca:<trust domain>` per bundle).
    ///
    /// `trust_domains` are the SPIFFE trust domains accepted for client SVIDs.
    ///
    /// # Errors
    /// [`TlsError`] naming the file: unreadable, not PEM, no certificate or key,
    /// a key that does not match the certificate, an empty or unusable bundle,
    /// or [`TlsError::MissingClientCa`] when client certificates are asked for
    /// without a bundle.
    pub fn load(
        config: &TlsConfig,
        trust_domains: &[String],
        metrics: Metrics,
    ) -> Result<Arc<TlsMaterial>, TlsError> {
        let provider = Arc::new(ring_provider());
        // Stamps are taken before reading: a change racing the read is then
        // seen (and re-read) by the next poll rather than missed.
        let server_stamps = [FileStamp::of(&config.cert)?, FileStamp::of(&config.key)?];
        let server = files::load_server_key(&config.cert, &config.key, &provider)?;
        let server_expiry = metrics
            .tls_cert_expiry
            .with_label_values(&[ExpiryLabel::Server.as_str()]);
        server_expiry.set(server.not_after);

        let (client, bundles, client_ca_expiry) = match bundle_mode(config)? {
            None => (None, Vec::new(), None),
            Some((files, mandatory)) => {
                let mut verifiers = BTreeMap::new();
                let mut bundles = Vec::with_capacity(files.len());
                for file in files {
                    let stamp = FileStamp::of(&file.path)?;
                    let bundle = files::load_trust_bundle(&file.path, &provider)?;
                    let expiry = metrics
                        .tls_cert_expiry
                        .with_label_values(&[&ExpiryLabel::bundle(&file.trust_domain)]);
                    expiry.set(bundle.earliest_not_after);
                    verifiers.insert(file.trust_domain.clone(), bundle.verifier);
                    bundles.push(LoadedBundle {
                        stamp,
                        earliest_not_after: bundle.earliest_not_after,
                        expiry,
                    });
                }
                let gauge = metrics
                    .tls_cert_expiry
                    .with_label_values(&[ExpiryLabel::ClientCa.as_str()]);
                gauge.set(earliest(&bundles));
                let verifier = RotatingClientVerifier::new(
                    verifiers,
                    mandatory,
                    metrics.tls_client_cert_rejections.clone(),
                    provider.clone(),
                );
                (Some(Arc::new(verifier)), bundles, Some(gauge))
            }
        };
        Ok(Arc::new(TlsMaterial {
            config: config.clone(),
            trust_domains: trust_domains.into(),
            provider,
            server: Arc::new(RotatingCertResolver::new(server.key)),
            client,
            stamps: Mutex::new(Stamps {
                server: server_stamps,
                bundles,
            }),
            server_expiry,
            client_ca_expiry,
            rejections: metrics.tls_client_cert_rejections.clone(),
        }))
    }

    /// Re-reads whichever files changed (inode, size or mtime) and swaps the new
    /// material in for new handshakes. The server key pair and each trust
    /// domain's bundle are independent: a good new bundle is used even if the
    /// new certificate (or another domain's new bundle) is broken, and vice versa.
    ///
    /// Returns whether any material was replaced.
    ///
    /// # Errors
    /// The first [`TlsError`] met; every failure is also logged, and the part
    /// that failed keeps serving its previous material. A half-rotated pair (new
    /// certificate, old key) fails with [`TlsError::KeyMismatch`] until the key
    /// arrives too.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let mut stamps = self.stamps.lock().unwrap_or_else(PoisonError::into_inner);
        let server = self.reload_server(&mut stamps.server);
        let bundle = match &self.client {
            Some(verifier) => self.reload_bundles(verifier, &mut stamps.bundles),
            None => Ok(false),
        };
        match (server, bundle) {
            (Ok(server), Ok(bundle)) => Ok(server || bundle),
            (Err(error), _) | (_, Err(error)) => Err(error),
        }
    }

    /// Polls the files every `reload_interval` and [`reload`](Self::reload)s,
    /// until `shutdown` turns `true` or its sender is dropped. Errors are logged
    /// by `reload`; the loop keeps going so a fixed file is picked up.
    pub async fn watch(&self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut interval = tokio::time::interval(self.config.reload_interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick completes at once; the files were just loaded.
        interval.tick().await;
        loop {
            if *shutdown.borrow_and_update() {
                return;
            }
            tokio::select! {
                _ = interval.tick() => {
                    // Small local files: reading them inline is cheaper than a
                    // blocking-pool hop, and this task does nothing else.
                    let _ = self.reload();
                }
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// pingora listener settings: the rotating certificate resolver and client
    /// verifier, ALPN `h2` then `http/1.1`, and the handshake callback that
    /// stores the client's [`PeerCertificate`]. pingora's builder limits the
    /// listener to TLS 1.2 and 1.3.
    pub fn settings(self: &Arc<Self>) -> TlsSettings {
        let callback = Box::new(PeerCertificateCallback {
            trust_domains: self.trust_domains.clone(),
            rejections: self.rejections.clone(),
            verifier: self.client.clone(),
        });
        // Invariant: pingora 0.9's `with_callbacks` always returns `Ok` (it only
        // fills in a struct); the `Result` is for API symmetry.
        let mut settings = TlsSettings::with_callbacks(callback)
            .expect("TlsSettings::with_callbacks is infallible");
        settings.set_cert_resolver(self.server.clone());
        if let Some(verifier) = &self.client {
            settings.set_client_cert_verifier(verifier.clone());
        }
        settings.enable_h2();
        settings
    }

    /// The SPIFFE trust domains accepted for client certificates.
    pub fn trust_domains(&self) -> &[String] {
        &self.trust_domains
    }

    fn reload_server(&self, loaded: &mut [FileStamp; 2]) -> Result<bool, TlsError> {
        let (cert, key) = (&self.config.cert, &self.config.key);
        let result = (|| {
            let current = [FileStamp::of(cert)?, FileStamp::of(key)?];
            if current == *loaded {
                return Ok(false);
            }
            let server = files::load_server_key(cert, key, &self.provider)?;
            self.server.store(server.key);
            self.server_expiry.set(server.not_after);
            *loaded = current;
            tracing::info!(cert = %cert.display(), not_after = server.not_after, "TLS server certificate reloaded");
            Ok(true)
        })();
        log_failure(&result, cert);
        result
    }

    /// Reloads every trust domain's bundle whose file changed; the first
    /// error is returned after the others were tried.
    fn reload_bundles(
        &self,
        verifier: &RotatingClientVerifier,
        loaded: &mut [LoadedBundle],
    ) -> Result<bool, TlsError> {
        let mut outcome = Ok(false);
        for (file, bundle) in self.config.trust_bundles.iter().zip(loaded.iter_mut()) {
            match self.reload_bundle(verifier, file, bundle) {
                Ok(changed) => {
                    if let Ok(any) = &mut outcome {
                        *any |= changed;
                    }
                }
                Err(error) => {
                    if outcome.is_ok() {
                        outcome = Err(error);
                    }
                }
            }
        }
        if let Some(gauge) = &self.client_ca_expiry {
            gauge.set(earliest(loaded));
        }
        outcome
    }

    fn reload_bundle(
        &self,
        verifier: &RotatingClientVerifier,
        file: &TrustBundleFile,
        loaded: &mut LoadedBundle,
    ) -> Result<bool, TlsError> {
        let path = &file.path;
        let result = (|| {
            let current = FileStamp::of(path)?;
            if current == loaded.stamp {
                return Ok(false);
            }
            let bundle = files::load_trust_bundle(path, &self.provider)?;
            verifier.store(&file.trust_domain, bundle.verifier);
            loaded.expiry.set(bundle.earliest_not_after);
            loaded.earliest_not_after = bundle.earliest_not_after;
            loaded.stamp = current;
            tracing::info!(
                trust_domain = %file.trust_domain,
                bundle = %path.display(),
                cas = bundle.len,
                jwt_keys = bundle.jwt_keys,
                "TLS client trust bundle reloaded"
            );
            Ok(true)
        })();
        log_failure(&result, path);
        result
    }
}

/// The earliest notAfter over the loaded bundles.
fn earliest(bundles: &[LoadedBundle]) -> i64 {
    bundles
        .iter()
        .map(|bundle| bundle.earliest_not_after)
        .min()
        .unwrap_or(i64::MAX)
}

/// The `cert` label of `wisp_tls_cert_expiry_timestamp_seconds`.
#[derive(Debug, Clone, Copy)]
enum ExpiryLabel {
    /// The server leaf's notAfter.
    Server,
    /// The earliest notAfter over every trust domain's bundle.
    ClientCa,
}

impl ExpiryLabel {
    fn as_str(self) -> &'static str {
        match self {
            ExpiryLabel::Server => "server",
            ExpiryLabel::ClientCa => "client_ca",
        }
    }

    /// `client_ca:<trust domain>`: the earliest notAfter in that domain's bundle.
    fn bundle(trust_domain: &str) -> String {
        format!("client_ca:{trust_domain}")
    }
}

/// The trust domains' bundles and whether a client certificate is mandatory;
/// `None` when client certificates are not requested.
fn bundle_mode(config: &TlsConfig) -> Result<Option<(&[TrustBundleFile], bool)>, TlsError> {
    let mandatory = match config.client_auth {
        ClientAuth::None => return Ok(None),
        ClientAuth::Required => true,
        ClientAuth::Optional => false,
    };
    if config.trust_bundles.is_empty() {
        return Err(TlsError::MissingClientCa);
    }
    Ok(Some((&config.trust_bundles, mandatory)))
}

fn log_failure(result: &Result<bool, TlsError>, path: &Path) {
    if let Err(error) = result {
        tracing::error!(file = %path.display(), %error, "TLS reload failed; keeping the previous material");
    }
}

/// The decision service's TLS server config (`decision_service.tls`): its
/// certificate, and a required client certificate chaining to `client_ca`
/// (the calling proxy's). Read once at start; a restart picks up new files.
///
/// # Errors
/// An unreadable or invalid certificate, key or bundle, naming the file.
pub fn decision_server_config(
    config: &crate::config::DecisionTlsConfig,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(ring_provider());
    let server = files::load_server_key(&config.cert, &config.key, &provider)?;
    let bundle = files::load_trust_bundle(&config.client_ca, &provider)?;
    let mut server_config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| TlsError::InvalidBundle {
            path: config.client_ca.clone(),
            reason: error.to_string(),
        })?
        .with_client_cert_verifier(bundle.verifier)
        .with_cert_resolver(Arc::new(RotatingCertResolver::new(server.key)));
    // gRPC (Envoy) negotiates h2; forward-auth callers speak HTTP/1.1.
    server_config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(server_config))
}
