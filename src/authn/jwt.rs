//! Strict parsing of compact JWS tokens (untrusted input). No signature work here.
//!
//! Stricter than RFC 7515 requires, on purpose: exactly three non-empty,
//! canonical, unpadded base64url segments; header and payload JSON objects
//! that never repeat a key (two parsers could otherwise disagree on which
//! `exp` counts); asymmetric algorithms only; no key references in the header;
//! no critical extensions (we understand none).

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::AuthnError;
use crate::config::Algorithm;

/// Header parameters that carry or point to a key. Keys come only from the
/// issuer's configured JWKS, so a token naming one is rejected outright.
const KEY_HEADERS: [&str; 4] = ["jwk", "jku", "x5u", "x5c"];

/// The protected header fields wisp uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenHeader {
    /// The signing algorithm (asymmetric only; `none` and HMAC never get here).
    pub alg: Algorithm,
    /// The key id, if any.
    pub kid: Option<String>,
    /// `typ`, if any.
    pub typ: Option<String>,
}

/// A syntactically valid token whose signature has not been checked.
#[derive(Debug, Clone)]
pub struct UnverifiedToken<'a> {
    /// `base64url(header) "." base64url(payload)`: the signed bytes.
    pub signing_input: &'a str,
    /// The signature, decoded from its base64url segment (once: the
    /// verifier uses these bytes).
    pub signature: Vec<u8>,
    /// Parsed header; shared with the [`HeaderMemo`] that remembered it.
    pub header: Arc<TokenHeader>,
    /// Parsed payload (a JSON object without repeated keys).
    pub claims: Claims,
}

/// A token's claim set: the payload object's members in wire order, no
/// name twice.
///
/// A vector, looked up by a scan: a claim set has a dozen members or so,
/// and comparing that many short names costs less than hashing one for
/// serde_json's `Map` (an `IndexMap` with SipHash in this build:
/// cedar-policy turns on serde_json's `preserve_order`), let alone
/// building its table for every new token. Values inside the members are
/// serde_json `Value`s. Before the signature is checked only `iss` is
/// looked up, so a forged claim set with thousands of members costs one
/// scan.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Claims {
    members: Vec<(String, Value)>,
}

impl Claims {
    /// The member named `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.members
            .iter()
            .find(|(member, _)| crate::same_bytes(member.as_bytes(), name.as_bytes()))
            .map(|(_, value)| value)
    }

    /// The members, in wire order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.members
            .iter()
            .map(|(name, value)| (name.as_str(), value))
    }

    /// How many members there are.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

/// A JSON object's members as claims (its names are unique already).
impl From<Map<String, Value>> for Claims {
    fn from(object: Map<String, Value>) -> Claims {
        Claims {
            members: object.into_iter().collect(),
        }
    }
}

/// What a token that failed verification claims to be: its `iss` and its
/// header's `kid`, for the decision log only (marked unverified there; never
/// used for a decision). Each is at most 256 bytes; anything unreadable is
/// `None`.
pub fn claimed_issuer_and_kid(token: &str) -> (Option<String>, Option<String>) {
    const MAX: usize = 256;
    let mut segments = token.split('.');
    let member = |segment: Option<&str>, name: &str| -> Option<String> {
        let bytes = URL_SAFE_NO_PAD.decode(segment?).ok()?;
        let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        let text = value.get(name)?.as_str()?;
        let mut end = text.len().min(MAX);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        Some(text[..end].to_owned())
    };
    let kid = member(segments.next(), "kid");
    let iss = member(segments.next(), "iss");
    (iss, kid)
}

/// Parses a compact JWS strictly.
///
/// # Errors
/// [`AuthnError`] for anything but a well-formed token with an acceptable header:
/// [`TokenTooLarge`](AuthnError::TokenTooLarge) (checked before anything else),
/// [`Malformed`](AuthnError::Malformed) for segments, base64url and JSON,
/// [`AlgorithmNotAllowed`](AuthnError::AlgorithmNotAllowed) for `none`, HMAC and
/// unknown algorithms, [`HeaderKeyNotAllowed`](AuthnError::HeaderKeyNotAllowed) and
/// [`UnsupportedCritical`](AuthnError::UnsupportedCritical).
pub fn parse(token: &str, max_bytes: usize) -> Result<UnverifiedToken<'_>, AuthnError> {
    parse_with(token, max_bytes, None)
}

