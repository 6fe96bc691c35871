//! Mints the keys and tokens the load tests (`loadtests/run.sh`) use.
//!
//! ```sh
//! cargo run --release --example mint_tokens -- OUT_DIR [--issuer URL] [--audience AUD]
//!     [--rotating N] [--fill N]
//! ```
//!
//! Writes into `OUT_DIR`:
//!
//! | file | what |
//! |---|---|
//! | `jwks.json` | the public keys as a JWKS (`kid` `es256`: a fresh P-256 key; `kid` `rs256`: the 2048-bit RSA test fixture) for wisp's `jwks.file` |
//! | `es256.pub.pem`, `rs256.pub.pem` | the same public keys as PEM `SubjectPublicKeyInfo`, for HAProxy's `jwt_verify` |
//! | `token_es256.txt`, `token_rs256.txt` | one token each, `sub` `acme:frontend:web-1` (the reused-token scenarios) |
//! | `tokens_es256_rotating.txt` | `--rotating` (default 10,000) distinct ES256 tokens, one a line |
//! | `tokens_es256_fill.txt` | `--fill` (default 100,000) distinct ES256 tokens, one a line (RSS with a full cache) |
//!
//! Every token: `iss`, `sub` (`acme:frontend:web-<n>`), `aud` (a string, so
//! HAProxy can compare it), `iat`, `nbf`, `exp` (now + 2 h), `jti`, `tags`.
//! The RSA key is `tests/fixtures/rsa2048.pk8.der` (test-only key material);
//! the EC key is generated on every run. These keys protect nothing.

use std::fs;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};

const RSA2048_PK8: &[u8] = include_bytes!("../tests/fixtures/rsa2048.pk8.der");
const RSA2048_PUB_PKCS1: &[u8] = include_bytes!("../tests/fixtures/rsa2048.pub.pkcs1.der");
const RSA2048_JWK: &str = include_str!("../tests/fixtures/rsa2048.jwk.json");

/// DER `AlgorithmIdentifier` of `id-ecPublicKey` with the `prime256v1` curve.
const EC_P256_ALGORITHM: &[u8] = &[
    0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
    0xce, 0x3d, 0x03, 0x01, 0x07,
];
/// DER `AlgorithmIdentifier` of `rsaEncryption` with NULL parameters.
const RSA_ALGORITHM: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];

struct Options {
    out: PathBuf,
    issuer: String,
    audience: String,
    rotating: u64,
    fill: u64,
}

fn usage() -> String {
    "usage: mint_tokens OUT_DIR [--issuer URL] [--audience AUD] [--rotating N] [--fill N]"
        .to_owned()
}

fn parse_args() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let mut out = None;
    let mut options = Options {
        out: PathBuf::new(),
        issuer: "https://issuer.wisp.test".to_owned(),
        audience: "orders".to_owned(),
        rotating: 10_000,
        fill: 100_000,
    };
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--issuer" => options.issuer = value("--issuer")?,
            "--audience" => options.audience = value("--audience")?,
            "--rotating" => {
                options.rotating = value("--rotating")?
                    .parse()
                    .map_err(|e| format!("--rotating: {e}"))?
            }
            "--fill" => {
                options.fill = value("--fill")?
                    .parse()
                    .map_err(|e| format!("--fill: {e}"))?
            }
            "-h" | "--help" => return Err(usage()),
            other if other.starts_with('-') => {
                return Err(format!("unknown option {other}\n{}", usage()))
            }
            other => out = Some(PathBuf::from(other)),
        }
    }
    options.out = out.ok_or_else(usage)?;
    Ok(options)
}

/// A DER length prefix.
fn der_len(len: usize) -> Vec<u8> {
    match len {
        0..=0x7f => vec![len as u8],
        0x80..=0xff => vec![0x81, len as u8],
        _ => vec![0x82, (len >> 8) as u8, len as u8],
    }
}

