//! Signing keys for the development issuer, and compact JWS encoding, done
//! with ring directly (and `p521` for ES512, which ring lacks) so the issuer
//! shares no code with the verifier it is used to test.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::rsa::PublicKeyComponents;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair};
use serde_json::{json, Value};

/// A JWS signature algorithm the development issuer can sign with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// ECDSA P-256 with SHA-256.
    Es256,
    /// ECDSA P-384 with SHA-384.
    Es384,
    /// ECDSA P-521 with SHA-512.
    Es512,
    /// Ed25519.
    EdDsa,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    Rs384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    Rs512,
    /// RSASSA-PSS with SHA-256.
    Ps256,
    /// RSASSA-PSS with SHA-384.
    Ps384,
    /// RSASSA-PSS with SHA-512.
    Ps512,
}

impl Algorithm {
    /// The JOSE name, as in a token's `alg` header.
    pub fn name(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::Es384 => "ES384",
            Self::Es512 => "ES512",
            Self::EdDsa => "EdDSA",
            Self::Rs256 => "RS256",
            Self::Rs384 => "RS384",
            Self::Rs512 => "RS512",
            Self::Ps256 => "PS256",
            Self::Ps384 => "PS384",
            Self::Ps512 => "PS512",
        }
    }

    /// Whether keys for this algorithm are RSA keys (which ring cannot generate).
    pub fn is_rsa(self) -> bool {
        matches!(
            self,
            Self::Rs256 | Self::Rs384 | Self::Rs512 | Self::Ps256 | Self::Ps384 | Self::Ps512
        )
    }

    fn rsa_encoding(self) -> Option<&'static dyn signature::RsaEncoding> {
        Some(match self {
            Self::Rs256 => &signature::RSA_PKCS1_SHA256,
            Self::Rs384 => &signature::RSA_PKCS1_SHA384,
            Self::Rs512 => &signature::RSA_PKCS1_SHA512,
            Self::Ps256 => &signature::RSA_PSS_SHA256,
            Self::Ps384 => &signature::RSA_PSS_SHA384,
            Self::Ps512 => &signature::RSA_PSS_SHA512,
            Self::Es256 | Self::Es384 | Self::Es512 | Self::EdDsa => return None,
        })
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error for an algorithm name that is not one of [`Algorithm`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported signing algorithm {0:?}")]
pub struct UnknownAlgorithm(pub String);

impl FromStr for Algorithm {
    type Err = UnknownAlgorithm;

    /// Parses the exact JOSE name (`ES256`, `EdDSA`, `PS256`, …).
    ///
    /// # Errors
    ///
    /// [`UnknownAlgorithm`] for any other string.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        [
            Self::Es256,
            Self::Es384,
            Self::Es512,
            Self::EdDsa,
            Self::Rs256,
            Self::Rs384,
            Self::Rs512,
            Self::Ps256,
            Self::Ps384,
            Self::Ps512,
        ]
        .into_iter()
        .find(|alg| alg.name() == name)
        .ok_or_else(|| UnknownAlgorithm(name.to_owned()))
    }
}

/// Why a signing key could not be made or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// ring rejected the key material (wrong format, too small, wrong curve).
    #[error("key rejected: {0}")]
    Rejected(String),
    /// The algorithm does not fit the operation, e.g. generating an RSA key
    /// (ring cannot) or loading an RSA key for an EC algorithm.
    #[error("{alg} cannot be used here: {why}")]
    WrongAlgorithm {
        /// The algorithm asked for.
        alg: Algorithm,
        /// What would have been needed instead.
        why: &'static str,
    },
    /// The system random number generator or the signer failed.
    #[error("signing or key generation failed")]
    Crypto,
}

enum Material {
    Ecdsa(EcdsaKeyPair),
    P521(p521::ecdsa::SigningKey),
    Ed25519(Ed25519KeyPair),
    Rsa(RsaKeyPair),
}

/// A private key plus the algorithm it signs with.
pub(crate) struct SigningKey {
    alg: Algorithm,
    material: Material,
}

impl SigningKey {
    /// Generates a fresh EC (P-256, P-384, P-521) or Ed25519 key.
    pub(crate) fn generate(alg: Algorithm, rng: &SystemRandom) -> Result<Self, KeyError> {
        let material = match alg {
            Algorithm::Es256 | Algorithm::Es384 => {
                let signing = ecdsa_signing(alg);
                let pkcs8 =
                    EcdsaKeyPair::generate_pkcs8(signing, rng).map_err(|_| KeyError::Crypto)?;
                Material::Ecdsa(
                    EcdsaKeyPair::from_pkcs8(signing, pkcs8.as_ref(), rng)
                        .map_err(|e| KeyError::Rejected(e.to_string()))?,
                )
            }
            Algorithm::Es512 => Material::P521(p521::ecdsa::SigningKey::random(
                &mut p521::elliptic_curve::rand_core::OsRng,
            )),
            Algorithm::EdDsa => {
                let pkcs8 = Ed25519KeyPair::generate_pkcs8(rng).map_err(|_| KeyError::Crypto)?;
                Material::Ed25519(
                    Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
                        .map_err(|e| KeyError::Rejected(e.to_string()))?,
                )
            }
            _ => {
                return Err(KeyError::WrongAlgorithm {
                    alg,
                    why: "RSA keys cannot be generated; load a PKCS#8 key instead",
                })
            }
        };
        Ok(Self { alg, material })
    }

