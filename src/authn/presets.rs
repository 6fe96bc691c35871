//! Verified claims → [`Identity`], per issuer kind (preset) plus the `claims:` mapping.

use serde_json::{Map, Value};

use super::AuthnError;
use crate::config::IssuerConfig;
use crate::identity::Identity;

/// Builds the identity for verified `claims` under `issuer`'s preset and mapping.
///
/// # Errors
/// [`AuthnError::InvalidClaim`] when a preset's required claim is missing or a
/// mapped claim has a type Cedar cannot hold.
pub fn identity(_issuer: &IssuerConfig, _claims: &Map<String, Value>, _expires_at: i64) -> Result<Identity, AuthnError> {
    todo!("helper D")
}
