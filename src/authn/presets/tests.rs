use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::*;
use crate::config::{Algorithm, JwksSource};

fn issuer(preset: Preset, mappings: &[(&str, &str)]) -> IssuerConfig {
    IssuerConfig {
        name: "test".into(),
        issuer: "https://issuer.example".into(),
        preset,
        jwks: JwksSource::Discovery,
        jwks_fetch: Default::default(),
        refresh: Duration::from_secs(300),
        max_stale: Duration::from_secs(3600),
        refetch_min_interval: Duration::from_secs(30),
        audiences: vec!["orders".into()],
        algorithms: vec![Algorithm::ES256],
        leeway: Duration::from_secs(30),
        max_lifetime: Duration::from_secs(86400),
        trust_domain: None,
        claims: mappings
            .iter()
            .map(|(attribute, pointer)| ClaimMapping {
                attribute: (*attribute).into(),
                pointer: (*pointer).into(),
            })
            .collect(),
    }
}

fn claims(value: Value) -> Claims {
    match value {
        Value::Object(map) => map.into(),
        _ => panic!("test claims must be an object"),
    }
}

fn build(preset: Preset, mappings: &[(&str, &str)], token: Value) -> Result<Identity, AuthnError> {
    identity(
        &issuer(preset, mappings),
        &claims(token),
        1_735_704_000,
        &trust_domains(),
    )
}

fn trust_domains() -> Vec<String> {
    vec!["example.org".into(), "prod.example.org".into()]
}

fn attr(identity: &Identity, name: &str) -> Option<AttrValue> {
    identity.attrs.get(name).cloned()
}

fn string(s: &str) -> Option<AttrValue> {
    Some(AttrValue::String(s.into()))
}

#[track_caller]
fn assert_invalid(
    result: Result<Identity, AuthnError>,
    expected_claim: &str,
    detail_contains: &str,
) {
    match result {
        Err(AuthnError::InvalidClaim { claim, detail }) => {
            assert_eq!(claim, expected_claim, "detail: {detail}");
            assert!(
                detail.contains(detail_contains),
                "detail {detail:?} lacks {detail_contains:?}"
            );
        }
        other => panic!("expected InvalidClaim({expected_claim}), got {other:?}"),
    }
}

// ---- generic ----

#[test]
fn generic_builds_uid_from_iss_and_sub_and_has_no_tags() {
    let token = json!({"iss": "https://issuer.example", "sub": "acme:frontend", "aud": "orders", "tags": ["x"]});
    let id = build(Preset::Generic, &[], token).unwrap();
    assert_eq!(id.uid(), "https://issuer.example#acme:frontend");
    assert_eq!(id.sub(), "acme:frontend");
    assert_eq!(id.iss(), "https://issuer.example");
    assert_eq!(&*id.issuer_name, "test");
    assert_eq!(id.authn, AuthnMethod::Jwt);
    assert_eq!(id.expires_at, 1_735_704_000);
    assert!(id.tags().len() == 0);
    assert!(id.attrs.is_empty());
}

#[test]
fn rejects_missing_or_non_string_sub_and_iss() {
    assert_invalid(
        build(Preset::Generic, &[], json!({"iss": "i"})),
        "/sub",
        "missing",
    );
    assert_invalid(
        build(Preset::Generic, &[], json!({"iss": "i", "sub": 7})),
        "/sub",
        "string",
    );
    assert_invalid(
        build(Preset::Generic, &[], json!({"sub": "s"})),
        "/iss",
        "missing",
    );
    assert_invalid(
        build(Preset::Generic, &[], json!({"iss": "", "sub": "s"})),
        "/iss",
        "empty",
    );
}

#[test]
fn rejects_sub_iss_and_tags_that_cannot_be_header_values() {
    for bad in [
        "a\nb",
        "a\rb",
        "a\0b",
        "caf\u{e9}",
        "tab\there",
        " lead",
        "trail ",
        "del\u{7f}",
    ] {
        assert_invalid(
            build(Preset::Generic, &[], json!({"iss": "i", "sub": bad})),
            "/sub",
            "",
        );
        assert_invalid(
            build(Preset::Generic, &[], json!({"iss": bad, "sub": "s"})),
            "/iss",
            "",
        );
        let token = json!({"iss": "i", "sub": "s", "t": [bad]});
        assert_invalid(build(Preset::Generic, &[("tags", "/t")], token), "/t", "");
    }
    let id = build(
        Preset::Generic,
        &[],
        json!({"iss": "i", "sub": "repo:o/r:environment:Prod Env"}),
    )
    .unwrap();
    assert_eq!(id.sub(), "repo:o/r:environment:Prod Env");
}

#[test]
fn rejects_tags_containing_commas_or_empty_tags() {
    let token = json!({"iss": "i", "sub": "s", "t": ["a,b"]});
    assert_invalid(
        build(Preset::Generic, &[("tags", "/t")], token),
        "/t",
        "','",
    );
    let token = json!({"iss": "i", "sub": "s", "t": [""]});
    assert_invalid(
        build(Preset::Generic, &[("tags", "/t")], token),
        "/t",
        "empty",
    );
}

// ---- claims: mapping ----

