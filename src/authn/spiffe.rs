//! SPIFFE IDs (SPIFFE-ID spec, github.com/spiffe/spiffe `standards/SPIFFE-ID.md`):
//! strict parsing of untrusted input.
//!
//! A SPIFFE ID is `spiffe://<trust domain>[/<segment>…]`:
//! - the scheme is exactly `spiffe://` (lowercase, as go-spiffe requires);
//! - the trust domain is non-empty, at most 255 bytes, of `[a-z0-9._-]`
//!   only: no uppercase, no port (`:`), no userinfo (`@`), no percent-encoding;
//! - the path is optional; its segments are non-empty, not `.` or `..`, of
//!   `[a-zA-Z0-9._-]` only; no trailing `/`;
//! - no query or fragment; at most 2048 bytes in all.
//!
//! These are the rules go-spiffe (v2) and the other reference libraries apply,
//! which are stricter than RFC 3986: with a single spelling per identity, a
//! policy on `principal.spiffe_id` cannot be bypassed by an equivalent URI.
//!
//! Why not the `spiffe` crate: with no features it does offer just these types,
//! but it needs Rust 1.88 (wisp supports 1.85), its API has changed at almost
//! every minor release, and its error type would still have to be mapped to
//! our stable reasons. The rules fit in this small, fuzzable module.

use std::fmt;
use std::str::FromStr;

/// The only accepted scheme and authority separator.
const SCHEME: &str = "spiffe://";
/// SPIFFE-ID §2.3: implementations must support, and need not accept more than, 2048 bytes.
pub const MAX_ID_BYTES: usize = 2048;
/// SPIFFE-ID §2.3 (RFC 3986's limit on `host`).
pub const MAX_TRUST_DOMAIN_BYTES: usize = 255;

/// A valid SPIFFE ID, e.g. `spiffe://example.org/ns/prod/sa/orders`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SpiffeId {
    id: String,
    /// Byte offset where the path starts (`id.len()` when there is none).
    path_start: usize,
}

/// Why a string is not a SPIFFE ID (or, for [`parse_trust_domain`], not a
/// trust domain name). One variant per rule; [`SpiffeIdError::reason`] is stable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpiffeIdError {
    /// The input is empty.
    #[error("SPIFFE ID is empty")]
    Empty,
    /// The input is longer than 2048 bytes.
    #[error("SPIFFE ID is longer than {MAX_ID_BYTES} bytes")]
    TooLong,
    /// The input does not start with `spiffe://` (lowercase).
    #[error("SPIFFE ID must start with `spiffe://`")]
    WrongScheme,
    /// Nothing between `spiffe://` and the path.
    #[error("trust domain is missing")]
    MissingTrustDomain,
    /// The trust domain is longer than 255 bytes.
    #[error("trust domain is longer than {MAX_TRUST_DOMAIN_BYTES} bytes")]
    TrustDomainTooLong,
    /// The authority holds a port (`:`).
    #[error("trust domain must not have a port")]
    Port,
    /// The authority holds userinfo (`@`).
    #[error("trust domain must not have userinfo")]
    UserInfo,
    /// A `%` escape: SPIFFE IDs are never percent-encoded.
    #[error("percent-encoding is not allowed")]
    PercentEncoded,
    /// The trust domain holds a character outside `[a-z0-9._-]`.
    #[error("trust domain character {0:?} is not one of lowercase letters, digits, `.`, `_`, `-`")]
    TrustDomainCharacter(char),
    /// The input holds a query (`?`).
    #[error("query is not allowed")]
    Query,
    /// The input holds a fragment (`#`).
    #[error("fragment is not allowed")]
    Fragment,
    /// The path holds an empty segment (`//`).
    #[error("path must not have empty segments")]
    EmptySegment,
    /// The path holds a `.` or `..` segment.
    #[error("path must not have `.` or `..` segments")]
    DotSegment,
    /// The path ends with `/`.
    #[error("path must not end with `/`")]
    TrailingSlash,
    /// A path segment holds a character outside `[a-zA-Z0-9._-]`.
    #[error("path character {0:?} is not one of letters, digits, `.`, `_`, `-`")]
    PathCharacter(char),
    /// [`parse_trust_domain`] was given a SPIFFE ID (or another URI), not a bare name.
    #[error("expected a bare trust domain name (e.g. example.org), not a URI")]
    NotBareTrustDomain,
}

impl SpiffeIdError {
    /// Stable, machine-readable reason for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            SpiffeIdError::Empty => "spiffe_id_empty",
            SpiffeIdError::TooLong => "spiffe_id_too_long",
            SpiffeIdError::WrongScheme => "spiffe_id_wrong_scheme",
            SpiffeIdError::MissingTrustDomain => "spiffe_id_missing_trust_domain",
            SpiffeIdError::TrustDomainTooLong => "spiffe_id_trust_domain_too_long",
            SpiffeIdError::Port => "spiffe_id_port",
            SpiffeIdError::UserInfo => "spiffe_id_userinfo",
            SpiffeIdError::PercentEncoded => "spiffe_id_percent_encoded",
            SpiffeIdError::TrustDomainCharacter(_) => "spiffe_id_trust_domain_character",
            SpiffeIdError::Query => "spiffe_id_query",
            SpiffeIdError::Fragment => "spiffe_id_fragment",
            SpiffeIdError::EmptySegment => "spiffe_id_empty_segment",
            SpiffeIdError::DotSegment => "spiffe_id_dot_segment",
            SpiffeIdError::TrailingSlash => "spiffe_id_trailing_slash",
            SpiffeIdError::PathCharacter(_) => "spiffe_id_path_character",
            SpiffeIdError::NotBareTrustDomain => "trust_domain_not_bare",
        }
    }
}

