//! A JWKS document into verification keys (every algorithm allowed).

use wisp::config::Algorithm;

pub fn run(data: &[u8]) {
    let all = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::ES512,
        Algorithm::EdDSA,
    ];
    let _ = wisp::authn::keys::KeySet::from_jwks_json(data, &all);
}