#[test]
fn maps_each_json_type_to_its_cedar_type() {
    let token = json!({
        "iss": "i", "sub": "s",
        "name": "web", "count": 42, "neg": -1, "admin": true, "groups": ["a", "b"], "empty": [],
        "meta": {"team": "shop", "level": 3, "on": false, "labels": ["x"], "inner": {"k": "v"}}
    });
    let mappings = [
        ("name", "/name"),
        ("count", "/count"),
        ("neg", "/neg"),
        ("admin", "/admin"),
        ("groups", "/groups"),
        ("empty", "/empty"),
        ("meta", "/meta"),
        ("team", "/meta/team"),
    ];
    let id = build(Preset::Generic, &mappings, token).unwrap();
    assert_eq!(attr(&id, "name"), string("web"));
    assert_eq!(attr(&id, "count"), Some(AttrValue::Long(42)));
    assert_eq!(attr(&id, "neg"), Some(AttrValue::Long(-1)));
    assert_eq!(attr(&id, "admin"), Some(AttrValue::Bool(true)));
    assert_eq!(
        attr(&id, "groups"),
        Some(AttrValue::Set(vec!["a".into(), "b".into()]))
    );
    assert_eq!(attr(&id, "empty"), Some(AttrValue::Set(vec![])));
    assert_eq!(attr(&id, "team"), string("shop"));
    let inner = BTreeMap::from([("k".to_owned(), AttrValue::String("v".into()))]);
    let meta = BTreeMap::from([
        ("team".to_owned(), AttrValue::String("shop".into())),
        ("level".to_owned(), AttrValue::Long(3)),
        ("on".to_owned(), AttrValue::Bool(false)),
        ("labels".to_owned(), AttrValue::Set(vec!["x".into()])),
        ("inner".to_owned(), AttrValue::Record(inner)),
    ]);
    assert_eq!(attr(&id, "meta"), Some(AttrValue::Record(meta)));
}

#[test]
fn rejects_mapped_claims_that_cedar_cannot_hold_naming_attribute_and_pointer() {
    let token = json!({
        "iss": "i", "sub": "s",
        "null": null, "float": 1.5, "big": 18_446_744_073_709_551_615_u64, "mixed": ["a", 1],
        "objects": [{"a": "b"}], "nested": {"ok": "x", "bad": null}
    });
    for (pointer, why) in [
        ("/null", "null"),
        ("/float", "not an integer"),
        ("/big", "not an integer"),
        ("/mixed", "not all strings"),
        ("/objects", "not all strings"),
        ("/nested", "field \"bad\": null"),
    ] {
        let result = build(Preset::Generic, &[("attr", pointer)], token.clone());
        assert_invalid(result, pointer, why);
        let result = build(Preset::Generic, &[("attr", pointer)], token.clone());
        assert_invalid(result, pointer, "`attr`");
    }
}

#[test]
fn a_pointer_that_resolves_to_nothing_leaves_the_attribute_absent() {
    let token = json!({"iss": "i", "sub": "s", "a": {"b": "c"}, "list": ["x"]});
    let mappings = [
        ("m1", "/missing"),
        ("m2", "/a/missing"),
        ("m3", "/a/b/c"),
        ("m4", "/list/5"),
        ("tags", "/nope"),
    ];
    let id = build(Preset::Generic, &mappings, token).unwrap();
    assert!(id.attrs.is_empty(), "{:?}", id.attrs);
    assert!(id.tags().len() == 0);
}

#[test]
fn resolves_escaped_pointers_into_claim_names_with_dots_and_slashes() {
    let token = json!({
        "iss": "i", "sub": "s",
        "kubernetes.io": {"namespace": "shop"},
        "italypaleale.me/tsiam": {"name": "web-1", "tags": ["tag:web"]},
        "a~b": {"c/d": "tilde-and-slash"},
        "list": ["first", "second"]
    });
    let mappings = [
        ("ns", "/kubernetes.io/namespace"),
        ("node", "/italypaleale.me~1tsiam/name"),
        ("odd", "/a~0b/c~1d"),
        ("second", "/list/1"),
        ("tags", "/italypaleale.me~1tsiam/tags"),
    ];
    let id = build(Preset::Generic, &mappings, token).unwrap();
    assert_eq!(attr(&id, "ns"), string("shop"));
    assert_eq!(attr(&id, "node"), string("web-1"));
    assert_eq!(attr(&id, "odd"), string("tilde-and-slash"));
    assert_eq!(attr(&id, "second"), string("second"));
    assert_eq!(id.tags().collect::<Vec<_>>(), ["tag:web"]);
}

#[test]
fn a_tags_mapping_must_yield_an_array_of_strings() {
    for bad in [json!("tag:a"), json!(["a", 1]), json!({"a": "b"}), json!(3)] {
        let token = json!({"iss": "i", "sub": "s", "t": bad});
        assert_invalid(
            build(Preset::Generic, &[("tags", "/t")], token),
            "/t",
            "tags",
        );
    }
    let token = json!({"iss": "i", "sub": "s", "t": ["tag:a", "tag:b"]});
    let id = build(Preset::Generic, &[("tags", "/t")], token).unwrap();
    assert_eq!(id.tags().collect::<Vec<_>>(), ["tag:a", "tag:b"]);
    assert!(!id.attrs.contains_key("tags"));
}

#[test]
fn config_mappings_override_preset_attributes_of_the_same_name() {
    let mut token = github_token();
    token["custom_ref"] = json!("refs/tags/v1");
    let id = build(
        Preset::GithubActions,
        &[("ref", "/custom_ref"), ("environment", "/none")],
        token,
    )
    .unwrap();
    assert_eq!(attr(&id, "ref"), string("refs/tags/v1"));
    assert_eq!(attr(&id, "environment"), None);
}

// ---- tsiam ----

fn tsiam_object() -> Value {
    json!({
        "nodeId": "nABC123CNTRL",
        "name": "web-1.tailnet-name.ts.net",
        "hostname": "web-1",
        "ip4": "100.64.0.1",
        "ip6": "fd7a:115c:a1e0::1",
        "userLoginName": "",
        "tags": ["tag:web", "tag:prod"]
    })
}

fn tsiam_token(claim_name: &str) -> Value {
    let mut token = json!({
        "iss": "https://tsiam.example.ts.net", "sub": "nABC123CNTRL", "aud": ["orders"],
        "iat": 1_735_700_600, "nbf": 1_735_700_600, "exp": 1_735_704_000, "jti": "ABCDEFGH"
    });
    token[claim_name] = tsiam_object();
    token
}

