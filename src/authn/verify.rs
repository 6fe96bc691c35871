//! Signature and registered-claim verification for one issuer (pure: keys and
//! clock are inputs).

use std::sync::Arc;

use serde_json::{Map, Value};

use super::jwt::UnverifiedToken;
use super::keys::KeySet;
use super::AuthnError;
use crate::config::IssuerConfig;

/// A token whose signature and registered claims were verified.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    /// All claims.
    pub claims: Arc<Map<String, Value>>,
    /// Fingerprint of the key that verified it.
    pub key_fingerprint: u64,
    /// `exp`, Unix seconds.
    pub expires_at: i64,
}

/// Verifies `token` against `issuer`'s rules and `keys` at Unix time `now`.
///
/// # Errors
/// [`AuthnError`] naming the first failed check.
pub fn verify(
    _token: &UnverifiedToken<'_>,
    _issuer: &IssuerConfig,
    _keys: &KeySet,
    _now: i64,
) -> Result<VerifiedToken, AuthnError> {
    todo!("helper B")
}
