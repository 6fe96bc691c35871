//! Config loading: the happy paths, the defaults, and one case per rejection.

use super::*;
use proptest::prelude::*;
use tempfile::TempDir;

/// A directory holding what a config refers to: `policies/` with a schema,
/// `jwks.json`, and PEM placeholders (the config layer only checks that files
/// exist). Configs are "loaded from" `<dir>/wisp.yaml`.
struct Fixture {
    dir: TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("policies")).unwrap();
        std::fs::write(dir.path().join("policies/wisp.cedarschema"), "").unwrap();
        std::fs::write(dir.path().join("jwks.json"), r#"{"keys":[]}"#).unwrap();
        for pem in PEM_FILES {
            std::fs::write(dir.path().join(pem), "-----BEGIN PLACEHOLDER-----\n").unwrap();
        }
        std::fs::write(
            dir.path().join("garbage_cert.pem"),
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("token"), "t0ken\n").unwrap();
        Fixture { dir }
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("wisp.yaml")
    }

    fn load(&self, yaml: &str) -> Result<Config, ConfigError> {
        Config::from_yaml(yaml, &self.config_path())
    }

    fn load_all(&self, yaml: &str) -> Result<Config, ConfigErrors> {
        Config::from_yaml_all(yaml, &self.config_path())
    }
}

const MINIMAL: &str = "upstream:\n  address: 127.0.0.1:8081\n";

const PEM_FILES: [&str; 6] = [
    "svid.pem",
    "svid_key.pem",
    "bundle.pem",
    "upstream_ca.pem",
    "client.pem",
    "client_key.pem",
];

/// A TLS listener asking for client certificates (`client_auth` defaults to
/// `optional`), and the trust domain that then becomes required.
const TLS: &str = "tls:\n  cert: svid.pem\n  key: svid_key.pem\n  client_ca: bundle.pem\n";
const TRUST_DOMAINS: &str = "trust_domains: [example.org]\n";

/// A decision service with its defaults (a section, so keys can follow).
const DECISION: &str = "decision_service:\n  listen: 127.0.0.1:9191\n";

/// The minimal config with a TLS listener, its `tls:` section extended by
/// `extra` (one `key: value`), and a trust domain.
fn with_tls(extra: &str) -> String {
    let extra = if extra.is_empty() {
        String::new()
    } else {
        format!("  {extra}\n")
    };
    format!("{MINIMAL}{TLS}{extra}{TRUST_DOMAINS}")
}

/// The minimal config with a TLS listener trusting two domains, each with its
/// own bundle, its `tls:` section extended by `extra` (one `key: value`).
fn federated_tls(extra: &str) -> String {
    let extra = if extra.is_empty() {
        String::new()
    } else {
        format!("  {extra}\n")
    };
    format!(
        "{MINIMAL}tls:\n  cert: svid.pem\n  key: svid_key.pem\n  \
         trust_bundles: {{ a.test: bundle.pem, b.test: upstream_ca.pem }}\n{extra}\
         trust_domains: [a.test, b.test]\n"
    )
}

/// The minimal config with a `spiffe-jwt` issuer taking its keys from
/// `domain`'s SPIFFE bundle, its extra lines `extra`.
fn spiffe_bundle_issuer(domain: &str, extra: &str) -> String {
    with_spiffe_issuer(extra).replace(
        "{ discovery: true }",
        &format!("{{ spiffe_bundle: {domain} }}"),
    )
}

/// [`federated_tls`] (b.test's bundle in the SPIFFE JSON format) with a
/// [`spiffe_bundle_issuer`].
fn federated_spiffe_issuer(domain: &str, extra: &str) -> String {
    let tls = federated_tls("").replace("upstream_ca.pem", "jwks.json");
    let tls = tls.strip_prefix(MINIMAL).unwrap_or_default();
    format!("{}{tls}", spiffe_bundle_issuer(domain, extra))
}

/// The minimal config with `upstream.tls:` set to `value` (YAML flow style).
fn with_upstream_tls(value: &str) -> String {
    format!("{MINIMAL}  tls: {value}\n")
}

/// The minimal config with a `spiffe-jwt` issuer whose extra lines are `extra`.
fn with_spiffe_issuer(extra: &str) -> String {
    with_issuer(&format!("    preset: spiffe-jwt\n{extra}"))
}

const ISSUER: &str = "
issuers:
  - name: k8s
    issuer: https://kubernetes.default.svc.cluster.local
    jwks: { discovery: true }
    audiences: [orders]
    algorithms: [RS256]
";

fn load(yaml: &str) -> Result<Config, ConfigError> {
    Fixture::new().load(yaml)
}

fn error_of(yaml: &str) -> String {
    match load(yaml) {
        Ok(config) => panic!("accepted:\n{yaml}\n→ {config:?}"),
        Err(error) => error.to_string(),
    }
}

/// The minimal config with `issuers[0]` extended by `extra` (indented lines).
fn with_issuer(extra: &str) -> String {
    format!("{MINIMAL}{ISSUER}{extra}")
}

