//! End to end: real dev issuer, real echo upstream, real `wisp serve`.
//! Allow/deny by sub prefix, tag, action group and path; default deny; metrics.

mod common;

use common::*;
use serde_json::json;

const POLICIES: &str = r#"
@id("frontend-reads-api")
permit (principal, action in Action::"read", resource)
when { principal.sub like "acme:frontend:*" && resource.path like "/api/*" };

@id("prod-tag-writes-api")
permit (principal, action == Action::"POST", resource)
when { principal.tags.contains("tag:prod") && resource.path like "/api/*" };

@id("batch-anything")
permit (principal, action, resource)
when { principal.sub like "acme:batch:*" };

@id("nobody-on-admin")
forbid (principal, action, resource)
when { resource.path like "/admin*" };
"#;

async fn deployment() -> (DevIssuer, EchoServer, Wisp) {
    let (issuer, echo, wisp) = deploy(
        "    claims: { tags: /tags }\n",
        &[("api.cedar", POLICIES)],
        "",
    )
    .await;
    (issuer, echo, wisp)
}

#[tokio::test(flavor = "multi_thread")]
async fn allows_and_denies_by_sub_prefix_tag_action_group_and_path() {
    let (issuer, _echo, wisp) = deployment().await;
    let frontend = issuer.token(json!({"sub": "acme:frontend:web-1"}));
    let tagged = issuer.token(json!({"sub": "acme:worker:w-1", "tags": ["tag:prod"]}));
    let untagged = issuer.token(json!({"sub": "acme:worker:w-2", "tags": ["tag:dev"]}));
    let batch = issuer.token(json!({"sub": "acme:batch:job-7"}));
    let other = issuer.token(json!({"sub": "evil:frontend:web-1"}));

    let cases: &[(&str, &str, &str, u16)] = &[
        // sub prefix + action group `read` + path
        ("GET", "/api/orders", &frontend, 200),
        ("HEAD", "/api/orders", &frontend, 200),
        ("OPTIONS", "/api/orders", &frontend, 200),
        ("POST", "/api/orders", &frontend, 403),
        ("DELETE", "/api/orders", &frontend, 403),
        ("GET", "/internal", &frontend, 403),
        ("GET", "/api/orders", &other, 403),
        // tag
        ("POST", "/api/orders", &tagged, 200),
        ("POST", "/api/orders", &untagged, 403),
        // forbid wins over permit
        ("GET", "/anything", &batch, 200),
        ("GET", "/admin", &batch, 403),
        ("GET", "/admin/users", &batch, 403),
    ];
    for (method, path, token, want) in cases {
        let auth = format!("Bearer {token}");
        let response = wisp
            .request(method, path, &[("authorization", &auth)])
            .await;
        assert_eq!(response.status, *want, "{method} {path}: {}", response.body);
        if *want == 403 {
            assert_eq!(response.json(), json!({"error": "forbidden"}));
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn allowed_request_reaches_the_upstream_with_verified_identity() {
    let (issuer, echo, wisp) = deployment().await;
    let token = issuer.token(json!({"sub": "acme:frontend:web-1", "tags": ["tag:prod", "tag:eu"]}));
    let response = wisp.get_with_token("/api/orders?limit=5", &token).await;
    assert_eq!(response.status, 200, "{}", response.body);
    let body = response.json();
    assert_eq!(body["path"], "/api/orders");
    assert_eq!(body["query"], "limit=5");
    assert_eq!(
        response.upstream_header("x-wisp-subject"),
        ["acme:frontend:web-1"]
    );
    assert_eq!(
        response.upstream_header("x-wisp-issuer"),
        [issuer.issuer_url()]
    );
    assert_eq!(response.upstream_header("x-wisp-tags"), ["tag:prod,tag:eu"]);
    assert!(
        response.upstream_header("authorization").is_empty(),
        "token must not be forwarded"
    );
    assert_eq!(echo.requests(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn denies_everything_without_policies() {
    let issuer = start_issuer().await;
    let echo = start_echo().await;
    let wisp = WispBuilder::new(echo.addr())
        .issuer(issuer_yaml("dev", &issuer, ""))
        .start()
        .await;
    wisp.wait_ready().await;
    let token = issuer.token(json!({"sub": "acme:frontend:web-1"}));
    for path in ["/", "/api/orders", "/healthz"] {
        let response = wisp.get_with_token(path, &token).await;
        assert_eq!(response.status, 403, "{path}");
    }
    assert_eq!(echo.requests(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_move_and_pass_promtool() {
    let (issuer, _echo, wisp) = deployment().await;
    let token = issuer.token(json!({"sub": "acme:frontend:web-1"}));
    for _ in 0..3 {
        assert_eq!(wisp.get_with_token("/api/orders", &token).await.status, 200);
    }
    assert_eq!(wisp.get_with_token("/internal", &token).await.status, 403);
    assert_eq!(wisp.request("GET", "/api/orders", &[]).await.status, 401);

    let text = wisp.metrics().await;
    let allowed = metric_value(
        &text,
        r#"wisp_requests_total{decision="allow",issuer="dev",mode="proxy",reason="policy"}"#,
    );
    let denied = metric_value(
        &text,
        r#"wisp_requests_total{decision="deny",issuer="dev",mode="proxy",reason="policy"}"#,
    );
    let missing = metric_value(
        &text,
        r#"wisp_requests_total{decision="deny",issuer="none",mode="proxy",reason="missing_token"}"#,
    );
    assert_eq!((allowed, denied, missing), (3.0, 1.0, 1.0), "{text}");
    assert_eq!(
        metric_value(&text, "wisp_token_cache_misses_total"),
        1.0,
        "{text}"
    );
    assert_eq!(
        metric_value(&text, "wisp_token_cache_hits_total"),
        3.0,
        "{text}"
    );
    assert_eq!(
        metric_value(&text, "wisp_token_cache_entries"),
        1.0,
        "{text}"
    );
    assert!(
        metric_value(&text, "wisp_token_cache_bytes") > 0.0,
        "{text}"
    );
    assert_eq!(metric_value(&text, "wisp_policies"), 4.0, "{text}");
    assert_eq!(
        metric_value(&text, r#"wisp_jwks_keys{issuer="dev"}"#),
        1.0,
        "{text}"
    );
    assert!(
        metric_value(
            &text,
            r#"wisp_jwks_refresh_total{issuer="dev",result="success"}"#
        ) >= 1.0
    );
    assert!(
        metric_value(
            &text,
            r#"wisp_jwks_last_success_timestamp_seconds{issuer="dev"}"#
        ) > 1.7e9
    );
    assert!(
        metric_value(
            &text,
            r#"wisp_request_duration_seconds_count{stage="total"}"#
        ) >= 5.0
    );
    assert!(text.contains("wisp_build_info{version="), "{text}");

    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool must be installed (Debian package `prometheus`), see README");
    use std::io::Write;
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = promtool.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_and_healthz_report_state() {
    let (_issuer, _echo, wisp) = deployment().await;
    let health = get(wisp.admin, "/healthz", &[]).await.unwrap();
    assert_eq!(health.status, 200);
    let ready = get(wisp.admin, "/readyz", &[]).await.unwrap();
    assert_eq!(ready.status, 200);
    let detail = ready.json();
    assert_eq!(detail["ready"], true);
    assert_eq!(detail["policies"]["count"], 4);
    assert_eq!(detail["issuers"][0]["name"], "dev");
    assert_eq!(detail["issuers"][0]["ready"], true);
    assert_eq!(detail["issuers"][0]["keys"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_down_is_502_and_slow_upstream_is_504() {
    let (issuer, echo, wisp) = deploy(
        "",
        &[(
            "all.cedar",
            "@id(\"all\") permit (principal, action, resource);",
        )],
        "",
    )
    .await;
    let token = issuer.token(json!({"sub": "acme:frontend:web-1"}));
    let slow = wisp.get_with_token("/slow?ms=4000", &token).await;
    assert_eq!(slow.status, 504, "{}", slow.body);
    echo.shutdown().await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let down = wisp.get_with_token("/api", &token).await;
    assert_eq!(down.status, 502, "{}", down.body);
}
