//! X.509-SVIDs: the SPIFFE identity of a client certificate (X509-SVID spec).
//! The chain itself is verified by rustls against the trust bundle; this
//! module applies the SVID rules to the verified leaf.

use super::spiffe::{SpiffeId, SpiffeIdError};

/// The verified identity of an mTLS peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The SPIFFE ID from the leaf's single URI SAN.
    pub spiffe_id: SpiffeId,
    /// SHA-256 of the leaf certificate's DER (RFC 8705 `x5t#S256`).
    pub thumbprint: [u8; 32],
    /// The leaf's notAfter, Unix seconds.
    pub not_after: i64,
}

/// Why a client certificate is not an acceptable X.509-SVID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SvidError {
    /// The certificate could not be parsed.
    #[error("malformed certificate: {0}")]
    Malformed(String),
    /// Placeholder for the SVID rules.
    #[error("not an X.509-SVID: {0}")]
    NotSvid(String),
    /// The URI SAN is not a valid SPIFFE ID.
    #[error("invalid SPIFFE ID: {0}")]
    InvalidSpiffeId(#[from] SpiffeIdError),
}

impl SvidError {
    /// Stable reason for logs and metrics.
    pub fn reason(&self) -> &'static str {
        "invalid_svid"
    }
}

/// Applies the X509-SVID rules to a (chain-verified) leaf certificate.
///
/// # Errors
/// [`SvidError`] naming the broken rule.
pub fn peer_identity(
    _leaf_der: &[u8],
    _trust_domains: &[String],
) -> Result<PeerIdentity, SvidError> {
    todo!("helper")
}
