//! wisp's own error responses on a connection it then closes say
//! `Connection: close` (a pool must not send another request on it): 502
//! (upstream down), 504 (upstream too slow), 400 (a broken request body).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const ALLOW_ALL: &str = r#"@id("all") permit (principal, action, resource);"#;

/// Starts wisp in front of `upstream` with a 1 s read timeout.
async fn wisp_in_front_of(upstream: SocketAddr) -> (DevIssuer, Wisp, String) {
    let issuer = start_issuer().await;
    let wisp = WispBuilder::new(upstream)
        .issuer(issuer_yaml("dev", &issuer, ""))
        .policy("all.cedar", ALLOW_ALL)
        .start_edited(|config| config.replace("read_timeout: 2s", "read_timeout: 1s"))
        .await;
    wisp.wait_ready().await;
    let token = issuer.token(json!({"sub": "acme:frontend:web-1"}));
    (issuer, wisp, token)
}

/// Sends `head` (+ `body`) on a keep-alive connection, reads one response,
/// and checks that it says `Connection: close` and that the connection ends.
async fn answered_and_closed(wisp: &Wisp, request: String, status: u16) {
    let mut stream = TcpStream::connect(wisp.listen).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let response = read_one_response(&mut stream).await.unwrap();
    assert_eq!(response.status, status, "{}", response.body);
    assert_eq!(
        response.header("connection"),
        Some("close"),
        "{:?}",
        response.headers
    );
    assert!(closed_within(&mut stream, Duration::from_secs(10)).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_502_for_an_upstream_that_is_down_says_connection_close() {
    let down: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (_issuer, wisp, token) = wisp_in_front_of(down).await;
    let request = format!("GET /api HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {token}\r\n\r\n");
    answered_and_closed(&wisp, request, 502).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_504_for_a_slow_upstream_says_connection_close() {
    // An upstream that accepts, reads, and never answers (for 30 s at most).
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok(Ok((mut stream, _))) =
            tokio::time::timeout(Duration::from_secs(30), listener.accept()).await
        {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf).await;
            held.push(stream);
        }
    });
    let (_issuer, wisp, token) = wisp_in_front_of(upstream).await;
    let request = format!("GET /api HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {token}\r\n\r\n");
    answered_and_closed(&wisp, request, 504).await;
    silent.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_400_for_a_broken_chunked_body_says_connection_close() {
    let echo = start_echo().await;
    let (_issuer, wisp, token) = wisp_in_front_of(echo.addr()).await;
    let request = format!(
        "POST /api HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {token}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"
    );
    answered_and_closed(&wisp, request, 400).await;
}
