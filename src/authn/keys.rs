//! JWKS documents → verification keys. Keys are parsed once per fetch, never per request.

use std::sync::Arc;

use jsonwebtoken::DecodingKey;
use serde_json::Value;

use crate::config::Algorithm;

/// The most keys a token without `kid` is tried against. More keys fitting
/// its `alg` answer `unknown_key` without any being tried: each try is a
/// signature verification an unauthenticated caller makes wisp pay for.
pub const MAX_KIDLESS_CANDIDATES: usize = 8;

/// The key type of a verification key (what algorithms it can verify).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyFamily {
    /// RSA: RS256/384/512, PS256/384/512.
    Rsa,
    /// EC P-256: ES256.
    EcP256,
    /// EC P-384: ES384.
    EcP384,
    /// EC P-521: ES512.
    EcP521,
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
    pub key: PublicKey,
    /// Stable fingerprint of the key material (e.g. a hash of the RFC 7638 thumbprint
    /// input): lets a cached token check its key is still published.
    pub fingerprint: u64,
}

/// Public key material, parsed and validated when the JWKS loads.
#[derive(Clone)]
pub enum PublicKey {
    /// RSA, P-256, P-384 and Ed25519 keys, verified with ring.
    Ring(DecodingKey),
    /// P-521 keys, verified with RustCrypto's `p521` (ring has no P-521).
    P521(p521::ecdsa::VerifyingKey),
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
    skipped: Vec<SkippedKey>,
}

/// A JWKS entry that was not turned into a [`VerificationKey`], and why (for
/// operators asking "why is my key ignored?").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedKey {
    /// The entry's `kid`, if it had a string one.
    pub kid: Option<String>,
    /// Why it was skipped.
    pub reason: &'static str,
}

/// A JWKS document that yielded no usable keys or was not valid JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeySetError {
    /// Not a JSON object with a `keys` array.
    #[error("invalid JWKS document: {0}")]
    InvalidDocument(String),
    /// The document parsed but none of its keys is usable with the allowed algorithms.
    #[error("JWKS has no usable keys for the allowed algorithms ({} skipped{})", skipped.len(), SkippedList(skipped))]
    NoUsableKeys {
        /// The keys skipped, and why.
        skipped: Vec<SkippedKey>,
    },
}

/// `: kid "a": why; kid "b": why` (for an error message an operator reads in
/// `/readyz`).
struct SkippedList<'a>(&'a [SkippedKey]);

impl std::fmt::Display for SkippedList<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (index, key) in self.0.iter().enumerate() {
            f.write_str(if index == 0 { ": " } else { "; " })?;
            match &key.kid {
                Some(kid) => write!(f, "kid {kid:?}: {}", key.reason)?,
                None => write!(f, "a key without kid: {}", key.reason)?,
            }
        }
        Ok(())
    }
}

impl KeySet {
    /// Parses a JWKS document, keeping only public keys usable with `allowed`
    /// (skipping private, symmetric, `use: enc`, and unsupported keys) and
    /// valid as keys: EC points on their curve, RSA moduli of 2048–8192 bits
    /// with a sane exponent, Ed25519 keys of 32 bytes. A key counted here is
    /// one verification will accept, so an issuer is not reported ready on
    /// keys that fail every token.
    ///
    /// Each entry is judged on its own: a bad or unsupported key is skipped
    /// (see [`KeySet::skipped`]), never fatal to its neighbours.
    ///
    /// # Errors
    /// [`KeySetError`] when the document is invalid or has no usable key.
    pub fn from_jwks_json(json: &[u8], allowed: &[Algorithm]) -> Result<KeySet, KeySetError> {
        let document: Value = serde_json::from_slice(json)
            .map_err(|e| KeySetError::InvalidDocument(e.to_string()))?;
        let Some(entries) = document.get("keys").and_then(Value::as_array) else {
            return Err(KeySetError::InvalidDocument(
                "expected an object with a \"keys\" array".to_owned(),
            ));
        };
        let mut set = KeySet::default();
        for entry in entries {
            match jwk::parse(entry, allowed) {
                Ok(key) => set.keys.push(Arc::new(key)),
                Err(reason) => set.skipped.push(SkippedKey {
                    kid: entry.get("kid").and_then(Value::as_str).map(str::to_owned),
                    reason,
                }),
            }
        }
        if set.keys.is_empty() {
            return Err(KeySetError::NoUsableKeys {
                skipped: set.skipped,
            });
        }
        Ok(set)
    }

