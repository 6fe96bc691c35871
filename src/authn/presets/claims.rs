//! Reading verified claims: typed look-ups for presets, JSON Pointers for the
//! `claims:` mapping, and JSON → [`AttrValue`] conversion.
//!
//! A claim of the wrong type is always an error, never a missing attribute:
//! Cedar skips a policy whose evaluation errors, so a `forbid` reading a
//! silently dropped attribute would fail open (README, "What the upstream
//! receives, and what clients get back").

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{Map, Value};

use crate::authn::jwt::Claims;
use crate::authn::AuthnError;
use crate::identity::AttrValue;

/// A JSON object claims are read from: the claim set itself, or an object
/// inside it.
pub(super) trait Object {
    /// The member named `name`.
    fn member(&self, name: &str) -> Option<&Value>;
}

impl Object for Claims {
    fn member(&self, name: &str) -> Option<&Value> {
        self.get(name)
    }
}

impl Object for Map<String, Value> {
    fn member(&self, name: &str) -> Option<&Value> {
        self.get(name)
    }
}

/// An [`AuthnError::InvalidClaim`] for the claim at `pointer`.
pub(super) fn invalid(pointer: &str, detail: impl Into<String>) -> AuthnError {
    AuthnError::InvalidClaim {
        claim: pointer.to_owned(),
        detail: detail.into(),
    }
}

/// `object[key]` as a string; `None` when absent.
///
/// # Errors
/// [`AuthnError::InvalidClaim`] naming `pointer` when present but not a string.
pub(super) fn optional_str<'c>(
    object: &'c impl Object,
    key: &str,
    pointer: &str,
) -> Result<Option<&'c str>, AuthnError> {
    match object.member(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(invalid(
            pointer,
            format!("expected a string, found {}", kind(other)),
        )),
    }
}

/// `object[key]` as a string, which must be present.
///
/// # Errors
/// [`AuthnError::InvalidClaim`] naming `pointer` when absent or not a string.
pub(super) fn required_str<'c>(
    object: &'c impl Object,
    key: &str,
    pointer: &str,
) -> Result<&'c str, AuthnError> {
    optional_str(object, key, pointer)?.ok_or_else(|| invalid(pointer, "required claim is missing"))
}

/// `object[key]` as an object; `None` when absent.
///
/// # Errors
/// [`AuthnError::InvalidClaim`] naming `pointer` when present but not an object.
pub(super) fn optional_object<'c>(
    object: &'c impl Object,
    key: &str,
    pointer: &str,
) -> Result<Option<&'c Map<String, Value>>, AuthnError> {
    match object.member(key) {
        None => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map)),
        Some(other) => Err(invalid(
            pointer,
            format!("expected an object, found {}", kind(other)),
        )),
    }
}

/// `object[key]` as an array of strings; `None` when absent.
///
/// # Errors
/// [`AuthnError::InvalidClaim`] naming `pointer` when present but not an array of strings.
pub(super) fn optional_strings(
    object: &impl Object,
    key: &str,
    pointer: &str,
) -> Result<Option<Vec<String>>, AuthnError> {
    match object.member(key) {
        None => Ok(None),
        Some(value) => string_array(value).map(Some).ok_or_else(|| {
            invalid(
                pointer,
                format!("expected an array of strings, found {}", kind(value)),
            )
        }),
    }
}

