//! A one-request HTTP/2 client over any byte stream: h2c (prior knowledge) on
//! a plain TCP connection, or HTTP/2 inside a TLS stream (see `common::tls`).
//! It returns status, headers, body and trailers so tests can check what a
//! proxy did to each of them.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// How long one exchange may take before the helper gives up.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// A complete HTTP/2 response.
#[derive(Debug, Clone)]
pub struct H2Response {
    pub status: u16,
    /// Lowercase names, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// Lowercase names; empty when the response carried no trailers.
    pub trailers: Vec<(String, String)>,
}

impl H2Response {
    /// The first header with this (lowercase) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        first(&self.headers, name)
    }

    /// The first trailer with this (lowercase) name.
    pub fn trailer(&self, name: &str) -> Option<&str> {
        first(&self.trailers, name)
    }

    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// `grpc-status`, from the headers (a trailers-only response) or the trailers.
    pub fn grpc_status(&self) -> Option<i32> {
        self.header("grpc-status")
            .or_else(|| self.trailer("grpc-status"))
            .and_then(|code| code.parse().ok())
    }
}

fn first<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn pairs(headers: &http::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// A request for `authority` (`host:port`, sent as `:authority`).
pub fn build_request(
    authority: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> http::Request<Full<Bytes>> {
    let mut builder = http::Request::builder()
        .method(method)
        .uri(format!("http://{authority}{target}"));
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder
        .body(Full::new(body.into()))
        .expect("valid test request")
}

/// Sends one request over an established stream with HTTP/2 and reads the
/// whole response, trailers included.
///
/// # Errors
/// The HTTP/2 handshake, the exchange, or the time limit failed.
pub async fn request_over<IO>(
    io: IO,
    request: http::Request<Full<Bytes>>,
) -> std::io::Result<H2Response>
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let exchange = async move {
        let (mut sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .map_err(std::io::Error::other)?;
        let driver = tokio::spawn(connection);
        let response = sender
            .send_request(request)
            .await
            .map_err(std::io::Error::other)?;
        let (parts, body) = response.into_parts();
        let collected = body.collect().await.map_err(std::io::Error::other)?;
        driver.abort();
        Ok(H2Response {
            status: parts.status.as_u16(),
            headers: pairs(&parts.headers),
            trailers: collected.trailers().map(pairs).unwrap_or_default(),
            body: collected.to_bytes(),
        })
    };
    tokio::time::timeout(EXCHANGE_TIMEOUT, exchange)
        .await
        .map_err(|_| std::io::Error::other("HTTP/2 exchange timed out"))?
}

/// One h2c (prior knowledge) request to `addr`.
///
/// # Errors
/// Connecting or the exchange failed.
pub async fn h2c_request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> std::io::Result<H2Response> {
    let stream = tokio::time::timeout(EXCHANGE_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::other("connect timeout"))??;
    let request = build_request(&addr.to_string(), method, target, headers, body);
    request_over(stream, request).await
}