    /// Keys that may verify a token with this `kid` (if any) and `alg`.
    ///
    /// With a `kid`: the keys carrying that `kid`. Without: every key, but none
    /// at all when more than [`MAX_KIDLESS_CANDIDATES`] fit (the token is then
    /// `unknown_key` untried). Either way only keys whose type fits `alg` and
    /// whose own `alg`, if set, is `alg` (README, "What the upstream receives,
    /// and what clients get back").
    pub fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: Algorithm,
    ) -> impl Iterator<Item = &'a Arc<VerificationKey>> + 'a {
        let fits = move |key: &&Arc<VerificationKey>| {
            key.family.fits(alg)
                && key.alg.is_none_or(|key_alg| key_alg == alg)
                && kid.is_none_or(|kid| key.kid.as_deref() == Some(kid))
        };
        let too_many = kid.is_none()
            && self
                .keys
                .iter()
                .filter(fits)
                .nth(MAX_KIDLESS_CANDIDATES)
                .is_some();
        let limit = if too_many { 0 } else { usize::MAX };
        self.keys.iter().filter(fits).take(limit)
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

    /// The usable keys.
    pub fn keys(&self) -> &[Arc<VerificationKey>] {
        &self.keys
    }

    /// The entries of the document that were skipped, and why.
    pub fn skipped(&self) -> &[SkippedKey] {
        &self.skipped
    }
}

impl KeyFamily {
    /// Whether keys of this family can verify `alg`.
    pub fn fits(self, alg: Algorithm) -> bool {
        matches!(
            (self, alg),
            (
                KeyFamily::Rsa,
                Algorithm::RS256
                    | Algorithm::RS384
                    | Algorithm::RS512
                    | Algorithm::PS256
                    | Algorithm::PS384
                    | Algorithm::PS512
            ) | (KeyFamily::EcP256, Algorithm::ES256)
                | (KeyFamily::EcP384, Algorithm::ES384)
                | (KeyFamily::EcP521, Algorithm::ES512)
                | (KeyFamily::Ed25519, Algorithm::EdDSA)
        )
    }
}

/// One JWK → one [`VerificationKey`], or the reason it is not usable.
mod jwk {
    use std::str::FromStr;

    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use jsonwebtoken::DecodingKey;
    use ring::agreement;
    use ring::rand::SystemRandom;
    use serde_json::{Map, Value};

    use super::{KeyFamily, PublicKey, VerificationKey};
    use crate::config::Algorithm;

    /// Members that only private or symmetric keys carry (RFC 7518 §6).
    const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

    /// Smallest RSA modulus accepted, in bits (also ring's verification floor).
    const MIN_RSA_BITS: usize = 2048;
    /// Largest RSA modulus ring verifies, in bits.
    const MAX_RSA_BITS: usize = 8192;

    type Skip = &'static str;

