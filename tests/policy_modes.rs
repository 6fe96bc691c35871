//! Policy lifecycle through the real proxy: hot reload (a broken update is
//! rejected and the old set kept), dry-run mode, and the decision log.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

async fn wait_for(what: &str, wisp: &Wisp, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done().await {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}:\n{}",
            wisp.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn reloads_changed_policies_and_keeps_the_old_set_when_an_update_is_broken() {
    let (issuer, _echo, wisp) = deploy(
        "",
        &[(
            "a.cedar",
            "@id(\"a\") permit (principal, action, resource) when { resource.path == \"/a\" };",
        )],
        "",
    )
    .await;
    let token = issuer.token(json!({"sub": "acme:a:b"}));
    assert_eq!(wisp.get_with_token("/a", &token).await.status, 200);
    assert_eq!(wisp.get_with_token("/b", &token).await.status, 403);

    let policies = wisp.dir.path().join("policies");
    std::fs::write(
        policies.join("b.cedar"),
        "@id(\"b\") permit (principal, action, resource) when { resource.path == \"/b\" };",
    )
    .unwrap();
    wait_for("the new policy", &wisp, async || {
        wisp.get_with_token("/b", &token).await.status == 200
    })
    .await;

    std::fs::write(
        policies.join("broken.cedar"),
        "permit (principal, action, resource)\nwhen { principal.nope };\n",
    )
    .unwrap();
    wait_for("the rejected reload", &wisp, async || {
        metric_value(
            &wisp.metrics().await,
            r#"wisp_policy_reload_total{result="failure"}"#,
        ) >= 1.0
    })
    .await;
    assert_eq!(
        wisp.get_with_token("/a", &token).await.status,
        200,
        "old set kept"
    );
    assert_eq!(
        wisp.get_with_token("/b", &token).await.status,
        200,
        "old set kept"
    );
    let metrics = wisp.metrics().await;
    assert_eq!(metric_value(&metrics, "wisp_policies"), 2.0, "{metrics}");
    assert!(metric_value(&metrics, r#"wisp_policy_reload_total{result="success"}"#) >= 2.0);
    let log = wisp.log();
    assert!(
        log.contains("broken.cedar:2:"),
        "the rejection names file:line:\n{log}"
    );

    // Removing a policy file takes its permission away.
    std::fs::remove_file(policies.join("broken.cedar")).unwrap();
    std::fs::remove_file(policies.join("a.cedar")).unwrap();
    wait_for("the removal", &wisp, async || {
        wisp.get_with_token("/a", &token).await.status == 403
    })
    .await;
    assert_eq!(wisp.get_with_token("/b", &token).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_forwards_denied_requests_and_counts_them() {
    let (issuer, echo, wisp) = deploy(
        "",
        &[(
            "a.cedar",
            "@id(\"a\") permit (principal, action, resource) when { resource.path == \"/a\" };",
        )],
        "policies: { dir: policies, mode: dry-run }",
    )
    .await;
    let token = issuer.token(json!({"sub": "acme:a:b"}));
    assert_eq!(wisp.get_with_token("/a", &token).await.status, 200);
    let denied = wisp.get_with_token("/b", &token).await;
    assert_eq!(denied.status, 200, "dry-run forwards: {}", denied.body);
    assert_eq!(denied.upstream_header("x-wisp-subject"), ["acme:a:b"]);
    // Authentication is still enforced in dry-run.
    assert_eq!(wisp.request("GET", "/b", &[]).await.status, 401);
    let metrics = wisp.metrics().await;
    assert_eq!(
        metric_value(&metrics, r#"wisp_dry_run_decisions_total{decision="deny"}"#),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        metric_value(
            &metrics,
            r#"wisp_requests_total{decision="allow",issuer="dev",mode="proxy",reason="dry_run"}"#
        ),
        1.0
    );
    assert_eq!(
        metric_value(
            &metrics,
            r#"wisp_requests_total{decision="allow",issuer="dev",mode="proxy",reason="policy"}"#
        ),
        1.0
    );
    assert_eq!(echo.requests(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn decisions_are_logged_as_json_with_stable_fields() {
    let (issuer, _echo, wisp) = deploy("", &[("a.cedar", "@id(\"a-only\") permit (principal, action, resource) when { resource.path == \"/a\" };")], "").await;
    let token = issuer.token(json!({"sub": "acme:a:b"}));
    assert_eq!(wisp.get_with_token("/a", &token).await.status, 200);
    assert_eq!(wisp.get_with_token("/b", &token).await.status, 403);
    assert_eq!(wisp.request("GET", "/c", &[]).await.status, 401);

    let mut decisions = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while decisions.len() < 3 && Instant::now() < deadline {
        decisions = wisp
            .log()
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|entry| entry["target"] == "wisp::decision")
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(decisions.len(), 3, "{}", wisp.log());
    let principal = format!("{}#acme:a:b", issuer.issuer_url());
    assert_eq!(decisions[0]["decision"], "allow");
    assert_eq!(decisions[0]["reason"], "policy");
    assert_eq!(decisions[0]["policies"], json!(["a-only"]));
    assert_eq!(decisions[0]["principal"], principal.as_str());
    assert_eq!(decisions[0]["issuer"], "dev");
    assert_eq!(decisions[0]["status"], 200);
    assert_eq!(decisions[1]["decision"], "deny");
    assert_eq!(decisions[1]["reason"], "policy");
    assert_eq!(decisions[1]["path"], "/b");
    assert_eq!(decisions[1]["status"], 403);
    assert_eq!(decisions[2]["reason"], "missing_token");
    assert_eq!(decisions[2]["status"], 401);
}