#[test]
fn a_full_config_loads_with_every_value() {
    let fixture = Fixture::new();
    let yaml = "
listen: 127.0.0.1:7000
upstream:
  address: orders.internal:8081
  tls: false
  http2: true
  connect_timeout: 2s
  read_timeout: 1m30s
admin:
  listen: 127.0.0.1:9901
issuers:
  - name: tsiam
    issuer: https://tsiam.example.ts.net
    preset: tsiam
    jwks:
      discovery: true
      refresh: 10m
      max_stale: 2h
      refetch_min_interval: 1m
      max_bytes: 4MiB
    audiences: [orders, billing]
    algorithms: [ES256, RS256]
    leeway: 10s
    max_lifetime: 12h
    claims:
      node_name: /italypaleale.me~1tsiam/name
      groups: /groups
  - name: legacy-k8s
    issuer: kubernetes/serviceaccount
    preset: kubernetes
    jwks: { file: jwks.json }
    audiences: [orders]
    algorithms: [RS256]
  - name: local
    issuer: http://127.0.0.1:9000
    jwks: { uri: 'http://localhost:9000/jwks.json' }
    audiences: [orders]
    algorithms: [EdDSA]
trust_domains: [example.org, prod.example.org]
authn:
  require: jwt
  max_token_bytes: 16KiB
  token_cache: { max_bytes: 0 }
policies:
  dir: policies/
  schema: policies/wisp.cedarschema
  mode: dry-run
  watch: false
routes:
  public: [/healthz, /docs/*]
headers:
  forward_token: true
  identity:
    subject: X-Caller
    issuer: x-caller-issuer
    tags: x-caller-tags
    spiffe_id: x-caller-spiffe
log: { format: text, decisions: all }
limits: { header_timeout: 2s, idle_timeout: 30s, max_connections: 500 }
threads: 4
shutdown_grace: 10s
drain_delay: 2s
";
    let config = fixture.load(yaml).unwrap();
    let dir = fixture.dir.path();
    assert_eq!(config.source, fixture.config_path());
    assert_eq!(config.listen, "127.0.0.1:7000".parse().unwrap());
    assert_eq!(
        config.upstream.as_ref().unwrap().address,
        "orders.internal:8081"
    );
    assert!(config.upstream.as_ref().unwrap().tls.is_none());
    assert!(config.upstream.as_ref().unwrap().http2);
    assert_eq!(
        config.upstream.as_ref().unwrap().connect_timeout,
        Duration::from_secs(2)
    );
    assert_eq!(
        config.upstream.as_ref().unwrap().read_timeout,
        Duration::from_secs(90)
    );
    assert_eq!(
        config.admin.unwrap().listen,
        "127.0.0.1:9901".parse().unwrap()
    );

    let tsiam = &config.issuers[0];
    assert_eq!(&*tsiam.name, "tsiam");
    assert_eq!(tsiam.issuer, "https://tsiam.example.ts.net");
    assert_eq!(tsiam.preset, Preset::Tsiam);
    assert_eq!(tsiam.jwks, JwksSource::Discovery);
    assert_eq!(tsiam.refresh, Duration::from_secs(600));
    assert_eq!(tsiam.max_stale, Duration::from_secs(7200));
    assert_eq!(tsiam.refetch_min_interval, Duration::from_secs(60));
    assert_eq!(tsiam.jwks_fetch.max_bytes, 4 << 20);
    assert_eq!(tsiam.audiences, ["orders", "billing"]);
    assert_eq!(tsiam.algorithms, [Algorithm::ES256, Algorithm::RS256]);
    assert_eq!(tsiam.leeway, Duration::from_secs(10));
    assert_eq!(tsiam.max_lifetime, Duration::from_secs(12 * 3600));
    let claims: Vec<_> = tsiam
        .claims
        .iter()
        .map(|c| (c.attribute.as_str(), c.pointer.as_str()))
        .collect();
    assert_eq!(
        claims,
        [
            ("groups", "/groups"),
            ("node_name", "/italypaleale.me~1tsiam/name")
        ],
        "sorted by attribute"
    );
    assert_eq!(config.issuers[1].preset, Preset::Kubernetes);
    assert_eq!(
        config.issuers[1].jwks,
        JwksSource::File(dir.join("jwks.json"))
    );
    assert_eq!(
        config.issuers[2].jwks,
        JwksSource::Uri("http://localhost:9000/jwks.json".into())
    );
    assert_eq!(config.issuers[2].algorithms, [Algorithm::EdDSA]);

    assert_eq!(config.trust_domains, ["example.org", "prod.example.org"]);
    assert_eq!(config.authn.require, RequireCredentials::Jwt);
    assert_eq!(config.authn.max_token_bytes, 16 * 1024);
    assert_eq!(config.authn.token_cache_max_bytes, 0);
    assert_eq!(config.policies.dir, dir.join("policies/"));
    assert_eq!(
        config.policies.schema,
        dir.join("policies/wisp.cedarschema")
    );
    assert_eq!(config.policies.mode, PolicyMode::DryRun);
    assert!(!config.policies.watch);
    assert_eq!(
        config.routes.public,
        [
            RoutePattern::Exact("/healthz".into()),
            RoutePattern::Prefix("/docs/".into())
        ]
    );
    assert!(config.headers.forward_token);
    assert_eq!(config.headers.identity.subject, "x-caller", "lowercased");
    assert_eq!(config.headers.identity.issuer, "x-caller-issuer");
    assert_eq!(config.headers.identity.tags, "x-caller-tags");
    assert_eq!(config.headers.identity.spiffe_id, "x-caller-spiffe");
    assert_eq!(config.log.format, LogFormat::Text);
    assert_eq!(config.log.decisions, DecisionLog::All);
    assert_eq!(
        config.limits,
        LimitsConfig {
            header_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(30),
            max_connections: 500,
        }
    );
    assert_eq!(config.threads, 4);
    assert_eq!(config.shutdown_grace, Duration::from_secs(10));
    assert_eq!(config.drain_delay, Duration::from_secs(2));
}

#[test]
fn omitted_keys_take_their_documented_defaults() {
    let fixture = Fixture::new();
    let config = fixture.load(&with_issuer("")).unwrap();
    assert_eq!(config.listen, "0.0.0.0:8080".parse().unwrap());
    assert!(config.tls.is_none(), "no `tls:` section: plaintext");
    assert!(config.upstream.as_ref().unwrap().tls.is_none());
    assert!(!config.upstream.as_ref().unwrap().http2);
    assert_eq!(
        config.upstream.as_ref().unwrap().connect_timeout,
        Duration::from_secs(5)
    );
    assert_eq!(
        config.upstream.as_ref().unwrap().read_timeout,
        Duration::from_secs(60)
    );
    assert!(config.admin.is_none());
    let issuer = &config.issuers[0];
    assert_eq!(issuer.preset, Preset::Generic);
    assert_eq!(issuer.refresh, Duration::from_secs(300));
    assert_eq!(issuer.max_stale, Duration::from_secs(3600));
    assert_eq!(issuer.refetch_min_interval, Duration::from_secs(30));
    assert_eq!(issuer.jwks_fetch.max_bytes, 1 << 20);
    assert_eq!(issuer.leeway, Duration::from_secs(30));
    assert_eq!(issuer.max_lifetime, Duration::from_secs(86_400));
    assert!(issuer.claims.is_empty());
    assert!(config.trust_domains.is_empty());
    assert_eq!(config.authn.require, RequireCredentials::Any);
    assert_eq!(config.authn.max_token_bytes, 8192);
    assert_eq!(config.authn.token_cache_max_bytes, 64 << 20);
    assert_eq!(config.policies.dir, fixture.dir.path().join("policies"));
    assert_eq!(
        config.policies.schema,
        fixture.dir.path().join("policies/wisp.cedarschema")
    );
    assert_eq!(config.policies.mode, PolicyMode::Enforce);
    assert!(config.policies.watch);
    assert!(config.routes.public.is_empty());
    assert!(!config.headers.forward_token);
    assert_eq!(config.headers.identity.subject, "x-wisp-subject");
    assert_eq!(config.headers.identity.issuer, "x-wisp-issuer");
    assert_eq!(config.headers.identity.tags, "x-wisp-tags");
    assert_eq!(config.headers.identity.spiffe_id, "x-wisp-spiffe-id");
    assert_eq!(config.log.format, LogFormat::Json);
    assert_eq!(config.log.decisions, DecisionLog::Deny);
    assert_eq!(config.limits.header_timeout, Duration::from_secs(10));
    assert_eq!(config.limits.idle_timeout, Duration::from_secs(60));
    assert_eq!(config.limits.max_connections, 10_000);
    assert!((1..=256).contains(&config.threads));
    assert_eq!(config.shutdown_grace, Duration::from_secs(20));
    assert_eq!(config.drain_delay, Duration::from_secs(5));
}

#[test]
fn an_empty_issuer_list_is_allowed() {
    assert!(load(MINIMAL).unwrap().issuers.is_empty());
}

#[test]
fn relative_paths_resolve_against_the_config_files_directory() {
    let fixture = Fixture::new();
    let nested = fixture.dir.path().join("etc/wisp");
    std::fs::create_dir_all(&nested).unwrap();
    std::fs::write(nested.join("keys.json"), "{}").unwrap();
    let yaml = format!(
        "{MINIMAL}policies: {{ dir: ../../policies }}\nissuers:\n  - {{ name: a, issuer: a, \
         jwks: {{ file: keys.json }}, audiences: [x], algorithms: [ES256] }}\n"
    );
    let config = Config::from_yaml(&yaml, &nested.join("wisp.yaml")).unwrap();
    assert_eq!(config.policies.dir, nested.join("../../policies"));
    assert_eq!(
        config.policies.schema,
        nested.join("../../policies/wisp.cedarschema")
    );
    assert_eq!(
        config.issuers[0].jwks,
        JwksSource::File(nested.join("keys.json"))
    );
    // The same config loaded from elsewhere does not find its files.
    let elsewhere = Config::from_yaml_all(&yaml, &fixture.config_path())
        .unwrap_err()
        .to_string();
    assert!(elsewhere.contains(": policies.dir: "), "{elsewhere}");
    assert!(
        elsewhere.contains(": issuers[0].jwks.file: "),
        "{elsewhere}"
    );
}

#[test]
fn absolute_paths_are_kept() {
    let fixture = Fixture::new();
    let root = fixture.dir.path();
    let yaml = format!(
        "{MINIMAL}policies: {{ dir: '{}' }}\nissuers:\n  - {{ name: a, issuer: a, \
         jwks: {{ file: '{}' }}, audiences: [x], algorithms: [ES256] }}\n",
        root.join("policies").display(),
        root.join("jwks.json").display()
    );
    let config = Config::from_yaml(&yaml, &root.join("etc/wisp.yaml")).unwrap();
    assert_eq!(config.policies.dir, root.join("policies"));
    assert_eq!(
        config.issuers[0].jwks,
        JwksSource::File(root.join("jwks.json"))
    );
}

#[test]
fn a_tls_section_loads_with_every_value() {
    let fixture = Fixture::new();
    let dir = fixture.dir.path();
    let config = fixture
        .load(&format!(
            "{MINIMAL}{TLS}  client_auth: required\n  reload_interval: 1m\n{TRUST_DOMAINS}"
        ))
        .unwrap();
    assert_eq!(
        config.tls,
        Some(TlsConfig {
            cert: dir.join("svid.pem"),
            key: dir.join("svid_key.pem"),
            trust_bundles: vec![TrustBundleFile {
                trust_domain: "example.org".to_owned(),
                path: dir.join("bundle.pem"),
            }],
            client_auth: ClientAuth::Required,
            reload_interval: Duration::from_secs(60),
        })
    );
    assert_eq!(config.trust_domains, ["example.org"]);
}

#[test]
fn trust_bundles_give_each_trust_domain_its_own_bundle() {
    let fixture = Fixture::new();
    let dir = fixture.dir.path();
    let tls = fixture.load(&federated_tls("")).unwrap().tls.unwrap();
    let bundles: Vec<_> = tls
        .trust_bundles
        .iter()
        .map(|b| (b.trust_domain.as_str(), b.path.clone()))
        .collect();
    assert_eq!(
        bundles,
        [
            ("a.test", dir.join("bundle.pem")),
            ("b.test", dir.join("upstream_ca.pem"))
        ]
    );
}

#[test]
fn a_spiffe_jwt_issuer_is_scoped_to_the_only_trust_domain_or_to_its_own() {
    let single = load(&format!("{}{TRUST_DOMAINS}", with_spiffe_issuer(""))).unwrap();
    assert_eq!(
        single.issuers[0].trust_domain.as_deref(),
        Some("example.org")
    );
    let several = load(&format!(
        "{}trust_domains: [a.test, b.test]\n",
        with_spiffe_issuer("    trust_domain: b.test\n")
    ))
    .unwrap();
    assert_eq!(several.issuers[0].trust_domain.as_deref(), Some("b.test"));
    let other = load(&format!("{}{TRUST_DOMAINS}", with_issuer(""))).unwrap();
    assert_eq!(other.issuers[0].trust_domain, None);
}

#[test]
fn a_spiffe_jwt_issuer_takes_its_keys_from_its_trust_domains_spiffe_bundle() {
    let fixture = Fixture::new();
    let config = fixture
        .load(&federated_spiffe_issuer("b.test", ""))
        .unwrap();
    let issuer = &config.issuers[0];
    assert_eq!(
        issuer.jwks,
        JwksSource::SpiffeBundle {
            trust_domain: "b.test".to_owned(),
            path: fixture.dir.path().join("jwks.json"),
        }
    );
    assert_eq!(issuer.trust_domain.as_deref(), Some("b.test"));
}

#[test]
fn a_tls_section_defaults_to_optional_client_auth_and_a_30s_reload() {
    let tls = load(&with_tls("")).unwrap().tls.unwrap();
    assert_eq!(tls.client_auth, ClientAuth::Optional);
    assert_eq!(tls.reload_interval, Duration::from_secs(30));
}

#[test]
fn tls_without_client_auth_needs_neither_a_bundle_nor_trust_domains() {
    let yaml =
        format!("{MINIMAL}tls: {{ cert: svid.pem, key: svid_key.pem, client_auth: none }}\n");
    let tls = load(&yaml).unwrap().tls.unwrap();
    assert_eq!(tls.client_auth, ClientAuth::None);
    assert!(tls.trust_bundles.is_empty());
}

#[test]
fn tls_files_resolve_against_the_config_files_directory() {
    let fixture = Fixture::new();
    let nested = fixture.dir.path().join("etc");
    std::fs::create_dir(&nested).unwrap();
    let yaml = format!(
        "{}policies: {{ dir: ../policies }}\n",
        with_tls("")
            .replace(": svid", ": ../svid")
            .replace(": bundle", ": ../bundle")
    );
    let tls = Config::from_yaml(&yaml, &nested.join("wisp.yaml"))
        .unwrap()
        .tls
        .unwrap();
    assert_eq!(tls.cert, nested.join("../svid.pem"));
    assert_eq!(tls.trust_bundles[0].path, nested.join("../bundle.pem"));
}

#[test]
fn upstream_tls_false_means_plaintext_and_true_means_system_roots() {
    assert_eq!(
        load(&with_upstream_tls("false"))
            .unwrap()
            .upstream
            .unwrap()
            .tls,
        None
    );
    assert_eq!(
        load(&with_upstream_tls("true"))
            .unwrap()
            .upstream
            .unwrap()
            .tls,
        Some(UpstreamTlsConfig {
            ca: None,
            server_name: None,
            client_cert: None,
        })
    );
}

#[test]
fn upstream_tls_as_a_section_loads_every_value() {
    let fixture = Fixture::new();
    let dir = fixture.dir.path();
    let yaml = "upstream:
  address: 10.0.0.5:8443
  tls:
    ca: upstream_ca.pem
    server_name: orders.internal
    cert: client.pem
    key: client_key.pem
";
    assert_eq!(
        fixture.load(yaml).unwrap().upstream.unwrap().tls,
        Some(UpstreamTlsConfig {
            ca: Some(dir.join("upstream_ca.pem")),
            server_name: Some("orders.internal".into()),
            client_cert: Some((dir.join("client.pem"), dir.join("client_key.pem"))),
        })
    );
}

#[test]
fn upstream_tls_accepts_an_ip_address_as_the_server_name() {
    for name in ["10.0.0.5", "::1"] {
        let yaml = with_upstream_tls(&format!("{{ server_name: '{name}' }}"));
        let tls = load(&yaml).unwrap().upstream.unwrap().tls.unwrap();
        assert_eq!(tls.server_name.as_deref(), Some(name));
        assert_eq!(tls.ca, None);
    }
}

#[test]
fn each_require_value_loads_with_client_certificates() {
    let cases = [
        ("any", RequireCredentials::Any),
        ("jwt", RequireCredentials::Jwt),
        ("mtls", RequireCredentials::Mtls),
        ("both", RequireCredentials::Both),
    ];
    for (value, expected) in cases {
        let yaml = format!("{}authn: {{ require: {value} }}\n", with_tls(""));
        assert_eq!(load(&yaml).unwrap().authn.require, expected, "{value}");
    }
}

#[test]
fn require_mtls_with_issuers_configured_is_accepted() {
    let yaml = format!("{}{}authn: {{ require: mtls }}\n", with_tls(""), ISSUER);
    let config = load(&yaml).unwrap();
    assert_eq!(config.authn.require, RequireCredentials::Mtls);
    assert_eq!(config.issuers.len(), 1);
}

#[test]
fn a_spiffe_jwt_issuer_loads_with_every_key_source_and_its_algorithms() {
    let algorithms = "[RS256, RS384, RS512, ES256, ES384, ES512, PS256, PS384, PS512]";
    let jwks_sources = [
        ("{ discovery: true }", JwksSource::Discovery),
        (
            "{ uri: 'https://oidc-discovery.example.org/keys' }",
            JwksSource::Uri("https://oidc-discovery.example.org/keys".into()),
        ),
    ];
    for (jwks, expected) in jwks_sources {
        let yaml = format!(
            "{}{TRUST_DOMAINS}",
            with_spiffe_issuer("")
                .replace("{ discovery: true }", jwks)
                .replace("[RS256]", algorithms)
        );
        let config = load(&yaml).unwrap();
        let issuer = &config.issuers[0];
        assert_eq!(issuer.preset, Preset::SpiffeJwt);
        assert_eq!(issuer.jwks, expected);
        assert_eq!(issuer.algorithms.len(), 9);
        assert!(issuer.algorithms.contains(&Algorithm::ES512));
    }
    let fixture = Fixture::new();
    let yaml = format!(
        "{}{TRUST_DOMAINS}",
        with_spiffe_issuer("").replace("{ discovery: true }", "{ file: jwks.json }")
    );
    assert_eq!(
        fixture.load(&yaml).unwrap().issuers[0].jwks,
        JwksSource::File(fixture.dir.path().join("jwks.json"))
    );
}

#[test]
fn tls_problems_are_the_invalid_variant_with_the_full_key_path() {
    match load(&with_tls("").replace("svid_key.pem", "nope.pem")) {
        Err(ConfigError::Invalid { key, message, .. }) => {
            assert_eq!(key, "tls.key");
            assert!(message.contains("nope.pem"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    match load(&with_upstream_tls("{ cert: client.pem }")) {
        Err(ConfigError::Invalid { key, .. }) => assert_eq!(key, "upstream.tls.key"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_disabled_tls_section_is_refused_with_its_position() {
    let error = error_of(&format!("{MINIMAL}tls: false\n"));
    assert!(error.contains("wisp.yaml:3:"), "{error}");
    assert!(error.contains(": tls: "), "{error}");
    assert!(error.contains("remove the `tls:` section"), "{error}");
}

/// (what, yaml, key path the error must name, text it must contain)
#[rustfmt::skip]
fn rejections() -> Vec<(&'static str, String, &'static str, &'static str)> {
    let issuer_with = |field: &str| with_issuer(&format!("    {field}\n"));
    let without_algorithms = |field: &str| issuer_with(field).replace("    algorithms: [RS256]\n", "");
    let with_jwks = |jwks: &str| with_issuer("").replace("{ discovery: true }", jwks);
    let second_issuer = |from: &str, to: &str| format!("{}{}", with_issuer(""), ISSUER.replace("issuers:\n", "").replace(from, to));
    let routes = |list: &str| format!("{MINIMAL}routes: {{ public: [{list}] }}\n");
    let identity = |entry: &str| format!("{MINIMAL}headers: {{ identity: {{ {entry} }} }}\n");
    vec![
        ("unknown top-level key", format!("{MINIMAL}listne: 0.0.0.0:1\n"), "listne", "unknown field"),
        ("unknown nested key", format!("{MINIMAL}  adress: x:1\n"), "upstream.adress", "unknown field"),
        ("unknown issuer key", issuer_with("audience: [x]"), "issuers[0].audience", "unknown field"),
        ("bad duration", format!("{MINIMAL}  read_timeout: 5x\n"), "upstream.read_timeout", "invalid duration"),
        ("plain-number duration", issuer_with("leeway: 30"), "issuers[0].leeway", "ambiguous"),
        ("zero timeout", format!("{MINIMAL}  connect_timeout: 0s\n"), "upstream.connect_timeout", "longer than 0s"),
        ("bad size", format!("{MINIMAL}authn: {{ max_token_bytes: 8MB }}\n"), "authn.max_token_bytes", "invalid size"),
        ("size out of range", format!("{MINIMAL}authn: {{ max_token_bytes: 2MiB }}\n"), "authn.max_token_bytes", "between"),
        ("zero token size", format!("{MINIMAL}authn: {{ max_token_bytes: 0 }}\n"), "authn.max_token_bytes", "between"),
        ("bad cache size", format!("{MINIMAL}authn: {{ token_cache: {{ max_bytes: lots }} }}\n"), "authn.token_cache.max_bytes", "invalid size"),
        ("bad listen address", format!("{MINIMAL}listen: localhost:80\n"), "listen", "IP:port"),
        ("bad upstream address", "upstream: { address: '127.0.0.1' }\n".into(), "upstream.address", "missing port"),
        ("upstream port out of range", "upstream: { address: 'a:70000' }\n".into(), "upstream.address", "port"),
        ("upstream host with a path", "upstream: { address: 'a/b:80' }\n".into(), "upstream.address", "not a hostname"),
        ("missing upstream.address", "upstream: { http2: true }\n".into(), "upstream.address", "required"),
        ("missing upstream section", "listen: 0.0.0.0:1\n".into(), "upstream.address", "required"),
        ("empty tls section", format!("{MINIMAL}tls:\n"), "tls", "remove the `tls:` section"),
        ("tls: false", format!("{MINIMAL}tls: false\n"), "tls", "remove the `tls:` section"),
        ("tls: true", format!("{MINIMAL}tls: true\n"), "tls", "`cert` and `key`"),
        ("tls as a string", format!("{MINIMAL}tls: 'no'\n"), "tls", "must be a section with `cert` and `key`, not \"no\""),
        ("unknown tls key", with_tls("certificate: svid.pem"), "tls.certificate", "unknown field"),
        ("tls without cert", with_tls("").replace("  cert: svid.pem\n", ""), "tls.cert", "required"),
        ("tls without key", with_tls("").replace("  key: svid_key.pem\n", ""), "tls.key", "required"),
        ("missing tls cert file", with_tls("").replace("cert: svid.pem", "cert: nope.pem"), "tls.cert", "nope.pem` does not exist"),
        ("missing tls key file", with_tls("").replace("svid_key.pem", "nope.pem"), "tls.key", "does not exist"),
        ("missing client_ca file", with_tls("").replace("bundle.pem", "nope.pem"), "tls.client_ca", "does not exist"),
        ("optional client auth without client_ca", with_tls("").replace("  client_ca: bundle.pem\n", ""), "tls.client_ca", "required"),
        ("required client auth without client_ca", with_tls("client_auth: required").replace("  client_ca: bundle.pem\n", ""), "tls.client_ca", "required"),
        ("client_ca unused without client auth", with_tls("client_auth: none"), "tls.client_ca", "unused"),
        ("client_ca with several trust domains", federated_tls("").replace("  trust_bundles: { a.test: bundle.pem, b.test: upstream_ca.pem }\n", "  client_ca: bundle.pem\n"), "tls.client_ca", "`trust_bundles: { a.test: bundle.pem }`"),
        ("client_ca and trust_bundles together", federated_tls("client_ca: bundle.pem"), "tls.trust_bundles", "cannot be used together"),
        ("trust bundle of an unlisted domain", federated_tls("").replace("b.test: upstream", "c.test: upstream"), "tls.trust_bundles.c.test", "not one of `trust_domains`"),
        ("trust domain without a bundle", federated_tls("").replace(", b.test: upstream_ca.pem", ""), "tls.trust_bundles", "no bundle for trust domain `b.test`"),
        ("missing trust bundle file", federated_tls("").replace("upstream_ca.pem", "nope.json"), "tls.trust_bundles.b.test", "nope.json` does not exist"),
        ("empty trust_bundles", federated_tls("").replace("{ a.test: bundle.pem, b.test: upstream_ca.pem }", "{}"), "tls.trust_bundles", "at least one"),
        ("trust_bundles unused without client auth", federated_tls("client_auth: none"), "tls.trust_bundles", "unused"),
        ("unknown client_auth", with_tls("client_auth: request"), "tls.client_auth", "unknown variant"),
        ("tls reload under 1s", with_tls("reload_interval: 500ms"), "tls.reload_interval", "at least 1s"),
        ("tls reload as a plain number", with_tls("reload_interval: 30"), "tls.reload_interval", "ambiguous"),
        ("empty upstream tls", format!("{MINIMAL}  tls:\n"), "upstream.tls", "`true`, `false` or a section"),
        ("upstream tls as a string", with_upstream_tls("'yes'"), "upstream.tls", "invalid type"),
        ("unknown upstream tls key", with_upstream_tls("{ sni: orders }"), "upstream.tls.sni", "unknown field"),
        ("missing upstream ca file", with_upstream_tls("{ ca: nope.pem }"), "upstream.tls.ca", "nope.pem"),
        ("upstream cert without key", with_upstream_tls("{ cert: client.pem }"), "upstream.tls.key", "required with `cert`"),
        ("upstream key without cert", with_upstream_tls("{ key: client_key.pem }"), "upstream.tls.cert", "required with `key`"),
        ("missing upstream client cert file", with_upstream_tls("{ cert: nope.pem, key: client_key.pem }"), "upstream.tls.cert", "nope.pem"),
        ("upstream server name with a port", with_upstream_tls("{ server_name: 'orders:443' }"), "upstream.tls.server_name", "invalid server name"),
        ("upstream server name with a space", with_upstream_tls("{ server_name: 'orders internal' }"), "upstream.tls.server_name", "invalid server name"),
        ("upstream server name in brackets", with_upstream_tls("{ server_name: '[::1]' }"), "upstream.tls.server_name", "no brackets"),
        ("admin without listen", format!("{MINIMAL}admin: {{}}\n"), "admin.listen", "required"),
        ("admin same as listen", format!("{MINIMAL}admin: {{ listen: 0.0.0.0:8080 }}\n"), "admin.listen", "also the proxy"),
        ("HS256", without_algorithms("algorithms: [HS256]"), "issuers[0].algorithms[0]", "allowed: RS256"),
        ("none", without_algorithms("algorithms: [NoNe]"), "issuers[0].algorithms[0]", "never accepted"),
        ("unknown algorithm", without_algorithms("algorithms: [ES521]"), "issuers[0].algorithms[0]", "allowed: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA"),
        ("duplicate algorithm", without_algorithms("algorithms: [ES256, ES256]"), "issuers[0].algorithms[1]", "duplicate"),
        ("empty algorithms", without_algorithms("algorithms: []"), "issuers[0].algorithms", "at least one"),
        ("missing algorithms", without_algorithms(""), "issuers[0].algorithms", "required"),
        ("duplicate issuer names", second_issuer("cluster.local", "cluster.local/2"), "issuers[1].name", "duplicate issuer name"),
        ("duplicate issuer values", second_issuer("name: k8s", "name: k8s2"), "issuers[1].issuer", "duplicate issuer"),
        ("bad issuer name", with_issuer("").replace("name: k8s", "name: 'k 8s'"), "issuers[0].name", "invalid name"),
        ("missing issuer name", with_issuer("").replace("  - name: k8s\n    issuer", "  - issuer"), "issuers[0].name", "required"),
        ("issuer with #", with_issuer("").replace("cluster.local", "cluster.local#x"), "issuers[0].issuer", "#"),
        ("missing issuer", with_issuer("").replace("    issuer: https://kubernetes.default.svc.cluster.local\n", ""), "issuers[0].issuer", "required"),
        ("spiffe-jwt without trust domains", with_spiffe_issuer(""), "trust_domains", "required by issuers[0] (preset spiffe-jwt)"),
        ("trust_domain on a non-SPIFFE issuer", format!("{}{TRUST_DOMAINS}", with_issuer("    trust_domain: example.org\n")), "issuers[0].trust_domain", "only for `preset: spiffe-jwt`"),
        ("spiffe-jwt scoped to an unlisted domain", format!("{}{TRUST_DOMAINS}", with_spiffe_issuer("    trust_domain: other.org\n")), "issuers[0].trust_domain", "`other.org` is not one of `trust_domains`"),
        ("spiffe-jwt unscoped among several domains", format!("{}trust_domains: [a.test, b.test]\n", with_spiffe_issuer("")), "issuers[0].trust_domain", "required with several `trust_domains` (a.test, b.test)"),
        ("spiffe_bundle on a non-SPIFFE issuer", format!("{}{TRUST_DOMAINS}", with_issuer("").replace("{ discovery: true }", "{ spiffe_bundle: example.org }")), "issuers[0].jwks.spiffe_bundle", "only for `preset: spiffe-jwt`"),
        ("spiffe_bundle and file", format!("{}{TRUST_DOMAINS}", with_spiffe_issuer("").replace("{ discovery: true }", "{ spiffe_bundle: example.org, file: jwks.json }")), "issuers[0].jwks", "exactly one"),
        ("spiffe_bundle of a domain without a bundle", format!("{}{TRUST_DOMAINS}", spiffe_bundle_issuer("example.org", "")), "issuers[0].jwks.spiffe_bundle", "has no bundle"),
        ("spiffe_bundle of an unlisted domain", federated_spiffe_issuer("c.test", ""), "issuers[0].jwks.spiffe_bundle", "`c.test` is not one of `trust_domains`"),
        ("spiffe_bundle of a PEM bundle", federated_spiffe_issuer("a.test", ""), "issuers[0].jwks.spiffe_bundle", "not in the SPIFFE bundle (JSON) format"),
        ("spiffe_bundle of another domain than trust_domain", federated_spiffe_issuer("b.test", "    trust_domain: a.test\n"), "issuers[0].trust_domain", "differs from `jwks.spiffe_bundle` (`b.test`)"),
        ("spiffe-jwt with EdDSA", format!("{}{TRUST_DOMAINS}", with_spiffe_issuer("").replace("[RS256]", "[RS256, EdDSA]")), "issuers[0].algorithms[1]", "not allowed for JWT-SVIDs"),
        ("unknown preset", issuer_with("preset: okta"), "issuers[0].preset", "unknown variant"),
        ("missing jwks", with_issuer("").replace("    jwks: { discovery: true }\n", ""), "issuers[0].jwks", "required"),
        ("discovery on non-URL issuer", with_issuer("").replace("https://kubernetes.default.svc.cluster.local", "kubernetes/serviceaccount"), "issuers[0].jwks.discovery", "http(s) URL"),
        ("discovery over http to a remote host", with_issuer("").replace("https://", "http://"), "issuers[0].jwks.discovery", "loopback"),
        ("http non-loopback uri", with_jwks("{ uri: 'http://keys.example.com/jwks' }"), "issuers[0].jwks.uri", "must use https"),
        ("http uri to a look-alike host", with_jwks("{ uri: 'http://127.0.0.1.example.com/jwks' }"), "issuers[0].jwks.uri", "loopback"),
        ("non-http uri", with_jwks("{ uri: 'file:///etc/jwks.json' }"), "issuers[0].jwks.uri", "not an http(s) URL"),
        ("two key sources", with_jwks("{ discovery: true, uri: 'https://x/jwks' }"), "issuers[0].jwks", "exactly one"),
        ("no key source", with_jwks("{ refresh: 1m }"), "issuers[0].jwks", "exactly one"),
        ("missing jwks file", with_jwks("{ file: nope.json }"), "issuers[0].jwks.file", "nope.json"),
        ("refresh under 1s", with_jwks("{ discovery: true, refresh: 500ms }"), "issuers[0].jwks.refresh", "at least 1s"),
        ("refetch interval under 1s", with_jwks("{ discovery: true, refetch_min_interval: 0s }"), "issuers[0].jwks.refetch_min_interval", "at least 1s"),
        ("jwks max_bytes over 16MiB", with_jwks("{ discovery: true, max_bytes: 17MiB }"), "issuers[0].jwks.max_bytes", "between 1KiB and 16MiB, got 17MiB"),
        ("jwks max_bytes under 1KiB", with_jwks("{ discovery: true, max_bytes: 100 }"), "issuers[0].jwks.max_bytes", "between 1KiB and 16MiB"),
        ("jwks max_bytes not a size", with_jwks("{ discovery: true, max_bytes: big }"), "issuers[0].jwks.max_bytes", "invalid size"),
        ("max_stale shorter than refresh", with_jwks("{ discovery: true, refresh: 2h }"), "issuers[0].jwks.max_stale", "at least `refresh`"),
        ("missing jwks ca file", with_jwks("{ discovery: true, ca: nope.pem }"), "issuers[0].jwks.ca", "nope.pem` does not exist"),
        ("jwks ca without a certificate", with_jwks("{ discovery: true, ca: jwks.json }"), "issuers[0].jwks.ca", "jwks.json` holds no certificate"),
        ("unparsable jwks ca", with_jwks("{ discovery: true, ca: bundle.pem }"), "issuers[0].jwks.ca", "bundle.pem` is not a valid PEM file"),
        ("jwks ca that is not a certificate", with_jwks("{ uri: 'https://x/jwks', ca: garbage_cert.pem }"), "issuers[0].jwks.ca", "garbage_cert.pem`: certificate 1 is not usable"),
        ("jwks ca with a file source", with_jwks("{ file: jwks.json, ca: bundle.pem }"), "issuers[0].jwks.ca", "only valid with `discovery: true` or `uri`"),
        ("missing bearer token file", with_jwks("{ discovery: true, bearer_token_file: nope-token }"), "issuers[0].jwks.bearer_token_file", "nope-token` does not exist"),
        ("bearer token file with a file source", with_jwks("{ file: jwks.json, bearer_token_file: token }"), "issuers[0].jwks.bearer_token_file", "only valid with"),
        ("missing audiences", with_issuer("").replace("    audiences: [orders]\n", ""), "issuers[0].audiences", "required"),
        ("empty audiences", with_issuer("").replace("[orders]", "[]"), "issuers[0].audiences", "at least one"),
        ("empty audience", with_issuer("").replace("[orders]", "[orders, '']"), "issuers[0].audiences[1]", "empty"),
        ("leeway over 5m", issuer_with("leeway: 6m"), "issuers[0].leeway", "at most 5m"),
        ("zero max lifetime", issuer_with("max_lifetime: 0s"), "issuers[0].max_lifetime", "at least 1s"),
        ("bad claim pointer", issuer_with("claims: { namespace: kubernetes.io/namespace }"), "issuers[0].claims.namespace", "must start with `/`"),
        ("bad claim pointer escape", issuer_with("claims: { node: /a~2b }"), "issuers[0].claims.node", "~1"),
        ("reserved claim attribute", issuer_with("claims: { sub: /email }"), "issuers[0].claims.sub", "reserved"),
        ("reserved authn attribute", issuer_with("claims: { authn: /amr }"), "issuers[0].claims.authn", "reserved"),
        ("spiffe_id from a claim", issuer_with("claims: { spiffe_id: /sub }"), "issuers[0].claims.spiffe_id", "reserved"),
        ("non-identifier attribute", issuer_with("claims: { node-name: /name }"), "issuers[0].claims.node-name", "Cedar identifier"),
        ("cedar keyword attribute", issuer_with("claims: { like: /x }"), "issuers[0].claims.like", "keyword"),
        ("duplicate claim attribute", issuer_with("claims: { a: /x, a: /y }"), "issuers[0].claims.a", "duplicate"),
        ("uppercase trust domain", format!("{MINIMAL}trust_domains: [Example.org]\n"), "trust_domains[0]", "lowercase"),
        ("trust domain as a SPIFFE ID", format!("{MINIMAL}trust_domains: ['spiffe://example.org']\n"), "trust_domains[0]", "without `spiffe://`"),
        ("trust domain over 255 bytes", format!("{MINIMAL}trust_domains: [{}]\n", "a".repeat(256)), "trust_domains[0]", "255 bytes"),
        ("duplicate trust domain", format!("{MINIMAL}trust_domains: [example.org, example.org]\n"), "trust_domains[1]", "duplicate"),
        ("client certificates without trust domains", format!("{MINIMAL}{TLS}"), "trust_domains", "`required` or `optional`"),
        ("required client certificates without trust domains", format!("{MINIMAL}{TLS}  client_auth: required\n"), "trust_domains", "trust domains"),
        ("mtls without tls", format!("{MINIMAL}authn: {{ require: mtls }}\n"), "authn.require", "no `tls:` section"),
        ("both without tls", format!("{MINIMAL}authn: {{ require: both }}\n"), "authn.require", "`both` needs client certificates"),
        ("mtls without client auth", format!("{}authn: {{ require: mtls }}\n", with_tls("client_auth: none").replace("  client_ca: bundle.pem\n", "")), "authn.require", "`tls.client_auth` is `none`"),
        ("both without client auth", format!("{}authn: {{ require: both }}\n", with_tls("client_auth: none").replace("  client_ca: bundle.pem\n", "")), "authn.require", "`none`"),
        ("missing policies dir", format!("{MINIMAL}policies: {{ dir: nope }}\n"), "policies.dir", "not a directory"),
        ("policies dir is a file", format!("{MINIMAL}policies: {{ dir: jwks.json }}\n"), "policies.dir", "not a directory"),
        ("missing schema", format!("{MINIMAL}policies: {{ schema: nope.cedarschema }}\n"), "policies.schema", "nope.cedarschema"),
        ("bad policy mode", format!("{MINIMAL}policies: {{ mode: audit }}\n"), "policies.mode", "unknown variant"),
        ("yes as a boolean", format!("{MINIMAL}policies: {{ watch: yes }}\n"), "policies.watch", "boolean"),
        ("settle too long", format!("{MINIMAL}policies: {{ settle: 10m }}\n"), "policies.settle", "at most 5m"),
        ("bad drain delay", format!("{MINIMAL}drain_delay: soon\n"), "drain_delay", "invalid duration"),
        ("route without slash", routes("healthz"), "routes.public[0]", "start with `/`"),
        ("route with inner star", routes("/healthz, /a/*/b"), "routes.public[1]", "'*'"),
        ("route without slash before star", routes("'/docs*'"), "routes.public[0]", "'*'"),
        ("route with percent", routes("'/a%2Fb'"), "routes.public[0]", "'%'"),
        ("route with query", routes("'/a?b'"), "routes.public[0]", "'?'"),
        ("route with fragment", routes("'/a#b'"), "routes.public[0]", "'#'"),
        ("route with space", routes("'/a b'"), "routes.public[0]", "' '"),
        ("route with double slash", routes("'/a//b'"), "routes.public[0]", "//"),
        ("route with dot-dot", routes("'/a/../b/*'"), "routes.public[0]", "`..`"),
        ("route with dot", routes("'/a/./b'"), "routes.public[0]", "`..`"),
        ("route with backslash", routes("'/a\\b'"), "routes.public[0]", "not allowed"),
        ("invalid header name", identity("subject: 'x wisp'"), "headers.identity.subject", "not a valid HTTP header name"),
        ("protected header name", identity("tags: Authorization"), "headers.identity.tags", "authorization"),
        ("protected header with underscore", identity("tags: content_length"), "headers.identity.tags", "content-length"),
        ("identical header names", identity("issuer: X-Wisp-Subject"), "headers.identity.issuer", "also identity.subject"),
        ("header names equal after _ folding", identity("tags: x_wisp_issuer"), "headers.identity.tags", "also identity.issuer"),
        ("claim header of an attribute no issuer sets", with_issuer("    preset: kubernetes\nheaders: { claims: { x-ns: namespce } }\n"), "headers.claims.x-ns", "did you mean `namespace`?"),
        ("claim header that is an identity header", with_issuer("headers: { claims: { x_wisp_subject: sub } }\n"), "headers.claims.x_wisp_subject", "also identity.subject"),
        ("protected claim header", with_issuer("headers: { claims: { Authorization: sub } }\n"), "headers.claims.Authorization", "authorization"),
        ("request id as a claim header", with_issuer("headers: { claims: { X_Request_Id: sub } }\n"), "headers.claims.X_Request_Id", "x-request-id"),
        ("claim header without attribute", with_issuer("headers: { claims: { x-a: '' } }\n"), "headers.claims.x-a", "needs a principal attribute"),
        ("bad log format", format!("{MINIMAL}log: {{ format: xml }}\n"), "log.format", "unknown variant"),
        ("bad decision log", format!("{MINIMAL}log: {{ decisions: some }}\n"), "log.decisions", "unknown variant"),
        ("zero threads", format!("{MINIMAL}threads: 0\n"), "threads", "between 1 and 256"),
        ("too many threads", format!("{MINIMAL}threads: 1000\n"), "threads", "between 1 and 256"),
        ("bad shutdown grace", format!("{MINIMAL}shutdown_grace: forever\n"), "shutdown_grace", "invalid duration"),
        ("zero header timeout", format!("{MINIMAL}limits: {{ header_timeout: 0s }}\n"), "limits.header_timeout", "longer than 0s"),
        ("header timeout as a number", format!("{MINIMAL}limits: {{ header_timeout: 10 }}\n"), "limits.header_timeout", "ambiguous"),
        ("idle timeout under 1s", format!("{MINIMAL}limits: {{ idle_timeout: 500ms }}\n"), "limits.idle_timeout", "whole seconds"),
        ("idle timeout in part seconds", format!("{MINIMAL}limits: {{ idle_timeout: 1500ms }}\n"), "limits.idle_timeout", "whole seconds"),
        ("zero max connections", format!("{MINIMAL}limits: {{ max_connections: 0 }}\n"), "limits.max_connections", "between 1 and"),
        ("too many max connections", format!("{MINIMAL}limits: {{ max_connections: 2000000 }}\n"), "limits.max_connections", "between 1 and"),
        ("negative max connections", format!("{MINIMAL}limits: {{ max_connections: -1 }}\n"), "limits.max_connections", ""),
        ("unknown limits key", format!("{MINIMAL}limits: {{ body_timeout: 1s }}\n"), "limits.body_timeout", "unknown field"),
        ("duplicate key", format!("{MINIMAL}listen: 0.0.0.0:1\nlisten: 0.0.0.0:2\n"), "listen", "duplicate"),
        ("wrong type", format!("{MINIMAL}issuers: {{ name: a }}\n"), "issuers", "must be a list"),
        ("misspelt key", format!("{MINIMAL}  adress: x:1\n"), "upstream.adress", "unknown field `adress`, did you mean `address`?"),
        ("misspelt issuer key", issuer_with("audience: [x]"), "issuers[0].audience", "did you mean `audiences`?"),
        ("misspelt preset", issuer_with("preset: kubernets"), "issuers[0].preset", "did you mean `kubernetes`?"),
        ("a scalar for a list", with_issuer("").replace("[orders]", "orders"), "issuers[0].audiences", "must be a list, e.g. [orders]"),
        ("a scalar for a list of routes", format!("{MINIMAL}routes: {{ public: /healthz }}\n"), "routes.public", "must be a list, e.g. [/healthz]"),
        ("a scalar for a section", "upstream: 127.0.0.1:1\n".into(), "upstream", "must be a section of `key: value` entries"),
        ("text for a number", format!("{MINIMAL}threads: many\n"), "threads", "must be a whole number, not \"many\""),
        ("text for a boolean", format!("{MINIMAL}  http2: 'sometimes'\n"), "upstream.http2", "true or false"),
        ("a list for a duration", format!("{MINIMAL}  read_timeout: [5s]\n"), "upstream.read_timeout", "must be a single value, not a list"),
        ("listen without upstream in decision mode", format!("listen: 127.0.0.1:1\n{DECISION}"), "upstream.address", "remove `listen`"),
        ("tls without upstream in decision mode", format!("{DECISION}{TLS}"), "upstream.address", "remove `tls`"),
        ("unknown decision_service key", format!("{DECISION}  port: 1\n"), "decision_service.port", "unknown field"),
        ("bad decision_service.listen", "decision_service: { listen: 'localhost:1' }\n".into(), "decision_service.listen", "IP:port"),
        ("decision_service.listen = listen", format!("{MINIMAL}listen: 127.0.0.1:9191\n{DECISION}"), "decision_service.listen", "also the proxy's `listen`"),
        ("admin.listen = decision_service.listen", format!("{DECISION}admin: {{ listen: 127.0.0.1:9191 }}\n"), "admin.listen", "also `decision_service.listen`"),
        ("decision tls without client_ca", format!("{DECISION}  tls: {{ cert: svid.pem, key: svid_key.pem }}\n"), "decision_service.tls.client_ca", "required"),
        ("decision tls without cert", format!("{DECISION}  tls: {{ key: svid_key.pem, client_ca: bundle.pem }}\n"), "decision_service.tls.cert", "required"),
        ("decision-only mtls without trust domains", format!("{DECISION}authn: {{ require: mtls }}\n"), "trust_domains", "decision-service-only"),
        ("missing decision tls key file", format!("{DECISION}  tls: {{ cert: svid.pem, key: nope.pem, client_ca: bundle.pem }}\n"), "decision_service.tls.key", "does not exist"),
    ]
}

