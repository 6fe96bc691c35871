//! JWKS documents → verification keys. Keys are parsed once per fetch, never per request.

use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey};

/// The key type of a verification key (what algorithms it can verify).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyFamily {
    /// RSA: RS256/384/512, PS256/384/512.
    Rsa,
    /// EC P-256: ES256.
    EcP256,
    /// EC P-384: ES384.
    EcP384,
    /// Ed25519: EdDSA.
    Ed25519,
}

/// One usable public key from a JWKS.
#[derive(Clone)]
pub struct VerificationKey {
    /// The JWK `kid`, if any.
    pub kid: Option<String>,
    /// The JWK `alg`, if any: when present the key verifies only that algorithm.
    pub alg: Option<Algorithm>,
    /// Key type.
    pub family: KeyFamily,
    /// The parsed key.
    pub key: DecodingKey,
    /// Stable fingerprint of the key material (e.g. a hash of the RFC 7638 thumbprint
    /// input): lets a cached token check its key is still published.
    pub fingerprint: u64,
}

impl std::fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerificationKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("family", &self.family)
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

/// The usable keys of one issuer, from one fetch.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<Arc<VerificationKey>>,
}

/// A JWKS document that yielded no usable keys or was not valid JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeySetError {
    /// Not a JSON object with a `keys` array.
    #[error("invalid JWKS document: {0}")]
    InvalidDocument(String),
    /// The document parsed but none of its keys is usable with the allowed algorithms.
    #[error("JWKS has no usable keys for the allowed algorithms ({skipped} skipped)")]
    NoUsableKeys {
        /// How many keys were skipped.
        skipped: usize,
    },
}

impl KeySet {
    /// Parses a JWKS document, keeping only public keys usable with `allowed`
    /// (skipping private, symmetric, `use: enc`, and unsupported keys).
    ///
    /// # Errors
    /// [`KeySetError`] when the document is invalid or has no usable key.
    pub fn from_jwks_json(_json: &[u8], _allowed: &[Algorithm]) -> Result<KeySet, KeySetError> {
        todo!("helper B")
    }

    /// Keys that may verify a token with this `kid` (if any) and `alg`.
    pub fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: Algorithm,
    ) -> impl Iterator<Item = &'a Arc<VerificationKey>> + 'a {
        let _ = (kid, alg);
        self.keys.iter()
    }

    /// Whether a key with this `kid` is present.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// Whether the key with this fingerprint is still present.
    pub fn contains(&self, fingerprint: u64) -> bool {
        self.keys.iter().any(|k| k.fingerprint == fingerprint)
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are no usable keys.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}
