//! X.509-SVIDs: the SPIFFE identity of a client certificate (X509-SVID spec,
//! github.com/spiffe/spiffe `standards/X509-SVID.md`).
//! The chain itself is verified by rustls against the trust bundle; this
//! module applies the SVID rules to the verified leaf.
//!
//! The leaf is untrusted input until these rules pass: parsing never panics,
//! and every rejection names the rule broken (README, "What the upstream
//! receives, and what clients get back").

use ring::digest::{digest, SHA256};
use x509_parser::certificate::X509Certificate;
use x509_parser::der_parser::oid::Oid;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{
    OID_X509_EXT_BASIC_CONSTRAINTS, OID_X509_EXT_EXTENDED_KEY_USAGE, OID_X509_EXT_KEY_USAGE,
    OID_X509_EXT_SUBJECT_ALT_NAME,
};
use x509_parser::prelude::FromDer;

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

/// Why a client certificate is not an acceptable X.509-SVID. One variant per
/// rule; [`SvidError::reason`] is stable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SvidError {
    /// The certificate could not be parsed (bad DER, trailing data, a
    /// duplicated or unparsable extension).
    #[error("malformed certificate: {0}")]
    Malformed(String),
    /// The leaf has no URI SAN (for example a DNS-only certificate).
    #[error("the certificate has no URI SAN")]
    NoUriSan,
    /// The leaf has more than one URI SAN (X509-SVID §5.2: must be rejected).
    #[error("the certificate has {0} URI SANs; an X.509-SVID has exactly one")]
    MultipleUriSans(usize),
    /// The URI SAN's scheme is not `spiffe://`.
    #[error("the URI SAN is not a SPIFFE ID (scheme is not `spiffe://`)")]
    NotSpiffe,
    /// The URI SAN has the `spiffe` scheme but is not a valid SPIFFE ID.
    #[error("invalid SPIFFE ID: {0}")]
    InvalidSpiffeId(#[from] SpiffeIdError),
    /// The SPIFFE ID has no path: X509-SVID §3.1/§5.2 reserve those for
    /// signing certificates.
    #[error("the SPIFFE ID of a leaf must have a path")]
    NoPath,
    /// basicConstraints says `cA=true`: a signing certificate, not a leaf.
    #[error("the certificate is a CA (basicConstraints cA=true)")]
    LeafIsCa,
    /// keyUsage lacks `digitalSignature`, or has `keyCertSign` or `cRLSign`.
    #[error("key usage: {0}")]
    KeyUsage(&'static str),
    /// extendedKeyUsage is present but allows neither clientAuth nor any usage.
    #[error("extended key usage does not allow client authentication")]
    NoClientAuthEku,
    /// The SPIFFE ID's trust domain is not in `trust_domains`.
    #[error("trust domain {0} is not configured")]
    UntrustedDomain(String),
}

impl SvidError {
    /// Every value [`SvidError::reason`] returns (metric handles are resolved
    /// for these at startup).
    pub const REASONS: &'static [&'static str] = &[
        "svid_malformed",
        "svid_no_uri_san",
        "svid_multiple_uri_sans",
        "svid_not_spiffe",
        "svid_invalid_spiffe_id",
        "svid_no_path",
        "svid_leaf_is_ca",
        "svid_key_usage",
        "svid_no_client_auth_eku",
        "svid_untrusted_domain",
    ];

    /// Stable reason for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            SvidError::Malformed(_) => "svid_malformed",
            SvidError::NoUriSan => "svid_no_uri_san",
            SvidError::MultipleUriSans(_) => "svid_multiple_uri_sans",
            SvidError::NotSpiffe => "svid_not_spiffe",
            SvidError::InvalidSpiffeId(_) => "svid_invalid_spiffe_id",
            SvidError::NoPath => "svid_no_path",
            SvidError::LeafIsCa => "svid_leaf_is_ca",
            SvidError::KeyUsage(_) => "svid_key_usage",
            SvidError::NoClientAuthEku => "svid_no_client_auth_eku",
            SvidError::UntrustedDomain(_) => "svid_untrusted_domain",
        }
    }
}

/// Applies the X509-SVID rules to a (chain-verified) leaf certificate.
///
/// Rules, in the order checked: the DER parses with nothing after it; the
/// leaf is not a CA; keyUsage is present, has `digitalSignature` and neither
/// `keyCertSign` nor `cRLSign`; extendedKeyUsage, if present, allows
/// clientAuth (or anyExtendedKeyUsage, per RFC 5280 §4.2.1.12); there is
/// exactly one URI SAN; it is a SPIFFE ID with a path; its trust domain is one
/// of `trust_domains`. Other SAN types (DNS, IP, …) are allowed and ignored.
///
/// Validity dates and the signature are not checked here: rustls did that.
///
/// # Errors
/// [`SvidError`] naming the first broken rule.
pub fn peer_identity(leaf_der: &[u8], trust_domains: &[String]) -> Result<PeerIdentity, SvidError> {
    let (rest, cert) =
        X509Certificate::from_der(leaf_der).map_err(|e| SvidError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(SvidError::Malformed(format!(
            "{} bytes of trailing data after the certificate",
            rest.len()
        )));
    }
    check_leaf_usage(&cert)?;
    let spiffe_id = single_spiffe_id(&cert)?;
    if !trust_domains
        .iter()
        .any(|domain| domain == spiffe_id.trust_domain())
    {
        return Err(SvidError::UntrustedDomain(
            spiffe_id.trust_domain().to_owned(),
        ));
    }
    Ok(PeerIdentity {
        spiffe_id,
        thumbprint: sha256(leaf_der),
        not_after: cert.validity().not_after.timestamp(),
    })
}

