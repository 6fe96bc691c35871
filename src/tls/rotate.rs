//! The rustls hooks that make rotation work: both read the current material
//! from an [`ArcSwap`] on every handshake, so a reload takes effect for the
//! next handshake while established connections keep what they negotiated.

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

/// Serves the current server certificate to every handshake.
pub(super) struct RotatingCertResolver {
    current: ArcSwap<CertifiedKey>,
}

impl RotatingCertResolver {
    pub(super) fn new(key: Arc<CertifiedKey>) -> RotatingCertResolver {
        RotatingCertResolver {
            current: ArcSwap::new(key),
        }
    }

    pub(super) fn store(&self, key: Arc<CertifiedKey>) {
        self.current.store(key);
    }

    #[cfg(test)]
    pub(super) fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }
}

impl fmt::Debug for RotatingCertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RotatingCertResolver")
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for RotatingCertResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// One version of the trust bundle, as a WebPKI verifier.
pub(super) struct Trust {
    pub(super) verifier: Arc<dyn ClientCertVerifier>,
}

/// Verifies client certificates against the current trust bundle.
///
/// Whether a certificate is mandatory is fixed by the configuration, not by the
/// bundle, so it is answered here rather than by the delegate.
pub(super) struct RotatingClientVerifier {
    current: ArcSwap<Trust>,
    mandatory: bool,
    rejections: prometheus::IntCounterVec,
}

impl RotatingClientVerifier {
    pub(super) fn new(
        verifier: Arc<dyn ClientCertVerifier>,
        mandatory: bool,
        rejections: prometheus::IntCounterVec,
    ) -> Self {
        RotatingClientVerifier {
            current: ArcSwap::from_pointee(Trust { verifier }),
            mandatory,
            rejections,
        }
    }

    pub(super) fn store(&self, verifier: Arc<dyn ClientCertVerifier>) {
        self.current.store(Arc::new(Trust { verifier }));
    }
}

impl fmt::Debug for RotatingClientVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RotatingClientVerifier")
            .field("mandatory", &self.mandatory)
            .finish_non_exhaustive()
    }
}

impl ClientCertVerifier for RotatingClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    /// No CA hints: the hint list is borrowed for the handshake and cannot
    /// follow a swapped bundle. An empty list tells clients to send whatever
    /// certificate they have, which is what a workload with one SVID does anyway.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let result =
            self.current
                .load()
                .verifier
                .verify_client_cert(end_entity, intermediates, now);
        if let Err(error) = &result {
            let reason = rejection_reason(error);
            self.rejections.with_label_values(&[reason]).inc();
            tracing::warn!(reason, %error, "client certificate refused at the handshake");
        }
        result
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current
            .load()
            .verifier
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current
            .load()
            .verifier
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.current.load().verifier.supported_verify_schemes()
    }
}

/// Every value [`rejection_reason`] returns.
pub(crate) const CHAIN_REJECTION_REASONS: [&str; 7] = [
    "expired",
    "not_yet_valid",
    "untrusted_issuer",
    "wrong_key_usage",
    "bad_signature",
    "revoked",
    "invalid_certificate",
];

/// A stable reason for a chain-verification failure (metric label).
pub(super) fn rejection_reason(error: &rustls::Error) -> &'static str {
    use rustls::CertificateError as E;
    match error {
        rustls::Error::InvalidCertificate(certificate) => match certificate {
            E::Expired | E::ExpiredContext { .. } => "expired",
            E::NotValidYet | E::NotValidYetContext { .. } => "not_yet_valid",
            E::UnknownIssuer => "untrusted_issuer",
            E::InvalidPurpose | E::InvalidPurposeContext { .. } => "wrong_key_usage",
            E::BadSignature => "bad_signature",
            E::Revoked => "revoked",
            _ => "invalid_certificate",
        },
        _ => "invalid_certificate",
    }
}
