//! A claim set (JSON) through the generic and Kubernetes presets' mappings,
//! then into a Cedar principal validated against the shipped schema.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use wisp::authz::Authorizer;
use wisp::config::Config;

static SETUP: LazyLock<(Config, Authorizer)> = LazyLock::new(|| {
    let yaml = concat!(
        "upstream: { address: 127.0.0.1:1 }\n",
        "issuers:\n",
        "  - name: generic\n    issuer: https://issuer.fuzz\n    jwks: { uri: https://issuer.fuzz/jwks.json }\n",
        "    audiences: [fuzz]\n    algorithms: [ES256]\n    claims: { tags: /tags }\n",
        "  - name: k8s\n    issuer: https://k8s.fuzz\n    preset: kubernetes\n    jwks: { uri: https://k8s.fuzz/jwks.json }\n",
        "    audiences: [fuzz]\n    algorithms: [RS256]\n",
        "policies: { dir: ", env!("CARGO_MANIFEST_DIR"), "/../policies }\n"
    );
    let config = Config::from_yaml(yaml, std::path::Path::new("fuzz.yaml")).expect("config");
    let authorizer = Authorizer::load(&config.policies.schema, &config.policies.dir).expect("policies");
    (config, authorizer)
});

fuzz_target!(|data: &[u8]| {
    let Ok(object) = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(data) else {
        return;
    };
    let (config, authorizer) = &*SETUP;
    let claims = wisp::authn::jwt::Claims::from(object);
    for issuer in &config.issuers {
        if let Ok(identity) = wisp::authn::presets::identity(issuer, &claims, 1_800_000_600, &[]) {
            let _ = authorizer.principal(identity);
        }
    }
});
