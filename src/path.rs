//! Request-target normalization before policy (DESIGN.md §6). Untrusted input.

/// A normalized request target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizedTarget {
    /// The normalized path (starts with `/`).
    pub path: String,
    /// The query string without `?`, unchanged, if any.
    pub query: Option<String>,
}

/// Why a path was rejected (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// Placeholder until implemented.
    #[error("invalid path")]
    Invalid,
}

/// Normalizes a raw request target (`/a/b?x=1`).
///
/// # Errors
/// [`PathError`] for ambiguous targets (encoded `/`, `\`, NUL, …).
pub fn normalize(_target: &str) -> Result<NormalizedTarget, PathError> {
    todo!("helper D")
}