/// `SubjectPublicKeyInfo ::= SEQUENCE { algorithm, BIT STRING subjectPublicKey }`.
fn spki(algorithm: &[u8], public_key: &[u8]) -> Vec<u8> {
    let mut bit_string = vec![0x03];
    bit_string.extend(der_len(public_key.len() + 1));
    bit_string.push(0); // no unused bits
    bit_string.extend_from_slice(public_key);
    let mut body = algorithm.to_vec();
    body.extend(bit_string);
    let mut out = vec![0x30];
    out.extend(der_len(body.len()));
    out.extend(body);
    out
}

fn pem_public_key(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END PUBLIC KEY-----\n");
    pem
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn mint(
    options: &Options,
    key: &EncodingKey,
    alg: Algorithm,
    kid: &str,
    n: u64,
) -> Result<String, String> {
    let now = now();
    let claims = json!({
        "iss": options.issuer,
        "sub": format!("acme:frontend:web-{n}"),
        "aud": options.audience,
        "iat": now, "nbf": now, "exp": now + 7200,
        "jti": format!("load-{kid}-{n}"),
        "tags": ["tag:prod", "tag:frontend"],
    });
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    encode(&header, &claims, key).map_err(|e| format!("minting a {alg:?} token: {e}"))
}

fn write(path: &Path, contents: &str) -> Result<(), String> {
    fs::write(path, contents).map_err(|e| format!("{}: {e}", path.display()))
}

fn write_tokens(
    options: &Options,
    key: &EncodingKey,
    name: &str,
    first: u64,
    count: u64,
) -> Result<(), String> {
    let path = options.out.join(name);
    let file = fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = BufWriter::new(file);
    for n in first..first + count {
        let token = mint(options, key, Algorithm::ES256, "es256", n)?;
        writeln!(out, "{token}").map_err(|e| format!("{}: {e}", path.display()))?;
    }
    out.flush().map_err(|e| format!("{}: {e}", path.display()))
}

fn run(options: &Options) -> Result<(), String> {
    wisp::authn::crypto::install();
    fs::create_dir_all(&options.out).map_err(|e| format!("{}: {e}", options.out.display()))?;

    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|_| "generating a P-256 key failed".to_owned())?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
        .map_err(|_| "parsing the P-256 key failed".to_owned())?;
    let point = pair.public_key().as_ref();
    let (x, y) = point[1..].split_at(32);
    let ec_key = EncodingKey::from_ec_der(pkcs8.as_ref());
    let rsa_key = EncodingKey::from_rsa_der(RSA2048_PK8);

    let mut rsa_jwk: Value =
        serde_json::from_str(RSA2048_JWK).map_err(|e| format!("RSA fixture JWK: {e}"))?;
    rsa_jwk["kid"] = json!("rs256");
    rsa_jwk["alg"] = json!("RS256");
    let jwks = json!({ "keys": [
        { "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": "es256",
          "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y) },
        rsa_jwk,
    ]});
    write(&options.out.join("jwks.json"), &format!("{jwks:#}\n"))?;
    write(
        &options.out.join("es256.pub.pem"),
        &pem_public_key(&spki(EC_P256_ALGORITHM, point)),
    )?;
    write(
        &options.out.join("rs256.pub.pem"),
        &pem_public_key(&spki(RSA_ALGORITHM, RSA2048_PUB_PKCS1)),
    )?;

    write(
        &options.out.join("token_es256.txt"),
        &format!(
            "{}\n",
            mint(options, &ec_key, Algorithm::ES256, "es256", 1)?
        ),
    )?;
    write(
        &options.out.join("token_rs256.txt"),
        &format!(
            "{}\n",
            mint(options, &rsa_key, Algorithm::RS256, "rs256", 1)?
        ),
    )?;
    // Distinct ranges so that no list repeats the reused token or another list.
    write_tokens(
        options,
        &ec_key,
        "tokens_es256_rotating.txt",
        1_000_000,
        options.rotating,
    )?;
    write_tokens(
        options,
        &ec_key,
        "tokens_es256_fill.txt",
        2_000_000,
        options.fill,
    )?;
    println!(
        "wrote keys and {} tokens to {}",
        2 + options.rotating + options.fill,
        options.out.display()
    );
    Ok(())
}

fn main() -> ExitCode {
    match parse_args().and_then(|options| run(&options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("mint_tokens: {message}");
            ExitCode::FAILURE
        }
    }
}
