//! Authentication: turns a bearer JWT (and, later, a client certificate) into a
//! verified [`Identity`](crate::identity::Identity).
//!
//! - [`jwt`]: strict parsing of compact JWS tokens (untrusted input).
//! - [`keys`]: JWKS documents → verification keys, parsed once per fetch.
//! - [`crypto`]: the ring-backed `jsonwebtoken` crypto provider.
//! - [`verify`]: signature + registered-claim checks for one issuer.
//! - [`presets`]: claims → identity, per issuer kind.
//! - [`jwks`]: fetching and refreshing key sets (I/O).

pub mod authenticator;
pub mod bearer;
pub mod crypto;
pub mod jwks;
pub mod jwt;
pub mod keys;
pub mod presets;
pub mod spiffe;
pub mod svid;
pub mod verify;

/// Why a request failed authentication. Each variant maps to one HTTP status and
/// one stable `reason` string used in the 401 body, metrics and logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthnError {
    /// No credential was presented on a route that needs one.
    #[error("no bearer token")]
    MissingCredentials,
    /// More than one `Authorization` header, or more than one credential in it.
    #[error("more than one bearer credential")]
    MultipleCredentials,
    /// The `Authorization` header is not `Bearer <token>`.
    #[error("authorization scheme is not Bearer")]
    UnsupportedScheme,
    /// The token is larger than `authn.max_token_bytes`.
    #[error("token larger than {max} bytes")]
    TokenTooLarge {
        /// The configured limit.
        max: usize,
    },
    /// The token is not a well-formed compact JWS (segments, base64url, JSON).
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The header's `alg` is `none`, unknown, HMAC, or not allowed for the issuer.
    #[error("algorithm not allowed: {0}")]
    AlgorithmNotAllowed(String),
    /// The header carries `jwk`, `jku`, `x5u` or `x5c`: keys are never taken from tokens.
    #[error("token header carries a key reference ({0}), which is never honoured")]
    HeaderKeyNotAllowed(String),
    /// The header's `crit` names an extension we do not understand.
    #[error("unsupported critical header: {0}")]
    UnsupportedCritical(String),
    /// `iss` is missing or names no configured issuer.
    #[error("unknown issuer")]
    UnknownIssuer,
    /// The issuer has never had usable keys (503, not 401).
    #[error("issuer {0} has no usable keys")]
    IssuerUnavailable(String),
    /// No key of the issuer matches the token's `kid`/`alg`.
    #[error("no matching key")]
    UnknownKey,
    /// The signature did not verify.
    #[error("bad signature")]
    BadSignature,
    /// `exp` is in the past (beyond leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (beyond leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// `iat` is in the future (beyond leeway).
    #[error("token issued in the future")]
    IssuedInFuture,
    /// `exp - iat` (or `exp - now` without `iat`) exceeds `max_lifetime`.
    #[error("token lifetime exceeds the issuer's max_lifetime")]
    LifetimeTooLong,
    /// `aud` names none of the configured audiences.
    #[error("audience not accepted")]
    BadAudience,
    /// A required claim is missing or has the wrong JSON type.
    #[error("invalid claim {claim}: {detail}")]
    InvalidClaim {
        /// The claim (or JSON Pointer) concerned.
        claim: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The principal built from the claims does not fit the Cedar schema.
    #[error("identity does not fit the schema: {0}")]
    SchemaMismatch(String),
    /// The client certificate is not an acceptable X.509-SVID.
    #[error("client certificate rejected: {0}")]
    ClientCertificate(svid::SvidError),
    /// The client certificate's chain no longer verifies against the current
    /// trust bundle (a TLS session resumed after a rotation); the value is the
    /// chain failure (`untrusted_issuer`, `expired`, …), logged.
    #[error("client certificate no longer trusted: {0}")]
    UntrustedCertificate(&'static str),
    /// A client certificate is required (`authn.require: mtls|both`, or a
    /// certificate-bound token) but none was presented.
    #[error("a client certificate is required")]
    CertificateRequired,
    /// The token is bound (RFC 8705 `cnf.x5t#S256`) to another certificate than
    /// the one presented, or its SPIFFE ID differs from the certificate's.
    #[error("token is not bound to the presented client certificate")]
    CertificateMismatch,
}

impl AuthnError {
    /// Every value [`AuthnError::reason`] returns, except the certificate
    /// reasons of [`svid::SvidError::REASONS`].
    pub const REASONS: &'static [&'static str] = &[
        "missing_token",
        "multiple_credentials",
        "unsupported_scheme",
        "token_too_large",
        "malformed_token",
        "algorithm_not_allowed",
        "header_key_not_allowed",
        "unsupported_crit",
        "unknown_issuer",
        "issuer_unavailable",
        "unknown_key",
        "bad_signature",
        "token_expired",
        "token_not_yet_valid",
        "token_issued_in_future",
        "token_lifetime_too_long",
        "bad_audience",
        "invalid_claim",
        "schema_mismatch",
        "client_certificate_untrusted",
        "client_certificate_required",
        "token_certificate_mismatch",
    ];

    /// The stable, machine-readable reason: used in the 401 body, the
    /// `reason` metric label and the decision log.
    ///
    /// ```
    /// use wisp::authn::AuthnError;
    ///
    /// assert_eq!(AuthnError::Expired.reason(), "token_expired");
    /// assert_eq!(AuthnError::Expired.status(), 401);
    /// assert_eq!(AuthnError::IssuerUnavailable("k8s".into()).status(), 503);
    /// ```
    pub fn reason(&self) -> &'static str {
        match self {
            AuthnError::MissingCredentials => "missing_token",
            AuthnError::MultipleCredentials => "multiple_credentials",
            AuthnError::UnsupportedScheme => "unsupported_scheme",
            AuthnError::TokenTooLarge { .. } => "token_too_large",
            AuthnError::Malformed(_) => "malformed_token",
            AuthnError::AlgorithmNotAllowed(_) => "algorithm_not_allowed",
            AuthnError::HeaderKeyNotAllowed(_) => "header_key_not_allowed",
            AuthnError::UnsupportedCritical(_) => "unsupported_crit",
            AuthnError::UnknownIssuer => "unknown_issuer",
            AuthnError::IssuerUnavailable(_) => "issuer_unavailable",
            AuthnError::UnknownKey => "unknown_key",
            AuthnError::BadSignature => "bad_signature",
            AuthnError::Expired => "token_expired",
            AuthnError::NotYetValid => "token_not_yet_valid",
            AuthnError::IssuedInFuture => "token_issued_in_future",
            AuthnError::LifetimeTooLong => "token_lifetime_too_long",
            AuthnError::BadAudience => "bad_audience",
            AuthnError::InvalidClaim { .. } => "invalid_claim",
            AuthnError::SchemaMismatch(_) => "schema_mismatch",
            AuthnError::ClientCertificate(error) => error.reason(),
            AuthnError::UntrustedCertificate(_) => "client_certificate_untrusted",
            AuthnError::CertificateRequired => "client_certificate_required",
            AuthnError::CertificateMismatch => "token_certificate_mismatch",
        }
    }

    /// What the client is told (RFC 6750 `error_description`): generic, with
    /// no detail of the token, the claims, the schema or the keys — those go
    /// to the decision log's `detail` only.
    pub fn public_description(&self) -> &'static str {
        match self {
            AuthnError::MissingCredentials => "no bearer token",
            AuthnError::MultipleCredentials => "more than one bearer credential",
            AuthnError::UnsupportedScheme => "authorization scheme is not Bearer",
            AuthnError::TokenTooLarge { .. } => "token too large",
            AuthnError::Malformed(_) => "malformed token",
            AuthnError::AlgorithmNotAllowed(_) => "algorithm not allowed",
            AuthnError::HeaderKeyNotAllowed(_) => "token header carries a key reference",
            AuthnError::UnsupportedCritical(_) => "unsupported critical header",
            AuthnError::UnknownIssuer => "unknown issuer",
            AuthnError::IssuerUnavailable(_) => "issuer unavailable",
            AuthnError::UnknownKey => "no matching key",
            AuthnError::BadSignature => "bad signature",
            AuthnError::Expired => "token expired",
            AuthnError::NotYetValid => "token not yet valid",
            AuthnError::IssuedInFuture => "token issued in the future",
            AuthnError::LifetimeTooLong => "token lifetime too long",
            AuthnError::BadAudience => "audience not accepted",
            AuthnError::InvalidClaim { .. } => "invalid claim",
            AuthnError::SchemaMismatch(_) => "identity not accepted by this service",
            AuthnError::ClientCertificate(_) => "client certificate rejected",
            AuthnError::UntrustedCertificate(_) => "client certificate no longer trusted",
            AuthnError::CertificateRequired => "a client certificate is required",
            AuthnError::CertificateMismatch => {
                "token is not bound to the presented client certificate"
            }
        }
    }

    /// The HTTP status this failure answers with: 503 when the issuer has no
    /// usable keys (the caller may be fine; we are not), 401 otherwise.
    pub fn status(&self) -> u16 {
        match self {
            AuthnError::IssuerUnavailable(_) => 503,
            _ => 401,
        }
    }
}

/// Current Unix time in seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
