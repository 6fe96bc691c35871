//! Identity-header hygiene and path normalization through the real proxy.

mod common;

use common::*;
use serde_json::json;

const POLICIES: &str = r#"
@id("api-for-everyone")
permit (principal, action, resource) when { resource.path like "/api/*" };

@id("admin-page-for-admins")
permit (principal, action, resource)
when { principal.sub like "acme:admin:*" && resource.path == "/admin" };
"#;

async fn deployment(extra: &str) -> (DevIssuer, EchoServer, Wisp) {
    let (issuer, echo, wisp) = deploy(
        "    claims: { tags: /tags }\n",
        &[("api.cedar", POLICIES)],
        extra,
    )
    .await;
    (issuer, echo, wisp)
}

#[tokio::test(flavor = "multi_thread")]
async fn spoofed_identity_headers_never_reach_the_upstream() {
    let (issuer, _echo, wisp) = deployment(
        "routes: { public: [/public/*] }\nheaders: { identity: { subject: x-caller, tags: x-caller-tags } }",
    )
    .await;
    let token = issuer.token(json!({"sub": "acme:frontend:web-1", "tags": ["tag:prod"]}));
    let auth = format!("Bearer {token}");
    let spoofed: &[(&str, &str)] = &[
        ("X-Wisp-Subject", "acme:admin:root"),
        ("x-wisp-subject", "one"),
        ("x-wisp-subject", "two"),
        ("x-wisp-anything", "x"),
        ("X_WISP_ISSUER", "https://evil"),
        ("X-CALLER", "acme:admin:root"),
        ("x_caller", "acme:admin:root"),
        ("X-Caller-Tags", "tag:admin"),
        ("x-wisp-spiffe-id", "spiffe://evil/x"),
    ];
    let mut headers = spoofed.to_vec();
    headers.push(("authorization", &auth));
    let response = wisp.request("GET", "/api/orders", &headers).await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(
        response.upstream_header("x-caller"),
        ["acme:frontend:web-1"]
    );
    assert_eq!(response.upstream_header("x-caller-tags"), ["tag:prod"]);
    assert_eq!(
        response.upstream_header("x-wisp-issuer"),
        [issuer.issuer_url()]
    );
    for name in response.upstream_header_names() {
        let folded = name.replace('_', "-");
        assert!(
            !folded.starts_with("x-wisp-") || name == "x-wisp-issuer",
            "spoofed header {name} reached the upstream"
        );
        assert_ne!(
            folded,
            "x-caller-tags".replace("-tags", "").to_string() + "_",
            "{name}"
        );
    }
    let names = response.upstream_header_names();
    assert_eq!(
        names
            .iter()
            .filter(|n| n.replace('_', "-") == "x-caller")
            .count(),
        1,
        "{names:?}"
    );
    assert_eq!(
        names
            .iter()
            .filter(|n| n.replace('_', "-") == "x-wisp-issuer")
            .count(),
        1,
        "{names:?}"
    );

    // Public routes are forwarded without authentication, still stripped.
    let response = wisp.request("GET", "/public/docs", spoofed).await;
    assert_eq!(response.status, 200, "{}", response.body);
    let names = response.upstream_header_names();
    assert!(
        names.iter().all(|n| {
            let n = n.replace('_', "-");
            !n.starts_with("x-wisp-") && n != "x-caller" && n != "x-caller-tags"
        }),
        "{names:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_token_is_forwarded_only_when_configured() {
    let (issuer, _echo, wisp) = deployment("headers: { forward_token: true }").await;
    let token = issuer.token(json!({"sub": "acme:frontend:web-1"}));
    let response = wisp.get_with_token("/api/x", &token).await;
    assert_eq!(
        response.upstream_header("authorization"),
        [format!("Bearer {token}")]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn policy_decides_on_the_normalized_path_and_the_upstream_receives_it() {
    let (issuer, _echo, wisp) = deployment("").await;
    let admin = issuer.token(json!({"sub": "acme:admin:ops"}));
    let frontend = issuer.token(json!({"sub": "acme:frontend:web-1"}));
    for raw in [
        "/a/../admin",
        "/a/%2e%2e/admin",
        "/a/%2E%2E/admin",
        "//admin",
        "/%61dmin",
        "/./admin",
        "/x/y/../../admin",
    ] {
        let response = wisp.get_with_token(raw, &admin).await;
        assert_eq!(response.status, 200, "{raw}: {}", response.body);
        assert_eq!(response.json()["path"], "/admin", "{raw}");
        let response = wisp.get_with_token(raw, &frontend).await;
        assert_eq!(response.status, 403, "{raw} must be decided as /admin");
    }
    for raw in [
        "/admin%2F",
        "/admin%2f",
        "/api/..%2Fadmin",
        "/api/%5C..%5Cadmin",
        "/api/%00",
        "/api/%zz",
    ] {
        let response = wisp.get_with_token(raw, &admin).await;
        assert_eq!(response.status, 400, "{raw}: {}", response.body);
        assert_eq!(response.json()["error"], "bad_request", "{raw}");
    }
    // The query string is kept as sent.
    let response = wisp
        .get_with_token("/api/../api/x?a=%2F&b=..", &frontend)
        .await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.json()["path"], "/api/x");
    assert_eq!(response.json()["query"], "a=%2F&b=..");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fragment_in_the_request_target_is_dropped_or_rejected_never_matched() {
    let (issuer, _echo, wisp) = deployment("").await;
    let frontend = issuer.token(json!({"sub": "acme:frontend:web-1"}));
    let response = wisp.get_with_token("/admin#x", &frontend).await;
    // Either the HTTP parser rejects the `#` (400) or wisp drops the fragment and decides /admin (403).
    assert!(
        matches!(response.status, 400 | 403),
        "{}: {}",
        response.status,
        response.body
    );
    let admin = issuer.token(json!({"sub": "acme:admin:ops"}));
    let response = wisp.get_with_token("/admin#x", &admin).await;
    if response.status == 200 {
        assert_eq!(response.json()["path"], "/admin");
    } else {
        assert_eq!(response.status, 400);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_absolute_form_target_is_decided_and_forwarded_as_its_origin_form() {
    let (issuer, _echo, wisp) = deployment("").await;
    let admin = issuer.token(json!({"sub": "acme:admin:ops"}));
    let frontend = issuer.token(json!({"sub": "acme:frontend:web-1"}));
    let get = |token: &str, target: &'static str, host: &'static str| {
        let auth = format!("Bearer {token}");
        let wisp = &wisp;
        async move {
            wisp.request("GET", target, &[("authorization", &auth), ("host", host)])
                .await
        }
    };
    let response = get(
        &admin,
        "http://orders.internal/x/../admin?a=1",
        "orders.internal",
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.json()["path"], "/admin");
    assert_eq!(response.json()["query"], "a=1");
    assert_eq!(response.upstream_header("host"), ["orders.internal"]);
    let response = get(
        &frontend,
        "http://orders.internal/x/../admin",
        "orders.internal",
    )
    .await;
    assert_eq!(response.status, 403, "decided as /admin");
    // A Host that contradicts the target's authority is ambiguous: refused.
    let response = get(&admin, "http://orders.internal/admin", "other.example").await;
    assert_eq!(response.status, 400);
}
