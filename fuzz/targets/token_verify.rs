//! A bearer token through the strict parser, then verification against a
//! fixed JWKS (ES256, `fixtures/jwks.json`), then the preset's identity.

use std::sync::LazyLock;

use wisp::authn::keys::KeySet;
use wisp::config::{Config, IssuerConfig};

static SETUP: LazyLock<(IssuerConfig, KeySet)> = LazyLock::new(|| {
    let yaml = format!(
        "upstream: {{ address: 127.0.0.1:1 }}\nissuers:\n  - name: fuzz\n    issuer: https://issuer.fuzz\n    jwks: {{ uri: https://issuer.fuzz/jwks.json }}\n    audiences: [fuzz]\n    algorithms: [ES256]\n    claims: {{ tags: /tags }}\npolicies: {{ dir: {}/policies }}\n",
        super::repo::root().display()
    );
    let config = Config::from_yaml(&yaml, std::path::Path::new("fuzz.yaml")).expect("config");
    let keys = KeySet::from_jwks_json(
        include_bytes!("../fixtures/jwks.json"),
        &config.issuers[0].algorithms,
    )
    .expect("jwks");
    (config.issuers[0].clone(), keys)
});

pub fn run(data: &[u8]) {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(parsed) = wisp::authn::jwt::parse(token, 16 * 1024) else {
        return;
    };
    let (issuer, keys) = &*SETUP;
    // The seed tokens were issued at 1800000000 and expire 600 s later.
    if let Ok(verified) = wisp::authn::verify::verify(parsed, issuer, keys, 1_800_000_100) {
        let _ = wisp::authn::presets::identity(issuer, &verified.claims, verified.expires_at, &[]);
    }
}
