//! The JWS signature algorithms wisp verifies.
//!
//! wisp's own list rather than `jsonwebtoken::Algorithm`: that enum has no
//! ES512 (P-521), and it includes the HMAC algorithms wisp never accepts, so
//! a token or config naming them cannot even be represented here.

use std::fmt;
use std::str::FromStr;

/// An asymmetric JWS algorithm (RFC 7518 §3.1, RFC 8037 §3.1): the only kind
/// an issuer may pin or a token may be verified with.
#[allow(clippy::upper_case_acronyms)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// ECDSA on P-384 with SHA-384.
    ES384,
    /// ECDSA on P-521 with SHA-512.
    ES512,
    /// Ed25519 (EdDSA).
    EdDSA,
}

impl Algorithm {
    /// Every algorithm, in the order messages list them.
    pub const ALL: [Algorithm; 10] = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::ES512,
        Algorithm::EdDSA,
    ];

    /// The JOSE name, as in a token's `alg` header or a JWK's `alg`.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::ES512 => "ES512",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    /// The same algorithm in `jsonwebtoken`'s terms, for signing with it in
    /// tests and tools; `None` for ES512, which that crate lacks.
    pub fn to_jsonwebtoken(self) -> Option<jsonwebtoken::Algorithm> {
        use jsonwebtoken::Algorithm as Jwt;
        Some(match self {
            Algorithm::RS256 => Jwt::RS256,
            Algorithm::RS384 => Jwt::RS384,
            Algorithm::RS512 => Jwt::RS512,
            Algorithm::PS256 => Jwt::PS256,
            Algorithm::PS384 => Jwt::PS384,
            Algorithm::PS512 => Jwt::PS512,
            Algorithm::ES256 => Jwt::ES256,
            Algorithm::ES384 => Jwt::ES384,
            Algorithm::EdDSA => Jwt::EdDSA,
            Algorithm::ES512 => return None,
        })
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not one of [`Algorithm`]'s (including `none` and HMAC).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown or unsupported JWS algorithm")]
pub struct UnsupportedAlgorithm;

impl FromStr for Algorithm {
    type Err = UnsupportedAlgorithm;

    /// Parses the exact, case-sensitive JOSE name (`ES256`, `EdDSA`, …).
    ///
    /// # Errors
    /// [`UnsupportedAlgorithm`] for any other text.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Algorithm::ALL
            .into_iter()
            .find(|alg| alg.name() == name)
            .ok_or(UnsupportedAlgorithm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_debug() {
        for alg in Algorithm::ALL {
            assert_eq!(alg.name().parse::<Algorithm>(), Ok(alg));
            assert_eq!(format!("{alg:?}"), alg.name());
            assert_eq!(alg.to_string(), alg.name());
        }
    }

    #[test]
    fn refuses_hmac_none_and_other_spellings() {
        for name in ["HS256", "none", "es512", "ES521", "Ed25519", ""] {
            assert_eq!(
                name.parse::<Algorithm>(),
                Err(UnsupportedAlgorithm),
                "{name}"
            );
        }
    }

    #[test]
    fn maps_to_jsonwebtoken_except_es512() {
        assert_eq!(
            Algorithm::PS384.to_jsonwebtoken(),
            Some(jsonwebtoken::Algorithm::PS384)
        );
        assert_eq!(Algorithm::ES512.to_jsonwebtoken(), None);
    }
}
