use std::net::SocketAddr;
use std::time::Instant;

use serde_json::json;
use tokio::io::{AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;

use super::*;
use crate::devtools::test_client::{get, read_reply, request, send};

async fn start() -> EchoServer {
    EchoServer::start(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap()
}

#[tokio::test]
async fn echo_returns_method_path_query_and_body() {
    let echo = start().await;
    let reply = send(echo.addr(), "POST", "/api/orders?id=7&x", &[], "hello").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let seen = reply.json();
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["path"], "/api/orders");
    assert_eq!(seen["query"], "id=7&x");
    assert_eq!(seen["body"], "hello");
    assert_eq!(
        get(echo.addr(), "/plain").await.json()["query"],
        json!(null)
    );
}

#[tokio::test]
async fn echo_returns_every_header_lowercased_with_duplicates_in_order() {
    let echo = start().await;
    let headers = [
        ("X-Wisp-Subject", "spoofed"),
        ("x-wisp-subject", "twice"),
        ("Authorization", "Bearer abc"),
        ("x_wisp_tags", "a,b"),
        ("X-Custom", "  padded value"),
    ];
    let seen = send(echo.addr(), "GET", "/", &headers, "").await.json();
    assert_eq!(
        seen["headers"],
        json!([
            ["host", "test"],
            ["x-wisp-subject", "spoofed"],
            ["x-wisp-subject", "twice"],
            ["authorization", "Bearer abc"],
            ["x_wisp_tags", "a,b"],
            ["x-custom", "padded value"],
        ])
    );
}

#[tokio::test]
async fn status_path_answers_that_status_with_the_echo_body() {
    let echo = start().await;
    let reply = get(echo.addr(), "/status/503").await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.json()["path"], "/status/503");
    assert_eq!(get(echo.addr(), "/status/404/more").await.status, 404);
    assert_eq!(get(echo.addr(), "/status/abc").await.status, 200);
    assert_eq!(get(echo.addr(), "/status/100").await.status, 200);
}

#[tokio::test]
async fn slow_path_waits_the_requested_milliseconds() {
    let echo = start().await;
    let started = Instant::now();
    assert_eq!(get(echo.addr(), "/slow?ms=150").await.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn connections_are_kept_alive_and_every_request_is_counted() {
    let echo = start().await;
    let mut connection = BufReader::new(TcpStream::connect(echo.addr()).await.unwrap());
    for path in ["/one", "/two", "/three"] {
        connection
            .get_mut()
            .write_all(&request("GET", path, &[], ""))
            .await
            .unwrap();
        assert_eq!(read_reply(&mut connection).await.json()["path"], path);
    }
    assert_eq!(echo.requests(), 3);
}

#[tokio::test]
async fn after_shutdown_connections_are_refused() {
    let echo = start().await;
    let addr = echo.addr();
    get(addr, "/").await;
    echo.shutdown().await;
    let refused = TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
}
