//! SPIFFE IDs (SPIFFE-ID spec): parsing and validation of untrusted input.

/// A valid SPIFFE ID, e.g. `spiffe://example.org/ns/prod/sa/orders`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SpiffeId {
    id: String,
}

/// Why a string is not a SPIFFE ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpiffeIdError {
    /// Placeholder.
    #[error("invalid SPIFFE ID")]
    Invalid,
}

impl SpiffeId {
    /// Parses a SPIFFE ID strictly.
    ///
    /// # Errors
    /// [`SpiffeIdError`] naming the rule broken.
    pub fn parse(_input: &str) -> Result<SpiffeId, SpiffeIdError> {
        todo!("helper")
    }

    /// The whole ID.
    pub fn as_str(&self) -> &str {
        &self.id
    }

    /// The trust domain (`example.org`).
    pub fn trust_domain(&self) -> &str {
        todo!("helper")
    }

    /// The path (`/ns/prod/sa/orders`, or empty).
    pub fn path(&self) -> &str {
        todo!("helper")
    }
}
