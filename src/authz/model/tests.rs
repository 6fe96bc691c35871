//! The schema `wisp schema` prints, and what `wisp check` finds between the
//! config, the schema and the policies.

use std::path::Path;

use super::literals::workload_literals;
use super::*;

const SHIPPED_SCHEMA: &str = include_str!("../../../policies/wisp.cedarschema");

/// A config directory: `wisp.yaml` (the text given), `policies/` with
/// `schema` and the policy files given.
struct Setup {
    dir: tempfile::TempDir,
    text: String,
}

impl Setup {
    fn new(issuers: &str, schema: &str, policies: &[(&str, &str)]) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("policies")).unwrap();
        std::fs::write(dir.path().join("policies/wisp.cedarschema"), schema).unwrap();
        for (name, text) in policies {
            std::fs::write(dir.path().join("policies").join(name), text).unwrap();
        }
        let text = format!(
            "upstream: {{ address: 127.0.0.1:1 }}\ntrust_domains: [example.org]\nissuers:\n{issuers}"
        );
        std::fs::write(dir.path().join("wisp.yaml"), &text).unwrap();
        Setup { dir, text }
    }

    fn config(&self) -> Config {
        Config::from_yaml(&self.text, &self.dir.path().join("wisp.yaml")).unwrap()
    }

    fn findings(&self) -> Vec<String> {
        let root = format!("{}/", self.dir.path().display());
        check_fit(&self.config(), &self.text)
            .iter()
            .map(|d| d.to_string().replace(&root, ""))
            .collect()
    }
}

fn issuer(name: &str, url: &str, preset: &str, extra: &str) -> String {
    format!(
        "  - name: {name}\n    issuer: {url}\n    preset: {preset}\n    jwks: {{ discovery: true }}\n    audiences: [orders]\n    algorithms: [RS256]\n{extra}"
    )
}

const K8S: &str = "https://kubernetes.default.svc.cluster.local";

fn every_preset() -> String {
    [
        issuer("g", "https://g.example", "generic", ""),
        issuer("t", "https://t.example", "tsiam", ""),
        issuer("k", K8S, "kubernetes", ""),
        issuer(
            "gh",
            "https://token.actions.githubusercontent.com",
            "github-actions",
            "",
        ),
        issuer("f", "https://oidc.fly.io/acme", "fly", ""),
        issuer("s", "https://oidc-discovery.example.org", "spiffe-jwt", ""),
        issuer(
            "az",
            "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0",
            "azure",
            "",
        ),
        issuer("gcp", "https://accounts.google.com", "gcp", ""),
    ]
    .concat()
}

fn json_of(schema: &str) -> Value {
    let (fragment, _) = cedar_policy::SchemaFragment::from_cedarschema_str(schema)
        .unwrap_or_else(|e| panic!("{e:?}\n{schema}"));
    fragment.to_json_value().unwrap()
}

#[test]
fn the_schema_for_every_preset_is_the_shipped_schema() {
    let setup = Setup::new(&every_preset(), SHIPPED_SCHEMA, &[]);
    let generated = schema_for(&setup.config());
    assert_eq!(json_of(&generated), json_of(SHIPPED_SCHEMA), "{generated}");
}

#[test]
fn the_schema_declares_mapped_claims_as_optional_strings_and_fits_its_config() {
    let extra = "    claims:\n      pod_uid: /kubernetes.io/pod/uid\n      team: /team\n      tags: /groups\n";
    let setup = Setup::new(&issuer("k", K8S, "kubernetes", extra), SHIPPED_SCHEMA, &[]);
    let generated = schema_for(&setup.config());
    assert!(
        generated.contains("  pod_uid?: String,   // ← /kubernetes.io/pod/uid\n"),
        "{generated}"
    );
    let attributes = workload_attributes(&generated).unwrap();
    assert_eq!(attributes["team"].cedar_type, "String");
    assert!(!attributes["team"].required);
    assert!(attributes.contains_key("namespace"));
    assert!(
        !attributes.contains_key("repository"),
        "only configured presets"
    );
    // Written back as the schema, it fits.
    std::fs::write(
        setup.dir.path().join("policies/wisp.cedarschema"),
        &generated,
    )
    .unwrap();
    assert_eq!(setup.findings(), Vec::<String>::new());
}

#[test]
fn a_mapping_the_schema_does_not_declare_is_reported_at_its_line() {
    let extra = "    claims:\n      pod_uid: /kubernetes.io/pod/uid\n";
    let setup = Setup::new(&issuer("k", K8S, "kubernetes", extra), SHIPPED_SCHEMA, &[]);
    assert_eq!(
        setup.findings(),
        [
            "wisp.yaml:11:7: issuers[0].claims.pod_uid: the schema's Workload does not declare \
          pod_uid; add `pod_uid?: String` to entity Workload in \
          policies/wisp.cedarschema, or run `wisp schema`"
        ]
    );
}