    /// Loads an RSA private key in PKCS#8 DER form for an RSA algorithm.
    pub(crate) fn from_rsa_pkcs8(pkcs8_der: &[u8], alg: Algorithm) -> Result<Self, KeyError> {
        if !alg.is_rsa() {
            return Err(KeyError::WrongAlgorithm {
                alg,
                why: "an RSA key needs one of RS256/384/512 or PS256/384/512",
            });
        }
        let pair =
            RsaKeyPair::from_pkcs8(pkcs8_der).map_err(|e| KeyError::Rejected(e.to_string()))?;
        Ok(Self {
            alg,
            material: Material::Rsa(pair),
        })
    }

    /// The algorithm this key signs with.
    pub(crate) fn alg(&self) -> Algorithm {
        self.alg
    }

    /// Signs `message`, returning the raw JWS signature bytes (fixed-size
    /// `r || s` for ECDSA).
    pub(crate) fn sign(&self, message: &[u8], rng: &SystemRandom) -> Result<Vec<u8>, KeyError> {
        match &self.material {
            Material::Ecdsa(pair) => pair
                .sign(rng, message)
                .map(|sig| sig.as_ref().to_vec())
                .map_err(|_| KeyError::Crypto),
            Material::P521(key) => {
                use p521::ecdsa::signature::Signer as _;
                let signature: p521::ecdsa::Signature =
                    key.try_sign(message).map_err(|_| KeyError::Crypto)?;
                Ok(signature.to_bytes().to_vec())
            }
            Material::Ed25519(pair) => Ok(pair.sign(message).as_ref().to_vec()),
            Material::Rsa(pair) => {
                let encoding = self.alg.rsa_encoding().ok_or(KeyError::Crypto)?;
                let mut out = vec![0; pair.public().modulus_len()];
                pair.sign(encoding, rng, message, &mut out)
                    .map_err(|_| KeyError::Crypto)?;
                Ok(out)
            }
        }
    }

    /// The public JWK for this key, published under `kid`.
    pub(crate) fn public_jwk(&self, kid: &str) -> Value {
        let mut jwk = match &self.material {
            Material::Ecdsa(pair) => {
                // ring's EC public key is the uncompressed point 0x04 || x || y.
                let point = pair.public_key().as_ref();
                let coordinates = point.get(1..).unwrap_or_default();
                let (x, y) = coordinates.split_at(coordinates.len() / 2);
                let crv = if self.alg == Algorithm::Es384 {
                    "P-384"
                } else {
                    "P-256"
                };
                json!({"kty": "EC", "crv": crv, "x": b64(x), "y": b64(y)})
            }
            Material::P521(key) => {
                let point = p521::ecdsa::VerifyingKey::from(key).to_encoded_point(false);
                let x = point.x().map_or(&[][..], |x| x.as_slice());
                let y = point.y().map_or(&[][..], |y| y.as_slice());
                json!({"kty": "EC", "crv": "P-521", "x": b64(x), "y": b64(y)})
            }
            Material::Ed25519(pair) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref())})
            }
            Material::Rsa(pair) => {
                let components = PublicKeyComponents::<Vec<u8>>::from(pair.public());
                json!({"kty": "RSA", "n": b64(&components.n), "e": b64(&components.e)})
            }
        };
        jwk["kid"] = json!(kid);
        jwk["alg"] = json!(self.alg.name());
        jwk["use"] = json!("sig");
        jwk
    }
}

fn ecdsa_signing(alg: Algorithm) -> &'static signature::EcdsaSigningAlgorithm {
    if alg == Algorithm::Es384 {
        &signature::ECDSA_P384_SHA384_FIXED_SIGNING
    } else {
        &signature::ECDSA_P256_SHA256_FIXED_SIGNING
    }
}

/// base64url without padding, as every JWS segment is encoded.
pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The compact JWS `header.payload.signature` from the exact header and
/// payload bytes given, signed by `key`.
pub(crate) fn compact(
    key: &SigningKey,
    header: &[u8],
    payload: &[u8],
    rng: &SystemRandom,
) -> Result<String, KeyError> {
    let signing_input = format!("{}.{}", b64(header), b64(payload));
    let signature = key.sign(signing_input.as_bytes(), rng)?;
    Ok(format!("{signing_input}.{}", b64(&signature)))
}
