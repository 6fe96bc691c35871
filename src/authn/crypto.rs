//! A `jsonwebtoken` crypto provider backed by `ring`, the same library that
//! backs pingora's rustls: one crypto provider throughout the process.
//!
//! Verification uses ring's fixed parameter sets: RSA keys of 2048–8192 bits
//! (PKCS#1 v1.5 and PSS), P-256/P-384 ECDSA with fixed-length signatures,
//! Ed25519. ES512 (P-521), which ring lacks and jsonwebtoken does not know,
//! goes around both to RustCrypto's `p521` in [`verify`]. HMAC is implemented for completeness (jsonwebtoken's API expects
//! it), but wisp never accepts HMAC tokens: the parser rejects them and key
//! sets hold only asymmetric keys.

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{new_error, ErrorKind, Result as JwtResult};
use jsonwebtoken::jwk::{EllipticCurve, ThumbprintHash};
use jsonwebtoken::signature::{Error as SignatureError, Signer, Verifier};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::rand::SystemRandom;
use ring::signature::{self as sig, KeyPair as _};
use ring::{digest, hmac};

use super::keys::PublicKey;
use crate::config::Algorithm as WispAlgorithm;

/// The ring-backed provider. Prefer [`install`]; this is public for callers
/// that want to pass the provider around explicitly.
pub static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: new_signer,
    verifier_factory: new_verifier,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key: rsa_components_from_private_key,
        rsa_pub_components_from_public_key: rsa_components_from_public_key,
        ec_pub_components_from_private_key: ec_components_from_private_key,
        ed_pub_components_from_private_key: ed_components_from_private_key,
        compute_digest,
    },
};

/// Installs the ring provider as jsonwebtoken's process default. Idempotent.
///
/// Must run before the first signature operation: jsonwebtoken otherwise
/// latches a placeholder provider (this crate enables no backend feature)
/// that panics on use. A different provider already installed is reported
/// with an error log, not a panic.
pub fn install() {
    if let Err(existing) = PROVIDER.install_default() {
        if !std::ptr::eq(existing, &PROVIDER) {
            tracing::error!(
                "a different jsonwebtoken crypto provider was installed before wisp's ring provider"
            );
        }
    }
}

fn family_error() -> jsonwebtoken::errors::Error {
    new_error(ErrorKind::InvalidKeyFormat)
}

/// ring's errors are deliberately opaque (`Unspecified`), so there is no
/// source worth keeping.
fn signature_error(_: ring::error::Unspecified) -> SignatureError {
    SignatureError::new()
}

// ---------------------------------------------------------------- verifiers

/// Verifies with one of ring's public-key algorithms over a raw key
/// (RSA PKCS#1 DER, uncompressed EC point, or Ed25519 point), or RSA
/// components.
struct PublicKeyVerifier {
    alg: Algorithm,
    ring_alg: &'static dyn sig::VerificationAlgorithm,
    /// Set for RSA algorithms, to verify `(n, e)` component keys.
    rsa_params: Option<&'static sig::RsaParameters>,
    key: DecodingKey,
}

impl Verifier<Vec<u8>> for PublicKeyVerifier {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> Result<(), SignatureError> {
        verify_public(self.ring_alg, self.rsa_params, &self.key, msg, signature)
    }
}

/// One public-key verification with ring: `key` is a raw key (RSA PKCS#1
/// DER, uncompressed EC point, Ed25519 point) or RSA components, which need
/// `rsa_params`.
fn verify_public(
    ring_alg: &'static dyn sig::VerificationAlgorithm,
    rsa_params: Option<&'static sig::RsaParameters>,
    key: &DecodingKey,
    msg: &[u8],
    signature: &[u8],
) -> Result<(), SignatureError> {
    match (key.kind(), rsa_params) {
        (DecodingKeyKind::SecretOrDer(bytes), _) => sig::UnparsedPublicKey::new(ring_alg, bytes)
            .verify(msg, signature)
            .map_err(signature_error),
        (DecodingKeyKind::RsaModulusExponent { n, e }, Some(params)) => {
            sig::RsaPublicKeyComponents { n, e }
                .verify(params, msg, signature)
                .map_err(signature_error)
        }
        (DecodingKeyKind::RsaModulusExponent { .. }, None) => {
            Err(SignatureError::from_source(family_error()))
        }
    }
}

