//! One case table, four front ends: the proxy, the decision service's gRPC
//! `Check`, its forward-auth endpoint (Traefik/Caddy headers) and Envoy's
//! HTTP ext_authz mode (the original path after `/auth`). Every case must
//! get the same status and the same logged `reason` from each: they all run
//! `pipeline::decide`.
//!
//! Not in the table, because the transports differ: repeated
//! `Authorization` headers (Envoy's gRPC attributes join repeats into one
//! value) and client certificates (the proxy's TLS listener vs Envoy's
//! `source.principal`, covered in `decision_service.rs` and `mtls.rs`).

mod common;

use std::net::SocketAddr;

use common::ext_authz::{check_request, AuthzClient, Checked};
use common::*;
use serde_json::json;

const POLICIES: &str = r#"
@id("frontend-reads-api")
permit (principal, action in Action::"read", resource)
when { principal.sub like "acme:frontend:*" && resource.path like "/api/*" };

@id("nobody-on-admin")
forbid (principal, action, resource)
when { resource.path like "/admin*" };
"#;

/// One request: method, target, Authorization (empty: none); then the
/// expected status and reason.
struct Case {
    method: &'static str,
    target: &'static str,
    authorization: String,
    status: u16,
    reason: &'static str,
}

fn cases(issuer: &DevIssuer) -> Vec<Case> {
    let bearer = |claims: serde_json::Value| format!("Bearer {}", issuer.token(claims));
    let frontend = bearer(json!({"sub": "acme:frontend:web-1"}));
    let case = |method, target, authorization: &str, status, reason| Case {
        method,
        target,
        authorization: authorization.to_owned(),
        status,
        reason,
    };
    vec![
        case("GET", "/api/orders", &frontend, 200, "policy"),
        case("GET", "/api/orders?limit=5", &frontend, 200, "policy"),
        case("HEAD", "/api/orders", &frontend, 200, "policy"),
        case("POST", "/api/orders", &frontend, 403, "policy"),
        case("GET", "/internal", &frontend, 403, "policy"),
        case(
            "GET",
            "/api/orders",
            &bearer(json!({"sub": "evil:web"})),
            403,
            "policy",
        ),
        case("GET", "/api/../admin", &frontend, 403, "policy"),
        case("GET", "//api//orders", &frontend, 200, "policy"),
        case("GET", "/api/%6frders", &frontend, 200, "policy"),
        case("GET", "/api%2Forders", &frontend, 400, "path_encoded_slash"),
        case("GET", "/api/orders", "", 401, "missing_token"),
        case(
            "GET",
            "/api/orders",
            "Basic YWxhZGRpbjpvcGVu",
            401,
            "unsupported_scheme",
        ),
        case(
            "GET",
            "/api/orders",
            "Bearer not-a-jwt",
            401,
            "malformed_token",
        ),
        case(
            "GET",
            "/api/orders",
            &bearer(json!({"sub": "acme:frontend:web-1", "iat": 1000, "exp": 1060})),
            401,
            "token_expired",
        ),
        case(
            "GET",
            "/api/orders",
            &bearer(json!({"sub": "acme:frontend:web-1", "aud": "billing"})),
            401,
            "bad_audience",
        ),
        case("GET", "/public/docs", "", 200, "public_route"),
    ]
}

/// The status each front end answers (or tells its caller to answer).
async fn through_proxy(wisp: &Wisp, case: &Case, id: &str) -> u16 {
    let mut headers = vec![("x-request-id", id)];
    if !case.authorization.is_empty() {
        headers.push(("authorization", case.authorization.as_str()));
    }
    wisp.request(case.method, case.target, &headers)
        .await
        .status
}

async fn through_grpc(addr: SocketAddr, case: &Case, id: &str) -> u16 {
    let mut headers = vec![("x-request-id", id)];
    if !case.authorization.is_empty() {
        headers.push(("authorization", case.authorization.as_str()));
    }
    let request = check_request(case.method, case.target, &headers, "203.0.113.7", "");
    let mut client = AuthzClient::connect(addr).await.expect("connect");
    Checked::from(client.check(request).await.expect("Check")).status
}

async fn through_forward_auth(addr: SocketAddr, case: &Case, id: &str) -> u16 {
    let mut headers = vec![
        ("x-request-id", id),
        ("x-forwarded-method", case.method),
        ("x-forwarded-uri", case.target),
        ("x-forwarded-host", "orders.internal"),
        ("x-forwarded-for", "203.0.113.7"),
    ];
    if !case.authorization.is_empty() {
        headers.push(("authorization", case.authorization.as_str()));
    }
    get(addr, "/auth", &headers)
        .await
        .expect("forward auth")
        .status
}

async fn through_envoy_http(addr: SocketAddr, case: &Case, id: &str) -> u16 {
    let mut headers = vec![("x-request-id", id)];
    if !case.authorization.is_empty() {
        headers.push(("authorization", case.authorization.as_str()));
    }
    let target = format!("/auth{}", case.target);
    request(addr, case.method, &target, &headers)
        .await
        .expect("envoy http")
        .status
}

#[tokio::test(flavor = "multi_thread")]
async fn the_proxy_and_every_decision_endpoint_decide_each_case_alike() {
    let (issuer, _echo, wisp, addr) = deploy_with_decision(
        "",
        &[("api.cedar", POLICIES)],
        "routes: { public: [/public/*] }\n",
    )
    .await;
    let mut failures = Vec::new();
    for (index, case) in cases(&issuer).iter().enumerate() {
        let fronts = ["proxy", "grpc", "forward-auth", "envoy-http"];
        for front in fronts {
            let id = format!("case-{index}-{front}");
            let mode = if front == "proxy" {
                "proxy"
            } else {
                "decision"
            };
            let public = format!(
                r#"wisp_requests_total{{decision="public",issuer="none",mode="{mode}",reason="public_route"}}"#
            );
            let publics_before = metric_value(&wisp.metrics().await, &public);
            let status = match front {
                "proxy" => through_proxy(&wisp, case, &id).await,
                "grpc" => through_grpc(addr, case, &id).await,
                "forward-auth" => through_forward_auth(addr, case, &id).await,
                _ => through_envoy_http(addr, case, &id).await,
            };
            let reason = if case.reason == "public_route" {
                // Public 200s are not logged (`log.decisions: all` skips
                // them): counted under their reason instead.
                let counted = metric_value(&wisp.metrics().await, &public) - publics_before;
                if counted == 1.0 {
                    "public_route"
                } else {
                    "not counted as public"
                }
                .to_owned()
            } else {
                wisp.wait_log(&format!(r#""request_id":"{id}""#)).await;
                let line = wisp
                    .decisions()
                    .into_iter()
                    .find(|l| l["request_id"] == id.as_str())
                    .expect("logged");
                assert_eq!(line["mode"], mode, "{id}");
                line["reason"].as_str().unwrap_or_default().to_owned()
            };
            if status != case.status || reason != case.reason {
                failures.push(format!(
                    "{} {} via {front}: want {} {}, got {status} {reason}",
                    case.method, case.target, case.status, case.reason
                ));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}
