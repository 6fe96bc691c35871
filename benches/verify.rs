//! The token verification path: parse + signature + claims, per algorithm.
//!
//! - `fresh_*`: a token never seen before (minted outside the timed section).
//! - `repeat_*`: the same token again and again. `verify::verify` has no
//!   cache of its own, so this costs what `fresh_*` does; the token cache's
//!   hit path is measured in `benches/authenticate.rs`.
//! - `parse_only_*`: the strict parser alone.
//! - `parse_memo_*`: the same with a header memo that has seen this header
//!   (what the authenticator does: tokens of one issuer share their header).
//!
//! `cargo bench --bench verify -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use jsonwebtoken::{encode, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};
use wisp::authn::keys::KeySet;
use wisp::authn::{crypto, jwt, verify};
use wisp::config::{Algorithm, IssuerConfig, JwksSource, Preset};

const ISS: &str = "https://issuer.example";
const RSA2048_PK8: &[u8] = include_bytes!("../tests/fixtures/rsa2048.pk8.der");
const RSA2048_JWK: &str = include_str!("../tests/fixtures/rsa2048.jwk.json");

fn issuer(alg: Algorithm) -> IssuerConfig {
    IssuerConfig {
        name: "bench".into(),
        issuer: ISS.into(),
        preset: Preset::Generic,
        jwks: JwksSource::File("jwks.json".into()),
        jwks_fetch: Default::default(),
        refresh: Duration::from_secs(300),
        max_stale: Duration::from_secs(3600),
        refetch_min_interval: Duration::from_secs(30),
        audiences: vec!["orders".into()],
        algorithms: vec![alg],
        leeway: Duration::from_secs(30),
        max_lifetime: Duration::from_secs(86_400),
        trust_domain: None,
        claims: Vec::new(),
    }
}

fn now() -> i64 {
    i64::try_from(jsonwebtoken::get_current_timestamp()).unwrap_or(i64::MAX)
}

/// A realistic token: a tsiam-like claim set of ~600 bytes.
fn mint(key: &EncodingKey, alg: Algorithm, kid: &str, n: u64) -> String {
    let now = now();
    let claims = json!({
        "iss": ISS, "sub": format!("acme:frontend:{n}"), "aud": ["orders"],
        "iat": now, "nbf": now, "exp": now + 3600, "jti": format!("id-{n}"),
        "italypaleale.me/tsiam": {
            "node_id": "nABC123CNTRL", "name": "frontend-1.tail1234.ts.net",
            "ip4": "100.64.0.1", "ip6": "fd7a:115c:a1e0::1",
            "tags": ["tag:prod", "tag:frontend", "tag:eu-west"]
        }
    });
    let mut header = Header::new(alg.to_jsonwebtoken().expect("jsonwebtoken signs it"));
    header.kid = Some(kid.to_owned());
    encode(&header, &claims, key).expect("mint")
}

fn keys(jwk: Value) -> KeySet {
    let doc = json!({ "keys": [jwk] }).to_string();
    KeySet::from_jwks_json(doc.as_bytes(), &[Algorithm::ES256, Algorithm::RS256]).expect("keys")
}

fn es256() -> (EncodingKey, KeySet) {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("key");
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
        .expect("key");
    let point = &pair.public_key().as_ref()[1..];
    let (x, y) = point.split_at(32);
    let jwk = json!({"kty": "EC", "crv": "P-256", "kid": "ec",
        "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y)});
    (EncodingKey::from_ec_der(pkcs8.as_ref()), keys(jwk))
}

fn rs256() -> (EncodingKey, KeySet) {
    let mut jwk: Value = serde_json::from_str(RSA2048_JWK).expect("fixture");
    jwk["kid"] = json!("rsa");
    (EncodingKey::from_rsa_der(RSA2048_PK8), keys(jwk))
}

fn bench_alg(
    c: &mut Criterion,
    name: &str,
    alg: Algorithm,
    kid: &str,
    setup: fn() -> (EncodingKey, KeySet),
) {
    let (key, keys) = setup();
    let issuer = issuer(alg);
    let run = |token: &str| {
        let parsed = jwt::parse(token, 8192).expect("parse");
        verify::verify(parsed, &issuer, &keys, now()).expect("verify")
    };

    let mut n = 0u64;
    c.bench_function(&format!("fresh_{name}"), |b| {
        b.iter_batched(
            || {
                n += 1;
                mint(&key, alg, kid, n)
            },
            |token| black_box(run(&token)),
            BatchSize::SmallInput,
        )
    });

    let token = mint(&key, alg, kid, 0);
    c.bench_function(&format!("repeat_{name}"), |b| {
        b.iter(|| black_box(run(black_box(&token))))
    });

    c.bench_function(&format!("parse_only_{name}"), |b| {
        b.iter(|| black_box(jwt::parse(black_box(&token), 8192).expect("parse")))
    });
    let memo = jwt::HeaderMemo::default();
    c.bench_function(&format!("parse_memo_{name}"), |b| {
        b.iter(|| black_box(jwt::parse_remembering(black_box(&token), 8192, &memo).expect("parse")))
    });
}

fn benches(c: &mut Criterion) {
    crypto::install();
    bench_alg(c, "es256", Algorithm::ES256, "ec", es256);
    bench_alg(c, "rs256", Algorithm::RS256, "rsa", rs256);
}

/// The binary's allocator, so the numbers are the server's.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

criterion_group!(verify_benches, benches);
criterion_main!(verify_benches);
