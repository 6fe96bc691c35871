//! The client certificate's SPIFFE identity, computed once per connection in
//! pingora's handshake callback and read back per request from the session.
//!
//! pingora's rustls `SslDigest` carries neither SANs nor the DER
//! (docs/architecture.md), so the callback stores the result in the digest's
//! extension.

use std::any::Any;
use std::sync::Arc;

use async_trait::async_trait;
use pingora::listeners::TlsAccept;
use pingora::protocols::tls::SslDigest;
use pingora::protocols::tls::TlsRef;

use crate::authn::svid::{self, PeerIdentity, SvidError};

/// What the client presented, after rustls verified its chain against the
/// trust bundle. No client certificate at all means no `PeerCertificate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerCertificate {
    /// An X.509-SVID in a configured trust domain.
    Valid(PeerIdentity),
    /// A chain-verified certificate that breaks an X509-SVID rule. The request
    /// is refused (401 with [`SvidError::reason`]), never given a guessed identity.
    Invalid(SvidError),
    /// A certificate whose chain does not verify against the *current* trust
    /// bundle: a TLS session resumed after the bundle changed skips rustls'
    /// verification, so the callback re-checks every connection. The value is
    /// the chain failure's reason (`untrusted_issuer`, `expired`, …).
    Untrusted(&'static str),
}

impl PeerCertificate {
    /// Applies the X509-SVID rules to a client leaf whose chain rustls has
    /// verified; a rejection is logged with its reason.
    pub fn from_verified_leaf(leaf_der: &[u8], trust_domains: &[String]) -> PeerCertificate {
        match svid::peer_identity(leaf_der, trust_domains) {
            Ok(identity) => PeerCertificate::Valid(identity),
            Err(error) => {
                tracing::warn!(
                    reason = error.reason(),
                    %error,
                    "client certificate is not an acceptable X.509-SVID"
                );
                PeerCertificate::Invalid(error)
            }
        }
    }

    /// The identity, when the certificate is an acceptable X.509-SVID.
    pub fn identity(&self) -> Option<&PeerIdentity> {
        match self {
            PeerCertificate::Valid(identity) => Some(identity),
            PeerCertificate::Invalid(_) | PeerCertificate::Untrusted(_) => None,
        }
    }
}

/// The digest extension value. A private type, so only this module's callback
/// can produce what [`peer_certificate`] recognizes; it holds an `Arc` so
/// callers get an owned handle that does not borrow the session.
struct PeerExtension(Arc<PeerCertificate>);

/// pingora's post-handshake hook: turns the verified client leaf into a
/// [`PeerCertificate`] stored with the connection.
pub(super) struct PeerCertificateCallback {
    pub(super) trust_domains: Arc<[String]>,
    pub(super) rejections: prometheus::IntCounterVec,
    /// The listener's client verifier: the chain is checked again against the
    /// current bundle (resumed sessions skip rustls' own check).
    pub(super) verifier: Option<Arc<super::rotate::RotatingClientVerifier>>,
}

#[async_trait]
impl TlsAccept for PeerCertificateCallback {
    async fn handshake_complete_callback(
        &self,
        tls: &TlsRef,
    ) -> Option<Arc<dyn Any + Send + Sync>> {
        let chain = tls.peer_cert_chain_der()?;
        let (leaf, intermediates) = chain.split_first()?;
        if let Some(verifier) = &self.verifier {
            use rustls::server::danger::ClientCertVerifier;
            let now = rustls::pki_types::UnixTime::now();
            // Counted and logged by the verifier itself.
            if let Err(error) = verifier.verify_client_cert(leaf, intermediates, now) {
                let reason = super::rotate::rejection_reason(&error);
                return Some(Arc::new(PeerExtension(Arc::new(
                    PeerCertificate::Untrusted(reason),
                ))));
            }
        }
        let peer = PeerCertificate::from_verified_leaf(leaf.as_ref(), &self.trust_domains);
        if let PeerCertificate::Invalid(error) = &peer {
            self.rejections.with_label_values(&[error.reason()]).inc();
        }
        Some(Arc::new(PeerExtension(Arc::new(peer))))
    }
}

/// The client certificate of the request's connection, if the connection is
/// TLS and the client presented one.
pub fn peer_certificate(session: &pingora::proxy::Session) -> Option<Arc<PeerCertificate>> {
    peer_certificate_in(session.digest()?.ssl_digest.as_deref()?)
}

/// [`peer_certificate`] for a TLS connection's digest (also available from a
/// `pingora::protocols::tls::TlsStream`).
pub fn peer_certificate_in(ssl_digest: &SslDigest) -> Option<Arc<PeerCertificate>> {
    ssl_digest
        .extension
        .get::<PeerExtension>()
        .map(|extension| extension.0.clone())
}
