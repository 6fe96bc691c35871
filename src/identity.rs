//! The verified identity of a caller: what authentication proved, in the shape
//! authorization consumes. Built once per verified token (or client certificate)
//! and cached with it; never built from unverified input.

use std::collections::BTreeMap;
use std::sync::Arc;

/// How the caller authenticated. Its `as_str()` is the Cedar `principal.authn` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthnMethod {
    /// A bearer JWT.
    Jwt,
    /// A client certificate (X.509-SVID).
    Mtls,
    /// Both a bearer JWT and a client certificate.
    JwtAndMtls,
}

impl AuthnMethod {
    /// The stable string used in Cedar (`principal.authn`), logs and headers.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthnMethod::Jwt => "jwt",
            AuthnMethod::Mtls => "mtls",
            AuthnMethod::JwtAndMtls => "jwt+mtls",
        }
    }
}

/// A value of a principal attribute, typed as Cedar will see it.
///
/// The variant follows the claim's JSON type (DESIGN.md §4): string → `String`,
/// integer → `Long`, bool → `Bool`, array of strings → `Set`, object → `Record`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AttrValue {
    /// A JSON string.
    String(String),
    /// A JSON integer that fits in an i64.
    Long(i64),
    /// A JSON boolean.
    Bool(bool),
    /// A JSON array whose elements are all strings.
    Set(Vec<String>),
    /// A JSON object whose values are themselves representable.
    Record(BTreeMap<String, AttrValue>),
}

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Cedar entity id of the principal, unique across issuers:
    /// `<iss>#<sub>` for tokens, the SPIFFE ID for mTLS callers.
    pub uid: String,
    /// The token's `sub` (or the SPIFFE ID for mTLS callers).
    pub sub: String,
    /// The token's `iss` (or `spiffe://<trust domain>` for mTLS callers).
    pub iss: String,
    /// The configured name of the issuer that verified the token (for logs and metrics).
    pub issuer_name: Arc<str>,
    /// Tags from the preset or the `claims:` mapping; empty when none.
    pub tags: Vec<String>,
    /// How the caller authenticated.
    pub authn: AuthnMethod,
    /// Further principal attributes from the preset and the `claims:` mapping,
    /// by Cedar attribute name. Absent claims are absent here (never defaulted).
    pub attrs: BTreeMap<String, AttrValue>,
    /// The token's `exp` as Unix seconds (`i64::MAX` when not bounded by a token).
    pub expires_at: i64,
    /// RFC 8705 certificate binding: the SHA-256 thumbprint from the token's
    /// `cnf.x5t#S256`. A bound token is valid only on a connection whose client
    /// certificate has this thumbprint.
    pub bound_certificate: Option<[u8; 32]>,
}
