//! A JWKS document into verification keys (every algorithm allowed).

use wisp::config::Algorithm;

pub fn run(data: &[u8]) {
    let _ = wisp::authn::keys::KeySet::from_jwks_json(data, &Algorithm::ALL);
}