#[test]
fn tsiam_maps_node_attributes_and_tags_from_either_claim_spelling() {
    for claim_name in ["italypaleale.me/tsiam", "tsiam"] {
        let id = build(Preset::Tsiam, &[], tsiam_token(claim_name)).unwrap();
        assert_eq!(attr(&id, "node_id"), string("nABC123CNTRL"), "{claim_name}");
        assert_eq!(attr(&id, "node_name"), string("web-1.tailnet-name.ts.net"));
        assert_eq!(attr(&id, "ip4"), string("100.64.0.1"));
        assert_eq!(attr(&id, "ip6"), string("fd7a:115c:a1e0::1"));
        assert_eq!(id.tags().collect::<Vec<_>>(), ["tag:web", "tag:prod"]);
        assert_eq!(id.attrs.len(), 4, "{:?}", id.attrs);
    }
}

#[test]
fn tsiam_accepts_both_spellings_when_equal_and_rejects_them_when_different() {
    let mut token = tsiam_token("italypaleale.me/tsiam");
    token["tsiam"] = tsiam_object();
    assert!(build(Preset::Tsiam, &[], token.clone()).is_ok());
    token["tsiam"]["tags"] = json!(["tag:admin"]);
    assert_invalid(
        build(Preset::Tsiam, &[], token),
        "/italypaleale.me~1tsiam",
        "differ",
    );
}

#[test]
fn tsiam_without_tags_has_no_tags() {
    let mut token = tsiam_token("italypaleale.me/tsiam");
    token["italypaleale.me/tsiam"]
        .as_object_mut()
        .unwrap()
        .remove("tags");
    let id = build(Preset::Tsiam, &[], token).unwrap();
    assert!(id.tags().len() == 0);
}

#[test]
fn tsiam_rejects_a_missing_claim_object_and_wrong_field_types() {
    let token = json!({"iss": "i", "sub": "s"});
    assert_invalid(
        build(Preset::Tsiam, &[], token),
        "/italypaleale.me~1tsiam",
        "missing",
    );
    let token = json!({"iss": "i", "sub": "s", "tsiam": "node"});
    assert_invalid(build(Preset::Tsiam, &[], token), "/tsiam", "object");

    let mut token = tsiam_token("italypaleale.me/tsiam");
    token["italypaleale.me/tsiam"]["tags"] = json!("tag:web");
    assert_invalid(
        build(Preset::Tsiam, &[], token),
        "/italypaleale.me~1tsiam/tags",
        "array of strings",
    );
    let mut token = tsiam_token("tsiam");
    token["tsiam"]["nodeId"] = json!(12345);
    assert_invalid(build(Preset::Tsiam, &[], token), "/tsiam/nodeId", "string");
    let mut token = tsiam_token("tsiam");
    token["tsiam"]["tags"] = json!(["tag:a,tag:b"]);
    assert_invalid(build(Preset::Tsiam, &[], token), "/tsiam/tags", "','");
}

// ---- kubernetes ----

fn projected_token() -> Value {
    json!({
        "aud": ["orders"], "exp": 1_735_704_000, "iat": 1_735_700_400, "nbf": 1_735_700_400,
        "iss": "https://kubernetes.default.svc.cluster.local",
        "jti": "4f1f9a8e-5a4e-4bb5-9d3c-6f7f3b1f0b0e",
        "kubernetes.io": {
            "namespace": "shop",
            "node": {"name": "node-1", "uid": "646e7c5e-32d6-4d42-9dbd-e504e6cbe6b1"},
            "pod": {"name": "frontend-7d9f8b6c5-x2x4q", "uid": "900f80ed-bafe-49f0-9ae2-c5f0a3ac2cbe"},
            "serviceaccount": {"name": "frontend", "uid": "a709ef71-30e2-489a-bd19-ade97031b9db"},
            "warnafter": 1_735_704_007
        },
        "sub": "system:serviceaccount:shop:frontend"
    })
}

fn legacy_token() -> Value {
    json!({
        "iss": "kubernetes/serviceaccount",
        "kubernetes.io/serviceaccount/namespace": "shop",
        "kubernetes.io/serviceaccount/secret.name": "frontend-token-pnj77",
        "kubernetes.io/serviceaccount/service-account.name": "frontend",
        "kubernetes.io/serviceaccount/service-account.uid": "a709ef71-30e2-489a-bd19-ade97031b9db",
        "sub": "system:serviceaccount:shop:frontend"
    })
}

#[test]
fn kubernetes_maps_a_projected_token() {
    let id = build(Preset::Kubernetes, &[], projected_token()).unwrap();
    assert_eq!(attr(&id, "namespace"), string("shop"));
    assert_eq!(attr(&id, "service_account"), string("frontend"));
    assert_eq!(attr(&id, "pod"), string("frontend-7d9f8b6c5-x2x4q"));
    assert!(id.tags().len() == 0);
}

#[test]
fn kubernetes_maps_a_projected_token_not_bound_to_a_pod() {
    let mut token = projected_token();
    token["kubernetes.io"]
        .as_object_mut()
        .unwrap()
        .remove("pod");
    let id = build(Preset::Kubernetes, &[], token).unwrap();
    assert_eq!(attr(&id, "pod"), None);
    assert_eq!(attr(&id, "service_account"), string("frontend"));
}

#[test]
fn kubernetes_maps_a_legacy_secret_token() {
    let id = build(Preset::Kubernetes, &[], legacy_token()).unwrap();
    assert_eq!(attr(&id, "namespace"), string("shop"));
    assert_eq!(attr(&id, "service_account"), string("frontend"));
    assert_eq!(attr(&id, "pod"), None);
    assert_eq!(id.iss(), "kubernetes/serviceaccount");
}

