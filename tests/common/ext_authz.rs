//! Envoy-shaped callers of the decision service: a gRPC ext_authz client
//! (tonic over hyper's HTTP/2, the messages from `wisp::decision::envoy`,
//! whose field numbers a unit test checks against hand-encoded bytes), and
//! `CheckRequest` builders shaped like what Envoy sends.

use std::collections::HashMap;
use std::net::SocketAddr;

use http::uri::PathAndQuery;
use tokio::io::{AsyncRead, AsyncWrite};
use tonic::Status;
use tonic_prost::ProstCodec;

pub use wisp::decision::envoy::*;

use super::grpc::GrpcConnection;
use super::h2::EXCHANGE_TIMEOUT;

/// An `envoy.service.auth.v3.Authorization` client on one HTTP/2 connection.
pub struct AuthzClient(GrpcConnection);

impl AuthzClient {
    /// Connects with h2c (prior knowledge), as Envoy's `envoy_grpc` cluster
    /// with `http2_protocol_options` does.
    pub async fn connect(addr: SocketAddr) -> std::io::Result<AuthzClient> {
        GrpcConnection::connect(addr).await.map(AuthzClient)
    }

    /// Speaks HTTP/2 over an established stream (e.g. mTLS with ALPN h2).
    pub async fn over<IO>(io: IO, authority: &str) -> std::io::Result<AuthzClient>
    where
        IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        GrpcConnection::over(io, authority).await.map(AuthzClient)
    }

    /// One `Check` call.
    pub async fn check(&mut self, request: CheckRequest) -> Result<CheckResponse, Status> {
        self.0
            .grpc
            .ready()
            .await
            .map_err(|e| Status::unavailable(format!("connection not ready: {e}")))?;
        let mut request = tonic::Request::new(request);
        request.set_timeout(EXCHANGE_TIMEOUT);
        let codec = ProstCodec::<CheckRequest, CheckResponse>::default();
        self.0
            .grpc
            .unary(request, PathAndQuery::from_static(CHECK_PATH), codec)
            .await
            .map(tonic::Response::into_inner)
    }
}

/// A `CheckRequest` as Envoy builds it: lowercased header names, the path
/// with its query, the host, and the downstream address.
pub fn check_request(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    source: &str,
    principal: &str,
) -> CheckRequest {
    let headers: HashMap<String, String> = headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), (*v).to_owned()))
        .collect();
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(Peer {
                address: Some(Address {
                    socket_address: Some(SocketAddress {
                        address: source.to_owned(),
                        port_value: 40000,
                    }),
                }),
                service: String::new(),
                principal: principal.to_owned(),
            }),
            destination: None,
            request: Some(AttributeRequest {
                http: Some(HttpRequest {
                    id: String::new(),
                    method: method.to_owned(),
                    host: headers
                        .get("host")
                        .cloned()
                        .unwrap_or_else(|| "orders.internal".into()),
                    headers,
                    path: path.to_owned(),
                    scheme: "http".into(),
                    protocol: "HTTP/1.1".into(),
                    header_map: None,
                }),
            }),
        }),
    }
}

/// What a `CheckResponse` says, flattened for assertions.
#[derive(Debug)]
pub struct Checked {
    /// `status.code` (0 OK, 7, 16, …).
    pub code: i32,
    /// The denied response's HTTP status; 200 when allowed.
    pub status: u16,
    /// Allowed: headers to set; denied: response headers (lowercase names).
    pub headers: Vec<(String, String)>,
    /// Allowed: `headers_to_remove`.
    pub remove: Vec<String>,
    /// Denied: the body.
    pub body: String,
}

impl Checked {
    /// The first header with this name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

impl From<CheckResponse> for Checked {
    fn from(response: CheckResponse) -> Checked {
        let code = response.status.map_or(0, |s| s.code);
        let pairs = |options: Vec<HeaderValueOption>| -> Vec<(String, String)> {
            options
                .into_iter()
                .filter_map(|o| {
                    assert_eq!(
                        o.append.as_ref().map(|a| a.value),
                        Some(false),
                        "headers overwrite"
                    );
                    o.header
                })
                .map(|h| (h.key, h.value))
                .collect()
        };
        match response.http_response {
            Some(HttpResponse::OkResponse(ok)) => Checked {
                code,
                status: 200,
                headers: pairs(ok.headers),
                remove: ok.headers_to_remove,
                body: String::new(),
            },
            Some(HttpResponse::DeniedResponse(denied)) => Checked {
                code,
                status: denied
                    .status
                    .map_or(0, |s| u16::try_from(s.code).unwrap_or(0)),
                headers: pairs(denied.headers),
                remove: Vec::new(),
                body: denied.body,
            },
            None => panic!("a CheckResponse without http_response"),
        }
    }
}