/// Whether `signature` (raw bytes, already base64url-decoded) over
/// `message` verifies with `key` under `alg`.
///
/// For ring's keys, what `jsonwebtoken::crypto::verify` does through this
/// provider, minus the per-token costs of going through it: decoding the
/// signature again, boxing a verifier and cloning the key. ES512 with a P-521
/// key is verified by `p521` over the JOSE `R || S` signature (66 + 66
/// bytes). `false`, never a panic, for a key whose type does not fit `alg`.
pub fn verify(alg: WispAlgorithm, key: &PublicKey, message: &[u8], signature: &[u8]) -> bool {
    match key {
        PublicKey::Ring(key) => alg
            .to_jsonwebtoken()
            .is_some_and(|alg| verify_ring(alg, key, message, signature)),
        PublicKey::P521(key) => alg == WispAlgorithm::ES512 && verify_p521(key, message, signature),
    }
}

/// ES512: ECDSA on P-521 with SHA-512, signature `R || S`.
fn verify_p521(key: &p521::ecdsa::VerifyingKey, message: &[u8], signature: &[u8]) -> bool {
    use p521::ecdsa::signature::Verifier as _;
    p521::ecdsa::Signature::from_slice(signature)
        .is_ok_and(|signature| key.verify(message, &signature).is_ok())
}

/// [`verify`] for a key ring verifies. `false` for a key whose type does not
/// fit `alg` and for HMAC algorithms (wisp verifies no shared-secret tokens).
fn verify_ring(alg: Algorithm, key: &DecodingKey, message: &[u8], signature: &[u8]) -> bool {
    if key.family() != alg.family() {
        return false;
    }
    public_algorithm(alg).is_some_and(|(ring_alg, rsa_params)| {
        verify_public(ring_alg, rsa_params, key, message, signature).is_ok()
    })
}

/// ring's verification algorithm for an asymmetric `alg`, with its RSA
/// parameters when it is an RSA one. `None` for HMAC.
fn public_algorithm(
    alg: Algorithm,
) -> Option<(
    &'static dyn sig::VerificationAlgorithm,
    Option<&'static sig::RsaParameters>,
)> {
    if let Some(params) = rsa_verification(alg) {
        return Some((params, Some(params)));
    }
    match alg {
        Algorithm::ES256 => Some((&sig::ECDSA_P256_SHA256_FIXED, None)),
        Algorithm::ES384 => Some((&sig::ECDSA_P384_SHA384_FIXED, None)),
        Algorithm::EdDSA => Some((&sig::ED25519, None)),
        _ => None,
    }
}

impl JwtVerifier for PublicKeyVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

struct HmacVerifier {
    alg: Algorithm,
    key: hmac::Key,
}

impl Verifier<Vec<u8>> for HmacVerifier {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> Result<(), SignatureError> {
        // Constant-time comparison inside ring.
        hmac::verify(&self.key, msg, signature).map_err(signature_error)
    }
}

impl JwtVerifier for HmacVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

fn hmac_algorithm(alg: Algorithm) -> Option<hmac::Algorithm> {
    match alg {
        Algorithm::HS256 => Some(hmac::HMAC_SHA256),
        Algorithm::HS384 => Some(hmac::HMAC_SHA384),
        Algorithm::HS512 => Some(hmac::HMAC_SHA512),
        _ => None,
    }
}

