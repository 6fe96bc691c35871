//! The process lifecycle, with real signals: SIGTERM/SIGINT drain (readiness
//! drops at once, the listener keeps serving for `drain_delay`, then closes;
//! requests in flight finish within `shutdown_grace`; exit 0), and open
//! WebSockets are closed and logged at the end of the grace.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::SinkExt as _;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

const ALLOW_ALL: &str = "permit (principal, action, resource);";

/// wisp in front of the echo upstream with `extra` top-level YAML.
async fn deployment(extra: &str) -> (DevIssuer, EchoServer, Wisp) {
    deploy("", &[("all.cedar", ALLOW_ALL)], extra).await
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_a_request_in_flight_finish_and_refuses_new_connections_after_the_drain() {
    let (issuer, _echo, mut wisp) = deployment("drain_delay: 1s\nshutdown_grace: 5s").await;
    let token = issuer.token(json!({"sub": "acme:frontend:web-1"}));
    let auth = format!("Bearer {token}");
    let listen = wisp.listen;

    // A slow request (the upstream takes 1.8 s, within the 2 s read timeout),
    // in flight across the whole drain.
    let slow = tokio::spawn({
        let auth = auth.clone();
        async move { request(listen, "GET", "/slow?ms=1800", &[("authorization", &auth)]).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let metrics = wisp.metrics().await;
    assert_eq!(metric_value(&metrics, "wisp_in_flight_requests"), 1.0);
    let signalled = Instant::now();
    wisp.signal("TERM");

    // Readiness drops at once …
    tokio::time::sleep(Duration::from_millis(150)).await;
    let ready = get(wisp.admin, "/readyz", &[]).await.expect("readyz");
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert_eq!(ready.json()["draining"], true);
    // … while the listener still serves new connections, telling them to go.
    let during = wisp.get_with_token("/api/orders", &token).await;
    assert_eq!(during.status, 200, "{}", wisp.log());
    assert_eq!(during.header("connection"), Some("close"));

    // After the drain delay the listener is closed: new connections are refused.
    tokio::time::sleep(Duration::from_millis(1300).saturating_sub(signalled.elapsed())).await;
    let refused = tokio::net::TcpStream::connect(listen).await;
    assert!(refused.is_err(), "connected after the drain delay");

    // The request in flight completes.
    let slow = slow.await.unwrap().expect("the slow request completes");
    assert_eq!(slow.status, 200, "{}", wisp.log());
    // The process exits 0 once nothing is in flight, well within the grace.
    let status = wisp
        .wait_exit(Duration::from_secs(5 + 1))
        .await
        .unwrap_or_else(|| panic!("still running:\n{}", wisp.log()));
    assert!(status.success(), "{status:?}\n{}", wisp.log());
    assert!(
        signalled.elapsed() < Duration::from_secs(1 + 5 + 1),
        "{:?}",
        signalled.elapsed()
    );
    // Every finished request was logged.
    let slow_line = wisp
        .decisions()
        .into_iter()
        .find(|line| line["path"] == "/slow")
        .unwrap_or_else(|| panic!("the slow request is not logged:\n{}", wisp.log()));
    assert_eq!(slow_line["status"], 200);
    assert_eq!(slow_line["decision"], "allow");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigint_drains_like_sigterm_and_an_idle_process_exits_right_after_the_drain_delay() {
    let (_issuer, _echo, mut wisp) = deployment("drain_delay: 1s\nshutdown_grace: 20s").await;
    let signalled = Instant::now();
    wisp.signal("INT");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(get(wisp.admin, "/readyz", &[]).await.unwrap().status, 503);
    let metrics = wisp.metrics().await;
    assert_eq!(metric_value(&metrics, "wisp_draining"), 1.0, "{metrics}");
    let status = wisp
        .wait_exit(Duration::from_secs(5))
        .await
        .unwrap_or_else(|| panic!("an idle process waited out its grace:\n{}", wisp.log()));
    assert!(status.success(), "{status:?}");
    let took = signalled.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "{took:?}: before the drain delay"
    );
    assert!(took < Duration::from_secs(4), "{took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_websocket_still_open_at_the_end_of_the_grace_is_closed_and_logged() {
    let issuer = start_issuer().await;
    let upstream = common::ws::start_ws_upstream().await;
    let mut wisp = WispBuilder::new(upstream.addr())
        .issuer(issuer_yaml("dev", &issuer, ""))
        .policy("all.cedar", ALLOW_ALL)
        .extra("drain_delay: 0s\nshutdown_grace: 1s")
        .start()
        .await;
    wisp.wait_ready().await;
    let token = issuer.token(json!({"sub": "acme:frontend:web-1"}));
    let auth = format!("Bearer {token}");
    let mut socket =
        common::ws::ws_connect(wisp.listen, "/api/stream", &[("authorization", &auth)])
            .await
            .unwrap_or_else(|refused| panic!("upgrade refused: {refused:?}"));
    common::ws::upgrade_seen(&mut socket).await;
    socket.send(Message::text("before")).await.unwrap();
    assert_eq!(common::ws::next_text(&mut socket).await, "before");

    let signalled = Instant::now();
    wisp.signal("TERM");
    // Still usable during the grace.
    tokio::time::sleep(Duration::from_millis(300)).await;
    socket.send(Message::text("during")).await.unwrap();
    assert_eq!(common::ws::next_text(&mut socket).await, "during");

    let status = wisp
        .wait_exit(Duration::from_secs(1 + 2))
        .await
        .unwrap_or_else(|| panic!("still running:\n{}", wisp.log()));
    assert!(status.success(), "{status:?}\n{}", wisp.log());
    assert!(signalled.elapsed() < Duration::from_secs(1 + 1 + 1));
    // The socket is closed with the process.
    use futures_util::StreamExt as _;
    let end = tokio::time::timeout(Duration::from_secs(2), socket.next()).await;
    assert!(
        matches!(
            end,
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_))))
        ),
        "{end:?}"
    );
    let cut = wisp
        .decisions()
        .into_iter()
        .find(|line| line["path"] == "/api/stream")
        .unwrap_or_else(|| panic!("the WebSocket is not logged:\n{}", wisp.log()));
    assert_eq!(cut["status"], 101, "{cut}");
    assert_eq!(cut["detail"], "cut at the end of shutdown_grace", "{cut}");
}