/// [`parse`], with `memo` answering for a header segment it has seen last
/// (see [`HeaderMemo`]).
///
/// # Errors
/// As [`parse`], exactly.
pub fn parse_remembering<'t>(
    token: &'t str,
    max_bytes: usize,
    memo: &HeaderMemo,
) -> Result<UnverifiedToken<'t>, AuthnError> {
    parse_with(token, max_bytes, Some(memo))
}

/// The last header segment parsed and what it parsed to.
///
/// Workload tokens from one issuer share their header byte for byte (`alg`,
/// `kid`, `typ`), so a token never seen before usually needs only its
/// payload parsed. Parsing a header is a pure function of the segment's
/// bytes, which are compared in full, so a remembered header is exactly what
/// parsing the segment again would give. Only headers that parsed are
/// remembered; one slot, replaced by the next header that differs.
#[derive(Debug, Default)]
pub struct HeaderMemo {
    /// The segment and what it parsed to.
    last: ArcSwapOption<(Box<str>, Arc<TokenHeader>)>,
}

impl HeaderMemo {
    fn header(&self, segment: &str) -> Result<Arc<TokenHeader>, AuthnError> {
        if let Some(last) = &*self.last.load() {
            if *last.0 == *segment {
                return Ok(Arc::clone(&last.1));
            }
        }
        let header = Arc::new(parse_header(&decode_segment(segment, "header")?)?);
        self.last
            .store(Some(Arc::new((segment.into(), Arc::clone(&header)))));
        Ok(header)
    }
}

fn parse_with<'t>(
    token: &'t str,
    max_bytes: usize,
    memo: Option<&HeaderMemo>,
) -> Result<UnverifiedToken<'t>, AuthnError> {
    if token.len() > max_bytes {
        return Err(AuthnError::TokenTooLarge { max: max_bytes });
    }
    let mut segments = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return Err(malformed(format!(
            "expected 3 segments, found {}",
            token.split('.').count()
        )));
    };

    let header = match memo {
        Some(memo) => memo.header(header_b64)?,
        None => Arc::new(parse_header(&decode_segment(header_b64, "header")?)?),
    };
    let claims = json_object(&decode_segment(payload_b64, "payload")?, "payload")?;
    let signature = decode_segment(signature, "signature")?;

    Ok(UnverifiedToken {
        signing_input: &token[..header_b64.len() + 1 + payload_b64.len()],
        signature,
        header,
        claims,
    })
}

fn malformed(reason: impl Into<String>) -> AuthnError {
    AuthnError::Malformed(reason.into())
}

/// Strict unpadded base64url: the engine rejects characters outside the
/// alphabet (`=`, `+`, `/`, whitespace), impossible lengths and non-zero
/// trailing bits (non-canonical encodings). Only a rejected segment is
/// scanned again, to say which of those it was.
fn decode_segment(segment: &str, part: &str) -> Result<Vec<u8>, AuthnError> {
    if segment.is_empty() {
        return Err(malformed(format!("empty {part} segment")));
    }
    URL_SAFE_NO_PAD.decode(segment).map_err(|_| {
        if segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            malformed(format!("{part} segment is not canonical base64url"))
        } else {
            malformed(format!(
                "{part} segment has characters outside unpadded base64url"
            ))
        }
    })
}

fn parse_header(bytes: &[u8]) -> Result<TokenHeader, AuthnError> {
    let header = json_object(bytes, "header")?;
    // One pass over the few entries (keys are unique: repeats were
    // refused) instead of a hashed lookup per name; the checks below then
    // run in a fixed order, whatever the order on the wire.
    let (mut alg, mut kid, mut typ, mut crit) = (None, None, None, None);
    let mut key_header: Option<usize> = None;
    for (name, value) in header.iter() {
        match name {
            "alg" => alg = Some(value),
            "kid" => kid = Some(value),
            "typ" => typ = Some(value),
            "crit" => crit = Some(value),
            other => {
                if let Some(index) = KEY_HEADERS.iter().position(|key| *key == other) {
                    key_header = Some(key_header.map_or(index, |seen| seen.min(index)));
                }
            }
        }
    }
    let alg = match alg {
        Some(Value::String(alg)) => header_algorithm(alg)?,
        Some(_) => return Err(malformed("header alg is not a string")),
        None => return Err(malformed("header has no alg")),
    };
    if let Some(index) = key_header {
        return Err(AuthnError::HeaderKeyNotAllowed(
            KEY_HEADERS[index].to_owned(),
        ));
    }
    if let Some(crit) = crit {
        check_crit(crit)?;
    }
    Ok(TokenHeader {
        alg,
        kid: optional_string(kid, "kid")?,
        typ: optional_string(typ, "typ")?,
    })
}