fn rsa_verification(alg: Algorithm) -> Option<&'static sig::RsaParameters> {
    match alg {
        Algorithm::RS256 => Some(&sig::RSA_PKCS1_2048_8192_SHA256),
        Algorithm::RS384 => Some(&sig::RSA_PKCS1_2048_8192_SHA384),
        Algorithm::RS512 => Some(&sig::RSA_PKCS1_2048_8192_SHA512),
        Algorithm::PS256 => Some(&sig::RSA_PSS_2048_8192_SHA256),
        Algorithm::PS384 => Some(&sig::RSA_PSS_2048_8192_SHA384),
        Algorithm::PS512 => Some(&sig::RSA_PSS_2048_8192_SHA512),
        _ => None,
    }
}

fn new_verifier(alg: &Algorithm, key: &DecodingKey) -> JwtResult<Box<dyn JwtVerifier>> {
    let alg = *alg;
    // The key's family must match the algorithm's: this is what stops an
    // RSA public key from being used as an HMAC secret.
    if key.family() != alg.family() {
        return Err(new_error(ErrorKind::InvalidAlgorithm));
    }
    if let Some(hmac_alg) = hmac_algorithm(alg) {
        let secret = key.try_get_as_bytes()?;
        return Ok(Box::new(HmacVerifier {
            alg,
            key: hmac::Key::new(hmac_alg, secret),
        }));
    }
    let Some((ring_alg, rsa_params)) = public_algorithm(alg) else {
        return Err(new_error(ErrorKind::UnsupportedAlgorithm));
    };
    Ok(Box::new(PublicKeyVerifier {
        alg,
        ring_alg,
        rsa_params,
        key: key.clone(),
    }))
}

// ------------------------------------------------------------------ signers

enum SigningKey {
    Rsa(sig::RsaKeyPair, &'static dyn sig::RsaEncoding),
    Ecdsa(sig::EcdsaKeyPair),
    Ed25519(sig::Ed25519KeyPair),
    Hmac(hmac::Key),
}

struct RingSigner {
    alg: Algorithm,
    key: SigningKey,
}

impl Signer<Vec<u8>> for RingSigner {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, SignatureError> {
        let rng = SystemRandom::new();
        match &self.key {
            SigningKey::Rsa(pair, encoding) => {
                let mut out = vec![0; pair.public().modulus_len()];
                pair.sign(*encoding, &rng, msg, &mut out)
                    .map_err(signature_error)?;
                Ok(out)
            }
            SigningKey::Ecdsa(pair) => Ok(pair
                .sign(&rng, msg)
                .map_err(signature_error)?
                .as_ref()
                .to_vec()),
            SigningKey::Ed25519(pair) => Ok(pair.sign(msg).as_ref().to_vec()),
            SigningKey::Hmac(key) => Ok(hmac::sign(key, msg).as_ref().to_vec()),
        }
    }
}

impl JwtSigner for RingSigner {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

fn rsa_signing(alg: Algorithm) -> Option<&'static dyn sig::RsaEncoding> {
    match alg {
        Algorithm::RS256 => Some(&sig::RSA_PKCS1_SHA256),
        Algorithm::RS384 => Some(&sig::RSA_PKCS1_SHA384),
        Algorithm::RS512 => Some(&sig::RSA_PKCS1_SHA512),
        Algorithm::PS256 => Some(&sig::RSA_PSS_SHA256),
        Algorithm::PS384 => Some(&sig::RSA_PSS_SHA384),
        Algorithm::PS512 => Some(&sig::RSA_PSS_SHA512),
        _ => None,
    }
}

fn ecdsa_signing(alg: Algorithm) -> Option<&'static sig::EcdsaSigningAlgorithm> {
    match alg {
        Algorithm::ES256 => Some(&sig::ECDSA_P256_SHA256_FIXED_SIGNING),
        Algorithm::ES384 => Some(&sig::ECDSA_P384_SHA384_FIXED_SIGNING),
        _ => None,
    }
}

/// RSA private keys are accepted as PKCS#8 or PKCS#1 `RSAPrivateKey` DER.
fn rsa_key_pair(der: &[u8]) -> JwtResult<sig::RsaKeyPair> {
    sig::RsaKeyPair::from_pkcs8(der)
        .or_else(|_| sig::RsaKeyPair::from_der(der))
        .map_err(|e| new_error(ErrorKind::InvalidRsaKey(e.to_string())))
}