#[test]
fn kubernetes_rejects_a_sub_of_the_wrong_shape() {
    for sub in [
        "frontend",
        "system:serviceaccount:shop",
        "system:serviceaccount::frontend",
        "system:serviceaccount:shop:",
        "system:serviceaccount:shop:front:end",
        "system:node:shop:frontend",
    ] {
        let mut token = projected_token();
        token["sub"] = json!(sub);
        assert_invalid(
            build(Preset::Kubernetes, &[], token),
            "/sub",
            "system:serviceaccount:",
        );
    }
}

#[test]
fn kubernetes_rejects_a_sub_that_disagrees_with_the_claims() {
    for sub in [
        "system:serviceaccount:other:frontend",
        "system:serviceaccount:shop:admin",
    ] {
        let mut token = projected_token();
        token["sub"] = json!(sub);
        assert_invalid(
            build(Preset::Kubernetes, &[], token),
            "/sub",
            "shop/frontend",
        );
        let mut token = legacy_token();
        token["sub"] = json!(sub);
        assert_invalid(
            build(Preset::Kubernetes, &[], token),
            "/sub",
            "shop/frontend",
        );
    }
}

#[test]
fn kubernetes_rejects_missing_or_mistyped_service_account_claims() {
    let token = json!({"iss": "i", "sub": "system:serviceaccount:shop:frontend"});
    assert_invalid(
        build(Preset::Kubernetes, &[], token),
        "/kubernetes.io",
        "neither",
    );

    let mut token = projected_token();
    token["kubernetes.io"]["namespace"] = json!(["shop"]);
    assert_invalid(
        build(Preset::Kubernetes, &[], token),
        "/kubernetes.io/namespace",
        "string",
    );
    let mut token = projected_token();
    token["kubernetes.io"]
        .as_object_mut()
        .unwrap()
        .remove("serviceaccount");
    assert_invalid(
        build(Preset::Kubernetes, &[], token),
        "/kubernetes.io/serviceaccount",
        "missing",
    );
    let mut token = projected_token();
    token["kubernetes.io"]["pod"] = json!("frontend");
    assert_invalid(
        build(Preset::Kubernetes, &[], token),
        "/kubernetes.io/pod",
        "object",
    );

    let mut token = legacy_token();
    token
        .as_object_mut()
        .unwrap()
        .remove("kubernetes.io/serviceaccount/service-account.name");
    let pointer = "/kubernetes.io~1serviceaccount~1service-account.name";
    assert_invalid(build(Preset::Kubernetes, &[], token), pointer, "missing");
}

#[test]
fn kubernetes_rejects_projected_and_legacy_claims_naming_different_accounts() {
    let mut token = projected_token();
    for (key, value) in claims(legacy_token()).iter() {
        if key.starts_with("kubernetes.io/") {
            token[key] = value.clone();
        }
    }
    assert!(build(Preset::Kubernetes, &[], token.clone()).is_ok());
    token["kubernetes.io/serviceaccount/namespace"] = json!("other");
    assert_invalid(
        build(Preset::Kubernetes, &[], token),
        "/kubernetes.io",
        "different",
    );
}

// ---- github-actions ----

fn github_token() -> Value {
    json!({
        "jti": "example-id", "iss": "https://token.actions.githubusercontent.com",
        "aud": "https://github.com/octo-org",
        "sub": "repo:octo-org/octo-repo:environment:prod",
        "environment": "prod", "ref": "refs/heads/main", "sha": "example-sha",
        "repository": "octo-org/octo-repo", "repository_owner": "octo-org",
        "actor_id": "12", "repository_visibility": "private", "repository_id": "74",
        "repository_owner_id": "65", "run_id": "example-run-id", "run_number": "10",
        "run_attempt": "2", "runner_environment": "github-hosted", "actor": "octocat",
        "workflow": "example-workflow", "head_ref": "", "base_ref": "",
        "event_name": "workflow_dispatch", "ref_type": "branch",
        "workflow_ref": "octo-org/octo-repo/.github/workflows/deploy.yml@refs/heads/main",
        "job_workflow_ref": "octo-org/octo-automation/.github/workflows/oidc.yml@refs/heads/main",
        "nbf": 1_632_492_967, "exp": 1_632_493_867, "iat": 1_632_493_567
    })
}

#[test]
fn github_actions_maps_repository_ref_environment_and_workflow_ref() {
    let id = build(Preset::GithubActions, &[], github_token()).unwrap();
    assert_eq!(attr(&id, "repository"), string("octo-org/octo-repo"));
    assert_eq!(attr(&id, "ref"), string("refs/heads/main"));
    assert_eq!(attr(&id, "environment"), string("prod"));
    assert_eq!(
        attr(&id, "workflow_ref"),
        string("octo-org/octo-repo/.github/workflows/deploy.yml@refs/heads/main")
    );
    assert_eq!(id.attrs.len(), 4);
}

#[test]
fn github_actions_without_an_environment_has_no_environment_attribute() {
    let mut token = github_token();
    token.as_object_mut().unwrap().remove("environment");
    token["sub"] = json!("repo:octo-org/octo-repo:ref:refs/heads/main");
    let id = build(Preset::GithubActions, &[], token).unwrap();
    assert_eq!(attr(&id, "environment"), None);
}

#[test]
fn github_actions_requires_a_string_repository() {
    let mut token = github_token();
    token.as_object_mut().unwrap().remove("repository");
    assert_invalid(
        build(Preset::GithubActions, &[], token),
        "/repository",
        "missing",
    );
    let mut token = github_token();
    token["repository"] = json!(74);
    assert_invalid(
        build(Preset::GithubActions, &[], token),
        "/repository",
        "string",
    );
    let mut token = github_token();
    token["ref"] = json!(null);
    assert_invalid(build(Preset::GithubActions, &[], token), "/ref", "null");
}

// ---- fly ----