fn header_algorithm(alg: &str) -> Result<Algorithm, AuthnError> {
    if alg.eq_ignore_ascii_case("none") {
        return Err(AuthnError::AlgorithmNotAllowed("none".to_owned()));
    }
    // HMAC and unknown names are not `Algorithm`s at all.
    Algorithm::from_str(alg).map_err(|_| AuthnError::AlgorithmNotAllowed(printable(alg)))
}

/// RFC 7515 §4.1.11: a non-empty array of names. We implement no extension,
/// so any name at all is one we must refuse.
fn check_crit(crit: &Value) -> Result<(), AuthnError> {
    let Value::Array(names) = crit else {
        return Err(malformed("header crit is not an array"));
    };
    let names: Option<Vec<&str>> = names.iter().map(Value::as_str).collect();
    match names.as_deref() {
        None => Err(malformed("header crit has a non-string entry")),
        Some([]) => Err(malformed("header crit is empty")),
        Some([first, ..]) => Err(AuthnError::UnsupportedCritical(printable(first))),
    }
}

fn optional_string(value: Option<&Value>, name: &str) -> Result<Option<String>, AuthnError> {
    match value {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(malformed(format!("header {name} is not a string"))),
    }
}

/// Parses one JSON object, rejecting repeated keys at any depth.
fn json_object(bytes: &[u8], part: &str) -> Result<Claims, AuthnError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let members = StrictObject
        .deserialize(&mut deserializer)
        .and_then(|members| deserializer.end().map(|()| members))
        .map_err(|e| malformed(format!("{part}: {e}")))?;
    match members {
        Some(members) => Ok(Claims { members }),
        None => Err(malformed(format!("{part} is not a JSON object"))),
    }
}

