//! Signature and registered-claim verification for one issuer (pure: keys and
//! clock are inputs).

use std::time::Duration;

use serde_json::Value;

use super::crypto;
use super::jwt::{Claims, UnverifiedToken};
use super::keys::KeySet;
use super::AuthnError;
use crate::config::IssuerConfig;

/// A token whose signature and registered claims were verified.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    /// All claims (moved out of the parsed token, not copied).
    pub claims: Claims,
    /// Fingerprint of the key that verified it.
    pub key_fingerprint: u64,
    /// `exp`, Unix seconds.
    pub expires_at: i64,
}

/// Verifies `token` against `issuer`'s rules and `keys` at Unix time `now`.
///
/// The signature is checked first and claims only afterwards, so a forged
/// token learns nothing about which claim checks it would have failed.
///
/// # Errors
/// [`AuthnError`] naming the first failed check: `AlgorithmNotAllowed`
/// (alg not pinned for the issuer), `UnknownKey` (no key fits `kid`/`alg`,
/// or a token without `kid` fits more than
/// [`MAX_KIDLESS_CANDIDATES`](super::keys::MAX_KIDLESS_CANDIDATES) keys),
/// `BadSignature`, then `InvalidClaim` (`iss`, `exp`, `nbf`, `iat`, `sub`),
/// `Expired`, `NotYetValid`, `IssuedInFuture`, `LifetimeTooLong`, `BadAudience`.
pub fn verify(
    token: UnverifiedToken<'_>,
    issuer: &IssuerConfig,
    keys: &KeySet,
    now: i64,
) -> Result<VerifiedToken, AuthnError> {
    let key_fingerprint = verify_signature(&token, issuer, keys)?;
    let expires_at = check_claims(&token.claims, issuer, now)?;
    Ok(VerifiedToken {
        claims: token.claims,
        key_fingerprint,
        expires_at,
    })
}

/// Returns the fingerprint of the first candidate key whose signature verifies.
fn verify_signature(
    token: &UnverifiedToken<'_>,
    issuer: &IssuerConfig,
    keys: &KeySet,
) -> Result<u64, AuthnError> {
    let alg = token.header.alg;
    if !issuer.algorithms.contains(&alg) {
        return Err(AuthnError::AlgorithmNotAllowed(format!("{alg:?}")));
    }
    let mut candidates = keys.candidates(token.header.kid.as_deref(), alg).peekable();
    if candidates.peek().is_none() {
        return Err(AuthnError::UnknownKey);
    }
    let message = token.signing_input.as_bytes();
    candidates
        .find(|key| {
            #[cfg(test)]
            tests::ATTEMPTS.with(|attempts| attempts.set(attempts.get() + 1));
            // A key the verifier refuses counts as "did not verify": the
            // next candidate may still do.
            crypto::verify(alg, &key.key, message, &token.signature)
        })
        .map(|key| key.fingerprint)
        .ok_or(AuthnError::BadSignature)
}

/// Registered-claim checks; returns `exp`.
pub(crate) fn check_claims(
    claims: &Claims,
    issuer: &IssuerConfig,
    now: i64,
) -> Result<i64, AuthnError> {
    if claims.get("iss").and_then(Value::as_str) != Some(issuer.issuer.as_str()) {
        return Err(invalid_claim("iss", "does not name the issuer"));
    }
    let leeway = seconds(issuer.leeway);
    let exp = numeric_date(claims, "exp")?.ok_or_else(|| invalid_claim("exp", "missing"))?;
    if exp <= now.saturating_sub(leeway) {
        return Err(AuthnError::Expired);
    }
    if numeric_date(claims, "nbf")?.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
        return Err(AuthnError::NotYetValid);
    }
    let iat = numeric_date(claims, "iat")?;
    if iat.is_some_and(|iat| iat > now.saturating_add(leeway)) {
        return Err(AuthnError::IssuedInFuture);
    }
    // Without `iat` the lifetime is measured from our clock, so the issuer's
    // clock skew (leeway) is allowed on top.
    let (start, allowance) = match iat {
        Some(iat) => (iat, 0),
        None => (now, leeway),
    };
    if exp.saturating_sub(start) > seconds(issuer.max_lifetime).saturating_add(allowance) {
        return Err(AuthnError::LifetimeTooLong);
    }
    if !audience_accepted(claims.get("aud"), &issuer.audiences) {
        return Err(AuthnError::BadAudience);
    }
    match claims.get("sub") {
        Some(Value::String(sub)) if !sub.is_empty() => Ok(exp),
        Some(Value::String(_)) => Err(invalid_claim("sub", "empty")),
        Some(_) => Err(invalid_claim("sub", "not a string")),
        None => Err(invalid_claim("sub", "missing")),
    }
}