#[test]
fn claim_headers_load_lowercased_and_sorted_for_preset_and_mapped_attributes() {
    let config = load(&with_issuer(
        "    preset: kubernetes\n    claims: { team: /acme/team }\nheaders: { claims: { X-Team: team, x-ns: namespace, x-how: authn } }\n",
    ))
    .unwrap();
    assert_eq!(
        config.headers.identity.claims,
        [
            ("x-how".to_owned(), "authn".to_owned()),
            ("x-ns".to_owned(), "namespace".to_owned()),
            ("x-team".to_owned(), "team".to_owned()),
        ]
    );
}

#[test]
fn each_rejection_names_its_key_path() {
    let mut failures = Vec::new();
    for (what, yaml, key, fragment) in rejections() {
        let error = match load(&yaml) {
            Ok(_) => {
                failures.push(format!("{what}: accepted"));
                continue;
            }
            Err(error) => error.to_string(),
        };
        let names_key = error.contains(&format!(": {key}: "));
        // `…/wisp.yaml:LINE:COL: key: …`
        let positioned = error
            .split_once("wisp.yaml:")
            .and_then(|(_, rest)| rest.split(':').nth(1))
            .is_some_and(|column| column.parse::<u32>().is_ok());
        if !positioned {
            failures.push(format!("{what}: no line:column in: {error}"));
        }
        if !names_key || !error.contains(fragment) {
            failures.push(format!(
                "{what}: want `{key}` and {fragment:?}, got: {error}"
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn syntax_and_unknown_key_errors_give_line_and_column() {
    let error = error_of(&format!("{MINIMAL}  adress: x:1\n"));
    assert!(
        error.contains("wisp.yaml:3:3: upstream.adress: unknown field `adress`"),
        "{error}"
    );
    let error = error_of("upstream: [\n");
    assert!(error.contains("wisp.yaml:"), "{error}");
    assert!(
        error
            .split(':')
            .nth(1)
            .is_some_and(|line| line.parse::<u32>().is_ok()),
        "{error}"
    );
}

#[test]
fn validation_errors_are_the_invalid_variant_with_the_key() {
    match load(&with_issuer("    claims: { iss: /x }\n")) {
        Err(ConfigError::Invalid { key, .. }) => assert_eq!(key, "issuers[0].claims.iss"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn control_characters_in_messages_are_escaped() {
    let error = error_of(&format!("{MINIMAL}listen: \"\\e[31m\"\n"));
    assert!(!error.contains('\u{1b}'), "{error:?}");
}

#[test]
fn a_decision_service_alone_is_decision_only_mode() {
    let config = load("decision_service: {}\n").unwrap();
    assert!(!config.serves_proxy());
    assert_eq!(config.mode(), "decision service");
    let service = config.decision_service.unwrap();
    assert_eq!(service.listen, "127.0.0.1:9191".parse().unwrap());
    assert_eq!(service.tls, None);
    assert!(!service.exposed());
}

#[test]
fn a_decision_service_beside_the_proxy_loads_with_mtls() {
    let fixture = Fixture::new();
    let dir = fixture.dir.path();
    let config = fixture
        .load(&format!(
            "{MINIMAL}decision_service:\n  listen: 0.0.0.0:9191\n  \
             tls: {{ cert: svid.pem, key: svid_key.pem, client_ca: bundle.pem }}\n"
        ))
        .unwrap();
    assert_eq!(config.mode(), "proxy + decision service");
    let service = config.decision_service.as_ref().unwrap();
    assert_eq!(
        service.tls,
        Some(DecisionTlsConfig {
            cert: dir.join("svid.pem"),
            key: dir.join("svid_key.pem"),
            client_ca: dir.join("bundle.pem"),
        })
    );
    assert!(!service.exposed(), "mTLS: not exposed");
    assert!(config.warnings().is_empty());
}

#[test]
fn a_remote_decision_service_without_mtls_loads_with_a_warning() {
    let config = load(&format!(
        "{MINIMAL}decision_service: {{ listen: 0.0.0.0:9191 }}\n"
    ))
    .unwrap();
    let warnings = config.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("decision_service.listen: 0.0.0.0:9191"),
        "{warnings:?}"
    );
    assert_eq!(load(MINIMAL).unwrap().mode(), "proxy");
}

#[test]
fn decision_only_mode_takes_mtls_callers_from_the_calling_proxy() {
    // No listener of wisp's sees client certificates: Envoy's principal does.
    let config = load(&format!(
        "decision_service: {{}}\nauthn: {{ require: mtls }}\n{TRUST_DOMAINS}"
    ))
    .unwrap();
    assert_eq!(config.authn.require, RequireCredentials::Mtls);
}

#[test]
fn an_empty_file_asks_for_the_upstream() {
    assert!(error_of("").contains("upstream.address: required"));
    assert!(error_of("# only a comment\n").contains("upstream.address: required"));
}

#[test]
fn load_reports_a_missing_file() {
    let error = Config::load(Path::new("/nonexistent/wisp.yaml")).unwrap_err();
    assert!(matches!(error, ConfigError::Io { .. }), "{error}");
    assert!(
        error.to_string().starts_with("/nonexistent/wisp.yaml: "),
        "{error}"
    );
}

/// The repo layout around a shipped config: `<root>/config/<name>` next to
/// `<root>/policies/wisp.cedarschema`.
fn load_shipped(name: &str, text: &str) -> Result<Config, ConfigError> {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("config")).unwrap();
    std::fs::create_dir_all(root.path().join("policies")).unwrap();
    std::fs::write(root.path().join("policies/wisp.cedarschema"), "").unwrap();
    Config::from_yaml(text, &root.path().join("config").join(name))
}

#[test]
fn the_reference_config_loads() {
    let config = load_shipped("wisp.yaml", include_str!("../../config/wisp.yaml")).unwrap();
    assert_eq!(config.listen, "0.0.0.0:8080".parse().unwrap());
    assert!(config
        .policies
        .schema
        .ends_with("policies/wisp.cedarschema"));
    assert!(!config.issuers.is_empty());
}

/// A self-signed CA certificate (PEM) named `name`.
fn ca_pem(name: &str) -> String {
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().unwrap();
    params.self_signed(&key).unwrap().pem()
}

#[test]
fn jwks_ca_and_bearer_token_file_load_relative_to_the_config_file() {
    let fixture = Fixture::new();
    let bundle = format!("{}{}", ca_pem("one"), ca_pem("two"));
    std::fs::write(fixture.dir.path().join("cluster-ca.pem"), bundle).unwrap();
    std::fs::write(fixture.dir.path().join("token"), "s3cr3t-token\n").unwrap();
    let yaml = with_issuer("").replace(
        "{ discovery: true }",
        "{ discovery: true, ca: cluster-ca.pem, bearer_token_file: token }",
    );
    let config = fixture.load(&yaml).unwrap();
    let fetch = &config.issuers[0].jwks_fetch;
    let ca = fetch.ca.as_ref().unwrap();
    assert_eq!(ca.path, fixture.dir.path().join("cluster-ca.pem"));
    assert_eq!(ca.certificates.len(), 2);
    assert_eq!(
        fetch.bearer_token_file.as_deref(),
        Some(fixture.dir.path().join("token").as_path())
    );
    // Debug shows the files, never the token nor the certificates' bytes.
    let debug = format!("{config:?}");
    assert!(!debug.contains("s3cr3t"), "{debug}");
    assert!(debug.contains("certificates: 2"), "{debug}");

    // Both are part of the issuer's rules (its hash keys the token cache).
    let plain = fixture.load(&with_issuer("")).unwrap();
    assert_eq!(plain.issuers[0].jwks_fetch, JwksFetch::default());
    let hash = |issuer: &IssuerConfig| {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        issuer.hash(&mut hasher);
        hasher.finish()
    };
    assert_ne!(hash(&config.issuers[0]), hash(&plain.issuers[0]));
    std::fs::write(fixture.dir.path().join("cluster-ca.pem"), ca_pem("three")).unwrap();
    let rotated = fixture.load(&yaml).unwrap();
    assert_ne!(hash(&config.issuers[0]), hash(&rotated.issuers[0]));
}

#[test]
fn the_kubernetes_example_loads_when_its_pod_files_exist() {
    let root = tempfile::tempdir().unwrap();
    let ca = root.path().join("ca.crt");
    let token = root.path().join("token");
    std::fs::write(&ca, ca_pem("kubernetes")).unwrap();
    std::fs::write(&token, "t").unwrap();
    // The example's in-pod paths, moved under the temporary root.
    let text = include_str!("../../config/kubernetes.yaml")
        .replace(
            "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
            &ca.display().to_string(),
        )
        .replace(
            "/var/run/wisp/api-token/token",
            &token.display().to_string(),
        );
    let config = load_shipped("kubernetes.yaml", &text).unwrap();
    let issuer = &config.issuers[0];
    assert_eq!(issuer.preset, Preset::Kubernetes);
    assert_eq!(
        issuer.issuer,
        "https://kubernetes.default.svc.cluster.local"
    );
    assert_eq!(issuer.jwks, JwksSource::Discovery);
    assert_eq!(issuer.jwks_fetch.ca.as_ref().unwrap().path, ca);
    assert_eq!(issuer.jwks_fetch.bearer_token_file.as_ref(), Some(&token));
    assert_eq!(issuer.audiences, ["orders"]);
    assert!(config.routes.public.is_empty(), "probes use the admin port");

    let unchanged = load_shipped(
        "kubernetes.yaml",
        include_str!("../../config/kubernetes.yaml"),
    );
    let error = unchanged.unwrap_err().to_string();
    assert!(error.contains("issuers[0].jwks.ca"), "{error}");
}

#[test]
fn the_spiffe_example_loads_when_its_files_exist() {
    let root = tempfile::tempdir().unwrap();
    let spire = root.path().join("run/spire");
    std::fs::create_dir_all(&spire).unwrap();
    for pem in ["svid.pem", "svid_key.pem", "bundle.pem"] {
        std::fs::write(spire.join(pem), "").unwrap();
    }
    // The example's absolute paths, moved under the temporary root.
    let text = include_str!("../../config/spiffe.yaml")
        .replace("/run/spire/", &format!("{}/", spire.display()));
    let config = load_shipped("spiffe.yaml", &text).unwrap();
    let tls = config.tls.unwrap();
    assert_eq!(tls.client_auth, ClientAuth::Required);
    assert_eq!(tls.cert, spire.join("svid.pem"));
    assert_eq!(config.trust_domains, ["example.org"]);
    assert_eq!(config.authn.require, RequireCredentials::Any);
    let issuer = &config.issuers[0];
    assert_eq!(issuer.preset, Preset::SpiffeJwt);
    assert_eq!(issuer.issuer, "https://oidc-discovery.example.org");
}

proptest! {
    #[test]
    fn from_yaml_never_panics_on_arbitrary_text(text in "\\PC{0,200}") {
        let _ = Config::from_yaml(&text, Path::new("/nonexistent/wisp.yaml"));
    }

    #[test]
    fn from_yaml_never_panics_on_yaml_shaped_text(
        lines in prop::collection::vec(
            (0usize..3, prop::sample::select(vec![
                "listen", "upstream", "address", "issuers", "- name", "jwks", "refresh",
                "claims", "routes", "public", "tls", "threads", "headers", "identity", "x",
                "cert", "key", "client_ca", "client_auth", "server_name", "trust_domains",
                "trust_bundles", "trust_domain",
            ]), "[ -~]{0,16}"),
            0..12,
        )
    ) {
        let text: String = lines
            .iter()
            .map(|(indent, key, value)| format!("{}{key}: {value}\n", "  ".repeat(*indent)))
            .collect();
        let _ = Config::from_yaml(&text, Path::new("/nonexistent/wisp.yaml"));
    }
}

#[test]
fn control_characters_in_unknown_keys_are_escaped() {
    let error = error_of(&format!("{MINIMAL}\"a\\e[2Jb\": 1\n"));
    assert!(!error.contains('\u{1b}'), "{error:?}");
    assert!(error.contains("a\\u{1b}[2Jb"), "{error}");
}

#[test]
fn every_conversion_problem_is_reported_in_one_run_in_file_order() {
    let yaml = "\
upstream:
  address: 127.0.0.1:8081
  connect_timeout: 0s
issuers:
  - name: k8s
    issuer: https://kubernetes.default.svc.cluster.local
    jwks: { file: nope.json }
    audiences: [orders, orders]
    algorithms: [RS256]
  - name: 'bad name'
    issuer: https://b.example
    jwks: { discovery: true }
    algorithms: [ES256]
policies: { dir: nowhere }
routes: { public: [healthz, /ok, 'a'] }
";
    let errors = Fixture::new()
        .load_all(yaml)
        .expect_err("invalid")
        .to_string();
    // `…/wisp.yaml:LINE:COL: key: message` → `LINE:COL: key`
    let found: Vec<String> = errors
        .lines()
        .map(|line| line.split_once("wisp.yaml:").map_or(line, |(_, rest)| rest))
        .map(|rest| rest.split(": ").take(2).collect::<Vec<_>>().join(": "))
        .collect();
    assert_eq!(
        found,
        [
            "3:3: upstream.connect_timeout",
            "7:13: issuers[0].jwks.file",
            "8:25: issuers[0].audiences[1]",
            "10:5: issuers[1].name",
            "10:5: issuers[1].audiences",
            "14:13: policies.dir",
            "15:20: routes.public[0]",
            "15:34: routes.public[2]",
        ],
        "\n{errors}"
    );
    // `load` and the reload path report the first of them.
    let first = Fixture::new().load(yaml).unwrap_err().to_string();
    assert!(
        first.ends_with("wisp.yaml:3:3: upstream.connect_timeout: must be longer than 0s"),
        "{first}"
    );
}

#[test]
fn a_yaml_syntax_error_stops_at_the_first_problem() {
    let errors = Fixture::new()
        .load_all("upstream: { address: 127.0.0.1:1, tls: [\nthreads: 0\n")
        .unwrap_err();
    assert_eq!(errors.errors().len(), 1, "{errors}");
    assert!(
        matches!(errors.errors()[0], ConfigError::Parse { .. }),
        "{errors}"
    );
}