#[test]
fn a_preset_attribute_missing_or_of_another_type_is_reported_at_the_preset() {
    let schema = SHIPPED_SCHEMA
        .replace("  pod?: String,\n", "")
        .replace("namespace?: String", "namespace?: Long");
    let setup = Setup::new(&issuer("k", K8S, "kubernetes", ""), &schema, &[]);
    let findings = setup.findings();
    assert_eq!(findings.len(), 2, "{findings:#?}");
    assert!(findings[0].starts_with("wisp.yaml:6:5: issuers[0].preset: preset kubernetes sets `namespace` as a String, but the schema's Workload declares it `Long`"), "{findings:#?}");
    assert!(findings[1].contains("preset kubernetes sets `pod`, which the schema's Workload does not declare; add `pod?: String`"), "{findings:#?}");
}

#[test]
fn a_required_attribute_an_issuer_never_sets_is_reported_in_the_schema() {
    let schema = SHIPPED_SCHEMA.replace("  namespace?: String,", "  namespace: String,");
    let issuers = [
        issuer("k", K8S, "kubernetes", ""),
        issuer("g", "https://g.example", "generic", ""),
    ]
    .concat();
    let setup = Setup::new(&issuers, &schema, &[]);
    let findings = setup.findings();
    let line = SHIPPED_SCHEMA
        .lines()
        .position(|l| l.contains("namespace?"))
        .unwrap()
        + 1;
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert!(
        findings[0].starts_with(&format!(
            "policies/wisp.cedarschema:{line}:3: entity Workload requires `namespace`, but issuers[1] (g) never set it"
        )),
        "{findings:#?}"
    );
    assert!(
        findings[0].ends_with("declare it optional: `namespace?: String`"),
        "{findings:#?}"
    );
}

#[test]
fn a_schema_without_a_built_in_attribute_is_reported() {
    let schema = SHIPPED_SCHEMA.replace("  authn: String,", "");
    let setup = Setup::new(
        &issuer("g", "https://g.example", "generic", ""),
        &schema,
        &[],
    );
    let findings = setup.findings();
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert!(
        findings[0].contains("entity Workload must declare `authn: String`"),
        "{findings:#?}"
    );
}

#[test]
fn a_workload_literal_no_caller_can_have_is_reported_with_the_likely_uid() {
    let policy = "// Workload::\"in a comment\"\n@id(\"a\")\npermit (principal == Workload::\"system:serviceaccount:shop:frontend\", action, resource);\n\
                  @id(\"b\")\npermit (principal, action, resource) when { principal in [Workload::\"https://kubernetes.default.svc.cluster.local#system:serviceaccount:shop:web\", Workload::\"spiffe://other.org/web\"] };\n";
    let setup = Setup::new(
        &issuer("k", K8S, "kubernetes", ""),
        SHIPPED_SCHEMA,
        &[("p.cedar", policy)],
    );
    let findings = setup.findings();
    assert_eq!(findings.len(), 2, "{findings:#?}");
    assert_eq!(
        findings[0],
        "policies/p.cedar:3:22: principal Workload::\"system:serviceaccount:shop:frontend\" never \
         matches: a caller's uid is `<iss>#<sub>` for tokens (iss one of the configured issuers) \
         or its SPIFFE ID for certificate callers; did you mean \
         Workload::\"https://kubernetes.default.svc.cluster.local#system:serviceaccount:shop:frontend\", \
         or principal.sub == \"system:serviceaccount:shop:frontend\"?"
    );
    assert!(
        findings[1].starts_with("policies/p.cedar:5:"),
        "{findings:#?}"
    );
    assert!(
        findings[1].contains("trust domain `other.org` is not in trust_domains"),
        "{findings:#?}"
    );
}

#[test]
fn workload_literals_skip_comments_strings_and_other_namespaces() {
    let text = "// Workload::\"c\"\nwhen { principal.sub == \"Workload::\\\"s\\\"\" && principal in Workload :: \"a\\\"b\" && principal in Ns::Workload::\"n\" }";
    let found: Vec<String> = workload_literals(text)
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    assert_eq!(found, ["a\"b"]);
}

#[test]
fn attribute_offsets_point_at_the_declaration() {
    let text = "// sub: in a comment\nentity Workload {\n  sub: String,\n  \"ref\"?: String,\n  subject?: String\n};";
    let offset = |name| attribute_offset(text, name).map(|o| &text[o..o + 5]);
    assert_eq!(offset("sub"), Some("sub: "));
    assert_eq!(offset("ref"), Some("\"ref\""));
    assert_eq!(offset("subject"), Some("subje"));
    assert_eq!(attribute_offset("", "sub"), None);
    let _ = Path::new("");
}