/// Attacker-chosen text, made safe and short for error messages and logs.
fn printable(text: &str) -> String {
    const MAX_CHARS: usize = 40;
    let mut out: String = text
        .chars()
        .take(MAX_CHARS)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().nth(MAX_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// Up to this many members, a new name is compared with every earlier one;
/// past it, names go into a hash set (a forged object with thousands of
/// members would otherwise cost a quadratic number of comparisons).
const SCAN_LIMIT: usize = 16;

/// The seed for a token's header or claim set: the top-level object's
/// members (`None` for any other JSON value), failing on a repeated name
/// at any depth.
struct StrictObject;

impl<'de> DeserializeSeed<'de> for StrictObject {
    type Value = Option<Vec<(String, Value)>>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(StrictObject)
    }
}

impl<'de> Visitor<'de> for StrictObject {
    type Value = Option<Vec<(String, Value)>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        // Parsed all the same: a repeated key inside is reported as one.
        StrictVisitor.visit_seq(seq).map(|_| None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        // JSON gives no size hint; a header or claim set has a dozen
        // members or so.
        let mut members: Vec<(String, Value)> = Vec::with_capacity(SCAN_LIMIT);
        let mut seen: Option<HashSet<String>> = None;
        while let Some(name) = map.next_key::<String>()? {
            let repeated = match &mut seen {
                Some(seen) => !seen.insert(name.clone()),
                None => members.iter().any(|(member, _)| *member == name),
            };
            if repeated {
                return Err(de::Error::custom(format_args!(
                    "repeated key \"{}\"",
                    printable(&name)
                )));
            }
            let value = map.next_value_seed(StrictValue)?;
            members.push((name, value));
            if seen.is_none() && members.len() == SCAN_LIMIT {
                seen = Some(members.iter().map(|(member, _)| member.clone()).collect());
            }
        }
        Ok(Some(members))
    }
}

/// A `serde_json::Value` seed that fails on a repeated object key.
/// (serde_json's own `Value` keeps the last one silently.) Nesting depth is
/// bounded by serde_json's recursion limit.
struct StrictValue;

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("non-finite number"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element_seed(StrictValue)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        // Starts empty, so a token full of `{}` cannot make each one
        // allocate a table.
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            // One lookup per key: the entry both detects a repeat and inserts.
            match object.entry(key) {
                serde_json::map::Entry::Occupied(repeated) => {
                    return Err(de::Error::custom(format_args!(
                        "repeated key \"{}\"",
                        printable(repeated.key())
                    )));
                }
                serde_json::map::Entry::Vacant(slot) => {
                    slot.insert(map.next_value_seed(StrictValue)?);
                }
            }
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    const MAX: usize = 8192;

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// A token from raw header and payload JSON text, with a dummy signature.
    fn token(header: &str, payload: &str) -> String {
        format!(
            "{}.{}.{}",
            b64(header.as_bytes()),
            b64(payload.as_bytes()),
            b64(b"signature")
        )
    }

    fn with_header(header: &str) -> String {
        token(header, r#"{"sub":"a","exp":1}"#)
    }

    fn with_payload(payload: &str) -> String {
        token(r#"{"alg":"ES256","kid":"k1"}"#, payload)
    }

    fn parse_err(token: &str) -> AuthnError {
        match parse(token, MAX) {
            Ok(parsed) => panic!("accepted {token}: {parsed:?}"),
            Err(e) => e,
        }
    }

    fn assert_malformed(token: &str, needle: &str) {
        match parse_err(token) {
            AuthnError::Malformed(reason) => {
                assert!(reason.contains(needle), "{reason:?} lacks {needle:?}")
            }
            other => panic!("expected malformed_token, got {other:?}"),
        }
    }

    #[test]
    fn accepts_a_well_formed_token_and_exposes_its_parts() {
        let t = token(
            r#"{"alg":"ES256","kid":"k1","typ":"JWT"}"#,
            r#"{"sub":"a","exp":1}"#,
        );
        let parsed = parse(&t, MAX).expect("valid token");
        assert_eq!(
            *parsed.header,
            TokenHeader {
                alg: Algorithm::ES256,
                kid: Some("k1".into()),
                typ: Some("JWT".into()),
            }
        );
        assert_eq!(parsed.claims.get("sub"), Some(&json!("a")));
        let (input, signature) = t.rsplit_once('.').expect("dots");
        assert_eq!(parsed.signing_input, input);
        assert_eq!(
            Some(parsed.signature),
            URL_SAFE_NO_PAD.decode(signature).ok()
        );
    }

    #[test]
    fn accepts_every_asymmetric_algorithm() {
        for alg in [
            "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
            "EdDSA",
        ] {
            let t = with_header(&format!(r#"{{"alg":"{alg}"}}"#));
            let parsed = parse(&t, MAX);
            assert!(parsed.is_ok(), "{alg}: {parsed:?}");
        }
    }

    #[test]
    fn rejects_token_over_max_bytes_before_anything_else() {
        let t = "!".repeat(MAX + 1);
        assert_eq!(parse_err(&t), AuthnError::TokenTooLarge { max: MAX });
        assert_eq!(parse_err(&t).reason(), "token_too_large");
        let valid = with_payload(r#"{"sub":"a"}"#);
        assert!(parse(&valid, valid.len()).is_ok());
        assert_eq!(
            parse(&valid, valid.len() - 1).err(),
            Some(AuthnError::TokenTooLarge {
                max: valid.len() - 1
            })
        );
    }

    #[test]
    fn rejects_two_and_four_segments() {
        let t = with_payload("{}");
        let (two, _) = t.rsplit_once('.').expect("dots");
        assert_malformed(two, "expected 3 segments, found 2");
        assert_malformed(&format!("{t}.AAAA"), "expected 3 segments, found 4");
        assert_malformed("", "expected 3 segments, found 1");
        assert_eq!(parse_err(two).reason(), "malformed_token");
    }

    #[test]
    fn rejects_empty_segments() {
        let t = with_payload("{}");
        let (input, _) = t.rsplit_once('.').expect("dots");
        assert_malformed(&format!("{input}."), "empty signature segment");
        assert_malformed("..", "empty header segment");
    }

    #[test]
    fn rejects_padding() {
        // `{}` encodes to `e30`; padded it is `e30=`.
        let t = format!("{}.e30=.{}", b64(br#"{"alg":"ES256"}"#), b64(b"sig"));
        assert_malformed(
            &t,
            "payload segment has characters outside unpadded base64url",
        );
        let padded_sig = format!("{}=", with_payload("{}"));
        assert_malformed(&padded_sig, "signature segment");
    }

    #[test]
    fn rejects_standard_base64_characters() {
        let t = with_payload("{}");
        let (input, _) = t.rsplit_once('.').expect("dots");
        assert_malformed(&format!("{input}.ab+d"), "outside unpadded base64url");
        assert_malformed(&format!("{input}.ab/d"), "outside unpadded base64url");
        assert_malformed(&format!("{input}.ab d"), "outside unpadded base64url");
    }

    #[test]
    fn rejects_non_canonical_trailing_bits() {
        // `e30` is `{}`; `e31` decodes to the same bytes with a non-zero trailing bit.
        let t = format!("{}.e31.{}", b64(br#"{"alg":"ES256"}"#), b64(b"sig"));
        assert_malformed(&t, "payload segment is not canonical base64url");
    }

    #[test]
    fn rejects_impossible_base64_length() {
        let t = format!("{}.e30.abcde", b64(br#"{"alg":"ES256"}"#));
        assert_malformed(&t, "signature segment is not canonical base64url");
    }

    #[test]
    fn rejects_alg_none_in_any_letter_case() {
        for alg in ["none", "NONE", "nOnE", "None"] {
            let err = parse_err(&with_header(&format!(r#"{{"alg":"{alg}"}}"#)));
            assert_eq!(err, AuthnError::AlgorithmNotAllowed("none".into()), "{alg}");
            assert_eq!(err.reason(), "algorithm_not_allowed");
        }
    }

    #[test]
    fn rejects_hmac_algorithms() {
        for alg in ["HS256", "HS384", "HS512"] {
            let err = parse_err(&with_header(&format!(r#"{{"alg":"{alg}"}}"#)));
            assert_eq!(err, AuthnError::AlgorithmNotAllowed(alg.into()));
        }
    }

    #[test]
    fn rejects_unknown_algorithms() {
        for alg in ["RS1", "es256", "es512", "ES521", "Ed25519", ""] {
            let err = parse_err(&with_header(&format!(r#"{{"alg":"{alg}"}}"#)));
            assert_eq!(err, AuthnError::AlgorithmNotAllowed(alg.into()));
        }
    }

    #[test]
    fn rejects_missing_or_non_string_alg() {
        assert_malformed(&with_header(r#"{"kid":"k"}"#), "header has no alg");
        assert_malformed(&with_header(r#"{"alg":256}"#), "header alg is not a string");
        assert_malformed(
            &with_header(r#"{"alg":null}"#),
            "header alg is not a string",
        );
    }

    #[test]
    fn rejects_keys_referenced_from_the_header() {
        for (name, value) in [
            ("jwk", json!({"kty":"EC"})),
            ("jku", json!("https://evil.example/jwks")),
            ("x5u", json!("https://evil.example/cert")),
            ("x5c", json!(["MIIB"])),
        ] {
            let header = json!({"alg": "ES256", name: value}).to_string();
            let err = parse_err(&with_header(&header));
            assert_eq!(err, AuthnError::HeaderKeyNotAllowed(name.into()));
            assert_eq!(err.reason(), "header_key_not_allowed");
        }
    }

    #[test]
    fn header_checks_run_in_a_fixed_order_whatever_the_order_on_the_wire() {
        // Several key headers: the first in KEY_HEADERS order is named.
        assert_eq!(
            parse_err(&with_header(r#"{"x5c":["MIIB"],"alg":"ES256","jwk":{}}"#)),
            AuthnError::HeaderKeyNotAllowed("jwk".into())
        );
        // alg is judged before key headers, key headers before crit and kid.
        assert_malformed(
            &with_header(r#"{"x5u":"u","crit":[],"alg":1}"#),
            "header alg is not a string",
        );
        assert_eq!(
            parse_err(&with_header(
                r#"{"kid":1,"crit":[],"jku":"u","alg":"ES256"}"#
            )),
            AuthnError::HeaderKeyNotAllowed("jku".into())
        );
        assert_malformed(
            &with_header(r#"{"kid":1,"crit":[],"alg":"ES256"}"#),
            "crit is empty",
        );
        assert_malformed(
            &with_header(r#"{"typ":1,"kid":1,"alg":"ES256"}"#),
            "header kid is not a string",
        );
    }

    #[test]
    fn rejects_any_critical_extension() {
        let err = parse_err(&with_header(
            r#"{"alg":"ES256","crit":["exp","b64"],"exp":1}"#,
        ));
        assert_eq!(err, AuthnError::UnsupportedCritical("exp".into()));
        assert_eq!(err.reason(), "unsupported_crit");
    }

    #[test]
    fn rejects_malformed_crit() {
        assert_malformed(
            &with_header(r#"{"alg":"ES256","crit":[]}"#),
            "crit is empty",
        );
        assert_malformed(
            &with_header(r#"{"alg":"ES256","crit":"b64"}"#),
            "crit is not an array",
        );
        assert_malformed(
            &with_header(r#"{"alg":"ES256","crit":["b64",1]}"#),
            "crit has a non-string entry",
        );
    }

    #[test]
    fn rejects_non_string_kid_and_typ() {
        assert_malformed(
            &with_header(r#"{"alg":"ES256","kid":1}"#),
            "kid is not a string",
        );
        assert_malformed(
            &with_header(r#"{"alg":"ES256","typ":["JWT"]}"#),
            "typ is not a string",
        );
    }

    #[test]
    fn rejects_duplicate_exp_in_payload() {
        assert_malformed(
            &with_payload(r#"{"sub":"a","exp":1,"exp":99999999999}"#),
            r#"payload: repeated key "exp""#,
        );
    }

    #[test]
    fn rejects_duplicate_key_in_header() {
        assert_malformed(
            &with_header(r#"{"alg":"ES256","alg":"none"}"#),
            r#"header: repeated key "alg""#,
        );
    }

    #[test]
    fn rejects_duplicate_key_spelled_with_escapes() {
        assert_malformed(
            &with_header(r#"{"alg":"ES256","\u0061lg":"none"}"#),
            r#"header: repeated key "alg""#,
        );
        assert_malformed(
            &with_payload(r#"{"exp":1,"\u0065xp":99999999999}"#),
            r#"payload: repeated key "exp""#,
        );
    }

    #[test]
    fn rejects_duplicate_key_at_any_depth() {
        assert_malformed(
            &with_payload(r#"{"sub":"a","cnf":{"x5t#S256":"a","x5t#S256":"b"}}"#),
            "repeated key",
        );
        assert_malformed(&with_payload(r#"{"a":[{"b":1,"b":1}]}"#), "repeated key");
    }

    /// A payload of `count` distinct members `m0`, `m1`, …, then `extra`.
    fn many_members(count: usize, extra: &str) -> String {
        let members: Vec<String> = (0..count).map(|i| format!(r#""m{i}":{i}"#)).collect();
        format!("{{{}{extra}}}", members.join(","))
    }

    #[test]
    fn finds_repeats_in_claim_sets_larger_than_the_scan_limit() {
        for count in [SCAN_LIMIT - 1, SCAN_LIMIT, SCAN_LIMIT + 1, 1000] {
            let distinct = with_payload(&many_members(count, ""));
            let parsed = parse(&distinct, usize::MAX).expect("distinct members");
            assert_eq!(parsed.claims.len(), count);
            assert_eq!(parsed.claims.get("m0"), Some(&json!(0)));
            let last = format!("m{}", count - 1);
            assert_eq!(parsed.claims.get(&last), Some(&json!(count - 1)));
            for repeat in [0, count / 2, count - 1] {
                let t = with_payload(&many_members(count, &format!(r#","m{repeat}":0"#)));
                let err = parse(&t, usize::MAX).err();
                let expected = format!(r#"payload: repeated key "m{repeat}""#);
                assert!(
                    matches!(&err, Some(AuthnError::Malformed(m)) if m.starts_with(&expected)),
                    "{count} members, m{repeat} again: {err:?}"
                );
            }
        }
    }

    #[test]
    fn rejects_payloads_that_are_not_objects() {
        for payload in ["[]", r#""x""#, "1", "null", "true"] {
            assert_eq!(
                parse_err(&with_payload(payload)),
                AuthnError::Malformed("payload is not a JSON object".into()),
                "{payload}"
            );
        }
    }

    #[test]
    fn rejects_headers_that_are_not_objects() {
        assert_eq!(
            parse_err(&with_header(r#"["ES256"]"#)),
            AuthnError::Malformed("header is not a JSON object".into())
        );
    }

    #[test]
    fn rejects_invalid_json() {
        assert_malformed(&with_payload(r#"{"sub":"a""#), "payload: ");
        assert_malformed(
            &with_payload(r#"{"sub":"a"} x"#),
            "payload: trailing characters",
        );
        assert_malformed(&with_payload(r#"{"sub":"\ud800"}"#), "payload: ");
        assert_malformed(&with_header("not json"), "header: ");
        let invalid_utf8 = format!(
            "{}.{}.{}",
            b64(br#"{"alg":"ES256"}"#),
            b64(b"{\"sub\":\"\xff\"}"),
            b64(b"sig")
        );
        assert_malformed(&invalid_utf8, "payload: ");
    }

    #[test]
    fn error_messages_quote_attacker_text_safely() {
        let long = format!("\\u0000{}", "A".repeat(100));
        let err = parse_err(&with_header(&format!(r#"{{"alg":"{long}"}}"#)));
        let AuthnError::AlgorithmNotAllowed(shown) = err else {
            panic!("expected algorithm_not_allowed, got {err:?}");
        };
        assert!(shown.starts_with("\\0"), "{shown}");
        assert!(shown.ends_with('…'));
        assert!(shown.chars().count() < 50);
    }

    fn valid_token() -> String {
        token(
            r#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#,
            r#"{"iss":"https://issuer.example","sub":"a","aud":["x"],"exp":1700000000,"n":{"a":[1,2.5,null]}}"#,
        )
    }

    proptest! {
        #[test]
        fn parse_never_panics_on_arbitrary_strings(s in ".{0,300}") {
            let _ = parse(&s, MAX);
        }

        #[test]
        fn parse_never_panics_on_token_shaped_strings(s in "[A-Za-z0-9_=+/.-]{0,200}") {
            let _ = parse(&s, MAX);
        }

        #[test]
        fn parse_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let s = String::from_utf8_lossy(&bytes);
            let _ = parse(&s, MAX);
        }

        #[test]
        fn parse_never_panics_on_mutated_tokens(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<char>(), 0..3u8), 1..4)
        ) {
            let mut chars: Vec<char> = valid_token().chars().collect();
            for (index, c, op) in edits {
                let i = index.index(chars.len() + 1);
                match op {
                    0 if i < chars.len() => chars[i] = c,
                    1 if i < chars.len() => { chars.remove(i); }
                    _ => chars.insert(i, c),
                }
            }
            let s: String = chars.into_iter().collect();
            let _ = parse(&s, MAX);
        }

        /// Remembering the last header changes nothing: over any sequence of
        /// tokens (valid headers, invalid ones, one-byte variations), parsing
        /// with the memo gives what parsing without it gives, token by token.
        #[test]
        fn the_header_memo_changes_no_result(
            picks in proptest::collection::vec((0..7usize, any::<bool>()), 1..12)
        ) {
            let headers = [
                r#"{"alg":"ES256","kid":"k1","typ":"JWT"}"#,
                r#"{"alg":"ES256","kid":"k2","typ":"JWT"}"#,
                r#"{"alg":"RS256","kid":"k1"}"#,
                r#"{"alg":"none","kid":"k1"}"#,
                r#"{"alg":"ES256","jwk":{}}"#,
                r#"{"alg":"ES256","alg":"ES256"}"#,
                r#"{"alg":"ES256","kid":"k1","typ":"JWT"} "#,
            ];
            let memo = HeaderMemo::default();
            for (pick, good_payload) in picks {
                let payload = if good_payload { r#"{"sub":"a","exp":1}"# } else { "[]" };
                let t = token(headers[pick], payload);
                let plain = parse(&t, MAX).map(|p| (p.header, p.claims));
                let remembered = parse_remembering(&t, MAX, &memo).map(|p| (p.header, p.claims));
                prop_assert_eq!(remembered, plain, "{}", headers[pick]);
            }
        }

        /// Claim sets on both sides of the scan limit, with at most one name
        /// written twice: accepted exactly when none is, in wire order, and
        /// otherwise refused naming it.
        #[test]
        fn claim_sets_keep_order_and_refuse_a_repeat(
            distinct in proptest::collection::hash_set("[a-z]{1,4}", 1..60),
            repeat in proptest::option::of((any::<prop::sample::Index>(), any::<prop::sample::Index>())),
        ) {
            let mut names: Vec<String> = distinct.into_iter().collect();
            let repeated = repeat.map(|(which, at)| {
                let which = which.index(names.len());
                // Somewhere after the first occurrence.
                let at = which + 1 + at.index(names.len() - which);
                names.insert(at, names[which].clone());
                names[which].clone()
            });
            let members: Vec<String> = names
                .iter()
                .enumerate()
                .map(|(i, name)| format!(r#""{name}":{i}"#))
                .collect();
            let t = with_payload(&format!("{{{}}}", members.join(",")));
            match (parse(&t, usize::MAX), repeated) {
                (Ok(parsed), None) => {
                    let got: Vec<(&str, &Value)> = parsed.claims.iter().collect();
                    prop_assert_eq!(got.len(), names.len());
                    for (i, (name, value)) in got.into_iter().enumerate() {
                        prop_assert_eq!(name, names[i].as_str());
                        prop_assert_eq!(value, &json!(i));
                    }
                }
                (Err(AuthnError::Malformed(message)), Some(name)) => {
                    let expected = format!(r#"payload: repeated key "{name}""#);
                    prop_assert!(message.starts_with(&expected), "{} vs {}", message, expected);
                }
                (other, repeated) => {
                    prop_assert!(false, "{:?} with {:?} repeated", other.map(|p| p.claims), repeated)
                }
            }
        }

        #[test]
        fn parse_never_panics_on_mutated_json(
            index in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let mut payload = br#"{"sub":"a","exp":1,"aud":["x",{"k":[true]}]}"#.to_vec();
            let i = index.index(payload.len());
            payload[i] = byte;
            let t = format!("{}.{}.{}", b64(br#"{"alg":"ES256"}"#), b64(&payload), b64(b"s"));
            let _ = parse(&t, MAX);
        }

        #[test]
        fn claims_round_trip_through_parse(
            strings in proptest::collection::btree_map("[a-zA-Z0-9_./:~-]{1,12}", ".{0,20}", 0..6),
            numbers in proptest::collection::btree_map("#[a-z]{1,6}", any::<i64>(), 0..4),
            flag in any::<bool>(),
        ) {
            let mut claims = Map::new();
            for (k, v) in strings {
                claims.insert(k, Value::String(v));
            }
            for (k, v) in numbers {
                claims.insert(k, Value::Number(v.into()));
            }
            claims.insert("flag".into(), Value::Bool(flag));
            claims.insert("nested".into(), json!({"list": [1, "two", null], "obj": {}}));
            let payload = serde_json::to_string(&claims).expect("serialize");
            let t = with_payload(&payload);
            let parsed = parse(&t, usize::MAX).expect("valid token");
            prop_assert_eq!(parsed.claims, Claims::from(claims));
        }
    }

    #[test]
    fn claimed_issuer_and_kid_are_read_without_verification_and_bounded() {
        let encode = |json: &str| URL_SAFE_NO_PAD.encode(json);
        let token = format!(
            "{}.{}.sig",
            encode(r#"{"alg":"ES256","kid":"k1"}"#),
            encode(&format!(r#"{{"iss":"https://a.example","sub":"{}"}}"#, "x"))
        );
        assert_eq!(
            claimed_issuer_and_kid(&token),
            (Some("https://a.example".to_owned()), Some("k1".to_owned()))
        );
        let long = format!(
            "{}.{}.s",
            encode("{}"),
            encode(&format!(r#"{{"iss":"{}"}}"#, "é".repeat(300)))
        );
        let (iss, kid) = claimed_issuer_and_kid(&long);
        assert!(iss.unwrap().len() <= 256);
        assert_eq!(kid, None);
        assert_eq!(claimed_issuer_and_kid("not a token"), (None, None));
    }
}