    pub(super) fn parse(entry: &Value, allowed: &[Algorithm]) -> Result<VerificationKey, Skip> {
        let jwk = entry.as_object().ok_or("not a JSON object")?;
        check_usage(jwk)?;
        if PRIVATE_MEMBERS.iter().any(|m| jwk.contains_key(*m)) {
            return Err("carries private or symmetric key material");
        }
        let kid = match jwk.get("kid") {
            None => None,
            Some(Value::String(kid)) => Some(kid.clone()),
            Some(_) => return Err("kid is not a string"),
        };
        let (family, key, thumbprint_input) = match string(jwk, "kty")? {
            "RSA" => rsa(jwk)?,
            "EC" => ec(jwk)?,
            "OKP" => okp(jwk)?,
            "oct" => return Err("symmetric (oct) key"),
            _ => return Err("unsupported kty"),
        };
        let alg = match jwk.get("alg") {
            None => None,
            Some(Value::String(alg)) => {
                Some(Algorithm::from_str(alg).map_err(|_| "unsupported alg")?)
            }
            Some(_) => return Err("alg is not a string"),
        };
        match alg {
            Some(alg) if !allowed.contains(&alg) => return Err("alg not allowed for this issuer"),
            Some(alg) if !family.fits(alg) => return Err("alg does not fit the key type"),
            None if !allowed.iter().any(|a| family.fits(*a)) => {
                return Err("key type fits none of the issuer's algorithms")
            }
            _ => {}
        }
        Ok(VerificationKey {
            kid,
            alg,
            family,
            key,
            fingerprint: fingerprint(&thumbprint_input),
        })
    }

    /// `use`, if present, must be `sig`, or `jwt-svid` (a SPIFFE trust bundle's
    /// JWT signing keys, as `spire-server bundle show -format spiffe` writes
    /// them; its `x509-svid` entries are CA certificates, not JWT keys);
    /// `key_ops`, if present, must include `verify`.
    fn check_usage(jwk: &Map<String, Value>) -> Result<(), Skip> {
        match jwk.get("use") {
            None => {}
            Some(Value::String(u)) if u == "sig" || u == "jwt-svid" => {}
            Some(_) => return Err("use is not sig"),
        }
        match jwk.get("key_ops") {
            None => Ok(()),
            Some(Value::Array(ops)) if ops.iter().any(|op| op == "verify") => Ok(()),
            Some(_) => Err("key_ops lacks verify"),
        }
    }

