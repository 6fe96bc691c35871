//! `wisp explain` and `wisp test`: the real binary, offline, on the same
//! config and policies a real `wisp serve` runs — and the same answers.

mod common;

use std::process::Command;

use common::*;
use serde_json::json;

const POLICIES: &str = r#"
@id("frontend-reads-api")
permit (principal, action in Action::"read", resource)
when { principal.sub like "acme:frontend:*" && resource.path like "/api/*" };

@id("admin-area-admins-only")
forbid (principal, action, resource)
when { resource.path like "/admin*" }
unless { principal.tags.contains("tag:admin") };
"#;

fn wisp(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_wisp"))
        .args(args)
        .output()
        .expect("run wisp");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn explain_gives_the_answer_serve_gives_for_the_same_token_and_request() {
    let (issuer, _echo, server) = deploy(
        "    claims: { tags: /tags }\n",
        &[("policies.cedar", POLICIES)],
        "routes: { public: [/healthz] }",
    )
    .await;
    let config = server.dir.path().join("wisp.yaml");
    let config = config.to_str().unwrap();
    let frontend = issuer.token(json!({"sub": "acme:frontend:web-1", "tags": ["tag:prod"]}));
    let batch = issuer.token(json!({"sub": "acme:batch:job-7", "tags": []}));
    let wrong_audience = issuer.token(json!({"sub": "acme:frontend:web-1", "aud": "billing"}));
    let cases: [(&str, &str, Option<&str>); 8] = [
        ("GET", "/api/orders", Some(frontend.as_str())),
        ("POST", "/api/orders", Some(frontend.as_str())),
        ("GET", "/api/../admin/users", Some(frontend.as_str())),
        ("GET", "/api/orders", Some(batch.as_str())),
        ("GET", "/api/orders", Some(wrong_audience.as_str())),
        ("GET", "/api/orders", Some("not.a.token")),
        ("GET", "/api/orders", None),
        ("GET", "/healthz", None),
    ];
    for (method, path, token) in cases {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| vec![("authorization", a)])
            .unwrap_or_default();
        let served = server.request(method, path, &headers).await;
        let mut args = vec![
            "explain", "--config", config, "--method", method, "--path", path, "--json",
        ];
        if let Some(token) = token {
            args.extend(["--token", token]);
        }
        let (code, stdout, stderr) = wisp(&args);
        assert_eq!(code, 0, "{stderr}");
        let explained: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        let served_status = if served.status == 200 {
            200
        } else {
            served.status
        };
        assert_eq!(
            explained["status"], served_status,
            "{method} {path} {token:?}: explain {explained}, serve {} {}",
            served.status, served.body
        );
        if served.status >= 400 {
            assert_eq!(
                explained["reason"],
                served.json()["reason"].as_str().unwrap_or("policy"),
                "{method} {path}: {explained}"
            );
        }
        assert_eq!(explained["verified"], true);
    }
}

