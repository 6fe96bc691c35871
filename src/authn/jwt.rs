//! Strict parsing of compact JWS tokens (untrusted input). No signature work here.

use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use super::AuthnError;

/// The protected header fields wisp uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenHeader {
    /// The signing algorithm (asymmetric only; `none` and HMAC never get here).
    pub alg: Algorithm,
    /// The key id, if any.
    pub kid: Option<String>,
    /// `typ`, if any.
    pub typ: Option<String>,
}

/// A syntactically valid token whose signature has not been checked.
#[derive(Debug, Clone)]
pub struct UnverifiedToken<'a> {
    /// `base64url(header) "." base64url(payload)`: the signed bytes.
    pub signing_input: &'a str,
    /// The base64url signature segment.
    pub signature: &'a str,
    /// Parsed header.
    pub header: TokenHeader,
    /// Parsed payload (a JSON object without repeated keys).
    pub claims: Map<String, Value>,
}

/// Parses a compact JWS strictly.
///
/// # Errors
/// [`AuthnError`] for anything but a well-formed token with an acceptable header.
pub fn parse(_token: &str, _max_bytes: usize) -> Result<UnverifiedToken<'_>, AuthnError> {
    todo!("helper B")
}