/// RFC 8705 §3.1 certificate-bound tokens: `cnf.x5t#S256` is the base64url
/// (unpadded) SHA-256 of the DER of the client certificate the token is bound
/// to. `None` when the token carries no `cnf` or no `x5t#S256` in it.
///
/// Other confirmation methods are ignored. In particular DPoP (RFC 9449,
/// `cnf.jkt`) is not supported: wisp checks no DPoP proof, so a `jkt`-bound
/// token is treated as a plain bearer token.
///
/// # Errors
/// [`AuthnError::InvalidClaim`] for `/cnf/x5t#S256` when `cnf` is not an
/// object, or `x5t#S256` is not a string, not unpadded base64url, or not 32
/// bytes: a binding that cannot be read must never be dropped (the token would
/// become a bearer token).
pub(super) fn bound_certificate(claims: &Claims) -> Result<Option<[u8; 32]>, AuthnError> {
    const POINTER: &str = "/cnf/x5t#S256";
    let cnf = match claims.get("cnf") {
        None => return Ok(None),
        Some(Value::Object(cnf)) => cnf,
        Some(other) => {
            return Err(invalid(
                POINTER,
                format!("`cnf` must be an object, found {}", kind(other)),
            ))
        }
    };
    let Some(thumbprint) = optional_str(cnf, "x5t#S256", POINTER)? else {
        return Ok(None);
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(thumbprint)
        .map_err(|e| invalid(POINTER, format!("not unpadded base64url: {e}")))?;
    let thumbprint: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
        invalid(
            POINTER,
            format!(
                "a SHA-256 thumbprint is 32 bytes, this one is {}",
                bytes.len()
            ),
        )
    })?;
    Ok(Some(thumbprint))
}

/// Resolves an RFC 6901 JSON Pointer against the claims: the first reference
/// token names a claim (which may itself contain `.` or `/`, written `~1`),
/// the rest walk into it. `None` when it resolves to nothing; the empty
/// pointer names the whole claim set.
pub(super) fn resolve<'c>(claims: &'c Claims, pointer: &str) -> Option<Resolved<'c>> {
    if pointer.is_empty() {
        return Some(Resolved::Claims(claims));
    }
    let rest = pointer.strip_prefix('/')?;
    let (first, tail) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    let value = if first.contains('~') {
        // RFC 6901 §4: `~1` before `~0`, so that `~01` becomes `~1`, not `/`.
        claims.get(&first.replace("~1", "/").replace("~0", "~"))?
    } else {
        claims.get(first)?
    };
    value.pointer(tail).map(Resolved::Value)
}

/// What a pointer resolved to.
pub(super) enum Resolved<'c> {
    /// The whole claim set (the empty pointer).
    Claims(&'c Claims),
    /// One JSON value inside it.
    Value(&'c Value),
}

impl Resolved<'_> {
    /// Converts to an attribute value; the error says what was found.
    pub(super) fn to_attr(&self) -> Result<AttrValue, String> {
        match self {
            Resolved::Claims(claims) => record(claims.iter()),
            Resolved::Value(value) => attr_value(value),
        }
    }
}

/// JSON → Cedar-typed value (README, "Cedar model"): string → String, integer
/// fitting i64 → Long, bool → Bool, array of strings → Set, object → Record
/// whose values convert in turn. Anything else is an error describing what was
/// found.
///
/// Recursion depth is bounded by serde_json's nesting limit (128) on parsing.
pub(super) fn attr_value(value: &Value) -> Result<AttrValue, String> {
    match value {
        Value::String(s) => Ok(AttrValue::String(s.clone())),
        Value::Bool(b) => Ok(AttrValue::Bool(*b)),
        Value::Number(n) => n
            .as_i64()
            .map(AttrValue::Long)
            .ok_or_else(|| format!("{} is not an integer that fits in 64 bits", n)),
        Value::Array(_) => string_array(value)
            .map(AttrValue::Set)
            .ok_or_else(|| "an array whose elements are not all strings".to_owned()),
        Value::Object(map) => record(map.iter().map(|(key, value)| (key.as_str(), value))),
        Value::Null => Err("null".to_owned()),
    }
}

fn record<'c>(members: impl Iterator<Item = (&'c str, &'c Value)>) -> Result<AttrValue, String> {
    members
        .map(|(key, value)| {
            attr_value(value)
                .map(|v| (key.to_owned(), v))
                .map_err(|why| format!("field {key:?}: {why}"))
        })
        .collect::<Result<BTreeMap<_, _>, _>>()
        .map(AttrValue::Record)
}

fn string_array(value: &Value) -> Option<Vec<String>> {
    value
        .as_array()?
        .iter()
        .map(|item| item.as_str().map(str::to_owned))
        .collect()
}

/// A short description of a JSON value's type, for error details.
pub(super) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