#[test]
fn explain_with_claims_says_they_were_not_verified_and_shows_the_principal_and_headers() {
    let repo = env!("CARGO_MANIFEST_DIR");
    let config = format!("{repo}/config/demo.yaml");
    let (code, stdout, stderr) = wisp(&[
        "explain",
        "--config",
        &config,
        "--claims",
        r#"{"sub":"acme:frontend:web-1","tags":["tag:prod"]}"#,
        "--issuer",
        "demo",
        "--path",
        "/api/orders?limit=5",
        "--source-ip",
        "10.1.2.3",
        "--json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let e: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(e["decision"], "allow");
    assert_eq!(e["status"], 200);
    assert_eq!(e["verified"], false);
    assert_eq!(e["policies"], json!(["frontend-reads-api"]));
    assert_eq!(
        e["principal"]["uid"]["id"],
        "http://127.0.0.1:9400#acme:frontend:web-1"
    );
    assert_eq!(e["context"]["query"], "limit=5");
    assert_eq!(e["context"]["source_ip"], "10.1.2.3");
    assert_eq!(e["headers"]["x-wisp-subject"], "acme:frontend:web-1");
    assert_eq!(e["headers"]["x-wisp-tags"], "tag:prod");

    // Text for people says the same, and that nothing was verified.
    let (code, stdout, _) = wisp(&[
        "explain",
        "--config",
        &config,
        "--claims",
        r#"{"sub":"acme:batch:job-7"}"#,
        "--issuer",
        "demo",
        "--path",
        "/api/orders",
    ]);
    assert_eq!(code, 0);
    assert!(
        stdout.starts_with("decision: deny — 403 (policy)"),
        "{stdout}"
    );
    assert!(stdout.contains("no signature was checked"), "{stdout}");

    // What it cannot run is exit 1.
    for args in [
        vec!["--claims", "{not json", "--issuer", "demo"],
        vec!["--claims", "{}", "--issuer", "nope"],
        vec!["--token", "@/nonexistent/token"],
    ] {
        let mut all = vec!["explain", "--config", config.as_str(), "--path", "/"];
        all.extend(args.iter().copied());
        let (code, _, stderr) = wisp(&all);
        assert_eq!(code, 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{stderr}");
    }
}

#[test]
fn the_shipped_policy_tests_pass_and_write_junit() {
    let repo = env!("CARGO_MANIFEST_DIR");
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("junit.xml");
    let (code, stdout, stderr) = wisp(&[
        "test",
        "--config",
        &format!("{repo}/config/demo.yaml"),
        "--junit",
        junit.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let summary = stdout.lines().last().unwrap();
    assert!(summary.ends_with("passed, 0 failed"), "{stdout}");
    let cases: usize = summary.split(' ').next().unwrap().parse().unwrap();
    assert!(cases >= 10, "{stdout}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains(&format!("tests=\"{cases}\" failures=\"0\"")),
        "{xml}"
    );
    assert_eq!(xml.matches("<testcase ").count(), cases);
}

#[test]
fn a_failing_case_shows_what_differs_and_a_malformed_file_is_an_error_with_its_line() {
    let repo = env!("CARGO_MANIFEST_DIR");
    let config = format!("{repo}/config/demo.yaml");
    let dir = tempfile::tempdir().unwrap();
    let failing = dir.path().join("failing.yaml");
    std::fs::write(
        &failing,
        "tests:\n  - name: batch may read (it may not)\n    issuer: demo\n    claims: { sub: \"acme:batch:job-7\" }\n    request: { path: /api/orders }\n    expect: allow\n  - name: frontend reads, named policy\n    issuer: demo\n    claims: { sub: \"acme:frontend:web-1\" }\n    request: { path: /api/orders }\n    expect: allow\n    policies: [some-other-policy]\n",
    )
    .unwrap();
    let (code, stdout, _) = wisp(&["test", "--config", &config, failing.to_str().unwrap()]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("FAIL ") && stdout.contains("failing.yaml:2 batch may read"),
        "{stdout}"
    );
    assert!(
        stdout.contains("- expect: allow") && stdout.contains("+ got:    403 deny (policy)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("- policies: [some-other-policy]"),
        "{stdout}"
    );
    assert!(
        stdout.contains("+ policies: [frontend-reads-api]"),
        "{stdout}"
    );
    assert!(
        stdout.trim_end().ends_with("0 passed, 2 failed"),
        "{stdout}"
    );

    let malformed = dir.path().join("malformed.yaml");
    std::fs::write(
        &malformed,
        "tests:\n  - name: a\n    request: { path: /a }\n    expect: allow\n    expcet: deny\n",
    )
    .unwrap();
    let (code, stdout, stderr) = wisp(&["test", "--config", &config, malformed.to_str().unwrap()]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stderr.contains("malformed.yaml:5:"), "{stderr}");
    assert!(stdout.contains("1 malformed file"), "{stdout}");
}

const CLOUD_CONFIG: &str = "upstream: { address: 127.0.0.1:8081 }
issuers:
  - name: azure
    issuer: https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0
    preset: azure
    jwks: { discovery: true }
    audiences: [api://orders]
    algorithms: [RS256]
  - name: gcp
    issuer: https://accounts.google.com
    preset: gcp
    jwks: { discovery: true }
    audiences: [https://orders.example.com]
    algorithms: [RS256]
policies: { dir: policies }
headers:
  claims: { x-azure-object-id: object_id, x-gcp-project: project_id, x-gcp-email: email }
";

const CLOUD_POLICIES: &str = r#"
@id("frontend-identity-reads")
permit (principal, action in Action::"read", resource)
when {
  principal has managed_identity &&
  principal.managed_identity like "*/userassignedidentities/frontend"
};

@id("shop-prod-vms-read")
permit (principal, action in Action::"read", resource)
when {
  principal has project_id && principal.project_id == "shop-prod" &&
  principal has email && principal.email like "*@shop-prod.iam.gserviceaccount.com"
};

@id("no-writes-from-gce-yet")
@shadow
forbid (principal, action in Action::"write", resource)
when { principal has project_id };
"#;

#[test]
fn azure_and_gcp_callers_get_their_preset_attributes_checked_and_forwarded() {
    let (_dir, config) = project(CLOUD_CONFIG, &[("service.cedar", CLOUD_POLICIES)]);
    let config = config.as_str();
    let (code, stdout, stderr) = wisp(&["check", "--config", config]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("shadow: no-writes-from-gce-yet (evaluated and logged, not enforced)"),
        "{stdout}"
    );

    let azure = json!({
        "ver": "1.0", "iss": "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0",
        "sub": "5e0c5b4b-8f2a-4c1d-9b3e-7a6f5d4c3b2a", "oid": "5E0C5B4B-8F2A-4C1D-9B3E-7A6F5D4C3B2A",
        "tid": "72f988bf-86f1-41af-91ab-2d7cd011db47", "appid": "0bd9a2f3-5c4e-4b7a-9e1d-2f3a4b5c6d7e",
        "xms_mirid": "/subscriptions/0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b/resourcegroups/shop/providers/Microsoft.ManagedIdentity/userAssignedIdentities/frontend"
    })
    .to_string();
    let explain = |claims: &str, issuer: &str, method: &str| {
        let (code, stdout, stderr) = wisp(&[
            "explain",
            "--config",
            config,
            "--claims",
            claims,
            "--issuer",
            issuer,
            "--method",
            method,
            "--path",
            "/api/orders",
            "--json",
        ]);
        assert_eq!(code, 0, "{stderr}");
        serde_json::from_str::<serde_json::Value>(&stdout).unwrap()
    };
    let e = explain(&azure, "azure", "GET");
    assert_eq!(e["decision"], "allow", "{e}");
    assert_eq!(e["policies"], json!(["frontend-identity-reads"]));
    let attrs = &e["principal"]["attrs"];
    assert_eq!(attrs["object_id"], "5e0c5b4b-8f2a-4c1d-9b3e-7a6f5d4c3b2a");
    assert_eq!(attrs["client_id"], "0bd9a2f3-5c4e-4b7a-9e1d-2f3a4b5c6d7e");
    assert_eq!(attrs["tenant_id"], "72f988bf-86f1-41af-91ab-2d7cd011db47");
    assert_eq!(
        e["headers"]["x-azure-object-id"],
        "5e0c5b4b-8f2a-4c1d-9b3e-7a6f5d4c3b2a"
    );
    assert!(e["headers"].get("x-gcp-project").is_none(), "{e}");

    // Another tenant's token is refused by the preset's check.
    let other_tenant = azure.replace(
        "\"tid\":\"72f988bf-86f1-41af-91ab-2d7cd011db47\"",
        "\"tid\":\"00000000-0000-0000-0000-000000000001\"",
    );
    let e = explain(&other_tenant, "azure", "GET");
    assert_eq!(
        (e["status"].as_u64(), e["reason"].as_str()),
        (Some(401), Some("invalid_claim")),
        "{e}"
    );

    let gcp = json!({
        "iss": "https://accounts.google.com", "sub": "104708291578374923674",
        "email": "frontend@shop-prod.iam.gserviceaccount.com", "email_verified": true,
        "google": { "compute_engine": { "project_id": "shop-prod", "project_number": 739419398126_u64,
            "zone": "europe-west1-b", "instance_name": "frontend-1" } }
    })
    .to_string();
    let e = explain(&gcp, "gcp", "GET");
    assert_eq!(e["decision"], "allow", "{e}");
    assert_eq!(e["principal"]["attrs"]["project_number"], "739419398126");
    assert_eq!(e["headers"]["x-gcp-project"], "shop-prod");
    assert_eq!(
        e["headers"]["x-gcp-email"],
        "frontend@shop-prod.iam.gserviceaccount.com"
    );
    assert_eq!(e["shadow"], json!([]));

    // The shadow forbid would deny a write, which is denied anyway today
    // (no permit for writes): explain shows both.
    let e = explain(&gcp, "gcp", "POST");
    assert_eq!(e["decision"], "deny");
    assert_eq!(
        e["shadow"],
        json!([{"policy": "no-writes-from-gce-yet", "effect": "forbid", "decision": "deny"}])
    );
    let unverified = gcp.replace("\"email_verified\":true", "\"email_verified\":false");
    let e = explain(&unverified, "gcp", "GET");
    assert_eq!(e["reason"], "invalid_claim", "{e}");
    assert!(
        e["detail"].as_str().unwrap().contains("/email_verified"),
        "{e}"
    );
}

#[test]
fn explain_and_test_show_what_a_shadow_policy_would_do_and_test_can_expect_it() {
    let (dir, config) = project(CLOUD_CONFIG, &[("service.cedar", CLOUD_POLICIES)]);
    let config = config.as_str();
    let gcp = r#"{"iss":"https://accounts.google.com","sub":"1047","google":{"compute_engine":{"project_id":"shop-prod"}}}"#;
    let (code, stdout, stderr) = wisp(&[
        "explain",
        "--config",
        config,
        "--claims",
        gcp,
        "--issuer",
        "gcp",
        "--method",
        "PUT",
        "--path",
        "/api/orders/1",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("shadow:   no-writes-from-gce-yet (forbid) would deny; not enforced"),
        "{stdout}"
    );

    let tests = dir.path().join("shadow.yaml");
    std::fs::write(
        &tests,
        format!(
            "tests:
  - name: gce writes would be denied
    issuer: gcp
    claims: {gcp}
    request: {{ method: PUT, path: /api/orders/1 }}
    expect: deny
    shadow: {{ no-writes-from-gce-yet: deny }}
  - name: reads are not its business
    issuer: gcp
    claims: {gcp}
    request: {{ path: /api/orders/1 }}
    expect: deny
    shadow: {{ no-writes-from-gce-yet: none }}
  - name: a wrong shadow expectation fails
    issuer: gcp
    claims: {gcp}
    request: {{ method: DELETE, path: /api/orders/1 }}
    expect: deny
    shadow: {{ no-writes-from-gce-yet: allow }}
  - name: an enforced policy is not a shadow policy
    issuer: gcp
    claims: {gcp}
    request: {{ path: /api/orders/1 }}
    expect: deny
    shadow: {{ shop-prod-vms-read: none }}
"
        ),
    )
    .unwrap();
    let (code, stdout, _) = wisp(&["test", "--config", config, tests.to_str().unwrap()]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("ok   ") && stdout.contains("shadow.yaml:2 gce writes would be denied"),
        "{stdout}"
    );
    assert!(
        stdout.contains("     shadow:   no-writes-from-gce-yet (forbid) would deny; not enforced"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ok   ") && stdout.contains("shadow.yaml:8 reads are not its business"),
        "{stdout}"
    );
    assert!(
        stdout.contains("- shadow no-writes-from-gce-yet: allow")
            && stdout.contains("+ shadow no-writes-from-gce-yet: deny"),
        "{stdout}"
    );
    assert!(
        stdout.contains("- shadow: shop-prod-vms-read is not a @shadow policy"),
        "{stdout}"
    );
    assert!(
        stdout.trim_end().ends_with("2 passed, 2 failed"),
        "{stdout}"
    );
}