fn invalid_claim(claim: &str, detail: &str) -> AuthnError {
    AuthnError::InvalidClaim {
        claim: claim.to_owned(),
        detail: detail.to_owned(),
    }
}

fn seconds(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

/// A NumericDate (RFC 7519 §2): a JSON number of seconds, possibly
/// fractional (floored). `Ok(None)` when absent.
fn numeric_date(claims: &Claims, claim: &str) -> Result<Option<i64>, AuthnError> {
    let Some(value) = claims.get(claim) else {
        return Ok(None);
    };
    let Value::Number(number) = value else {
        return Err(invalid_claim(claim, "not a number"));
    };
    if let Some(seconds) = number.as_i64() {
        return Ok(Some(seconds));
    }
    // i64::MAX is not exactly representable as f64; 2^63 is the first value
    // out of range, and `as` would saturate silently, so compare first.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    match number.as_f64().map(f64::floor) {
        Some(f) if f.is_finite() && (-LIMIT..LIMIT).contains(&f) => Ok(Some(f as i64)),
        _ => Err(invalid_claim(claim, "out of range")),
    }
}

/// `aud` may be one string or an array of strings; one must be accepted.
fn audience_accepted(aud: Option<&Value>, accepted: &[String]) -> bool {
    let accepts = |s: &str| accepted.iter().any(|a| a == s);
    match aud {
        Some(Value::String(aud)) => accepts(aud),
        Some(Value::Array(auds)) => {
            auds.iter().all(Value::is_string) && auds.iter().filter_map(Value::as_str).any(accepts)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    use super::*;
    use crate::authn::keys::MAX_KIDLESS_CANDIDATES;
    use crate::config::Algorithm;

    thread_local! {
        /// Signature verifications tried on this thread (tests run one per thread).
        pub(super) static ATTEMPTS: Cell<usize> = const { Cell::new(0) };
    }

    /// `check`, counting the signature verifications it tried.
    fn check_counting(
        token: &str,
        issuer: &IssuerConfig,
        keys: &KeySet,
    ) -> (Result<VerifiedToken, AuthnError>, usize) {
        ATTEMPTS.with(|attempts| attempts.set(0));
        let result = check(token, issuer, keys);
        (result, ATTEMPTS.with(Cell::get))
    }
    use crate::authn::crypto::test_keys::{self, TestKey, RSA2048_PUB_PKCS1};
    use crate::authn::{crypto, jwt};
    use crate::config::{JwksSource, Preset};

    const ISS: &str = "https://issuer.example";
    const NOW: i64 = 1_700_000_000;
    const MAX: usize = 8192;

    fn issuer(algorithms: &[Algorithm]) -> IssuerConfig {
        IssuerConfig {
            name: "test".into(),
            issuer: ISS.into(),
            preset: Preset::Generic,
            jwks: JwksSource::File("jwks.json".into()),
            jwks_fetch: Default::default(),
            refresh: Duration::from_secs(300),
            max_stale: Duration::from_secs(3600),
            refetch_min_interval: Duration::from_secs(30),
            audiences: vec!["orders".into(), "billing".into()],
            algorithms: algorithms.to_vec(),
            leeway: Duration::from_secs(30),
            max_lifetime: Duration::from_secs(3600),
            trust_domain: None,
            claims: Vec::new(),
        }
    }

    fn claims() -> Value {
        json!({"iss": ISS, "sub": "acme:frontend", "aud": "orders", "iat": NOW - 10, "exp": NOW + 600})
    }

    /// `claims()` with some members replaced (or removed, when `null`).
    fn claims_with(changes: Value) -> Value {
        let mut claims = claims();
        if let (Some(obj), Value::Object(changes)) = (claims.as_object_mut(), changes) {
            for (k, v) in changes {
                if v.is_null() {
                    obj.remove(&k);
                } else {
                    obj.insert(k, v);
                }
            }
        }
        claims
    }

    fn mint(key: &EncodingKey, alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
        mint_jwt(key, alg.to_jsonwebtoken().expect("not ES512"), kid, claims)
    }

    fn mint_jwt(
        key: &EncodingKey,
        alg: jsonwebtoken::Algorithm,
        kid: Option<&str>,
        claims: &Value,
    ) -> String {
        crypto::install();
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        encode(&header, claims, key).expect("mint token")
    }

    fn key_set(keys: &[(&TestKey, Value)]) -> KeySet {
        let keys: Vec<Value> = keys
            .iter()
            .map(|(key, extra)| {
                let mut jwk = key.jwk.clone();
                if let (Some(obj), Value::Object(extra)) = (jwk.as_object_mut(), extra.clone()) {
                    obj.extend(extra);
                }
                jwk
            })
            .collect();
        let doc = json!({ "keys": keys }).to_string();
        KeySet::from_jwks_json(
            doc.as_bytes(),
            &[
                Algorithm::RS256,
                Algorithm::PS256,
                Algorithm::ES256,
                Algorithm::ES384,
                Algorithm::ES512,
                Algorithm::EdDSA,
            ],
        )
        .expect("usable keys")
    }

    fn check(
        token: &str,
        issuer: &IssuerConfig,
        keys: &KeySet,
    ) -> Result<VerifiedToken, AuthnError> {
        crypto::install();
        verify(jwt::parse(token, MAX)?, issuer, keys, NOW)
    }

    /// An ES256 key `k1`, its key set, and an issuer pinned to ES256.
    struct Fixture {
        key: TestKey,
        keys: KeySet,
        issuer: IssuerConfig,
    }

    impl Fixture {
        fn new() -> Self {
            let key = test_keys::p256();
            let keys = key_set(&[(&key, json!({"kid": "k1"}))]);
            Fixture {
                key,
                keys,
                issuer: issuer(&[Algorithm::ES256]),
            }
        }

        fn verify(&self, claims: &Value) -> Result<VerifiedToken, AuthnError> {
            let token = mint(&self.key.encoding, Algorithm::ES256, Some("k1"), claims);
            check(&token, &self.issuer, &self.keys)
        }

        fn reject(&self, claims: Value) -> AuthnError {
            match self.verify(&claims) {
                Ok(_) => panic!("accepted {claims}"),
                Err(e) => e,
            }
        }
    }

    fn invalid(claim: &str, detail: &str) -> AuthnError {
        invalid_claim(claim, detail)
    }

    #[test]
    fn verifies_tokens_of_every_supported_algorithm() {
        let cases = [
            (test_keys::rsa2048(), Algorithm::RS256),
            (test_keys::rsa2048(), Algorithm::PS256),
            (test_keys::p256(), Algorithm::ES256),
            (test_keys::p384(), Algorithm::ES384),
            (test_keys::ed25519(), Algorithm::EdDSA),
        ];
        for (key, alg) in &cases {
            let keys = key_set(&[(key, json!({"kid": "k"}))]);
            let token = mint(&key.encoding, *alg, Some("k"), &claims());
            let verified = check(&token, &issuer(&[*alg]), &keys).expect("verifies");
            assert_eq!(verified.expires_at, NOW + 600, "{alg:?}");
            assert_eq!(verified.claims.get("sub"), Some(&json!("acme:frontend")));
            assert_eq!(verified.key_fingerprint, keys.keys()[0].fingerprint);
        }
    }

    /// A JWKS with `key` (a JWK without `kid`) as `kid` `k`.
    fn p521_key_set(key: &test_keys::P521Key) -> KeySet {
        let mut jwk = key.jwk.clone();
        jwk["kid"] = json!("k");
        let doc = json!({ "keys": [jwk] }).to_string();
        KeySet::from_jwks_json(doc.as_bytes(), &[Algorithm::ES512]).expect("usable P-521 key")
    }

    #[test]
    fn verifies_an_es512_token_signed_with_a_p521_key() {
        let key = test_keys::p521();
        let keys = p521_key_set(&key);
        let token = key.token(&json!({"alg": "ES512", "kid": "k"}), &claims());
        let verified = check(&token, &issuer(&[Algorithm::ES512]), &keys).expect("verifies");
        assert_eq!(verified.key_fingerprint, keys.keys()[0].fingerprint);
        assert_eq!(verified.claims.get("sub"), Some(&json!("acme:frontend")));
        // Without kid, too: the P-521 key is the one candidate.
        let token = key.token(&json!({"alg": "ES512"}), &claims());
        assert!(check(&token, &issuer(&[Algorithm::ES512]), &keys).is_ok());
    }

    #[test]
    fn rejects_a_tampered_es512_token_or_one_by_another_p521_key() {
        let key = test_keys::p521();
        let keys = p521_key_set(&key);
        let es512 = issuer(&[Algorithm::ES512]);
        let token = key.token(&json!({"alg": "ES512", "kid": "k"}), &claims());
        let parts: Vec<&str> = token.split('.').collect();
        let forged_payload = test_keys::b64(
            claims_with(json!({"sub": "acme:admin"}))
                .to_string()
                .as_bytes(),
        );
        let forged = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
        assert_eq!(
            check(&forged, &es512, &keys).err(),
            Some(AuthnError::BadSignature)
        );
        let impostor = test_keys::p521();
        let token = impostor.token(&json!({"alg": "ES512", "kid": "k"}), &claims());
        assert_eq!(
            check(&token, &es512, &keys).err(),
            Some(AuthnError::BadSignature)
        );
    }

    #[test]
    fn rejects_es512_when_the_issuer_does_not_pin_it() {
        let key = test_keys::p521();
        let keys = p521_key_set(&key);
        let token = key.token(&json!({"alg": "ES512", "kid": "k"}), &claims());
        let err = check(
            &token,
            &issuer(&[Algorithm::ES256, Algorithm::ES384]),
            &keys,
        )
        .err();
        assert_eq!(err, Some(AuthnError::AlgorithmNotAllowed("ES512".into())));
    }

    /// `count` P-256 keys without `kid`, then `signer`'s, then an RSA key.
    fn kidless_key_set(count: usize, signer: &TestKey) -> KeySet {
        let others: Vec<TestKey> = (0..count).map(|_| test_keys::p256()).collect();
        let rsa = test_keys::rsa2048();
        let mut keys: Vec<(&TestKey, Value)> = others.iter().map(|k| (k, json!({}))).collect();
        keys.push((signer, json!({})));
        keys.push((&rsa, json!({})));
        key_set(&keys)
    }

    #[test]
    fn a_token_without_kid_tries_at_most_the_bound_of_keys_that_fit_its_alg() {
        let signer = test_keys::p256();
        let es256 = issuer(&[Algorithm::ES256, Algorithm::RS256]);
        let token = mint(&signer.encoding, Algorithm::ES256, None, &claims());
        // Exactly the bound fits ES256 (the RSA key does not count): tried
        // in order, the last one verifies.
        let keys = kidless_key_set(MAX_KIDLESS_CANDIDATES - 1, &signer);
        let (result, attempts) = check_counting(&token, &es256, &keys);
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(attempts, MAX_KIDLESS_CANDIDATES);
        // A forged one costs the same bound, no more.
        let impostor = test_keys::p256();
        let forged = mint(&impostor.encoding, Algorithm::ES256, None, &claims());
        let (result, attempts) = check_counting(&forged, &es256, &keys);
        assert_eq!(result.err(), Some(AuthnError::BadSignature));
        assert_eq!(attempts, MAX_KIDLESS_CANDIDATES);
        // One more fitting key: unknown_key, nothing tried, even for a token
        // a published key did sign.
        let keys = kidless_key_set(MAX_KIDLESS_CANDIDATES, &signer);
        let (result, attempts) = check_counting(&token, &es256, &keys);
        assert_eq!(result.err(), Some(AuthnError::UnknownKey));
        assert_eq!(attempts, 0);
    }

    #[test]
    fn a_token_without_kid_against_thousands_of_keys_is_unknown_key_untried() {
        let signer = test_keys::p256();
        let keys = kidless_key_set(2_000, &signer);
        let forged = mint(
            &test_keys::p256().encoding,
            Algorithm::ES256,
            None,
            &claims(),
        );
        let (result, attempts) = check_counting(&forged, &issuer(&[Algorithm::ES256]), &keys);
        assert_eq!(result.err(), Some(AuthnError::UnknownKey));
        assert_eq!(attempts, 0);
    }

    #[test]
    fn rejects_algorithm_not_pinned_for_the_issuer() {
        let f = Fixture::new();
        let token = mint(&f.key.encoding, Algorithm::ES256, Some("k1"), &claims());
        let err = check(&token, &issuer(&[Algorithm::RS256]), &f.keys).err();
        assert_eq!(err, Some(AuthnError::AlgorithmNotAllowed("ES256".into())));
    }

    #[test]
    fn rejects_token_signed_with_hmac_using_rsa_public_key() {
        let rsa = test_keys::rsa2048();
        let keys = key_set(&[(&rsa, json!({"kid": "k"}))]);
        let rs256 = issuer(&[Algorithm::RS256]);
        // The classic confusion: sign HS256 with the public key as the secret,
        // in every shape a verifier might hand to HMAC.
        let jwk_text = rsa.jwk.to_string();
        for secret in [RSA2048_PUB_PKCS1, jwk_text.as_bytes()] {
            let forged = mint_jwt(
                &EncodingKey::from_secret(secret),
                jsonwebtoken::Algorithm::HS256,
                Some("k"),
                &claims(),
            );
            let err = check(&forged, &rs256, &keys).err();
            assert_eq!(err, Some(AuthnError::AlgorithmNotAllowed("HS256".into())));
        }
        // Past the parser nothing can ask for HMAC: `Algorithm` has no HMAC
        // variant, so neither an issuer nor a token header can name one.
        assert!("HS256".parse::<Algorithm>().is_err());
    }

    #[test]
    fn rejects_unknown_kid() {
        let f = Fixture::new();
        let token = mint(&f.key.encoding, Algorithm::ES256, Some("k2"), &claims());
        assert_eq!(
            check(&token, &f.issuer, &f.keys).err(),
            Some(AuthnError::UnknownKey)
        );
        assert_eq!(AuthnError::UnknownKey.reason(), "unknown_key");
    }

    #[test]
    fn rejects_token_whose_key_was_removed_from_the_set() {
        let old = test_keys::p256();
        let new = test_keys::p256();
        let token = mint(&old.encoding, Algorithm::ES256, Some("old"), &claims());
        let es256 = issuer(&[Algorithm::ES256]);
        let before = key_set(&[(&old, json!({"kid": "old"})), (&new, json!({"kid": "new"}))]);
        let verified = check(&token, &es256, &before).expect("verifies before rotation");
        let after = key_set(&[(&new, json!({"kid": "new"}))]);
        assert!(!after.contains(verified.key_fingerprint));
        assert_eq!(
            check(&token, &es256, &after).err(),
            Some(AuthnError::UnknownKey)
        );
    }

    #[test]
    fn token_without_kid_is_verified_only_by_keys_whose_family_fits() {
        let rsa = test_keys::rsa2048();
        let ec = test_keys::p256();
        let other_ec = test_keys::p256();
        let keys = key_set(&[
            (&rsa, json!({"kid": "r"})),
            (&other_ec, json!({"kid": "e0"})),
            (&ec, json!({"kid": "e1"})),
        ]);
        let token = mint(&ec.encoding, Algorithm::ES256, None, &claims());
        let both = issuer(&[Algorithm::RS256, Algorithm::ES256]);
        let verified = check(&token, &both, &keys).expect("verified by the second EC key");
        assert_eq!(verified.key_fingerprint, keys.keys()[2].fingerprint);
        // RS256 without kid: only the RSA key is tried.
        let token = mint(&rsa.encoding, Algorithm::RS256, None, &claims());
        let verified = check(&token, &both, &keys).expect("verified by the RSA key");
        assert_eq!(verified.key_fingerprint, keys.keys()[0].fingerprint);
        // A key pinned to another algorithm is never a candidate.
        let pinned = key_set(&[
            (&ec, json!({"alg": "ES256"})),
            (&rsa, json!({"alg": "PS256"})),
        ]);
        let token = mint(&rsa.encoding, Algorithm::RS256, None, &claims());
        assert_eq!(
            check(&token, &both, &pinned).err(),
            Some(AuthnError::UnknownKey)
        );
    }

    #[test]
    fn rejects_signature_by_another_key_with_the_same_kid() {
        let f = Fixture::new();
        let impostor = test_keys::p256();
        let token = mint(&impostor.encoding, Algorithm::ES256, Some("k1"), &claims());
        assert_eq!(
            check(&token, &f.issuer, &f.keys).err(),
            Some(AuthnError::BadSignature)
        );
    }

    #[test]
    fn rejects_tampered_payload() {
        let f = Fixture::new();
        let token = mint(&f.key.encoding, Algorithm::ES256, Some("k1"), &claims());
        let forged_claims = claims_with(json!({"sub": "acme:admin"}));
        let forged_payload = test_keys::b64(forged_claims.to_string().as_bytes());
        let parts: Vec<&str> = token.split('.').collect();
        let forged = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
        assert_eq!(
            check(&forged, &f.issuer, &f.keys).err(),
            Some(AuthnError::BadSignature)
        );
    }

    #[test]
    fn forged_token_learns_nothing_about_its_claims() {
        let f = Fixture::new();
        let impostor = test_keys::p256();
        let expired =
            claims_with(json!({"exp": NOW - 3600, "iss": "https://evil.example", "aud": "x"}));
        let token = mint(&impostor.encoding, Algorithm::ES256, Some("k1"), &expired);
        assert_eq!(
            check(&token, &f.issuer, &f.keys).err(),
            Some(AuthnError::BadSignature)
        );
    }

    #[test]
    fn rejects_wrong_or_missing_issuer() {
        let f = Fixture::new();
        let wrong = invalid("iss", "does not name the issuer");
        assert_eq!(
            f.reject(claims_with(json!({"iss": "https://other.example"}))),
            wrong
        );
        assert_eq!(f.reject(claims_with(json!({"iss": null}))), wrong);
        assert_eq!(
            f.reject(claims_with(json!({"iss": ["https://issuer.example"]}))),
            wrong
        );
        assert_eq!(wrong.reason(), "invalid_claim");
    }

    #[test]
    fn rejects_missing_or_non_numeric_exp() {
        let f = Fixture::new();
        assert_eq!(
            f.reject(claims_with(json!({"exp": null}))),
            invalid("exp", "missing")
        );
        assert_eq!(
            f.reject(claims_with(json!({"exp": "123"}))),
            invalid("exp", "not a number")
        );
        assert_eq!(
            f.reject(claims_with(json!({"exp": true}))),
            invalid("exp", "not a number")
        );
        assert_eq!(
            f.reject(claims_with(json!({"exp": 1e300}))),
            invalid("exp", "out of range")
        );
        assert_eq!(
            f.reject(claims_with(json!({"exp": u64::MAX}))),
            invalid("exp", "out of range")
        );
    }

    #[test]
    fn rejects_expired_token_beyond_leeway() {
        let f = Fixture::new();
        let expired = claims_with(json!({"iat": NOW - 100, "exp": NOW - 30}));
        assert_eq!(f.reject(expired), AuthnError::Expired);
        assert_eq!(AuthnError::Expired.reason(), "token_expired");
        let within_leeway = claims_with(json!({"iat": NOW - 100, "exp": NOW - 29}));
        assert!(f.verify(&within_leeway).is_ok());
    }

    #[test]
    fn floors_fractional_numeric_dates() {
        let f = Fixture::new();
        let verified = f
            .verify(&claims_with(
                json!({"exp": (NOW + 600) as f64 + 0.9, "iat": (NOW - 10) as f64 + 0.5}),
            ))
            .expect("fractional dates are fine");
        assert_eq!(verified.expires_at, NOW + 600);
        let expired = claims_with(json!({"iat": NOW - 100, "exp": (NOW - 30) as f64 + 0.99}));
        assert_eq!(f.reject(expired), AuthnError::Expired);
    }

    #[test]
    fn rejects_token_not_yet_valid() {
        let f = Fixture::new();
        assert_eq!(
            f.reject(claims_with(json!({"nbf": NOW + 31}))),
            AuthnError::NotYetValid
        );
        assert!(f.verify(&claims_with(json!({"nbf": NOW + 30}))).is_ok());
        assert_eq!(
            f.reject(claims_with(json!({"nbf": "soon"}))),
            invalid("nbf", "not a number")
        );
    }

    #[test]
    fn rejects_token_issued_in_the_future() {
        let f = Fixture::new();
        assert_eq!(
            f.reject(claims_with(json!({"iat": NOW + 31}))),
            AuthnError::IssuedInFuture
        );
        assert!(f.verify(&claims_with(json!({"iat": NOW + 30}))).is_ok());
        assert_eq!(
            f.reject(claims_with(json!({"iat": [NOW]}))),
            invalid("iat", "not a number")
        );
    }

    #[test]
    fn rejects_lifetime_longer_than_max() {
        let f = Fixture::new(); // max_lifetime 3600 s
        let long = claims_with(json!({"iat": NOW - 10, "exp": NOW - 10 + 3601}));
        assert_eq!(f.reject(long), AuthnError::LifetimeTooLong);
        assert!(f
            .verify(&claims_with(
                json!({"iat": NOW - 10, "exp": NOW - 10 + 3600})
            ))
            .is_ok());
        // Without iat the lifetime runs from our clock, with the leeway (30 s) on top.
        let long_without_iat = claims_with(json!({"iat": null, "exp": NOW + 3600 + 31}));
        assert_eq!(f.reject(long_without_iat), AuthnError::LifetimeTooLong);
        assert!(f
            .verify(&claims_with(json!({"iat": null, "exp": NOW + 3600 + 30})))
            .is_ok());
    }

    #[test]
    fn accepts_audience_as_string_or_array() {
        let f = Fixture::new();
        assert!(f.verify(&claims_with(json!({"aud": "billing"}))).is_ok());
        assert!(f
            .verify(&claims_with(json!({"aud": ["other", "orders"]})))
            .is_ok());
    }

    #[test]
    fn rejects_audience_naming_none_of_ours() {
        let f = Fixture::new();
        for aud in [
            json!("other"),
            json!(["other"]),
            json!([]),
            json!(["orders", 1]),
            json!(1),
            json!({"orders": true}),
        ] {
            assert_eq!(
                f.reject(claims_with(json!({"aud": aud.clone()}))),
                AuthnError::BadAudience,
                "{aud}"
            );
        }
        assert_eq!(
            f.reject(claims_with(json!({"aud": null}))),
            AuthnError::BadAudience
        );
    }

    #[test]
    fn rejects_missing_empty_or_non_string_sub() {
        let f = Fixture::new();
        assert_eq!(
            f.reject(claims_with(json!({"sub": null}))),
            invalid("sub", "missing")
        );
        assert_eq!(
            f.reject(claims_with(json!({"sub": ""}))),
            invalid("sub", "empty")
        );
        assert_eq!(
            f.reject(claims_with(json!({"sub": 42}))),
            invalid("sub", "not a string")
        );
    }
}