fn fly_token() -> Value {
    json!({
        "app_id": "3671581", "app_name": "autumn-sun-5055", "aud": "https://fly.io/example",
        "exp": 1_735_704_000, "iat": 1_735_703_400, "nbf": 1_735_703_400,
        "image": "registry.fly.io/autumn-sun-5055:deployment-01H6M1",
        "image_digest": "sha256:0b2e5c4b7f0f8d7d6d1a9a2c3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f",
        "iss": "https://oidc.fly.io/example", "jti": "e0d4bd37-5b2f-4c43-a8b5-5f8c6f6e5f0c",
        "machine_id": "3d8d9d0d25e189", "machine_name": "nameless-water-3089",
        "machine_version": "01H6M1WGRA2EY4W3KX8HRRMKXE", "org_id": "29873298",
        "org_name": "example", "region": "iad",
        "sub": "example:autumn-sun-5055:3d8d9d0d25e189"
    })
}

#[test]
fn fly_maps_org_app_machine_region_and_image_digest() {
    let id = build(Preset::Fly, &[], fly_token()).unwrap();
    assert_eq!(attr(&id, "org"), string("example"));
    assert_eq!(attr(&id, "app"), string("autumn-sun-5055"));
    assert_eq!(attr(&id, "machine"), string("3d8d9d0d25e189"));
    assert_eq!(attr(&id, "region"), string("iad"));
    assert_eq!(
        attr(&id, "image_digest"),
        string("sha256:0b2e5c4b7f0f8d7d6d1a9a2c3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f")
    );
}

#[test]
fn fly_accepts_a_token_without_the_optional_claims() {
    let token = json!({"iss": "https://oidc.fly.io/example", "sub": "example:app:m1"});
    let id = build(Preset::Fly, &[], token).unwrap();
    assert!(id.attrs.is_empty());
}

#[test]
fn fly_rejects_a_sub_that_is_not_org_app_machine() {
    for sub in [
        "example",
        "example:autumn-sun-5055",
        "a:b:c:d",
        "example::3d8d9d0d25e189",
        ":a:b",
    ] {
        let mut token = fly_token();
        token["sub"] = json!(sub);
        assert_invalid(
            build(Preset::Fly, &[], token),
            "/sub",
            "<org>:<app>:<machine>",
        );
    }
}

#[test]
fn fly_rejects_a_sub_that_disagrees_with_the_claims() {
    for (claim, value) in [
        ("org_name", "other"),
        ("app_name", "other-app"),
        ("machine_id", "ffff"),
    ] {
        let mut token = fly_token();
        token[claim] = json!(value);
        assert_invalid(build(Preset::Fly, &[], token), "/sub", claim);
    }
    let mut token = fly_token();
    token["region"] = json!(["iad"]);
    assert_invalid(build(Preset::Fly, &[], token), "/region", "string");
}

// ---- azure ----

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

/// A v1.0 managed-identity access token (user-assigned identity), with the
/// claims Entra ID emits for one.
fn azure_v1_token() -> Value {
    json!({
        "aud": "api://orders", "iss": format!("https://sts.windows.net/{TENANT}/"),
        "iat": 1_735_700_000, "nbf": 1_735_700_000, "exp": 1_735_786_700,
        "aio": "k2BgYDi…", "appid": "0BD9A2F3-5C4E-4B7A-9E1D-2F3A4B5C6D7E", "appidacr": "2",
        "idp": format!("https://sts.windows.net/{TENANT}/"), "idtyp": "app",
        "oid": "5e0c5b4b-8f2a-4c1d-9b3e-7a6f5d4c3b2a", "rh": "0.AR8A…",
        "sub": "5e0c5b4b-8f2a-4c1d-9b3e-7a6f5d4c3b2a", "tid": TENANT, "uti": "Xy…", "ver": "1.0",
        "xms_mirid": "/subscriptions/0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b/resourcegroups/shop/providers/Microsoft.ManagedIdentity/userAssignedIdentities/frontend",
        "xms_tcdt": 1_289_241_547
    })
}

/// A v2.0 workload-identity access token (AKS federation → app registration).
fn azure_v2_token() -> Value {
    json!({
        "aud": "0bd9a2f3-5c4e-4b7a-9e1d-2f3a4b5c6d7e",
        "iss": format!("https://login.microsoftonline.com/{TENANT}/v2.0"),
        "iat": 1_735_700_000, "nbf": 1_735_700_000, "exp": 1_735_703_900,
        "azp": "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f", "azpacr": "2", "idtyp": "app",
        "oid": "6f1d6c5c-9a3b-4d2e-8c4f-8b7a6e5d4c3b", "rh": "0.AR8A…",
        "roles": ["orders.read"], "sub": "6f1d6c5c-9a3b-4d2e-8c4f-8b7a6e5d4c3b",
        "tid": TENANT, "uti": "Zz…", "ver": "2.0"
    })
}

#[test]
fn azure_v1_maps_tenant_object_client_and_the_managed_identity_lower_cased() {
    let id = build(Preset::Azure, &[], azure_v1_token()).unwrap();
    assert_eq!(attr(&id, "tenant_id"), string(TENANT));
    assert_eq!(
        attr(&id, "object_id"),
        string("5e0c5b4b-8f2a-4c1d-9b3e-7a6f5d4c3b2a")
    );
    assert_eq!(
        attr(&id, "client_id"),
        string("0bd9a2f3-5c4e-4b7a-9e1d-2f3a4b5c6d7e")
    );
    assert_eq!(
        attr(&id, "managed_identity"),
        string("/subscriptions/0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b/resourcegroups/shop/providers/microsoft.managedidentity/userassignedidentities/frontend")
    );
    assert_eq!(id.attrs.len(), preset_attributes(Preset::Azure).len());
}

