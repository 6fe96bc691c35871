//! A tiny echo upstream: every request is answered with a JSON description
//! of what arrived, so tests can assert exactly what the proxy forwarded.
//!
//! - `GET /slow?ms=N` waits N milliseconds (at most a minute) first.
//! - a path starting `/status/NNN` answers status NNN (200–599) instead of 200.
//!
//! The body is `{"method", "path", "query", "headers": [[name, value], …],
//! "body"}`; `query` is `null` without a `?`. Header names are lowercase
//! (HTTP/1.1 names are case-insensitive and hyper lowercases them); values
//! are as received (lossy UTF-8). Each name appears in the order it was
//! first seen, with all its values, duplicates kept, in the order received.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::{json, Value};

use super::server::{json_response, Handler, Server};

/// The largest request body echoed back; longer bodies get a 413.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The longest `/slow` delay honoured.
const MAX_SLOW: Duration = Duration::from_secs(60);

/// A running echo upstream. Clones share the same server; it stops on
/// [`EchoServer::shutdown`] or when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct EchoServer {
    state: Arc<EchoState>,
    server: Arc<Server>,
}

#[derive(Debug, Default)]
struct EchoState {
    requests: AtomicUsize,
}

impl EchoServer {
    /// Binds `listen` (port 0 picks a free port) and serves on a tokio task.
    /// Must run inside a tokio runtime.
    ///
    /// # Errors
    ///
    /// The bind error.
    pub async fn start(listen: SocketAddr) -> io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let state = Arc::new(EchoState::default());
        let server = Server::serve(listener, Arc::clone(&state))?;
        Ok(Self {
            state,
            server: Arc::new(server),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// How many requests have arrived (counted before any `/slow` delay).
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Stops serving: when this returns the listener is closed and open
    /// connections are dropped. Affects every clone.
    pub async fn shutdown(&self) {
        self.server.shutdown().await;
    }
}

impl Handler for EchoState {
    async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let (parts, body) = request.into_parts();
        let path = parts.uri.path();
        let query = parts.uri.query();
        if path == "/slow" {
            tokio::time::sleep(slow_delay(query)).await;
        }
        let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(error) => {
                return json_response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &json!({"error": "body_unreadable", "message": error.to_string()}),
                )
            }
        };
        let headers: Vec<Value> = parts
            .headers
            .iter()
            .map(|(name, value)| json!([name.as_str(), String::from_utf8_lossy(value.as_bytes())]))
            .collect();
        let echo = json!({
            "method": parts.method.as_str(),
            "path": path,
            "query": query,
            "headers": headers,
            "body": String::from_utf8_lossy(&body),
        });
        json_response(requested_status(path), &echo)
    }
}

/// The `ms=N` query parameter as a delay, capped at [`MAX_SLOW`].
fn slow_delay(query: Option<&str>) -> Duration {
    let millis = query
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("ms="))
        .and_then(|ms| ms.parse::<u64>().ok())
        .unwrap_or(0);
    Duration::from_millis(millis).min(MAX_SLOW)
}

/// NNN for a path `/status/NNN[/…]` with NNN in 200–599, else 200.
fn requested_status(path: &str) -> StatusCode {
    path.strip_prefix("/status/")
        .and_then(|rest| rest.split('/').next())
        .and_then(|code| code.parse::<u16>().ok())
        .filter(|code| (200..=599).contains(code))
        .and_then(|code| StatusCode::from_u16(code).ok())
        .unwrap_or(StatusCode::OK)
}

#[cfg(test)]
mod tests;
