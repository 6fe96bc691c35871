//! The crypto library alone: ring verifying tokens' signatures with the
//! issuer's published key, with nothing of wisp around it. The bound the
//! cold path is measured against (issue #4: a new token costs at least
//! 0.85× of this rate), in `benches/authenticate.rs` and
//! `examples/profile_cold_path.rs`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::signature;
use serde_json::Value;

/// The issuer's key, as ring takes it.
enum Key {
    /// An uncompressed P-256 point.
    Ec(Vec<u8>),
    /// Modulus and exponent.
    Rsa(Vec<u8>, Vec<u8>),
    /// An Ed25519 point.
    Ed(Vec<u8>),
}

/// Tokens of one algorithm, decoded ahead of time, and their signing key.
pub struct RawVerifier {
    key: Key,
    /// (signing input, signature) per token.
    signed: Vec<(Vec<u8>, Vec<u8>)>,
}

impl RawVerifier {
    /// A verifier for `tokens` (one algorithm, all signed by the key `kid`
    /// in the JWKS document `jwks`). Everything is decoded here, outside
    /// what a benchmark times.
    ///
    /// # Errors
    /// A message when `kid` is not in `jwks`, a key member is not base64url,
    /// or a token is not a JWS.
    pub fn new(jwks: &str, tokens: &[String], kid: &str) -> Result<RawVerifier, String> {
        let jwks: Value = serde_json::from_str(jwks).map_err(|e| format!("jwks: {e}"))?;
        let jwk = jwks["keys"]
            .as_array()
            .and_then(|keys| keys.iter().find(|jwk| jwk["kid"] == kid))
            .ok_or_else(|| format!("key {kid:?} is not published"))?;
        let member = |name: &str| -> Result<Vec<u8>, String> {
            jwk[name]
                .as_str()
                .and_then(|text| URL_SAFE_NO_PAD.decode(text).ok())
                .ok_or_else(|| format!("key member {name:?} is not base64url"))
        };
        let key = match jwk["kty"].as_str() {
            Some("EC") => {
                let mut point = vec![4u8];
                point.extend(member("x")?);
                point.extend(member("y")?);
                Key::Ec(point)
            }
            Some("RSA") => Key::Rsa(member("n")?, member("e")?),
            Some("OKP") => Key::Ed(member("x")?),
            other => return Err(format!("unsupported key type {other:?}")),
        };
        let signed = tokens
            .iter()
            .map(|token| {
                let (signing_input, signature) =
                    token.rsplit_once('.').ok_or("a token is not a JWS")?;
                let signature = URL_SAFE_NO_PAD
                    .decode(signature)
                    .map_err(|e| format!("signature: {e}"))?;
                Ok((signing_input.as_bytes().to_vec(), signature))
            })
            .collect::<Result<_, String>>()?;
        Ok(RawVerifier { key, signed })
    }

    /// Verifies token `i` (modulo the number of tokens) with ring alone.
    pub fn verify(&self, i: usize) -> bool {
        let Some((signing_input, sig)) = self.signed.get(i % self.signed.len().max(1)) else {
            return false;
        };
        match &self.key {
            Key::Ec(point) => {
                signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(signing_input, sig)
                    .is_ok()
            }
            Key::Rsa(n, e) => signature::RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, signing_input, sig)
                .is_ok(),
            Key::Ed(x) => signature::UnparsedPublicKey::new(&signature::ED25519, x)
                .verify(signing_input, sig)
                .is_ok(),
        }
    }
}
