//! Through the real proxy: `@shadow` policies (evaluated, logged and
//! counted, never enforced) and `headers.claims` (principal attributes
//! forwarded as headers, client copies stripped), also through the
//! decision service's forward-auth answer.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

const POLICIES: &str = r#"
@id("acme-reads")
permit (principal, action in Action::"read", resource) when { principal.sub like "acme:*" };

@id("admin-lockdown")
@shadow
forbid (principal, action, resource) when { resource.path like "/admin*" };
"#;

/// Waits until `count` decision lines are logged.
async fn decisions(wisp: &Wisp, count: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines = wisp.decisions();
        if lines.len() >= count || Instant::now() > deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shadow_forbid_is_logged_and_counted_but_the_request_is_forwarded() {
    let (issuer, echo, wisp) = deploy("", &[("p.cedar", POLICIES)], "").await;
    let token = issuer.token(json!({"sub": "acme:frontend"}));
    let admin = wisp.get_with_token("/admin/users", &token).await;
    assert_eq!(
        admin.status, 200,
        "shadow policies are not enforced: {}",
        admin.body
    );
    assert_eq!(
        wisp.get_with_token("/admin/users", &token).await.status,
        200
    );
    assert_eq!(wisp.get_with_token("/api/orders", &token).await.status, 200);
    assert_eq!(echo.requests(), 3);

    let metrics = wisp.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            r#"wisp_shadow_decisions_total{decision="deny",policy="admin-lockdown"}"#
        ),
        2.0,
        "counted per request, cache hits included:\n{metrics}"
    );
    let lines = decisions(&wisp, 3).await;
    assert_eq!(lines.len(), 3, "{}", wisp.log());
    assert_eq!(lines[0]["decision"], "allow");
    assert_eq!(
        lines[0]["shadow"],
        json!([{"policy": "admin-lockdown", "effect": "forbid", "decision": "deny"}])
    );
    assert!(lines[2].get("shadow").is_none(), "{}", lines[2]);
    let ready = get(wisp.admin, "/readyz", &[]).await.expect("readyz");
    assert_eq!(ready.json()["policies"]["shadow"], 1, "{}", ready.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_decisions_deny_an_allowed_request_a_shadow_policy_would_deny_is_still_logged() {
    let issuer = start_issuer().await;
    let echo = start_echo().await;
    let wisp = WispBuilder::new(echo.addr())
        .issuer(issuer_yaml("dev", &issuer, ""))
        .policy("p.cedar", POLICIES)
        .start_edited(|config| config.replace("decisions: all", "decisions: deny"))
        .await;
    wisp.wait_ready().await;
    let token = issuer.token(json!({"sub": "acme:frontend"}));
    assert_eq!(wisp.get_with_token("/api/orders", &token).await.status, 200);
    assert_eq!(wisp.get_with_token("/admin", &token).await.status, 200);
    let lines = decisions(&wisp, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lines = if lines.len() == 1 {
        wisp.decisions()
    } else {
        lines
    };
    assert_eq!(
        lines.len(),
        1,
        "only the request the shadow policy would change:\n{}",
        wisp.log()
    );
    assert_eq!(lines[0]["path"], "/admin");
    assert_eq!(lines[0]["shadow"][0]["decision"], "deny");
}

#[tokio::test(flavor = "multi_thread")]
async fn claim_headers_carry_verified_attributes_and_never_the_clients_copies() {
    // The schema declares the mapped attributes, with the claims' types.
    let schema = shipped_schema().replace(
        "  authn: String,",
        "  authn: String,\n  team?: String,\n  level?: Long,",
    );
    let (issuer, _echo, wisp, decision) = deploy_with_decision(
        "    claims: { team: /acme/team, level: /acme/level }\n",
        &[
            ("wisp.cedarschema", &schema),
            (
                "p.cedar",
                r#"@id("all") permit (principal, action, resource);"#,
            ),
        ],
        "headers: { claims: { x-team: team, x-level: level, x-auth-method: authn } }\n",
    )
    .await;
    let token =
        issuer.token(json!({"sub": "acme:frontend", "acme": {"team": "payments", "level": 3}}));
    let auth = format!("Bearer {token}");
    let spoofed = [
        ("authorization", auth.as_str()),
        ("X-Team", "admins"),
        ("x_team", "admins"),
        ("x-auth-method", "mtls"),
    ];
    let response = wisp.request("GET", "/api/orders", &spoofed).await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.upstream_header("x-team"), ["payments"]);
    assert_eq!(response.upstream_header("x-level"), ["3"]);
    assert_eq!(response.upstream_header("x-auth-method"), ["jwt"]);
    let names = response.upstream_header_names();
    assert!(
        !names.iter().any(|n| n.eq_ignore_ascii_case("x_team")),
        "{names:?}"
    );

    // A caller without the claim: no header, whatever the client sent.
    let bare = issuer.token(json!({"sub": "acme:batch"}));
    let auth = format!("Bearer {bare}");
    let response = wisp
        .request(
            "GET",
            "/api/orders",
            &[("authorization", &auth), ("x-team", "admins")],
        )
        .await;
    assert_eq!(response.status, 200);
    assert!(
        response.upstream_header("x-team").is_empty(),
        "{:?}",
        response.upstream_header_names()
    );

    // The decision service hands the same headers to the calling proxy.
    let auth = format!("Bearer {token}");
    let answer = get(
        decision,
        "/auth",
        &[
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/api/orders"),
            ("x-forwarded-host", "orders.example"),
            ("authorization", &auth),
        ],
    )
    .await
    .expect("forward auth");
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.header("x-team"), Some("payments"));
    assert_eq!(answer.header("x-level"), Some("3"));
}
