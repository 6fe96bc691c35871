//! A claim set (JSON) through every preset's mapping and checks, into a
//! Cedar principal validated against the shipped schema, and into the
//! upstream headers (`headers.claims` included): every header value must
//! reach the upstream byte for byte.

use std::sync::LazyLock;

use wisp::authz::Authorizer;
use wisp::config::Config;
use wisp::headers::{plan, IdentityHeaderValues, PreparedNames};

static SETUP: LazyLock<(Config, Authorizer, PreparedNames)> = LazyLock::new(|| {
    let issuer = |name: &str, preset: &str, extra: &str| {
        format!(
            "  - name: {name}\n    issuer: https://{name}.fuzz\n    preset: {preset}\n    jwks: {{ uri: https://{name}.fuzz/jwks.json }}\n    audiences: [fuzz]\n    algorithms: [RS256]\n{extra}"
        )
    };
    let yaml = [
        "upstream: { address: 127.0.0.1:1 }\ntrust_domains: [example.org]\nissuers:\n".to_owned(),
        issuer("generic", "generic", "    claims: { tags: /tags, team: /team }\n"),
        issuer("k8s", "kubernetes", ""),
        issuer("tsiam", "tsiam", ""),
        issuer("github", "github-actions", ""),
        issuer("fly", "fly", ""),
        issuer("spiffe", "spiffe-jwt", ""),
        issuer("azure", "azure", ""),
        issuer("gcp", "gcp", ""),
        format!("policies: {{ dir: {}/policies }}\n", super::repo::root().display()),
        "headers: { claims: { x-ns: namespace, x-tags: tags, x-project-number: project_number, x-team: team, x-mi: managed_identity, x-authn: authn } }\n".to_owned(),
    ]
    .concat();
    let config = Config::from_yaml(&yaml, std::path::Path::new("fuzz.yaml")).expect("config");
    let authorizer =
        Authorizer::load(&config.policies.schema, &config.policies.dir).expect("policies");
    let names = PreparedNames::new(&config.headers.identity);
    (config, authorizer, names)
});

pub fn run(data: &[u8]) {
    let Ok(object) = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(data)
    else {
        return;
    };
    let (config, authorizer, names) = &*SETUP;
    let claims = wisp::authn::jwt::Claims::from(object);
    for issuer in &config.issuers {
        let Ok(identity) =
            wisp::authn::presets::identity(issuer, &claims, 1_800_000_600, &config.trust_domains)
        else {
            continue;
        };
        for (name, value) in plan(&IdentityHeaderValues::of(&identity), names) {
            let header = http::HeaderValue::from_str(&value);
            assert!(header.is_ok(), "{name}: {value:?} is not a header value");
            assert_eq!(
                value.trim(),
                value,
                "{name}: surrounding whitespace would be lost"
            );
        }
        let _ = authorizer.principal(identity);
    }
}