fn ecdsa_key_pair(
    alg: &'static sig::EcdsaSigningAlgorithm,
    pkcs8: &[u8],
) -> JwtResult<sig::EcdsaKeyPair> {
    sig::EcdsaKeyPair::from_pkcs8(alg, pkcs8, &SystemRandom::new())
        .map_err(|_| new_error(ErrorKind::InvalidEcdsaKey))
}

/// Ed25519 keys as PKCS#8 v2 (ring's own) or v1 (OpenSSL's, no public key).
fn ed25519_key_pair(pkcs8: &[u8]) -> JwtResult<sig::Ed25519KeyPair> {
    sig::Ed25519KeyPair::from_pkcs8(pkcs8)
        .or_else(|_| sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8))
        .map_err(|_| new_error(ErrorKind::InvalidEddsaKey))
}

fn new_signer(alg: &Algorithm, key: &EncodingKey) -> JwtResult<Box<dyn JwtSigner>> {
    let alg = *alg;
    if key.family() != alg.family() {
        return Err(new_error(ErrorKind::InvalidAlgorithm));
    }
    let bytes = key.as_bytes();
    let signing_key = match (
        hmac_algorithm(alg),
        rsa_signing(alg),
        ecdsa_signing(alg),
        alg,
    ) {
        (Some(hmac_alg), _, _, _) => SigningKey::Hmac(hmac::Key::new(hmac_alg, bytes)),
        (_, Some(encoding), _, _) => SigningKey::Rsa(rsa_key_pair(bytes)?, encoding),
        (_, _, Some(ecdsa_alg), _) => SigningKey::Ecdsa(ecdsa_key_pair(ecdsa_alg, bytes)?),
        (_, _, _, Algorithm::EdDSA) => SigningKey::Ed25519(ed25519_key_pair(bytes)?),
        _ => return Err(new_error(ErrorKind::UnsupportedAlgorithm)),
    };
    Ok(Box::new(RingSigner {
        alg,
        key: signing_key,
    }))
}

// ---------------------------------------------------------------- key utils

fn rsa_components_from_private_key(der: &[u8]) -> JwtResult<(Vec<u8>, Vec<u8>)> {
    let pair = rsa_key_pair(der)?;
    let components = sig::RsaPublicKeyComponents::<Vec<u8>>::from(pair.public());
    Ok((components.n, components.e))
}

/// ring has no parser for a bare public RSA key: callers with `(n, e)` should
/// use `DecodingKey::from_rsa_components` instead.
fn rsa_components_from_public_key(_der: &[u8]) -> JwtResult<(Vec<u8>, Vec<u8>)> {
    Err(new_error(ErrorKind::Provider(
        "the ring provider cannot extract RSA components from a DER public key".to_owned(),
    )))
}

fn ec_components_from_private_key(
    pkcs8: &[u8],
    alg: Algorithm,
) -> JwtResult<(EllipticCurve, Vec<u8>, Vec<u8>)> {
    let (curve, coordinate_len) = match alg {
        Algorithm::ES256 => (EllipticCurve::P256, 32),
        Algorithm::ES384 => (EllipticCurve::P384, 48),
        _ => return Err(new_error(ErrorKind::InvalidEcdsaKey)),
    };
    let ecdsa_alg = ecdsa_signing(alg).ok_or_else(|| new_error(ErrorKind::InvalidEcdsaKey))?;
    let pair = ecdsa_key_pair(ecdsa_alg, pkcs8)?;
    match pair.public_key().as_ref() {
        [0x04, point @ ..] if point.len() == 2 * coordinate_len => {
            let (x, y) = point.split_at(coordinate_len);
            Ok((curve, x.to_vec(), y.to_vec()))
        }
        _ => Err(new_error(ErrorKind::InvalidEcdsaKey)),
    }
}

