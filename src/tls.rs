//! The TLS listener's material: server certificate and client trust bundle,
//! re-read when their files change, and the handshake callback that turns the
//! client certificate into a [`PeerIdentity`](crate::authn::svid::PeerIdentity).
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
//! Every rustls builder gets the ring provider explicitly (DESIGN.md §8).

mod error;
mod files;
mod peer;
pub(crate) mod rotate;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use pingora::listeners::tls::TlsSettings;
use prometheus::IntGauge;
use rustls::crypto::CryptoProvider;

use crate::config::{ClientAuth, TlsConfig};
use crate::metrics::Metrics;

pub use error::TlsError;
pub use peer::{peer_certificate, peer_certificate_in, PeerCertificate};

use files::FileStamp;
use peer::PeerCertificateCallback;
use rotate::{RotatingCertResolver, RotatingClientVerifier};

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
    client_ca_expiry: Option<IntGauge>,
    rejections: prometheus::IntCounterVec,
}

/// Versions of the files behind the loaded material.
struct Stamps {
    server: [FileStamp; 2],
    bundle: Option<FileStamp>,
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
    /// Reads the server chain and key and, unless `client_auth` is `none`, the
    /// client trust bundle; sets `wisp_tls_cert_expiry_timestamp_seconds`.
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
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        // Stamps are taken before reading: a change racing the read is then
        // seen (and re-read) by the next poll rather than missed.
        let server_stamps = [FileStamp::of(&config.cert)?, FileStamp::of(&config.key)?];
        let server = files::load_server_key(&config.cert, &config.key, &provider)?;
        let server_expiry = metrics
            .tls_cert_expiry
            .with_label_values(&[ExpiryLabel::Server.as_str()]);
        server_expiry.set(server.not_after);

        let (client, bundle_stamp, client_ca_expiry) = match bundle_mode(config)? {
            None => (None, None, None),
            Some((path, mandatory)) => {
                let stamp = FileStamp::of(path)?;
                let bundle = files::load_trust_bundle(path, !mandatory, &provider)?;
                let gauge = metrics
                    .tls_cert_expiry
                    .with_label_values(&[ExpiryLabel::ClientCa.as_str()]);
                gauge.set(bundle.earliest_not_after);
                let verifier = RotatingClientVerifier::new(
                    bundle.verifier,
                    mandatory,
                    metrics.tls_client_cert_rejections.clone(),
                );
                (Some(Arc::new(verifier)), Some(stamp), Some(gauge))
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
                bundle: bundle_stamp,
            }),
            server_expiry,
            client_ca_expiry,
            rejections: metrics.tls_client_cert_rejections.clone(),
        }))
    }

    /// Re-reads whichever files changed (inode, size or mtime) and swaps the new
    /// material in for new handshakes. The server key pair and the bundle are
    /// independent: a good new bundle is used even if the new certificate is
    /// broken, and vice versa.
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
        let bundle = match (&self.client, &mut stamps.bundle) {
            (Some(verifier), Some(stamp)) => self.reload_bundle(verifier, stamp),
            _ => Ok(false),
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

    fn reload_bundle(
        &self,
        verifier: &RotatingClientVerifier,
        loaded: &mut FileStamp,
    ) -> Result<bool, TlsError> {
        let Some((path, mandatory)) = bundle_mode(&self.config)? else {
            return Ok(false);
        };
        let result = (|| {
            let current = FileStamp::of(path)?;
            if current == *loaded {
                return Ok(false);
            }
            let bundle = files::load_trust_bundle(path, !mandatory, &self.provider)?;
            verifier.store(bundle.verifier);
            if let Some(gauge) = &self.client_ca_expiry {
                gauge.set(bundle.earliest_not_after);
            }
            *loaded = current;
            tracing::info!(client_ca = %path.display(), cas = bundle.len, "TLS client trust bundle reloaded");
            Ok(true)
        })();
        log_failure(&result, path);
        result
    }
}

/// The `cert` label of `wisp_tls_cert_expiry_timestamp_seconds`.
#[derive(Debug, Clone, Copy)]
enum ExpiryLabel {
    /// The server leaf's notAfter.
    Server,
    /// The earliest notAfter in the client trust bundle.
    ClientCa,
}

impl ExpiryLabel {
    fn as_str(self) -> &'static str {
        match self {
            ExpiryLabel::Server => "server",
            ExpiryLabel::ClientCa => "client_ca",
        }
    }
}

/// The bundle path and whether a client certificate is mandatory; `None` when
/// client certificates are not requested.
fn bundle_mode(config: &TlsConfig) -> Result<Option<(&Path, bool)>, TlsError> {
    let mandatory = match config.client_auth {
        ClientAuth::None => return Ok(None),
        ClientAuth::Required => true,
        ClientAuth::Optional => false,
    };
    match &config.client_ca {
        Some(path) => Ok(Some((path, mandatory))),
        None => Err(TlsError::MissingClientCa),
    }
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
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = files::load_server_key(&config.cert, &config.key, &provider)?;
    let bundle = files::load_trust_bundle(&config.client_ca, false, &provider)?;
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