#[test]
fn azure_v2_takes_the_client_from_azp_and_has_no_managed_identity() {
    let id = build(Preset::Azure, &[], azure_v2_token()).unwrap();
    assert_eq!(
        attr(&id, "client_id"),
        string("1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f")
    );
    assert_eq!(attr(&id, "managed_identity"), None);
    assert_eq!(id.sub(), "6f1d6c5c-9a3b-4d2e-8c4f-8b7a6e5d4c3b");
}

#[test]
fn azure_refuses_a_tenant_the_issuer_does_not_name() {
    let mut token = azure_v2_token();
    token["tid"] = json!("00000000-0000-0000-0000-000000000001");
    assert_invalid(
        build(Preset::Azure, &[], token),
        "/tid",
        "tenant `iss` names",
    );
    // The tenant compares case-insensitively, as Azure does.
    let mut token = azure_v1_token();
    token["tid"] = json!(TENANT.to_uppercase());
    assert!(build(Preset::Azure, &[], token).is_ok());
}

#[test]
fn azure_refuses_missing_or_malformed_identifiers() {
    for (claim, pointer) in [("tid", "/tid"), ("oid", "/oid")] {
        let mut token = azure_v1_token();
        token.as_object_mut().unwrap().remove(claim);
        assert_invalid(build(Preset::Azure, &[], token), pointer, "missing");
        let mut token = azure_v1_token();
        token[claim] = json!("not-a-guid");
        assert_invalid(build(Preset::Azure, &[], token), pointer, "GUID");
    }
    let mut token = azure_v1_token();
    token.as_object_mut().unwrap().remove("appid");
    assert_invalid(build(Preset::Azure, &[], token), "/appid", "azp");
    let mut token = azure_v2_token();
    token["azp"] = json!("1c2d3e4f5a6b4c7d8e9f0a1b2c3d4e5f");
    assert_invalid(build(Preset::Azure, &[], token), "/azp", "GUID");
}

#[test]
fn azure_refuses_disagreeing_clients_unknown_versions_and_odd_resource_ids() {
    let mut token = azure_v1_token();
    token["azp"] = json!("1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f");
    assert_invalid(build(Preset::Azure, &[], token), "/azp", "appid");
    let mut token = azure_v1_token();
    token["azp"] = json!("0bd9a2f3-5c4e-4b7a-9e1d-2f3a4b5c6d7e");
    assert!(build(Preset::Azure, &[], token).is_ok());
    let mut token = azure_v2_token();
    token["ver"] = json!("3.0");
    assert_invalid(build(Preset::Azure, &[], token), "/ver", "2.0");
    let mut token = azure_v1_token();
    token["xms_mirid"] = json!("frontend");
    assert_invalid(
        build(Preset::Azure, &[], token),
        "/xms_mirid",
        "resource ID",
    );
    let mut token = azure_v1_token();
    token["xms_mirid"] = json!(["x"]);
    assert_invalid(build(Preset::Azure, &[], token), "/xms_mirid", "string");
}

// ---- gcp ----

/// A `format=full` ID token from a Compute Engine instance's metadata server.
fn gcp_token() -> Value {
    json!({
        "aud": "https://orders.example.com", "azp": "104708291578374923674",
        "email": "frontend@shop-prod.iam.gserviceaccount.com", "email_verified": true,
        "exp": 1_735_703_600, "iat": 1_735_700_000, "iss": "https://accounts.google.com",
        "sub": "104708291578374923674",
        "google": { "compute_engine": {
            "instance_creation_timestamp": 1_733_480_000, "instance_id": "4682541727637213440",
            "instance_name": "frontend-1", "project_id": "shop-prod",
            "project_number": 739_419_398_126_u64, "zone": "europe-west1-b" } }
    })
}

#[test]
fn gcp_maps_the_verified_email_and_the_compute_engine_facts() {
    let id = build(Preset::Gcp, &[], gcp_token()).unwrap();
    assert_eq!(
        attr(&id, "email"),
        string("frontend@shop-prod.iam.gserviceaccount.com")
    );
    assert_eq!(attr(&id, "project_id"), string("shop-prod"));
    assert_eq!(attr(&id, "project_number"), string("739419398126"));
    assert_eq!(attr(&id, "zone"), string("europe-west1-b"));
    assert_eq!(attr(&id, "instance_name"), string("frontend-1"));
    assert_eq!(id.attrs.len(), preset_attributes(Preset::Gcp).len());
}

#[test]
fn gcp_accepts_a_standard_token_without_email_or_instance() {
    let token = json!({"iss": "https://accounts.google.com", "sub": "104708291578374923674",
        "azp": "104708291578374923674", "aud": "https://orders.example.com"});
    let id = build(Preset::Gcp, &[], token).unwrap();
    assert!(id.attrs.is_empty());
}

#[test]
fn gcp_refuses_an_unverified_email_rather_than_dropping_it() {
    for verified in [json!(false), json!("true"), Value::Null] {
        let mut token = gcp_token();
        token["email_verified"] = verified;
        assert_invalid(build(Preset::Gcp, &[], token), "/email_verified", "true");
    }
    let mut token = gcp_token();
    token.as_object_mut().unwrap().remove("email_verified");
    assert_invalid(build(Preset::Gcp, &[], token), "/email_verified", "true");
}

#[test]
fn gcp_refuses_a_sub_that_is_not_a_numeric_id_and_mistyped_instance_facts() {
    for sub in [
        "frontend@shop-prod.iam.gserviceaccount.com",
        "12a",
        "1".repeat(33).as_str(),
    ] {
        let mut token = gcp_token();
        token["sub"] = json!(sub);
        assert_invalid(build(Preset::Gcp, &[], token), "/sub", "numeric");
    }
    for number in [json!(-1), json!(1.5), json!("12x"), json!([1])] {
        let mut token = gcp_token();
        token["google"]["compute_engine"]["project_number"] = number;
        assert_invalid(
            build(Preset::Gcp, &[], token),
            "/google/compute_engine/project_number",
            "project number",
        );
    }
    let mut token = gcp_token();
    token["google"]["compute_engine"]["project_number"] = json!("739419398126");
    let id = build(Preset::Gcp, &[], token).unwrap();
    assert_eq!(attr(&id, "project_number"), string("739419398126"));
    let mut token = gcp_token();
    token["google"]["compute_engine"]["zone"] = json!(3);
    assert_invalid(
        build(Preset::Gcp, &[], token),
        "/google/compute_engine/zone",
        "string",
    );
    let mut token = gcp_token();
    token["google"] = json!("x");
    assert_invalid(build(Preset::Gcp, &[], token), "/google", "object");
}

