//! Protocols end to end (issue 3, point 8): WebSocket upgrades, gRPC (unary,
//! server-streaming, trailers, denials as gRPC statuses), HTTP/2 over TLS via
//! ALPN. mTLS and SPIFFE identities are in tests/mtls.rs.
//! Every test starts the real binary with a real dev issuer and real upstreams.

mod common;

use common::grpc::{start_grpc_upstream, EchoClient};
use common::tls::{BrokenSvid, Pki, TlsUpstream};
use common::ws::{seen_header, start_ws_upstream, upgrade_seen, ws_connect};
use common::*;
use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tonic::Code;

const FRONTEND_READS_API: &str = r#"
@id("frontend-reads-api")
permit (principal, action in Action::"read", resource)
when { principal.sub like "acme:frontend:*" && resource.path like "/api/*" };
"#;

const FRONTEND_CALLS_ECHO: &str = r#"
@id("frontend-calls-echo")
permit (principal, action == Action::"POST", resource)
when { principal.sub like "acme:frontend:*" && resource.path like "/wisp.test.Echo/*" };
"#;

// ---------------------------------------------------------------- helpers ---

#[tokio::test(flavor = "multi_thread")]
async fn grpc_helpers_call_the_echo_service_directly() {
    let upstream = start_grpc_upstream().await;
    let mut client = EchoClient::connect(upstream.addr())
        .await
        .expect("h2c connect")
        .with_authorization("Bearer abc");

    let reply = client.say("hello").await.expect("Say").into_inner();
    assert_eq!(reply.message, "hello");
    assert_eq!(reply.metadata["authorization"], "Bearer abc");
    assert_eq!(reply.metadata["content-type"], "application/grpc");

    let counted = client.count(5, None).await.expect("Count");
    assert_eq!(counted.items, [0, 1, 2, 3, 4]);
    assert!(counted.end.is_ok(), "{:?}", counted.end);

    let stopped = client.count(5, Some(2)).await.expect("Count");
    assert_eq!(stopped.items, [0, 1]);
    let status = stopped.end.expect_err("aborted stream");
    assert_eq!(status.code(), Code::Aborted);
    assert_eq!(status.metadata().get("x-stopped-at").unwrap(), "2");

    let raw = grpc::raw_say(upstream.addr(), &[], "raw")
        .await
        .expect("raw Say");
    assert_eq!(raw.status, 200);
    assert_eq!(raw.trailer("grpc-status"), Some("0"));
    assert_eq!(raw.grpc_status(), Some(0));
    assert_eq!(upstream.calls(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_helpers_tell_a_refused_client_certificate_from_an_http_answer() {
    let pki = Pki::new();
    let upstream = TlsUpstream::start(&pki.server, Some(&pki.ca)).await;
    let prod = pki.ca.svid("spiffe://example.org/ns/prod/sa/orders");

    let client = pki.client().with_cert(&prod);
    let response = client
        .request(upstream.addr(), "GET", "/hello", &[])
        .await
        .expect("HTTP/1.1 over TLS");
    assert_eq!(response.status, 200);
    assert_eq!(response.json()["alpn"], "http/1.1");
    assert_eq!(response.json()["client_cert_sha256"], prod.x5t_s256());
    assert!(!client.handshake_rejected(upstream.addr()).await);

    let h2 = client
        .h2_request(upstream.addr(), "GET", "/h2", &[("x-test", "1")], "")
        .await
        .expect("HTTP/2 over TLS");
    assert_eq!(h2.status, 200);
    assert_eq!(h2.json()["alpn"], "h2");
    assert_eq!(h2.json()["path"], "/h2");

    assert!(pki.client().handshake_rejected(upstream.addr()).await);
    for kind in [
        BrokenSvid::UntrustedCa,
        BrokenSvid::Expired,
        BrokenSvid::ServerAuthOnly,
    ] {
        let broken = pki.client().with_cert(&pki.ca.broken_svid(kind));
        assert!(broken.handshake_rejected(upstream.addr()).await, "{kind:?}");
    }
}

// -------------------------------------------------------------- WebSocket ---

async fn websocket_deployment() -> (DevIssuer, common::ws::WsUpstream, Wisp) {
    let issuer = start_issuer().await;
    let upstream = start_ws_upstream().await;
    let wisp = WispBuilder::new(upstream.addr())
        .issuer(issuer_yaml("dev", &issuer, ""))
        .policy("api.cedar", FRONTEND_READS_API)
        .start()
        .await;
    wisp.wait_ready().await;
    (issuer, upstream, wisp)
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_upgrade_on_an_authorized_route_exchanges_messages_through_wisp() {
    let (issuer, upstream, wisp) = websocket_deployment().await;
    let token = issuer.token(json!({"sub": "acme:frontend:web-1"}));
    let auth = format!("Bearer {token}");
    let mut socket = ws_connect(wisp.listen, "/api/stream", &[("authorization", &auth)])
        .await
        .unwrap_or_else(|refused| panic!("upgrade refused: {refused:?}\n{}", wisp.log()));

    let seen = upgrade_seen(&mut socket).await;
    assert_eq!(seen["path"], "/api/stream");
    assert_eq!(
        seen_header(&seen, "x-wisp-subject"),
        ["acme:frontend:web-1"]
    );
    assert!(
        seen_header(&seen, "authorization").is_empty(),
        "token must not be forwarded"
    );

    for text in ["one", "two", "three"] {
        socket.send(Message::text(text)).await.expect("send");
        assert_eq!(ws::next_text(&mut socket).await, text);
    }
    socket.close(None).await.expect("close");
    assert_eq!(upstream.upgrades(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_upgrade_without_a_token_is_refused_with_401_and_never_reaches_the_upstream() {
    let (_issuer, upstream, wisp) = websocket_deployment().await;
    let refused = ws_connect(wisp.listen, "/api/stream", &[])
        .await
        .expect_err("upgrade without a token must be refused");
    assert_eq!(refused.status, 401, "{}", refused.body);
    assert_eq!(upstream.connections(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_upgrade_denied_by_policy_is_refused_with_403_and_never_reaches_the_upstream() {
    let (issuer, upstream, wisp) = websocket_deployment().await;
    let token = issuer.token(json!({"sub": "acme:batch:job-7"}));
    let auth = format!("Bearer {token}");
    let refused = ws_connect(wisp.listen, "/api/stream", &[("authorization", &auth)])
        .await
        .expect_err("upgrade denied by policy must be refused");
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(upstream.connections(), 0);
}

// ------------------------------------------------------------------- gRPC ---

async fn grpc_deployment() -> (DevIssuer, common::grpc::GrpcUpstream, Wisp) {
    let issuer = start_issuer().await;
    let upstream = start_grpc_upstream().await;
    let wisp = WispBuilder::new(upstream.addr())
        .issuer(issuer_yaml("dev", &issuer, ""))
        .policy("grpc.cedar", FRONTEND_CALLS_ECHO)
        .start_edited(upstream_http2)
        .await;
    wisp.wait_ready().await;
    (issuer, upstream, wisp)
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_unary_and_server_streaming_calls_pass_through_wisp_with_trailers() {
    let (issuer, upstream, wisp) = grpc_deployment().await;
    let token = issuer.token(json!({"sub": "acme:frontend:web-1"}));
    let mut client = EchoClient::connect(wisp.listen)
        .await
        .expect("h2c to wisp")
        .with_token(&token);

    let reply = client
        .say("hello")
        .await
        .unwrap_or_else(|status| panic!("Say: {status:?}\n{}", wisp.log()))
        .into_inner();
    assert_eq!(reply.message, "hello");
    assert_eq!(reply.metadata["x-wisp-subject"], "acme:frontend:web-1");
    assert!(!reply.metadata.contains_key("authorization"));

    let counted = client.count(5, None).await.expect("Count");
    assert_eq!(counted.items, [0, 1, 2, 3, 4]);
    assert!(counted.end.is_ok(), "{:?}", counted.end);

    // Trailers after DATA frames survive the proxy.
    let stopped = client.count(5, Some(3)).await.expect("Count");
    assert_eq!(stopped.items, [0, 1, 2]);
    let status = stopped.end.expect_err("aborted stream");
    assert_eq!(status.code(), Code::Aborted);
    assert_eq!(status.metadata().get("x-stopped-at").unwrap(), "3");
    assert_eq!(upstream.calls(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_call_denied_by_policy_gets_grpc_status_permission_denied() {
    let (issuer, upstream, wisp) = grpc_deployment().await;
    let token = issuer.token(json!({"sub": "acme:batch:job-7"}));

    let mut client = EchoClient::connect(wisp.listen)
        .await
        .expect("h2c to wisp")
        .with_token(&token);
    let status = client.say("hello").await.expect_err("denied");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    let auth = format!("Bearer {token}");
    let raw = grpc::raw_say(wisp.listen, &[("authorization", &auth)], "hello")
        .await
        .expect("raw Say");
    assert_eq!(raw.grpc_status(), Some(7), "{raw:?}");
    assert!(
        raw.header("content-type")
            .is_some_and(|ct| ct.starts_with("application/grpc")),
        "{raw:?}"
    );
    assert_eq!(upstream.calls(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_call_without_credentials_gets_grpc_status_unauthenticated() {
    let (_issuer, upstream, wisp) = grpc_deployment().await;

    let mut client = EchoClient::connect(wisp.listen).await.expect("h2c to wisp");
    let status = client.say("hello").await.expect_err("unauthenticated");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let stream_status = client.count(3, None).await.expect_err("unauthenticated");
    assert_eq!(stream_status.code(), Code::Unauthenticated);

    let raw = grpc::raw_say(wisp.listen, &[], "hello")
        .await
        .expect("raw Say");
    assert_eq!(raw.grpc_status(), Some(16), "{raw:?}");
    assert!(
        raw.header("content-type")
            .is_some_and(|ct| ct.starts_with("application/grpc")),
        "{raw:?}"
    );
    assert_eq!(upstream.calls(), 0);
}

// ------------------------------------------------------- TLS and HTTP/2 ---

#[tokio::test(flavor = "multi_thread")]
async fn http2_over_tls_request_is_authorized_and_proxied() {
    let pki = Pki::new();
    let (issuer, echo, wisp) = deploy(
        "",
        &[("api.cedar", FRONTEND_READS_API)],
        &pki.listener_yaml("none"),
    )
    .await;
    let token = issuer.token(json!({"sub": "acme:frontend:web-1"}));
    let auth = format!("Bearer {token}");
    let client = pki.client();

    let allowed = client
        .h2_request(
            wisp.listen,
            "GET",
            "/api/orders?limit=5",
            &[("authorization", &auth)],
            "",
        )
        .await
        .unwrap_or_else(|e| panic!("h2 over TLS: {e}\n{}", wisp.log()));
    assert_eq!(allowed.status, 200, "{}", allowed.text());
    let body = allowed.json();
    assert_eq!(body["path"], "/api/orders");
    assert_eq!(body["query"], "limit=5");

    let denied = client
        .h2_request(
            wisp.listen,
            "GET",
            "/internal",
            &[("authorization", &auth)],
            "",
        )
        .await
        .expect("h2 over TLS");
    assert_eq!(denied.status, 403);
    let anonymous = client
        .h2_request(wisp.listen, "GET", "/api/orders", &[], "")
        .await
        .expect("h2 over TLS");
    assert_eq!(anonymous.status, 401);
    assert_eq!(echo.requests(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_over_tls_with_alpn_h2_reaches_the_grpc_upstream() {
    let pki = Pki::new();
    let issuer = start_issuer().await;
    let upstream = start_grpc_upstream().await;
    let wisp = WispBuilder::new(upstream.addr())
        .issuer(issuer_yaml("dev", &issuer, ""))
        .policy("grpc.cedar", FRONTEND_CALLS_ECHO)
        .extra(&pki.listener_yaml("none"))
        .start_edited(upstream_http2)
        .await;
    wisp.wait_ready().await;
    let token = issuer.token(json!({"sub": "acme:frontend:web-1"}));

    let stream = pki
        .client()
        .connect(wisp.listen, &[b"h2"])
        .await
        .expect("TLS to wisp");
    let authority = format!("localhost:{}", wisp.listen.port());
    let mut client = EchoClient::over(stream, &authority)
        .await
        .expect("h2 over TLS")
        .with_token(&token);
    let reply = client.say("over tls").await.expect("Say").into_inner();
    assert_eq!(reply.message, "over tls");
    let counted = client.count(3, None).await.expect("Count");
    assert_eq!(counted.items, [0, 1, 2]);
}