fn ed_components_from_private_key(pkcs8: &[u8], curve: &EllipticCurve) -> JwtResult<Vec<u8>> {
    match curve {
        EllipticCurve::Ed25519 => Ok(ed25519_key_pair(pkcs8)?.public_key().as_ref().to_vec()),
        _ => Err(new_error(ErrorKind::InvalidAlgorithm)),
    }
}

fn compute_digest(data: &[u8], hash: ThumbprintHash) -> JwtResult<Vec<u8>> {
    let algorithm = match hash {
        ThumbprintHash::SHA256 => &digest::SHA256,
        ThumbprintHash::SHA384 => &digest::SHA384,
        ThumbprintHash::SHA512 => &digest::SHA512,
        _ => return Err(new_error(ErrorKind::UnsupportedAlgorithm)),
    };
    Ok(digest::digest(algorithm, data).as_ref().to_vec())
}

#[cfg(test)]
pub(crate) mod test_keys {
    //! Key material for tests: EC/Ed25519 generated with ring, RSA from
    //! `tests/fixtures` (see its README).

    use jsonwebtoken::EncodingKey;
    use ring::rand::SystemRandom;
    use ring::signature::{self as sig, KeyPair as _};

    /// Unpadded base64url, as JWKs and JWS segments use.
    pub fn b64(bytes: &[u8]) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Decodes unpadded base64url (a JWS signature segment).
    pub fn b64_decode(text: &str) -> Vec<u8> {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .expect("base64url")
    }

    /// RSA 2048 private key, PKCS#8 DER.
    pub const RSA2048_PK8: &[u8] = include_bytes!("../../tests/fixtures/rsa2048.pk8.der");
    /// RSA 1024 private key, PKCS#8 DER.
    pub const RSA1024_PK8: &[u8] = include_bytes!("../../tests/fixtures/rsa1024.pk8.der");
    /// RSA 2048 public JWK (kid `rsa2048`, no alg).
    pub const RSA2048_JWK: &str = include_str!("../../tests/fixtures/rsa2048.jwk.json");
    /// RSA 1024 public JWK (kid `rsa1024`, no alg).
    pub const RSA1024_JWK: &str = include_str!("../../tests/fixtures/rsa1024.jwk.json");
    /// RS256 signature by the 1024-bit key over `rsa1024 signed message`.
    pub const RSA1024_RS256_SIG: &[u8] = include_bytes!("../../tests/fixtures/rsa1024.rs256.sig");
    /// RSA 2048 public key, PKCS#1 DER.
    pub const RSA2048_PUB_PKCS1: &[u8] =
        include_bytes!("../../tests/fixtures/rsa2048.pub.pkcs1.der");

    /// A signing key and its public JWK fields (without `kid`/`alg`).
    pub struct TestKey {
        pub encoding: EncodingKey,
        pub jwk: serde_json::Value,
    }

    pub fn rsa2048() -> TestKey {
        let mut jwk: serde_json::Value = serde_json::from_str(RSA2048_JWK).expect("fixture JSON");
        if let Some(obj) = jwk.as_object_mut() {
            obj.remove("kid");
        }
        TestKey {
            encoding: EncodingKey::from_rsa_der(RSA2048_PK8),
            jwk,
        }
    }

