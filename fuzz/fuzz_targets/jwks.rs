//! A JWKS document into verification keys (every algorithm allowed).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wisp::config::Algorithm;

fuzz_target!(|data: &[u8]| {
    let all = [
        Algorithm::RS256, Algorithm::RS384, Algorithm::RS512, Algorithm::PS256,
        Algorithm::PS384, Algorithm::PS512, Algorithm::ES256, Algorithm::ES384, Algorithm::EdDSA,
    ];
    let _ = wisp::authn::keys::KeySet::from_jwks_json(data, &all);
});
