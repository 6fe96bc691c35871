//! The rustls hooks that make rotation work: both read the current material
//! from an [`ArcSwap`] on every handshake, so a reload takes effect for the
//! next handshake while established connections keep what they negotiated.
//! The client verifier also scopes each trust domain's roots to that domain.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme,
};

use crate::authn::svid::{self, SvidError};

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

/// One version of the trust bundles: a WebPKI verifier per trust domain.
pub(super) struct Trust {
    domains: BTreeMap<String, Arc<dyn ClientCertVerifier>>,
}

/// Verifies client certificates against the current bundle of the trust
/// domain their SPIFFE ID names, and only that one: a federated domain's CA
/// cannot vouch for another domain's workloads.
///
/// The leaf's SPIFFE ID (its single URI SAN) is read before the chain is
/// verified; a leaf without one, or of a domain without a bundle, is refused
/// with the [`SvidError`] reason (`svid_no_uri_san`, `svid_untrusted_domain`,
/// …). Whether a certificate is mandatory is fixed by the configuration, not
/// by the bundles, so it is answered here rather than by the delegates.
pub(super) struct RotatingClientVerifier {
    current: ArcSwap<Trust>,
    mandatory: bool,
    rejections: prometheus::IntCounterVec,
    provider: Arc<CryptoProvider>,
}

impl RotatingClientVerifier {
    /// `domains`: trust domain → the verifier of its bundle.
    pub(super) fn new(
        domains: BTreeMap<String, Arc<dyn ClientCertVerifier>>,
        mandatory: bool,
        rejections: prometheus::IntCounterVec,
        provider: Arc<CryptoProvider>,
    ) -> Self {
        RotatingClientVerifier {
            current: ArcSwap::from_pointee(Trust { domains }),
            mandatory,
            rejections,
            provider,
        }
    }

    /// Replaces one trust domain's verifier; the other domains keep theirs.
    /// Callers serialize stores (`TlsMaterial`'s reload lock), so none is lost.
    pub(super) fn store(&self, trust_domain: &str, verifier: Arc<dyn ClientCertVerifier>) {
        let mut domains = self.current.load().domains.clone();
        domains.insert(trust_domain.to_owned(), verifier);
        self.current.store(Arc::new(Trust { domains }));
    }

    fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let id = svid::spiffe_id_of(end_entity.as_ref()).map_err(svid_rejection)?;
        let trust = self.current.load();
        let Some(verifier) = trust.domains.get(id.trust_domain()) else {
            return Err(svid_rejection(SvidError::UntrustedDomain(
                id.trust_domain().to_owned(),
            )));
        };
        verifier
            .verify_client_cert(end_entity, intermediates, now)
            .inspect_err(|error| {
                tracing::debug!(trust_domain = id.trust_domain(), %error, "chain does not verify against the trust domain's bundle");
            })
    }
}

/// A leaf refused before its chain was checked, as a rustls error that
/// [`rejection_reason`] maps back to the SVID reason.
fn svid_rejection(error: SvidError) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(error))))
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
        let result = self.verify(end_entity, intermediates, now);
        if let Err(error) = &result {
            let reason = rejection_reason(error);
            self.rejections.with_label_values(&[reason]).inc();
            tracing::warn!(reason, %error, "client certificate refused at the handshake");
        }
        result
    }

    // The handshake signatures do not depend on the bundles: they are checked
    // with the provider's algorithms, as WebPkiClientVerifier does.

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
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

/// A stable reason for a chain-verification failure (metric label): one of
/// [`CHAIN_REJECTION_REASONS`], or an [`SvidError::reason`] for a leaf refused
/// before its chain was checked.
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
            E::Other(other) => other
                .0
                .downcast_ref::<SvidError>()
                .map_or("invalid_certificate", SvidError::reason),
            _ => "invalid_certificate",
        },
        _ => "invalid_certificate",
    }
}