    pub fn ec(alg: &'static sig::EcdsaSigningAlgorithm, crv: &str) -> TestKey {
        let rng = SystemRandom::new();
        let pkcs8 = sig::EcdsaKeyPair::generate_pkcs8(alg, &rng).expect("generate EC key");
        let pair = sig::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).expect("parse EC key");
        let point = &pair.public_key().as_ref()[1..];
        let (x, y) = point.split_at(point.len() / 2);
        TestKey {
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk: serde_json::json!({"kty": "EC", "crv": crv, "x": b64(x), "y": b64(y)}),
        }
    }

    pub fn p256() -> TestKey {
        ec(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, "P-256")
    }

    pub fn p384() -> TestKey {
        ec(&sig::ECDSA_P384_SHA384_FIXED_SIGNING, "P-384")
    }

    /// A P-521 key and its public JWK (without `kid`/`alg`). jsonwebtoken
    /// cannot sign ES512, so [`P521Key::sign`] signs with `p521` directly.
    pub struct P521Key {
        pub signing: p521::ecdsa::SigningKey,
        pub jwk: serde_json::Value,
    }

    impl P521Key {
        /// The JOSE ES512 signature (`R || S`, 132 bytes) over `message`.
        pub fn sign(&self, message: &[u8]) -> Vec<u8> {
            use p521::ecdsa::signature::Signer as _;
            let signature: p521::ecdsa::Signature = self.signing.sign(message);
            signature.to_bytes().to_vec()
        }

        /// A compact ES512 token with this header and payload.
        pub fn token(&self, header: &serde_json::Value, claims: &serde_json::Value) -> String {
            let input = format!(
                "{}.{}",
                b64(header.to_string().as_bytes()),
                b64(claims.to_string().as_bytes())
            );
            format!("{input}.{}", b64(&self.sign(input.as_bytes())))
        }
    }

    pub fn p521() -> P521Key {
        let signing = p521::ecdsa::SigningKey::random(&mut p521::elliptic_curve::rand_core::OsRng);
        let point = p521::ecdsa::VerifyingKey::from(&signing).to_encoded_point(false);
        let (x, y) = (point.x().expect("x"), point.y().expect("y"));
        P521Key {
            signing,
            jwk: serde_json::json!({"kty": "EC", "crv": "P-521", "x": b64(x), "y": b64(y)}),
        }
    }

    pub fn ed25519() -> TestKey {
        let rng = SystemRandom::new();
        let pkcs8 = sig::Ed25519KeyPair::generate_pkcs8(&rng).expect("generate Ed25519 key");
        let pair = sig::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("parse Ed25519 key");
        TestKey {
            encoding: EncodingKey::from_ed_der(pkcs8.as_ref()),
            jwk: serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref())}),
        }
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::crypto::{sign, verify};
    use jsonwebtoken::jwk::Jwk;

    use super::test_keys::*;
    use super::*;

    fn sign_and_verify(key: &TestKey, alg: Algorithm) -> bool {
        install();
        let message = b"header.payload";
        let signature = sign(message, &key.encoding, alg).expect("sign");
        let jwk: Jwk = serde_json::from_value(key.jwk.clone()).expect("jwk");
        let decoding = DecodingKey::from_jwk(&jwk).expect("decoding key");
        verify(&signature, message, &decoding, alg).expect("verify")
    }

    #[test]
    fn signs_and_verifies_every_asymmetric_algorithm() {
        let rsa = rsa2048();
        for alg in [
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ] {
            assert!(sign_and_verify(&rsa, alg), "{alg:?}");
        }
        assert!(sign_and_verify(&p256(), Algorithm::ES256));
        assert!(sign_and_verify(&p384(), Algorithm::ES384));
        assert!(sign_and_verify(&ed25519(), Algorithm::EdDSA));
    }

    #[test]
    fn verifies_rsa_keys_given_as_pkcs1_der() {
        install();
        let rsa = rsa2048();
        let signature = sign(b"m", &rsa.encoding, Algorithm::RS256).expect("sign");
        let key = DecodingKey::from_rsa_der(RSA2048_PUB_PKCS1);
        assert!(verify(&signature, b"m", &key, Algorithm::RS256).expect("verify"));
        assert!(!verify(&signature, b"other", &key, Algorithm::RS256).expect("verify"));
    }

    #[test]
    fn rejects_a_signature_over_other_bytes() {
        install();
        let key = p256();
        let signature = sign(b"m", &key.encoding, Algorithm::ES256).expect("sign");
        let jwk: Jwk = serde_json::from_value(key.jwk.clone()).expect("jwk");
        let decoding = DecodingKey::from_jwk(&jwk).expect("decoding key");
        assert!(!verify(&signature, b"n", &decoding, Algorithm::ES256).expect("verify"));
    }

    #[test]
    fn hmac_round_trips_but_refuses_an_rsa_key_as_secret() {
        install();
        let secret = EncodingKey::from_secret(b"s3cret");
        let signature = sign(b"m", &secret, Algorithm::HS256).expect("sign");
        let key = DecodingKey::from_secret(b"s3cret");
        assert!(verify(&signature, b"m", &key, Algorithm::HS256).expect("verify"));

        let rsa_public = DecodingKey::from_rsa_der(RSA2048_PUB_PKCS1);
        let forged = sign(
            b"m",
            &EncodingKey::from_secret(RSA2048_PUB_PKCS1),
            Algorithm::HS256,
        )
        .expect("sign");
        assert!(verify(&forged, b"m", &rsa_public, Algorithm::HS256).is_err());
    }

    /// The direct path (`super::verify`, on decoded signature bytes) agrees
    /// with jsonwebtoken's path through this provider, for every algorithm,
    /// on the right message and on another one.
    #[test]
    fn direct_verify_agrees_with_the_provider_path() {
        install();
        let rsa = rsa2048();
        let (p256, p384, ed) = (p256(), p384(), ed25519());
        let cases = [
            (&rsa, Algorithm::RS256),
            (&rsa, Algorithm::RS512),
            (&rsa, Algorithm::PS256),
            (&p256, Algorithm::ES256),
            (&p384, Algorithm::ES384),
            (&ed, Algorithm::EdDSA),
        ];
        for (key, alg) in cases {
            let signature = sign(b"m", &key.encoding, alg).expect("sign");
            let raw = test_keys::b64_decode(&signature);
            let jwk: Jwk = serde_json::from_value(key.jwk.clone()).expect("jwk");
            let decoding = DecodingKey::from_jwk(&jwk).expect("decoding key");
            for message in [&b"m"[..], b"n"] {
                assert_eq!(
                    super::verify_ring(alg, &decoding, message, &raw),
                    verify(&signature, message, &decoding, alg).expect("verify"),
                    "{alg:?} over {message:?}"
                );
            }
            assert!(super::verify_ring(alg, &decoding, b"m", &raw), "{alg:?}");
        }
        // PKCS#1 DER keys take the raw-key branch.
        let signature = sign(b"m", &rsa.encoding, Algorithm::RS256).expect("sign");
        let der = DecodingKey::from_rsa_der(RSA2048_PUB_PKCS1);
        assert!(super::verify_ring(
            Algorithm::RS256,
            &der,
            b"m",
            &test_keys::b64_decode(&signature)
        ));
    }

    #[test]
    fn es512_verifies_with_a_p521_key_and_nothing_else() {
        let key = p521();
        let public = PublicKey::P521(p521::ecdsa::VerifyingKey::from(&key.signing));
        let signature = key.sign(b"m");
        assert_eq!(signature.len(), 132, "JOSE R || S, 66 + 66 bytes");
        assert!(super::verify(
            WispAlgorithm::ES512,
            &public,
            b"m",
            &signature
        ));
        assert!(!super::verify(
            WispAlgorithm::ES512,
            &public,
            b"n",
            &signature
        ));
        assert!(!super::verify(
            WispAlgorithm::ES256,
            &public,
            b"m",
            &signature
        ));
        // DER, truncated, or flipped: false, no panic.
        assert!(!super::verify(
            WispAlgorithm::ES512,
            &public,
            b"m",
            &signature[..131]
        ));
        let mut flipped = signature.clone();
        flipped[100] ^= 1;
        assert!(!super::verify(
            WispAlgorithm::ES512,
            &public,
            b"m",
            &flipped
        ));
        // A ring key never verifies ES512.
        let ec = test_keys::p256();
        let jwk: Jwk = serde_json::from_value(ec.jwk.clone()).expect("jwk");
        let ring_key = PublicKey::Ring(DecodingKey::from_jwk(&jwk).expect("decoding key"));
        assert!(!super::verify(
            WispAlgorithm::ES512,
            &ring_key,
            b"m",
            &signature
        ));
    }

    #[test]
    fn direct_verify_refuses_keys_of_another_family_and_hmac() {
        install();
        let ec = p256();
        let signature =
            test_keys::b64_decode(&sign(b"m", &ec.encoding, Algorithm::ES256).expect("sign"));
        let jwk: Jwk = serde_json::from_value(ec.jwk.clone()).expect("jwk");
        let decoding = DecodingKey::from_jwk(&jwk).expect("decoding key");
        // The EC key with an RSA or Ed25519 algorithm: false, no panic.
        assert!(!super::verify_ring(
            Algorithm::RS256,
            &decoding,
            b"m",
            &signature
        ));
        assert!(!super::verify_ring(
            Algorithm::EdDSA,
            &decoding,
            b"m",
            &signature
        ));
        // A right HMAC over the public key's bytes is still refused: wisp
        // never verifies shared-secret tokens.
        let der = DecodingKey::from_rsa_der(RSA2048_PUB_PKCS1);
        let mac = test_keys::b64_decode(
            &sign(
                b"m",
                &EncodingKey::from_secret(RSA2048_PUB_PKCS1),
                Algorithm::HS256,
            )
            .expect("sign"),
        );
        assert!(!super::verify_ring(Algorithm::HS256, &der, b"m", &mac));
        let secret = DecodingKey::from_secret(b"s3cret");
        let mac = test_keys::b64_decode(
            &sign(b"m", &EncodingKey::from_secret(b"s3cret"), Algorithm::HS256).expect("sign"),
        );
        assert!(!super::verify_ring(Algorithm::HS256, &secret, b"m", &mac));
    }

    #[test]
    fn refuses_rsa_keys_under_2048_bits_for_signing_and_verifying() {
        install();
        let small = EncodingKey::from_rsa_der(RSA1024_PK8);
        assert!(sign(b"m", &small, Algorithm::RS256).is_err());

        let message = b"rsa1024 signed message";
        let signature = b64(RSA1024_RS256_SIG);
        let jwk: Jwk = serde_json::from_str(RSA1024_JWK).expect("jwk");
        let decoding = DecodingKey::from_jwk(&jwk).expect("decoding key");
        assert!(!verify(&signature, message, &decoding, Algorithm::RS256).expect("verify"));
    }

    #[test]
    fn key_utils_derive_public_jwks_from_private_keys() {
        install();
        let rsa = rsa2048();
        let jwk = Jwk::from_encoding_key(&rsa.encoding, Algorithm::RS256).expect("rsa jwk");
        let value = serde_json::to_value(&jwk).expect("json");
        assert_eq!(value["n"], rsa.jwk["n"]);
        for (key, alg) in [(p256(), Algorithm::ES256), (p384(), Algorithm::ES384)] {
            let jwk = Jwk::from_encoding_key(&key.encoding, alg).expect("jwk");
            let value = serde_json::to_value(&jwk).expect("json");
            assert_eq!(value["x"], key.jwk["x"], "{alg:?}");
            assert_eq!(value["y"], key.jwk["y"], "{alg:?}");
        }
        // jsonwebtoken's Jwk::from_encoding_key only takes 48-byte (PKCS#8 v1)
        // Ed25519 keys; ring makes v2, so call the key utility directly.
        let ed = ed25519();
        let x = (PROVIDER.key_utils.ed_pub_components_from_private_key)(
            ed.encoding.as_bytes(),
            &EllipticCurve::Ed25519,
        )
        .expect("ed25519 public key");
        assert_eq!(serde_json::json!(b64(&x)), ed.jwk["x"]);
        let thumbprint = jwk.thumbprint(ThumbprintHash::SHA256).expect("thumbprint");
        assert_eq!(thumbprint.len(), 43);
    }

    #[test]
    fn install_is_idempotent() {
        install();
        install();
    }
}
