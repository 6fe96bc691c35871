//! Identity headers: strip every client-sent copy, inject verified values.

use pingora::http::RequestHeader;

use crate::config::IdentityHeaderNames;
use crate::identity::Identity;

/// Whether a client-sent header named `name` must be removed: it is one of the
/// configured identity header names or starts with `x-wisp-`, compared
/// case-insensitively and with `_` read as `-`.
pub fn is_identity_header(_name: &str, _names: &IdentityHeaderNames) -> bool {
    todo!("helper D")
}

/// Removes every identity header (all copies, any case or `_` spelling).
pub fn strip(_request: &mut RequestHeader, _names: &IdentityHeaderNames) {
    todo!("helper D")
}

/// Adds the verified identity headers (tags comma-separated).
///
/// # Errors
/// A message when a value cannot be carried in a header (never expected: the
/// identity builder rejects such claims).
pub fn inject(
    _request: &mut RequestHeader,
    _identity: &Identity,
    _names: &IdentityHeaderNames,
) -> Result<(), String> {
    todo!("helper D")
}