/// The SPIFFE ID in a client leaf's single URI SAN, read before its chain is
/// verified so that the chain is checked against that trust domain's roots
/// only. Nothing else of the X509-SVID rules is applied here.
///
/// # Errors
/// [`SvidError`]: the DER does not parse, or the URI SAN rules fail
/// (none, several, not a SPIFFE ID, no path).
pub fn spiffe_id_of(leaf_der: &[u8]) -> Result<SpiffeId, SvidError> {
    let (_, cert) =
        X509Certificate::from_der(leaf_der).map_err(|e| SvidError::Malformed(e.to_string()))?;
    single_spiffe_id(&cert)
}

/// SHA-256 of `der`: the RFC 8705 `x5t#S256` thumbprint.
fn sha256(der: &[u8]) -> [u8; 32] {
    let mut out = [0; 32];
    // Invariant: a SHA-256 digest is always 32 bytes, so the lengths match.
    out.copy_from_slice(digest(&SHA256, der).as_ref());
    out
}

/// basicConstraints, keyUsage and extendedKeyUsage of a leaf (X509-SVID §4, §5.2).
fn check_leaf_usage(cert: &X509Certificate<'_>) -> Result<(), SvidError> {
    match extension(cert, &OID_X509_EXT_BASIC_CONSTRAINTS)? {
        None => {}
        Some(ParsedExtension::BasicConstraints(constraints)) if constraints.ca => {
            return Err(SvidError::LeafIsCa)
        }
        Some(ParsedExtension::BasicConstraints(_)) => {}
        Some(_) => return Err(unexpected("basicConstraints")),
    }
    match extension(cert, &OID_X509_EXT_KEY_USAGE)? {
        // X509-SVID §4.3: leaf SVIDs MUST set keyUsage with digitalSignature.
        None => {
            return Err(SvidError::KeyUsage(
                "missing (must assert digitalSignature)",
            ))
        }
        Some(ParsedExtension::KeyUsage(usage)) => {
            if !usage.digital_signature() {
                return Err(SvidError::KeyUsage("lacks digitalSignature"));
            }
            if usage.key_cert_sign() {
                return Err(SvidError::KeyUsage("has keyCertSign"));
            }
            if usage.crl_sign() {
                return Err(SvidError::KeyUsage("has cRLSign"));
            }
        }
        Some(_) => return Err(unexpected("keyUsage")),
    }
    match extension(cert, &OID_X509_EXT_EXTENDED_KEY_USAGE)? {
        None => {}
        Some(ParsedExtension::ExtendedKeyUsage(usage)) if usage.client_auth || usage.any => {}
        Some(ParsedExtension::ExtendedKeyUsage(_)) => return Err(SvidError::NoClientAuthEku),
        Some(_) => return Err(unexpected("extendedKeyUsage")),
    }
    Ok(())
}

/// The SPIFFE ID in the leaf's single URI SAN.
fn single_spiffe_id(cert: &X509Certificate<'_>) -> Result<SpiffeId, SvidError> {
    let names = match extension(cert, &OID_X509_EXT_SUBJECT_ALT_NAME)? {
        None => return Err(SvidError::NoUriSan),
        Some(ParsedExtension::SubjectAlternativeName(san)) => &san.general_names,
        Some(_) => return Err(unexpected("subjectAltName")),
    };
    let mut uris = names.iter().filter_map(|name| match name {
        GeneralName::URI(uri) => Some(*uri),
        _ => None,
    });
    let uri = match (uris.next(), uris.count()) {
        (None, _) => return Err(SvidError::NoUriSan),
        (Some(uri), 0) => uri,
        (Some(_), others) => return Err(SvidError::MultipleUriSans(others + 1)),
    };
    let id = SpiffeId::parse(uri).map_err(|e| match e {
        SpiffeIdError::WrongScheme => SvidError::NotSpiffe,
        other => SvidError::InvalidSpiffeId(other),
    })?;
    if id.path().is_empty() {
        return Err(SvidError::NoPath);
    }
    Ok(id)
}

/// The parsed extension with `oid`, if present once.
///
/// # Errors
/// [`SvidError::Malformed`] when it is present twice (RFC 5280 §4.2) or its
/// value does not parse: a broken extension is never read as an absent one.
fn extension<'c, 'a>(
    cert: &'c X509Certificate<'a>,
    oid: &Oid<'_>,
) -> Result<Option<&'c ParsedExtension<'a>>, SvidError> {
    let found = cert
        .get_extension_unique(oid)
        .map_err(|e| SvidError::Malformed(format!("extension {oid}: {e}")))?;
    match found.map(|ext| ext.parsed_extension()) {
        Some(ParsedExtension::ParseError { error }) => {
            Err(SvidError::Malformed(format!("extension {oid}: {error}")))
        }
        other => Ok(other),
    }
}

fn unexpected(name: &str) -> SvidError {
    SvidError::Malformed(format!("the {name} extension did not parse as one"))
}

#[cfg(test)]
mod tests;
