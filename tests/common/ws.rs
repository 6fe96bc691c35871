//! A WebSocket echo upstream and client. On each upgrade the upstream first
//! sends one text message, JSON `{"path": …, "headers": [[name, value], …]}`
//! describing the upgrade request it saw, then echoes every text/binary
//! message back until the client closes.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

/// How long one WebSocket step may take before the helper gives up.
pub const WS_TIMEOUT: Duration = Duration::from_secs(10);

/// A client-side WebSocket.
pub type WsStream = WebSocketStream<TcpStream>;

/// A running WebSocket echo upstream; stops when dropped.
pub struct WsUpstream {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    upgrades: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl WsUpstream {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Completed WebSocket upgrades so far.
    pub fn upgrades(&self) -> usize {
        self.upgrades.load(Ordering::SeqCst)
    }
}

impl Drop for WsUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the echo upstream on 127.0.0.1:0.
pub async fn start_ws_upstream() -> WsUpstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind ws");
    let addr = listener.local_addr().expect("ws addr");
    let connections = Arc::new(AtomicUsize::new(0));
    let upgrades = Arc::new(AtomicUsize::new(0));
    let (accepted, upgraded) = (connections.clone(), upgrades.clone());
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            accepted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(echo(stream, upgraded.clone()));
        }
    });
    WsUpstream {
        addr,
        connections,
        upgrades,
        task,
    }
}

// The handshake callback's error type is tungstenite's; its size is not ours to shrink.
#[allow(clippy::result_large_err)]
async fn echo(stream: TcpStream, upgrades: Arc<AtomicUsize>) {
    let mut seen = serde_json::Value::Null;
    let record = |request: &Request, response: Response| {
        let headers: Vec<serde_json::Value> = request
            .headers()
            .iter()
            .map(|(name, value)| {
                serde_json::json!([name.as_str(), String::from_utf8_lossy(value.as_bytes())])
            })
            .collect();
        seen = serde_json::json!({"path": request.uri().to_string(), "headers": headers});
        Ok(response)
    };
    let Ok(mut socket) = tokio_tungstenite::accept_hdr_async(stream, record).await else {
        return;
    };
    upgrades.fetch_add(1, Ordering::SeqCst);
    if socket.send(Message::text(seen.to_string())).await.is_err() {
        return;
    }
    while let Some(Ok(message)) = socket.next().await {
        let reply = match message {
            Message::Text(_) | Message::Binary(_) => message,
            Message::Close(_) => break,
            _ => continue,
        };
        if socket.send(reply).await.is_err() {
            break;
        }
    }
}

/// A refused upgrade: the HTTP response that came back instead of 101.
#[derive(Debug)]
pub struct WsRefused {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// Opens a WebSocket to `ws://addr{path}` with extra request headers.
///
/// # Errors
/// The server answered the upgrade with something other than 101.
///
/// # Panics
/// On transport failures (connect, timeout, broken handshake), which no test expects.
pub async fn ws_connect(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<WsStream, WsRefused> {
    let mut request = format!("ws://{addr}{path}")
        .into_client_request()
        .expect("valid ws request");
    for (name, value) in headers {
        request.headers_mut().append(
            http::HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            http::HeaderValue::from_str(value).expect("header value"),
        );
    }
    let stream = tokio::time::timeout(WS_TIMEOUT, TcpStream::connect(addr))
        .await
        .expect("ws connect timeout")
        .expect("ws connect");
    let handshake =
        tokio::time::timeout(WS_TIMEOUT, tokio_tungstenite::client_async(request, stream))
            .await
            .expect("ws handshake timeout");
    match handshake {
        Ok((socket, _)) => Ok(socket),
        Err(WsError::Http(response)) => Err(WsRefused {
            status: response.status().as_u16(),
            headers: response
                .headers()
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: response
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default(),
        }),
        Err(other) => panic!("WebSocket handshake failed: {other}"),
    }
}

/// The next text message, skipping pings and pongs.
///
/// # Panics
/// On timeout, close, a binary message, or a transport error.
pub async fn next_text(socket: &mut WsStream) -> String {
    // Bounded: a well-behaved peer sends few control frames between messages.
    for _ in 0..16 {
        let message = tokio::time::timeout(WS_TIMEOUT, socket.next())
            .await
            .expect("ws read timeout")
            .expect("ws stream ended")
            .expect("ws read");
        match message {
            Message::Text(text) => return text.to_string(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a text message, got {other:?}"),
        }
    }
    panic!("no text message among 16 control frames")
}

/// The upgrade request the upstream reported in its first message.
pub async fn upgrade_seen(socket: &mut WsStream) -> serde_json::Value {
    let text = next_text(socket).await;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Every value of header `name` in an [`upgrade_seen`] report.
pub fn seen_header(seen: &serde_json::Value, name: &str) -> Vec<String> {
    seen["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .filter(|pair| pair[0].as_str() == Some(name))
        .map(|pair| pair[1].as_str().unwrap_or_default().to_string())
        .collect()
}
