//! The decision service end to end: the real binary, a real dev issuer, and
//! Envoy-shaped (gRPC ext_authz, HTTP ext_authz) and Traefik-shaped
//! (ForwardAuth headers) callers. Real nginx and Caddy are in
//! `forward_auth_servers.rs`; the proxy/decision-service parity table is in
//! `decision_parity.rs`.

mod common;

use common::ext_authz::{check_request, AuthzClient, Checked};
use common::*;
use serde_json::json;

const POLICIES: &str = r#"
@id("frontend-reads-api")
permit (principal, action in Action::"read", resource)
when { principal.sub like "acme:frontend:*" && resource.path like "/api/*" };

@id("web-workload-reads-api")
permit (principal, action in Action::"read", resource)
when { principal.sub == "spiffe://example.org/ns/shop/sa/web" && resource.path like "/api/*" };
"#;

async fn deployment() -> (DevIssuer, EchoServer, Wisp, std::net::SocketAddr) {
    deploy_with_decision(
        "",
        &[("api.cedar", POLICIES)],
        "trust_domains: [example.org]\n",
    )
    .await
}

async fn check(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    principal: &str,
) -> Checked {
    let mut client = AuthzClient::connect(addr).await.expect("connect");
    let response = client
        .check(check_request(
            method,
            path,
            headers,
            "203.0.113.7",
            principal,
        ))
        .await
        .expect("Check");
    Checked::from(response)
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_check_allows_with_identity_headers_and_removes_client_copies() {
    let (issuer, _echo, wisp, addr) = deployment().await;
    let token = issuer.token(json!({"sub": "acme:frontend:web-1"}));
    let auth = format!("Bearer {token}");
    let checked = check(
        addr,
        "GET",
        "/api/orders?limit=5",
        &[
            ("authorization", &auth),
            ("x-wisp-subject", "spoofed"),
            ("x_wisp_tags", "tag:admin"),
            ("x-wisp-anything", "x"),
            ("x-request-id", "envoy-req-1"),
        ],
        "",
    )
    .await;
    assert_eq!((checked.code, checked.status), (0, 200), "{checked:?}");
    assert_eq!(
        checked.header("x-wisp-subject"),
        Some("acme:frontend:web-1")
    );
    assert_eq!(checked.header("x-request-id"), Some("envoy-req-1"));
    // The set header replaces the client's copy; the others are removed.
    let mut remove = checked.remove.clone();
    remove.sort();
    assert_eq!(remove, ["x-wisp-anything", "x_wisp_tags"], "{checked:?}");

    let log = wisp.decisions();
    let line = log
        .iter()
        .find(|l| l["request_id"] == "envoy-req-1")
        .expect("decision logged");
    assert_eq!(line["mode"], "decision");
    assert_eq!(line["path"], "/api/orders");
    assert_eq!(line["source_ip"], "203.0.113.7");
    let metrics = wisp.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            r#"wisp_requests_total{decision="allow",issuer="dev",mode="decision",reason="policy"}"#
        ),
        1.0,
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_check_denies_with_the_proxys_status_body_challenge_and_grpc_code() {
    let (issuer, _echo, _wisp, addr) = deployment().await;
    let other = issuer.token(json!({"sub": "evil:web"}));
    let expired = issuer.token(json!({"sub": "acme:frontend:web-1", "iat": 1000, "exp": 1060}));
    let bearer = |t: &str| format!("Bearer {t}");

    let missing = check(addr, "GET", "/api/orders", &[], "").await;
    assert_eq!((missing.code, missing.status), (16, 401), "{missing:?}");
    assert_eq!(
        missing.header("www-authenticate"),
        Some(r#"Bearer realm="wisp""#)
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&missing.body).unwrap(),
        json!({"error": "unauthenticated", "reason": "missing_token"})
    );
    assert_eq!(missing.header("content-type"), Some("application/json"));

    let expired = check(
        addr,
        "GET",
        "/api/orders",
        &[("authorization", &bearer(&expired))],
        "",
    )
    .await;
    assert_eq!((expired.code, expired.status), (16, 401));
    assert!(expired.body.contains("token_expired"), "{expired:?}");

    let forbidden = check(
        addr,
        "GET",
        "/api/orders",
        &[("authorization", &bearer(&other))],
        "",
    )
    .await;
    assert_eq!((forbidden.code, forbidden.status), (7, 403));
    assert_eq!(forbidden.body, r#"{"error":"forbidden"}"#);

    let bad = check(
        addr,
        "GET",
        "/api%2Forders",
        &[("authorization", &bearer(&other))],
        "",
    )
    .await;
    assert_eq!((bad.code, bad.status), (3, 400));
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_check_decides_on_the_normalized_path() {
    let (issuer, _echo, wisp, addr) = deployment().await;
    let token = issuer.token(json!({"sub": "acme:frontend:web-1"}));
    let auth = format!("Bearer {token}");
    let headers = [
        ("authorization", auth.as_str()),
        ("x-request-id", "dotdot-1"),
    ];
    let checked = check(addr, "GET", "/api/../admin", &headers, "").await;
    assert_eq!((checked.code, checked.status), (7, 403), "{checked:?}");
    let line = wisp
        .decisions()
        .into_iter()
        .find(|l| l["request_id"] == "dotdot-1")
        .expect("logged");
    assert_eq!(line["path"], "/admin");
}

#[tokio::test(flavor = "multi_thread")]
async fn envoys_mtls_principal_is_a_certificate_caller_only_in_a_configured_trust_domain() {
    let (_issuer, _echo, _wisp, addr) = deployment().await;
    let web = "spiffe://example.org/ns/shop/sa/web";
    let allowed = check(addr, "GET", "/api/orders", &[], web).await;
    assert_eq!((allowed.code, allowed.status), (0, 200), "{allowed:?}");
    assert_eq!(allowed.header("x-wisp-spiffe-id"), Some(web));
    assert_eq!(allowed.header("x-wisp-subject"), Some(web));

    let foreign = check(
        addr,
        "GET",
        "/api/orders",
        &[],
        "spiffe://evil.org/ns/shop/sa/web",
    )
    .await;
    assert_eq!((foreign.code, foreign.status), (16, 401), "{foreign:?}");
    assert!(
        foreign.body.contains("svid_untrusted_domain"),
        "{foreign:?}"
    );

    // Not a SPIFFE ID (a DNS SAN): ignored, so the request has no credential.
    let dns = check(addr, "GET", "/api/orders", &[], "web.shop.svc").await;
    assert_eq!(dns.status, 401);
    assert!(dns.body.contains("missing_token"), "{dns:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn forward_auth_reads_traefik_headers_and_answers_with_identity_headers() {
    let (issuer, _echo, wisp, addr) = deployment().await;
    let token = issuer.token(json!({"sub": "acme:frontend:web-1"}));
    let auth = format!("Bearer {token}");
    let traefik = |uri: &'static str, auth: &str| {
        vec![
            ("x-forwarded-method".to_owned(), "GET".to_owned()),
            ("x-forwarded-proto".to_owned(), "https".to_owned()),
            ("x-forwarded-host".to_owned(), "orders.example".to_owned()),
            ("x-forwarded-uri".to_owned(), uri.to_owned()),
            (
                "x-forwarded-for".to_owned(),
                "198.51.100.1, 203.0.113.9".to_owned(),
            ),
            ("authorization".to_owned(), auth.to_owned()),
            ("x-request-id".to_owned(), format!("traefik-{}", uri.len())),
        ]
    };
    let send = |headers: Vec<(String, String)>| async move {
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        get(addr, "/auth", &headers).await.expect("forward auth")
    };

    let allowed = send(traefik("/api/orders?limit=5", &auth)).await;
    assert_eq!(allowed.status, 200, "{allowed:?}");
    assert_eq!(
        allowed.header("x-wisp-subject"),
        Some("acme:frontend:web-1")
    );
    assert_eq!(allowed.header("x-wisp-issuer"), Some(issuer.issuer_url()));
    let line = wisp
        .decisions()
        .into_iter()
        .find(|l| l["request_id"] == "traefik-19")
        .expect("logged");
    assert_eq!(line["source_ip"], "203.0.113.9", "the last hop");
    assert_eq!(line["host"], "orders.example");
    assert_eq!(line["mode"], "decision");

    let missing = send(traefik("/api/orders", "")).await;
    assert_eq!(missing.status, 401);
    assert!(missing.header("www-authenticate").is_some());
    assert_eq!(missing.json()["reason"], "missing_token");

    let admin = send(traefik("/api/../admin", &auth)).await;
    assert_eq!(admin.status, 403);
    assert_eq!(admin.json(), json!({"error": "forbidden"}));

    // Two ids, as in the proxy: neither is kept, a fresh one answers.
    let mut twice = traefik("/api/orders", &auth);
    twice.push(("x-request-id".to_owned(), "second".to_owned()));
    let answered = send(twice).await;
    assert_eq!(answered.status, 200, "{answered:?}");
    let id = answered.header("x-request-id").expect("an id");
    assert_eq!(id.len(), 32, "{id}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
}

#[tokio::test(flavor = "multi_thread")]
async fn envoy_http_mode_appends_the_original_path_to_the_auth_prefix() {
    let (issuer, _echo, _wisp, addr) = deployment().await;
    let token = issuer.token(json!({"sub": "acme:frontend:web-1"}));
    let auth = format!("Bearer {token}");
    let allowed = request(
        addr,
        "GET",
        "/auth/api/orders?x=1",
        &[("authorization", &auth)],
    )
    .await
    .unwrap();
    assert_eq!(allowed.status, 200, "{allowed:?}");
    assert_eq!(
        allowed.header("x-wisp-subject"),
        Some("acme:frontend:web-1")
    );
    // The original method is the request's own.
    let post = request(
        addr,
        "POST",
        "/auth/api/orders",
        &[("authorization", &auth)],
    )
    .await
    .unwrap();
    assert_eq!(post.status, 403);
    let other = request(addr, "GET", "/elsewhere", &[]).await.unwrap();
    assert_eq!(other.status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn decision_only_mode_runs_without_a_proxy_listener_or_upstream() {
    let issuer = start_issuer().await;
    let (yaml, addr) = decision_service_yaml();
    let builder = WispBuilder::new("127.0.0.1:9".parse().unwrap())
        .issuer(issuer_yaml("dev", &issuer, ""))
        .policy("api.cedar", POLICIES)
        .extra(&yaml);
    let wisp = builder.start_edited(decision_only).await;
    wisp.wait_ready().await;
    wait_listening(addr).await;
    assert!(
        std::net::TcpStream::connect(wisp.listen).is_err(),
        "no proxy listener in decision-only mode"
    );
    let token = issuer.token(json!({"sub": "acme:frontend:web-1"}));
    let auth = format!("Bearer {token}");
    let allowed = check(addr, "GET", "/api/orders", &[("authorization", &auth)], "").await;
    assert_eq!(allowed.status, 200, "{allowed:?}");
    let metrics = wisp.metrics().await;
    assert!(metrics.contains(r#"mode="decision""#), "{metrics}");
    assert!(!metrics.contains(r#"mode="proxy""#), "{metrics}");
    assert!(
        wisp.log().contains(r#""mode":"decision service""#),
        "{}",
        wisp.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn with_tls_only_proxies_presenting_a_client_certificate_may_ask() {
    use common::tls::Pki;
    let pki = Pki::new();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let yaml = format!(
        "decision_service:\n  listen: {addr}\n  tls: {{ cert: {}, key: {}, client_ca: {} }}\n",
        pki.cert_path.display(),
        pki.key_path.display(),
        pki.ca_path.display()
    );
    let (issuer, _echo, wisp) = deploy("", &[("api.cedar", POLICIES)], &yaml).await;
    wait_listening(addr).await;
    let envoy = pki.ca.svid("spiffe://example.org/ns/edge/sa/envoy");
    let client = pki.client().with_cert(&envoy);

    // Forward-auth over HTTP/1.1 inside mTLS.
    let missing = client
        .request(addr, "GET", "/auth", &[("x-forwarded-uri", "/api/orders")])
        .await
        .expect("mTLS forward-auth");
    assert_eq!(missing.status, 401, "{missing:?}");

    // gRPC Check over HTTP/2 (ALPN h2) inside mTLS.
    let stream = client.connect(addr, &[b"h2"]).await.expect("mTLS h2");
    let mut grpc = AuthzClient::over(stream, "localhost").await.expect("h2");
    let token = issuer.token(json!({"sub": "acme:frontend:web-1"}));
    let auth = format!("Bearer {token}");
    let request = check_request(
        "GET",
        "/api/orders",
        &[("authorization", &auth)],
        "203.0.113.7",
        "",
    );
    let checked = Checked::from(grpc.check(request).await.expect("Check"));
    assert_eq!(checked.status, 200, "{checked:?}");

    // Without a client certificate the handshake is refused.
    assert!(pki.client().handshake_rejected(addr).await);
    drop(wisp);
}

#[tokio::test(flavor = "multi_thread")]
async fn changing_the_decision_service_needs_a_restart() {
    let (issuer, _echo, wisp, addr) = deployment().await;
    let config = wisp.dir.path().join("wisp.yaml");
    let text = std::fs::read_to_string(&config).unwrap();
    let moved = format!("127.0.0.1:{}", free_port());
    std::fs::write(&config, text.replace(&addr.to_string(), &moved)).unwrap();
    wisp.signal("HUP");
    wisp.wait_log("decision_service changed").await;
    assert!(wisp.log().contains("it takes effect only after a restart"));
    // Still served where it was.
    let token = issuer.token(json!({"sub": "acme:frontend:web-1"}));
    let auth = format!("Bearer {token}");
    let checked = check(addr, "GET", "/api/orders", &[("authorization", &auth)], "").await;
    assert_eq!(checked.status, 200);
}