impl SpiffeId {
    /// Parses a SPIFFE ID strictly (see the module docs for the rules).
    ///
    /// ```
    /// use wisp::authn::spiffe::SpiffeId;
    ///
    /// let id = SpiffeId::parse("spiffe://example.org/ns/prod/sa/orders").unwrap();
    /// assert_eq!(id.trust_domain(), "example.org");
    /// assert_eq!(id.path(), "/ns/prod/sa/orders");
    /// assert!(SpiffeId::parse("spiffe://example.org/ns/").is_err());
    /// ```
    ///
    /// # Errors
    /// [`SpiffeIdError`] naming the first rule broken.
    pub fn parse(input: &str) -> Result<SpiffeId, SpiffeIdError> {
        if input.is_empty() {
            return Err(SpiffeIdError::Empty);
        }
        if input.len() > MAX_ID_BYTES {
            return Err(SpiffeIdError::TooLong);
        }
        let rest = input
            .strip_prefix(SCHEME)
            .ok_or(SpiffeIdError::WrongScheme)?;
        // Query and fragment first: a `?` or `#` would otherwise be reported as
        // a bad character of whichever component it sits in.
        match rest.bytes().find(|b| matches!(b, b'?' | b'#')) {
            Some(b'?') => return Err(SpiffeIdError::Query),
            Some(_) => return Err(SpiffeIdError::Fragment),
            None => {}
        }
        let (trust_domain, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
        check_trust_domain(trust_domain)?;
        check_path(path)?;
        Ok(SpiffeId {
            id: input.to_owned(),
            path_start: SCHEME.len() + trust_domain.len(),
        })
    }

    /// The whole ID.
    pub fn as_str(&self) -> &str {
        &self.id
    }

    /// The trust domain (`example.org`).
    pub fn trust_domain(&self) -> &str {
        // `parse` validated an all-ASCII ID with `path_start` after the scheme
        // and at most its length: both bounds are in range and on char boundaries.
        self.id
            .get(SCHEME.len()..self.path_start)
            .unwrap_or_default()
    }

    /// The path (`/ns/prod/sa/orders`, or empty).
    pub fn path(&self) -> &str {
        // See `trust_domain` for why the bound is valid.
        self.id.get(self.path_start..).unwrap_or_default()
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

impl FromStr for SpiffeId {
    type Err = SpiffeIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SpiffeId::parse(s)
    }
}

impl AsRef<str> for SpiffeId {
    fn as_ref(&self) -> &str {
        &self.id
    }
}

/// Validates a bare trust domain name (`example.org`), as written in config.
///
/// ```
/// use wisp::authn::spiffe::parse_trust_domain;
///
/// assert_eq!(parse_trust_domain("example.org").unwrap(), "example.org");
/// assert!(parse_trust_domain("Example.org").is_err());
/// assert!(parse_trust_domain("spiffe://example.org").is_err());
/// ```
///
/// # Errors
/// [`SpiffeIdError::NotBareTrustDomain`] for a URI (`spiffe://example.org`),
/// otherwise the trust-domain rule broken (missing, too long, port, userinfo,
/// percent-encoding, character).
pub fn parse_trust_domain(name: &str) -> Result<String, SpiffeIdError> {
    if name.contains("://") {
        return Err(SpiffeIdError::NotBareTrustDomain);
    }
    check_trust_domain(name)?;
    Ok(name.to_owned())
}

fn check_trust_domain(name: &str) -> Result<(), SpiffeIdError> {
    if name.is_empty() {
        return Err(SpiffeIdError::MissingTrustDomain);
    }
    if name.len() > MAX_TRUST_DOMAIN_BYTES {
        return Err(SpiffeIdError::TrustDomainTooLong);
    }
    // A URI authority is `userinfo@host:port`: userinfo is named first, as
    // its `:` would otherwise read as a port.
    if name.contains('@') {
        return Err(SpiffeIdError::UserInfo);
    }
    for c in name.chars() {
        match c {
            'a'..='z' | '0'..='9' | '.' | '_' | '-' => {}
            ':' => return Err(SpiffeIdError::Port),
            '%' => return Err(SpiffeIdError::PercentEncoded),
            other => return Err(SpiffeIdError::TrustDomainCharacter(other)),
        }
    }
    Ok(())
}

/// `path` is empty or starts with `/` (it was split off at the first `/`).
fn check_path(path: &str) -> Result<(), SpiffeIdError> {
    let Some(segments) = path.strip_prefix('/') else {
        return Ok(());
    };
    let mut segments = segments.split('/').peekable();
    while let Some(segment) = segments.next() {
        match segment {
            "" if segments.peek().is_none() => return Err(SpiffeIdError::TrailingSlash),
            "" => return Err(SpiffeIdError::EmptySegment),
            "." | ".." => return Err(SpiffeIdError::DotSegment),
            _ => {}
        }
        for c in segment.chars() {
            match c {
                'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '_' | '-' => {}
                '%' => return Err(SpiffeIdError::PercentEncoded),
                other => return Err(SpiffeIdError::PathCharacter(other)),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