    fn string<'a>(jwk: &'a Map<String, Value>, name: &str) -> Result<&'a str, Skip> {
        jwk.get(name)
            .and_then(Value::as_str)
            .ok_or("a required member is missing or not a string")
    }

    fn bytes(jwk: &Map<String, Value>, name: &str) -> Result<Vec<u8>, Skip> {
        URL_SAFE_NO_PAD
            .decode(string(jwk, name)?)
            .map_err(|_| "a key member is not unpadded base64url")
    }

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
        let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
        &bytes[first..]
    }

    type Parsed = (KeyFamily, PublicKey, String);

    fn rsa(jwk: &Map<String, Value>) -> Result<Parsed, Skip> {
        let n = bytes(jwk, "n")?;
        let e = bytes(jwk, "e")?;
        let (n, e) = (strip_leading_zeros(&n), strip_leading_zeros(&e));
        let bits = match n.first() {
            Some(top) => n.len() * 8 - top.leading_zeros() as usize,
            None => 0,
        };
        if bits < MIN_RSA_BITS {
            return Err("RSA key shorter than 2048 bits");
        }
        if bits > MAX_RSA_BITS {
            return Err("RSA key longer than 8192 bits");
        }
        if n.last().is_some_and(|b| b & 1 == 0) {
            return Err("RSA modulus is even");
        }
        // ring accepts odd exponents from 3 up to 2^33 - 1.
        if e.is_empty() || e.len() > 4 || e.last().is_some_and(|b| b & 1 == 0) || e == [1] {
            return Err("unsupported RSA public exponent");
        }
        // RFC 7638 §3.2: required members only, lexicographic order, no whitespace.
        let thumbprint_input = format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, b64(e), b64(n));
        let key = DecodingKey::from_rsa_raw_components(n, e);
        Ok((KeyFamily::Rsa, PublicKey::Ring(key), thumbprint_input))
    }

    fn ec(jwk: &Map<String, Value>) -> Result<Parsed, Skip> {
        let (family, crv, len) = match string(jwk, "crv")? {
            "P-256" => (KeyFamily::EcP256, "P-256", 32),
            "P-384" => (KeyFamily::EcP384, "P-384", 48),
            "P-521" => (KeyFamily::EcP521, "P-521", 66),
            _ => return Err("unsupported EC curve"),
        };
        let (x, y) = (bytes(jwk, "x")?, bytes(jwk, "y")?);
        if x.len() != len || y.len() != len {
            return Err("EC coordinates have the wrong length for the curve");
        }
        let thumbprint_input = format!(
            r#"{{"crv":"{crv}","kty":"EC","x":"{}","y":"{}"}}"#,
            b64(&x),
            b64(&y)
        );
        // Both verifiers take the uncompressed SEC1 point.
        let mut point = Vec::with_capacity(1 + 2 * len);
        point.push(0x04);
        point.extend_from_slice(&x);
        point.extend_from_slice(&y);
        let key = match family {
            KeyFamily::EcP256 => ring_point(&agreement::ECDH_P256, point)?,
            KeyFamily::EcP384 => ring_point(&agreement::ECDH_P384, point)?,
            _ => PublicKey::P521(
                p521::ecdsa::VerifyingKey::from_sec1_bytes(&point).map_err(|_| NOT_ON_CURVE)?,
            ),
        };
        Ok((family, key, thumbprint_input))
    }

    const NOT_ON_CURVE: Skip = "EC point is not on the curve";

    /// A P-256/P-384 point ring's ECDSA verification will accept. ring checks
    /// a point only when it verifies, and a bad point fails exactly like a
    /// bad signature; its ECDH takes the peer point through the same parser
    /// (range and curve-equation checks), so one key agreement with a
    /// throwaway key tells the two apart: a scalar multiplication per key,
    /// once per fetch.
    fn ring_point(curve: &'static agreement::Algorithm, point: Vec<u8>) -> Result<PublicKey, Skip> {
        let ephemeral = agreement::EphemeralPrivateKey::generate(curve, &SystemRandom::new())
            .map_err(|_| "the EC point could not be checked (random generator failed)")?;
        let peer = agreement::UnparsedPublicKey::new(curve, &point);
        agreement::agree_ephemeral(ephemeral, &peer, |_| ()).map_err(|_| NOT_ON_CURVE)?;
        Ok(PublicKey::Ring(DecodingKey::from_ec_der(&point)))
    }

    fn okp(jwk: &Map<String, Value>) -> Result<Parsed, Skip> {
        if string(jwk, "crv")? != "Ed25519" {
            return Err("unsupported OKP curve");
        }
        let x = bytes(jwk, "x")?;
        if x.len() != 32 {
            return Err("Ed25519 public key is not 32 bytes");
        }
        let thumbprint_input = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, b64(&x));
        Ok((
            KeyFamily::Ed25519,
            PublicKey::Ring(DecodingKey::from_ed_der(&x)),
            thumbprint_input,
        ))
    }

    /// The first 64 bits of the RFC 7638 SHA-256 thumbprint.
    fn fingerprint(thumbprint_input: &str) -> u64 {
        let digest = ring::digest::digest(&ring::digest::SHA256, thumbprint_input.as_bytes());
        digest
            .as_ref()
            .iter()
            .take(8)
            .fold(0, |acc, byte| (acc << 8) | u64::from(*byte))
    }
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
    use serde_json::json;

    use super::*;
    use crate::authn::crypto::test_keys::{self, RSA1024_JWK, RSA2048_JWK};

    const ALL: &[Algorithm] = &[
        Algorithm::RS256,
        Algorithm::PS256,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::ES512,
        Algorithm::EdDSA,
    ];

    fn jwks(keys: &[Value]) -> Vec<u8> {
        json!({ "keys": keys }).to_string().into_bytes()
    }

    fn rsa() -> Value {
        serde_json::from_str(RSA2048_JWK).expect("fixture")
    }

    /// `base` with extra members.
    fn with(mut base: Value, extra: Value) -> Value {
        if let (Some(obj), Value::Object(extra)) = (base.as_object_mut(), extra) {
            obj.extend(extra);
        }
        base
    }

    fn p256() -> Value {
        with(test_keys::p256().jwk, json!({"kid": "ec"}))
    }

    fn skipped_reason(key: Value, allowed: &[Algorithm]) -> &'static str {
        let doc = jwks(&[key, rsa()]);
        let set = KeySet::from_jwks_json(&doc, allowed).expect("the RSA key is usable");
        match set.skipped() {
            [skipped] => skipped.reason,
            other => panic!("expected one skipped key, got {other:?}"),
        }
    }

    #[test]
    fn parses_rsa_ec_and_ed25519_keys() {
        let doc = jwks(&[
            rsa(),
            p256(),
            with(test_keys::p384().jwk, json!({"kid": "ec384"})),
            with(test_keys::ed25519().jwk, json!({"kid": "ed"})),
        ]);
        let set = KeySet::from_jwks_json(&doc, ALL).expect("usable keys");
        let families: Vec<_> = set.keys().iter().map(|k| k.family).collect();
        assert_eq!(
            families,
            [
                KeyFamily::Rsa,
                KeyFamily::EcP256,
                KeyFamily::EcP384,
                KeyFamily::Ed25519
            ]
        );
        assert_eq!(set.len(), 4);
        assert!(set.skipped().is_empty());
        assert!(set.has_kid("rsa2048") && set.has_kid("ed") && !set.has_kid("nope"));
    }

    #[test]
    fn skips_rsa_keys_under_2048_bits() {
        let small: Value = serde_json::from_str(RSA1024_JWK).expect("fixture");
        assert_eq!(
            skipped_reason(small.clone(), ALL),
            "RSA key shorter than 2048 bits"
        );
        assert_eq!(
            KeySet::from_jwks_json(&jwks(&[small]), ALL).err(),
            Some(KeySetError::NoUsableKeys {
                skipped: vec![SkippedKey {
                    kid: Some("rsa1024".into()),
                    reason: "RSA key shorter than 2048 bits"
                }]
            })
        );
    }

    #[test]
    fn accepts_spiffe_bundle_jwt_svid_keys() {
        let doc = jwks(&[with(p256(), json!({"use": "jwt-svid", "kid": "spire"}))]);
        let set = KeySet::from_jwks_json(&doc, ALL).unwrap();
        assert!(set.has_kid("spire"));
    }

    #[test]
    fn skips_keys_not_meant_for_signatures() {
        assert_eq!(
            skipped_reason(with(p256(), json!({"use": "enc"})), ALL),
            "use is not sig"
        );
        assert_eq!(
            skipped_reason(with(p256(), json!({"use": "x509-svid"})), ALL),
            "use is not sig"
        );
        assert_eq!(
            skipped_reason(with(p256(), json!({"key_ops": ["encrypt"]})), ALL),
            "key_ops lacks verify"
        );
    }

    #[test]
    fn skips_keys_with_private_material() {
        for member in ["d", "p", "q", "dp", "dq", "qi", "oth"] {
            let key = with(rsa(), json!({ member: "AQAB" }));
            assert!(
                matches!(
                    KeySet::from_jwks_json(&jwks(&[key]), ALL),
                    Err(KeySetError::NoUsableKeys { skipped }) if skipped.len() == 1
                ),
                "{member}"
            );
        }
        assert_eq!(
            skipped_reason(with(p256(), json!({"d": "AAAA"})), ALL),
            "carries private or symmetric key material"
        );
    }

    #[test]
    fn skips_symmetric_keys() {
        assert_eq!(
            skipped_reason(json!({"kty": "oct", "kid": "h"}), ALL),
            "symmetric (oct) key"
        );
        assert_eq!(
            skipped_reason(json!({"kty": "oct", "k": "c2VjcmV0"}), ALL),
            "carries private or symmetric key material"
        );
    }

    #[test]
    fn skips_keys_whose_alg_is_not_allowed_or_does_not_fit() {
        let rs_only = &[Algorithm::RS256, Algorithm::ES384];
        assert_eq!(
            skipped_reason(with(p256(), json!({"alg": "ES256"})), rs_only),
            "alg not allowed for this issuer"
        );
        assert_eq!(
            skipped_reason(with(p256(), json!({"alg": "ES384"})), rs_only),
            "alg does not fit the key type"
        );
        assert_eq!(
            skipped_reason(with(p256(), json!({"alg": "HS256"})), ALL),
            "unsupported alg"
        );
        assert_eq!(
            skipped_reason(with(p256(), json!({"alg": "ES999"})), ALL),
            "unsupported alg"
        );
        assert_eq!(
            skipped_reason(p256(), rs_only),
            "key type fits none of the issuer's algorithms"
        );
    }

    #[test]
    fn skips_unsupported_or_broken_keys() {
        let cases = [
            (json!("not an object"), "not a JSON object"),
            (
                json!({"kty": "EC", "crv": "secp256k1", "x": "AA", "y": "AA"}),
                "unsupported EC curve",
            ),
            (
                json!({"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"}),
                "EC coordinates have the wrong length for the curve",
            ),
            (
                json!({"kty": "OKP", "crv": "X25519", "x": "AA"}),
                "unsupported OKP curve",
            ),
            (json!({"kty": "RSA-PSS"}), "unsupported kty"),
            (
                json!({"n": "AQAB"}),
                "a required member is missing or not a string",
            ),
            (
                with(p256(), json!({"x": "AA=="})),
                "a key member is not unpadded base64url",
            ),
            (
                with(p256(), json!({"x": "AAAA"})),
                "EC coordinates have the wrong length for the curve",
            ),
            (
                with(rsa(), json!({"e": "AAE"})),
                "unsupported RSA public exponent",
            ),
            (
                with(rsa(), json!({"e": "AQA"})),
                "unsupported RSA public exponent",
            ),
            (with(rsa(), json!({"kid": 7})), "kid is not a string"),
            (with(rsa(), json!({"alg": 7})), "alg is not a string"),
        ];
        for (key, reason) in cases {
            assert_eq!(skipped_reason(key.clone(), ALL), reason, "{key}");
        }
    }

    /// `key` with `y` replaced by `x + 1` as a big-endian number: (x, x+1)
    /// is on the curve with negligible probability.
    fn off_curve(key: Value) -> Value {
        let mut y = URL_SAFE_NO_PAD
            .decode(key["x"].as_str().expect("x"))
            .expect("base64url");
        for byte in y.iter_mut().rev() {
            let (next, carry) = byte.overflowing_add(1);
            *byte = next;
            if !carry {
                break;
            }
        }
        with(key, json!({"y": URL_SAFE_NO_PAD.encode(&y)}))
    }

    #[test]
    fn skips_ec_keys_whose_point_is_not_on_the_curve() {
        for key in [
            p256(),
            with(test_keys::p384().jwk, json!({"kid": "ec384"})),
            with(test_keys::p521().jwk, json!({"kid": "ec521"})),
        ] {
            // The untouched key is usable, so the check itself is not what fails.
            let set = KeySet::from_jwks_json(&jwks(std::slice::from_ref(&key)), ALL)
                .expect("on the curve");
            assert_eq!(set.len(), 1, "{key}");
            assert_eq!(
                skipped_reason(off_curve(key.clone()), ALL),
                "EC point is not on the curve",
                "{key}"
            );
        }
        // The coordinates must also be below the field prime.
        let all_ones = URL_SAFE_NO_PAD.encode([0xff; 32]);
        assert_eq!(
            skipped_reason(with(p256(), json!({"x": all_ones})), ALL),
            "EC point is not on the curve"
        );
    }

    #[test]
    fn an_issuer_whose_only_key_is_off_the_curve_has_no_usable_keys() {
        let err = KeySet::from_jwks_json(&jwks(&[off_curve(p256())]), ALL).err();
        let Some(err @ KeySetError::NoUsableKeys { .. }) = err else {
            panic!("expected NoUsableKeys, got {err:?}");
        };
        assert_eq!(
            err.to_string(),
            r#"JWKS has no usable keys for the allowed algorithms (1 skipped: kid "ec": EC point is not on the curve)"#
        );
    }

    #[test]
    fn skips_rsa_keys_with_an_even_modulus() {
        let mut n = URL_SAFE_NO_PAD
            .decode(rsa()["n"].as_str().expect("n"))
            .expect("base64url");
        if let Some(last) = n.last_mut() {
            *last &= 0xfe;
        }
        let even = with(rsa(), json!({"n": URL_SAFE_NO_PAD.encode(&n)}));
        assert_eq!(skipped_reason(even, ALL), "RSA modulus is even");
    }

    #[test]
    fn parses_p521_keys_for_es512_only() {
        let key = with(test_keys::p521().jwk, json!({"kid": "p521"}));
        let set = KeySet::from_jwks_json(&jwks(std::slice::from_ref(&key)), ALL).expect("usable");
        assert_eq!(set.keys()[0].family, KeyFamily::EcP521);
        assert!(matches!(set.keys()[0].key, PublicKey::P521(_)));
        assert_eq!(set.candidates(None, Algorithm::ES512).count(), 1);
        assert_eq!(set.candidates(None, Algorithm::ES256).count(), 0);
        assert_eq!(
            skipped_reason(key, &[Algorithm::ES256, Algorithm::RS256]),
            "key type fits none of the issuer's algorithms"
        );
    }

    #[test]
    fn one_bad_key_does_not_spoil_the_others() {
        let doc = jwks(&[json!({"kty": "oct", "kid": "h"}), rsa(), json!(null)]);
        let set = KeySet::from_jwks_json(&doc, ALL).expect("the RSA key is usable");
        assert_eq!(set.len(), 1);
        assert_eq!(
            set.skipped(),
            [
                SkippedKey {
                    kid: Some("h".into()),
                    reason: "symmetric (oct) key"
                },
                SkippedKey {
                    kid: None,
                    reason: "not a JSON object"
                }
            ]
        );
    }

    #[test]
    fn rejects_documents_that_are_not_a_jwks() {
        for doc in [&b"not json"[..], b"[]", b"{}", br#"{"keys":{}}"#] {
            assert!(matches!(
                KeySet::from_jwks_json(doc, ALL),
                Err(KeySetError::InvalidDocument(_))
            ));
        }
        assert_eq!(
            KeySet::from_jwks_json(br#"{"keys":[]}"#, ALL).err(),
            Some(KeySetError::NoUsableKeys { skipped: vec![] })
        );
    }

    #[test]
    fn fingerprint_is_the_rfc7638_thumbprint_prefix_and_ignores_metadata() {
        let set = KeySet::from_jwks_json(&jwks(&[rsa()]), ALL).expect("usable");
        let jwk: Jwk = serde_json::from_str(RSA2048_JWK).expect("fixture");
        crate::authn::crypto::install();
        let thumbprint = jwk.thumbprint(ThumbprintHash::SHA256).expect("thumbprint");
        let digest = URL_SAFE_NO_PAD.decode(thumbprint).expect("base64url");
        let expected = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
        assert_eq!(set.keys()[0].fingerprint, expected);

        let refetched = with(
            rsa(),
            json!({"kid": "renamed", "alg": "RS256", "use": "sig"}),
        );
        let again = KeySet::from_jwks_json(&jwks(&[refetched, p256()]), ALL).expect("usable");
        assert!(again.contains(expected));
        assert_ne!(again.keys()[1].fingerprint, expected);
    }

    #[test]
    fn candidates_with_a_kid_are_the_keys_with_that_kid_that_fit_the_alg() {
        let doc = jwks(&[
            with(rsa(), json!({"kid": "a", "alg": "RS256"})),
            with(rsa(), json!({"kid": "a", "alg": "PS256"})),
            with(p256(), json!({"kid": "a"})),
            with(rsa(), json!({"kid": "b"})),
        ]);
        let set = KeySet::from_jwks_json(&doc, ALL).expect("usable");
        let kids_algs = |kid, alg| -> Vec<_> {
            set.candidates(kid, alg)
                .map(|k| (k.kid.clone(), k.alg, k.family))
                .collect()
        };
        assert_eq!(
            kids_algs(Some("a"), Algorithm::RS256),
            [(Some("a".into()), Some(Algorithm::RS256), KeyFamily::Rsa)]
        );
        assert_eq!(
            kids_algs(Some("a"), Algorithm::ES256),
            [(Some("a".into()), None, KeyFamily::EcP256)]
        );
        assert!(kids_algs(Some("a"), Algorithm::EdDSA).is_empty());
        assert!(kids_algs(Some("c"), Algorithm::RS256).is_empty());
    }

    #[test]
    fn candidates_without_a_kid_are_every_key_that_fits_the_alg() {
        let doc = jwks(&[
            with(rsa(), json!({"kid": "a", "alg": "PS256"})),
            with(rsa(), json!({"kid": "b"})),
            p256(),
        ]);
        let set = KeySet::from_jwks_json(&doc, ALL).expect("usable");
        let kids = |alg| -> Vec<_> { set.candidates(None, alg).map(|k| k.kid.clone()).collect() };
        assert_eq!(kids(Algorithm::RS256), [Some("b".to_owned())]);
        assert_eq!(
            kids(Algorithm::PS256),
            [Some("a".to_owned()), Some("b".to_owned())]
        );
        assert_eq!(kids(Algorithm::ES256), [Some("ec".to_owned())]);
        assert!(kids(Algorithm::ES384).is_empty());
    }

    #[test]
    fn candidates_without_a_kid_are_none_beyond_the_bound() {
        let ec: Vec<Value> = (0..=MAX_KIDLESS_CANDIDATES)
            .map(|_| test_keys::p256().jwk)
            .collect();
        let bound = &ec[..MAX_KIDLESS_CANDIDATES];
        let mut doc: Vec<Value> = bound.to_vec();
        doc.push(rsa());
        let set = KeySet::from_jwks_json(&jwks(&doc), ALL).expect("usable");
        assert_eq!(
            set.candidates(None, Algorithm::ES256).count(),
            MAX_KIDLESS_CANDIDATES
        );
        // Keys of other types do not count towards the bound.
        assert_eq!(set.candidates(None, Algorithm::RS256).count(), 1);

        doc.push(ec[MAX_KIDLESS_CANDIDATES].clone());
        let set = KeySet::from_jwks_json(&jwks(&doc), ALL).expect("usable");
        assert_eq!(set.candidates(None, Algorithm::ES256).count(), 0);
        assert_eq!(set.candidates(None, Algorithm::RS256).count(), 1);
    }

    #[test]
    fn families_fit_only_their_algorithms() {
        assert!(KeyFamily::Rsa.fits(Algorithm::PS512));
        assert!(!KeyFamily::EcP256.fits(Algorithm::ES384));
        assert!(!KeyFamily::EcP384.fits(Algorithm::ES256));
        assert!(KeyFamily::EcP521.fits(Algorithm::ES512));
        assert!(!KeyFamily::EcP521.fits(Algorithm::ES384));
        assert!(!KeyFamily::EcP384.fits(Algorithm::ES512));
        assert!(KeyFamily::Ed25519.fits(Algorithm::EdDSA));
    }
}