// ---- spiffe-jwt ----

fn jwt_svid(sub: &str) -> Value {
    json!({"iss": "https://oidc-discovery.example.org", "sub": sub, "aud": ["orders"]})
}

#[test]
fn spiffe_jwt_maps_the_spiffe_id_and_its_trust_domain() {
    let sub = "spiffe://example.org/ns/prod/sa/frontend";
    let id = build(Preset::SpiffeJwt, &[], jwt_svid(sub)).unwrap();
    assert_eq!(
        id.uid(),
        format!("https://oidc-discovery.example.org#{sub}")
    );
    assert_eq!(id.sub(), sub);
    assert_eq!(attr(&id, "spiffe_id"), string(sub));
    assert_eq!(attr(&id, "trust_domain"), string("example.org"));
    assert!(id.tags().len() == 0);
    assert_eq!(id.bound_certificate, None);
}

#[test]
fn spiffe_jwt_accepts_any_configured_trust_domain() {
    let sub = "spiffe://prod.example.org/orders";
    let id = build(Preset::SpiffeJwt, &[], jwt_svid(sub)).unwrap();
    assert_eq!(attr(&id, "trust_domain"), string("prod.example.org"));
}

#[test]
fn spiffe_jwt_rejects_a_sub_that_is_not_a_spiffe_id_naming_the_rule() {
    for (sub, reason) in [
        ("acme:frontend", "spiffe_id_wrong_scheme"),
        ("https://example.org/orders", "spiffe_id_wrong_scheme"),
        (
            "spiffe://Example.org/orders",
            "spiffe_id_trust_domain_character",
        ),
        ("spiffe://example.org/orders/", "spiffe_id_trailing_slash"),
        ("spiffe://example.org/../admin", "spiffe_id_dot_segment"),
        ("spiffe://example.org:443/orders", "spiffe_id_port"),
        ("spiffe://example.org/orders?x=1", "spiffe_id_query"),
    ] {
        assert_invalid(
            build(Preset::SpiffeJwt, &[], jwt_svid(sub)),
            "/sub",
            "not a SPIFFE ID: ",
        );
        assert_invalid(build(Preset::SpiffeJwt, &[], jwt_svid(sub)), "/sub", reason);
    }
}

#[test]
fn spiffe_jwt_rejects_a_sub_outside_the_issuers_own_trust_domain() {
    let mut scoped = issuer(Preset::SpiffeJwt, &[]);
    scoped.trust_domain = Some("example.org".into());
    let verify = |sub: &str| {
        identity(
            &scoped,
            &claims(jwt_svid(sub)),
            1_735_704_000,
            &trust_domains(),
        )
    };
    assert!(verify("spiffe://example.org/ns/prod/sa/web").is_ok());
    // A configured (federated) domain, but not this issuer's.
    assert_invalid(
        verify("spiffe://prod.example.org/ns/prod/sa/web"),
        "/sub",
        "trust domain `prod.example.org` is not issuer",
    );
}

#[test]
fn spiffe_jwt_rejects_a_trust_domain_that_is_not_configured() {
    assert_invalid(
        build(
            Preset::SpiffeJwt,
            &[],
            jwt_svid("spiffe://evil.org/ns/prod/sa/frontend"),
        ),
        "/sub",
        "trust domain `evil.org` is not configured",
    );
    // A suffix or parent of a configured domain is another trust domain.
    assert_invalid(
        build(
            Preset::SpiffeJwt,
            &[],
            jwt_svid("spiffe://staging.example.org/x"),
        ),
        "/sub",
        "not configured",
    );
    let no_domains = identity(
        &issuer(Preset::SpiffeJwt, &[]),
        &claims(jwt_svid("spiffe://example.org/x")),
        0,
        &[],
    );
    assert_invalid(no_domains, "/sub", "not configured");
}

#[test]
fn spiffe_jwt_lets_the_mapping_replace_its_attributes() {
    let mut token = jwt_svid("spiffe://example.org/orders");
    token["team"] = json!("payments");
    let id = build(Preset::SpiffeJwt, &[("trust_domain", "/team")], token).unwrap();
    assert_eq!(attr(&id, "trust_domain"), string("payments"));
    assert_eq!(
        attr(&id, "spiffe_id"),
        string("spiffe://example.org/orders")
    );
}

// ---- cnf (RFC 8705 certificate-bound tokens) ----

/// The base64url thumbprint of bytes 0, 1, …, 31.
const THUMBPRINT: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";

fn counting() -> [u8; 32] {
    std::array::from_fn(|i| i as u8)
}

fn with_cnf(cnf: Value) -> Value {
    json!({"iss": "https://issuer.example", "sub": "acme:frontend", "cnf": cnf})
}

#[test]
fn cnf_x5t_s256_binds_the_token_to_the_certificate_for_every_preset() {
    let generic = build(
        Preset::Generic,
        &[],
        with_cnf(json!({"x5t#S256": THUMBPRINT})),
    )
    .unwrap();
    assert_eq!(generic.bound_certificate.as_deref(), Some(&counting()));

    let mut svid = jwt_svid("spiffe://example.org/orders");
    svid["cnf"] = json!({"x5t#S256": THUMBPRINT});
    let spiffe = build(Preset::SpiffeJwt, &[], svid).unwrap();
    assert_eq!(spiffe.bound_certificate.as_deref(), Some(&counting()));
}

