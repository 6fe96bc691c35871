//! `limits:` through the real binary: a whole-request-header deadline
//! against slowloris clients, the idle keep-alive timeout, and the cap on
//! open connections. Bounded counts; the assertions are on connections
//! being closed (or not), never on how long something took.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const ALLOW_ALL: &str = r#"@id("all") permit (principal, action, resource);"#;

async fn deployment(limits: &str) -> (DevIssuer, EchoServer, Wisp) {
    deploy("", &[("all.cedar", ALLOW_ALL)], limits).await
}

#[tokio::test(flavor = "multi_thread")]
async fn slowloris_connections_are_closed_at_the_header_deadline() {
    let (_issuer, _echo, wisp) = deployment("limits: { header_timeout: 1s }").await;
    let mut clients = tokio::task::JoinSet::new();
    for n in 0..50 {
        let addr = wisp.listen;
        clients.spawn(async move {
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            stream
                .write_all(format!("GET /{n} HTTP/1.1\r\nHost: a\r\n").as_bytes())
                .await
                .expect("request line");
            // One header line every 300 ms, for at most 30 lines (9 s): the
            // header is never finished.
            for line in 0..30 {
                if closed_within(&mut stream, Duration::from_millis(300)).await {
                    return true;
                }
                if stream
                    .write_all(format!("x-slow-{line}: y\r\n").as_bytes())
                    .await
                    .is_err()
                {
                    return true;
                }
            }
            false
        });
    }
    let mut closed = 0;
    while let Some(result) = clients.join_next().await {
        closed += usize::from(result.expect("client task"));
    }
    assert_eq!(closed, 50, "connections still open after 30 header lines");
    // The proxy still serves a client that sends its header at once.
    let response = wisp.request("GET", "/x", &[]).await;
    assert_eq!(response.status, 401, "{}", response.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_that_sends_nothing_is_closed_at_the_header_deadline() {
    let (_issuer, _echo, wisp) = deployment("limits: { header_timeout: 1s }").await;
    let mut stream = TcpStream::connect(wisp.listen).await.unwrap();
    assert!(closed_within(&mut stream, Duration::from_secs(10)).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_keep_alive_connection_is_closed_after_idle_timeout() {
    let (_issuer, _echo, wisp) =
        deployment("limits: { idle_timeout: 1s, header_timeout: 30s }").await;
    let mut stream = TcpStream::connect(wisp.listen).await.unwrap();
    for _ in 0..2 {
        stream
            .write_all(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        let response = read_one_response(&mut stream).await.unwrap();
        assert_eq!(response.status, 401, "{}", response.body);
        assert_eq!(response.header("connection"), Some("keep-alive"));
    }
    // Kept alive after the responses, then closed once idle: well before
    // pingora's default 60 s.
    assert!(closed_within(&mut stream, Duration::from_secs(15)).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_over_max_connections_are_refused_and_counted() {
    let (_issuer, _echo, wisp) =
        deployment("limits: { max_connections: 20, header_timeout: 60s }").await;
    let mut open = Vec::new();
    for _ in 0..20 {
        let mut stream = TcpStream::connect(wisp.listen).await.unwrap();
        // A partial request: the connection is past accept and held open.
        stream.write_all(b"GET /x HTTP/1.1\r\n").await.unwrap();
        open.push(stream);
    }
    let gauge = "wisp_downstream_connections";
    let mut metrics = wisp.metrics().await;
    for _ in 0..100 {
        if metric_value(&metrics, gauge) == 20.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        metrics = wisp.metrics().await;
    }
    assert_eq!(metric_value(&metrics, gauge), 20.0, "{metrics}");

    let mut refused = TcpStream::connect(wisp.listen).await.unwrap();
    assert!(closed_within(&mut refused, Duration::from_secs(10)).await);
    let metrics = wisp.metrics().await;
    assert_eq!(metric_value(&metrics, gauge), 20.0);
    assert_eq!(
        metric_value(&metrics, "wisp_downstream_connections_refused_total"),
        1.0
    );
    // The open ones still work, and a closed one frees its place.
    open[0].write_all(b"Host: a\r\n\r\n").await.unwrap();
    let response = read_one_response(&mut open[0]).await.unwrap();
    assert_eq!(response.status, 401, "{}", response.body);
    drop(open.remove(0));
    let mut served = None;
    for _ in 0..100 {
        if let Ok(response) = get(wisp.listen, "/x", &[]).await {
            served = Some(response.status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(served, Some(401));
}