#[test]
fn cnf_x5t_s256_matches_a_certificate_sha256_computed_independently() {
    let der = b"any certificate DER";
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    let encoded = URL_SAFE_NO_PAD.encode(digest.as_ref());
    let id = build(Preset::Generic, &[], with_cnf(json!({"x5t#S256": encoded}))).unwrap();
    assert_eq!(
        id.bound_certificate.as_ref().map(|b| &b[..]),
        Some(digest.as_ref())
    );
}

#[test]
fn tokens_without_cnf_or_without_x5t_s256_are_not_bound() {
    let plain = json!({"iss": "https://issuer.example", "sub": "acme:frontend"});
    assert_eq!(
        build(Preset::Generic, &[], plain)
            .unwrap()
            .bound_certificate,
        None
    );
    for cnf in [
        json!({}),
        json!({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}),
    ] {
        let id = build(Preset::Generic, &[], with_cnf(cnf.clone())).unwrap();
        assert_eq!(id.bound_certificate, None, "{cnf}");
    }
}

#[test]
fn cnf_ignores_other_members_next_to_x5t_s256() {
    let cnf = json!({"x5t#S256": THUMBPRINT, "jkt": "abc", "kid": 7});
    let id = build(Preset::Generic, &[], with_cnf(cnf)).unwrap();
    assert_eq!(id.bound_certificate.as_deref(), Some(&counting()));
}

#[test]
fn rejects_a_cnf_binding_that_cannot_be_read() {
    let padded = format!("{THUMBPRINT}=");
    let standard_alphabet = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh+";
    let sha1 = URL_SAFE_NO_PAD.encode([7u8; 20]);
    let sha512 = URL_SAFE_NO_PAD.encode([7u8; 64]);
    for (cnf, detail) in [
        (json!("x5t#S256"), "`cnf` must be an object, found a string"),
        (
            json!(["x5t#S256", THUMBPRINT]),
            "`cnf` must be an object, found an array",
        ),
        (json!(null), "`cnf` must be an object, found null"),
        (json!({"x5t#S256": 42}), "expected a string, found a number"),
        (json!({"x5t#S256": null}), "expected a string, found null"),
        (json!({"x5t#S256": ""}), "is 0"),
        (json!({"x5t#S256": padded}), "base64url"),
        (json!({"x5t#S256": standard_alphabet}), "base64url"),
        (json!({"x5t#S256": "not base64!"}), "base64url"),
        (json!({"x5t#S256": sha1}), "32 bytes, this one is 20"),
        (json!({"x5t#S256": sha512}), "32 bytes, this one is 64"),
    ] {
        assert_invalid(
            build(Preset::Generic, &[], with_cnf(cnf)),
            "/cnf/x5t#S256",
            detail,
        );
    }
}

// ---- robustness ----

fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
    use proptest::prelude::*;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[a-z:/.,~ \n]{0,6}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map("[a-zA-Z./_]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest::proptest! {
    #[test]
    fn never_panics_on_arbitrary_claims(
        values in proptest::collection::vec(json_value(), 18),
        sub in "(spiffe://)?[a-z:/.]{0,12}",
    ) {
        let keys = [
            "iss", "kubernetes.io", "kubernetes.io/serviceaccount/namespace",
            "kubernetes.io/serviceaccount/service-account.name", "italypaleale.me/tsiam", "tsiam",
            "repository", "ref", "org_name", "app_name", "machine_id", "x", "cnf",
            "tid", "oid", "appid", "google", "email",
        ];
        let mut token: Map<String, Value> = keys.iter().map(|k| k.to_string()).zip(values).collect();
        token.insert("sub".into(), Value::from(sub));
        let mappings = [("tags", "/x"), ("m", "/kubernetes.io/namespace"), ("n", "/italypaleale.me~1tsiam")];
        for preset in [Preset::Generic, Preset::Tsiam, Preset::Kubernetes, Preset::GithubActions, Preset::Fly, Preset::SpiffeJwt, Preset::Azure, Preset::Gcp] {
            let _ = identity(&issuer(preset, &mappings), &token.clone().into(), 0, &trust_domains());
        }
    }
}

#[test]
fn preset_attributes_lists_every_attribute_each_preset_sets_with_its_type() {
    let tokens = [
        (
            Preset::Generic,
            json!({"sub": "a", "iss": "https://issuer.example"}),
        ),
        (Preset::Tsiam, tsiam_token(TSIAM_CLAIM)),
        (Preset::Kubernetes, projected_token()),
        (Preset::Kubernetes, legacy_token()),
        (Preset::GithubActions, github_token()),
        (Preset::Fly, fly_token()),
        (Preset::Azure, azure_v1_token()),
        (Preset::Azure, azure_v2_token()),
        (Preset::Gcp, gcp_token()),
        (
            Preset::SpiffeJwt,
            jwt_svid("spiffe://example.org/ns/prod/sa/frontend"),
        ),
    ];
    for (preset, token) in tokens {
        let identity = build(preset, &[], token).unwrap();
        let listed = preset_attributes(preset);
        for (name, value) in &identity.attrs {
            let listed_type = listed.iter().find(|(listed, _)| listed == name);
            let cedar_type = match value {
                AttrValue::String(_) => "String",
                other => panic!("{preset:?}: {name} is {other:?}"),
            };
            assert_eq!(
                listed_type.map(|(_, ty)| *ty),
                Some(cedar_type),
                "{preset:?} sets {name}"
            );
        }
    }
    // The full token of each preset sets every listed attribute.
    let full = build(Preset::Fly, &[], fly_token()).unwrap();
    assert_eq!(full.attrs.len(), preset_attributes(Preset::Fly).len());
}
