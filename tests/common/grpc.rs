//! A tiny gRPC service, `wisp.test.Echo`, written by hand (no protoc): a
//! unary `Say` that echoes the message and the metadata it received, and a
//! server-streaming `Count` that can end with an error carrying trailers.
//! The upstream serves h2c on 127.0.0.1; the client speaks HTTP/2 over any
//! stream (h2c or TLS) and hands back `tonic::Status` for failed calls.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::{ready, Ready};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::stream::{self, Iter};
use http::uri::PathAndQuery;
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Status};
use tonic_prost::ProstCodec;

use super::h2::{build_request, request_over, H2Response, EXCHANGE_TIMEOUT};

/// `/wisp.test.Echo/Say`.
pub const SAY_PATH: &str = "/wisp.test.Echo/Say";
/// `/wisp.test.Echo/Count`.
pub const COUNT_PATH: &str = "/wisp.test.Echo/Count";

/// `message EchoRequest { string message = 1; }`
#[derive(Clone, PartialEq, Message)]
pub struct EchoRequest {
    #[prost(string, tag = "1")]
    pub message: String,
}

/// `message EchoReply { string message = 1; map<string, string> metadata = 2; }`:
/// `metadata` holds every ASCII metadata entry the server received (repeated
/// keys joined with ", ").
#[derive(Clone, PartialEq, Message)]
pub struct EchoReply {
    #[prost(string, tag = "1")]
    pub message: String,
    #[prost(map = "string, string", tag = "2")]
    pub metadata: HashMap<String, String>,
}

/// `message CountRequest { uint32 n = 1; optional uint32 fail_at = 2; }`:
/// stream `0..n`; with `fail_at`, stop after that many items with `ABORTED`
/// and a trailer `x-stopped-at`.
#[derive(Clone, PartialEq, Message)]
pub struct CountRequest {
    #[prost(uint32, tag = "1")]
    pub n: u32,
    #[prost(uint32, optional, tag = "2")]
    pub fail_at: Option<u32>,
}

/// `message CountReply { uint32 i = 1; }`
#[derive(Clone, PartialEq, Message)]
pub struct CountReply {
    #[prost(uint32, tag = "1")]
    pub i: u32,
}

/// A running gRPC upstream; stops when dropped.
pub struct GrpcUpstream {
    addr: SocketAddr,
    calls: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl GrpcUpstream {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// HTTP/2 requests received so far (any path).
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Drop for GrpcUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `wisp.test.Echo` over h2c (HTTP/2 prior knowledge) on 127.0.0.1:0.
pub async fn start_grpc_upstream() -> GrpcUpstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind gRPC");
    let addr = listener.local_addr().expect("gRPC addr");
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    route(request)
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    GrpcUpstream { addr, calls, task }
}

async fn route(
    request: http::Request<Incoming>,
) -> Result<http::Response<tonic::body::Body>, Infallible> {
    Ok(match request.uri().path() {
        SAY_PATH => {
            tonic::server::Grpc::new(ProstCodec::<EchoReply, EchoRequest>::default())
                .unary(Say, request)
                .await
        }
        COUNT_PATH => {
            tonic::server::Grpc::new(ProstCodec::<CountReply, CountRequest>::default())
                .server_streaming(Count, request)
                .await
        }
        other => Status::unimplemented(format!("no method {other}")).into_http(),
    })
}

struct Say;

impl tonic::server::UnaryService<EchoRequest> for Say {
    type Response = EchoReply;
    type Future = Ready<Result<tonic::Response<EchoReply>, Status>>;

    fn call(&mut self, request: tonic::Request<EchoRequest>) -> Self::Future {
        let mut metadata: HashMap<String, String> = HashMap::new();
        for (name, value) in request.metadata().clone().into_headers().iter() {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            metadata
                .entry(name.as_str().to_string())
                .and_modify(|seen| {
                    seen.push_str(", ");
                    seen.push_str(&value);
                })
                .or_insert(value);
        }
        let message = request.into_inner().message;
        ready(Ok(tonic::Response::new(EchoReply { message, metadata })))
    }
}

struct Count;

type CountStream = Iter<std::vec::IntoIter<Result<CountReply, Status>>>;

impl tonic::server::ServerStreamingService<CountRequest> for Count {
    type Response = CountReply;
    type ResponseStream = CountStream;
    type Future = Ready<Result<tonic::Response<CountStream>, Status>>;

    fn call(&mut self, request: tonic::Request<CountRequest>) -> Self::Future {
        let CountRequest { n, fail_at } = request.into_inner();
        let stop = fail_at.map_or(n, |at| at.min(n));
        let mut items: Vec<Result<CountReply, Status>> =
            (0..stop).map(|i| Ok(CountReply { i })).collect();
        if let Some(at) = fail_at {
            let mut trailers = MetadataMap::new();
            trailers.insert("x-stopped-at", MetadataValue::from(at));
            items.push(Err(Status::with_metadata(
                Code::Aborted,
                format!("stopped at {at}"),
                trailers,
            )));
        }
        ready(Ok(tonic::Response::new(stream::iter(items))))
    }
}

/// Adapts hyper's HTTP/2 sender to the tower service tonic's client drives.
#[derive(Clone)]
pub struct H2Channel(pub SendRequest<tonic::body::Body>);

impl tower_service::Service<http::Request<tonic::body::Body>> for H2Channel {
    type Response = http::Response<Incoming>;
    type Error = hyper::Error;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(self.0.send_request(request))
    }
}

/// What a `Count` call streamed before it ended.
#[derive(Debug)]
pub struct Counted {
    /// The `i` of every item, in order.
    pub items: Vec<u32>,
    /// How the stream ended: `Ok` or the status from the trailers.
    pub end: Result<(), Status>,
    /// The trailers of a stream that ended with `grpc-status: 0`.
    pub trailers: Option<MetadataMap>,
}

/// A tonic client core on one HTTP/2 connection, which it closes when
/// dropped: what every gRPC client of the tests is built on.
pub struct GrpcConnection {
    pub grpc: tonic::client::Grpc<H2Channel>,
    connection: JoinHandle<()>,
}

impl Drop for GrpcConnection {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

impl GrpcConnection {
    /// Connects with h2c (prior knowledge) to `addr`.
    ///
    /// # Errors
    /// Connecting or the HTTP/2 handshake failed.
    pub async fn connect(addr: SocketAddr) -> std::io::Result<GrpcConnection> {
        let stream = tokio::time::timeout(EXCHANGE_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| std::io::Error::other("connect timeout"))??;
        GrpcConnection::over(stream, &addr.to_string()).await
    }

    /// Speaks HTTP/2 over an established stream (e.g. TLS with ALPN h2);
    /// `authority` is sent as `:authority`.
    ///
    /// # Errors
    /// The HTTP/2 handshake failed.
    pub async fn over<IO>(io: IO, authority: &str) -> std::io::Result<GrpcConnection>
    where
        IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
                .await
                .map_err(std::io::Error::other)?;
        let connection = tokio::spawn(async move {
            let _ = connection.await;
        });
        let origin: http::Uri = format!("http://{authority}")
            .parse()
            .map_err(std::io::Error::other)?;
        Ok(GrpcConnection {
            grpc: tonic::client::Grpc::with_origin(H2Channel(sender), origin),
            connection,
        })
    }
}

/// A `wisp.test.Echo` client on one HTTP/2 connection.
pub struct EchoClient {
    conn: GrpcConnection,
    authorization: Option<String>,
}

impl EchoClient {
    /// Connects with h2c (prior knowledge) to `addr`.
    ///
    /// # Errors
    /// Connecting or the HTTP/2 handshake failed.
    pub async fn connect(addr: SocketAddr) -> std::io::Result<EchoClient> {
        Ok(EchoClient::on(GrpcConnection::connect(addr).await?))
    }

    /// Speaks HTTP/2 over an established stream (e.g. TLS with ALPN h2);
    /// `authority` is sent as `:authority`.
    ///
    /// # Errors
    /// The HTTP/2 handshake failed.
    pub async fn over<IO>(io: IO, authority: &str) -> std::io::Result<EchoClient>
    where
        IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        Ok(EchoClient::on(GrpcConnection::over(io, authority).await?))
    }

    fn on(conn: GrpcConnection) -> EchoClient {
        EchoClient {
            conn,
            authorization: None,
        }
    }

    /// Sends `authorization: <value>` metadata with every call.
    pub fn with_authorization(mut self, value: &str) -> EchoClient {
        self.authorization = Some(value.to_string());
        self
    }

    /// Sends `authorization: Bearer <token>` with every call.
    pub fn with_token(self, token: &str) -> EchoClient {
        self.with_authorization(&format!("Bearer {token}"))
    }

    fn request<M>(&self, message: M) -> tonic::Request<M> {
        let mut request = tonic::Request::new(message);
        if let Some(value) = &self.authorization {
            request.metadata_mut().insert(
                "authorization",
                value.parse().expect("ASCII authorization value"),
            );
        }
        request.set_timeout(EXCHANGE_TIMEOUT);
        request
    }

    async fn ready(&mut self) -> Result<(), Status> {
        self.conn
            .grpc
            .ready()
            .await
            .map_err(|e| Status::unavailable(format!("connection not ready: {e}")))
    }

    /// Unary `Say`.
    ///
    /// # Errors
    /// The call's `Status` (from `grpc-status`, or inferred from the HTTP status).
    pub async fn say(&mut self, message: &str) -> Result<tonic::Response<EchoReply>, Status> {
        self.ready().await?;
        let request = self.request(EchoRequest {
            message: message.to_string(),
        });
        let codec = ProstCodec::<EchoRequest, EchoReply>::default();
        self.conn
            .grpc
            .unary(request, PathAndQuery::from_static(SAY_PATH), codec)
            .await
    }

    /// Server-streaming `Count`: every item, then how the stream ended.
    ///
    /// # Errors
    /// The call failed before the stream started (e.g. denied by a proxy).
    pub async fn count(&mut self, n: u32, fail_at: Option<u32>) -> Result<Counted, Status> {
        self.ready().await?;
        let request = self.request(CountRequest { n, fail_at });
        let codec = ProstCodec::<CountRequest, CountReply>::default();
        let mut streaming = self
            .conn
            .grpc
            .server_streaming(request, PathAndQuery::from_static(COUNT_PATH), codec)
            .await?
            .into_inner();
        let mut items = Vec::new();
        // Bounded: the server sends at most `n` items.
        for _ in 0..=n {
            match streaming.message().await {
                Ok(Some(reply)) => items.push(reply.i),
                Ok(None) => {
                    let trailers = streaming.trailers().await?;
                    return Ok(Counted {
                        items,
                        end: Ok(()),
                        trailers,
                    });
                }
                Err(status) => {
                    return Ok(Counted {
                        items,
                        end: Err(status),
                        trailers: None,
                    })
                }
            }
        }
        Err(Status::internal(format!("more than {n} items streamed")))
    }
}

/// One gRPC message frame: uncompressed flag, big-endian length, protobuf.
pub fn frame(message: &impl Message) -> Bytes {
    let body = message.encode_to_vec();
    let mut framed = BytesMut::with_capacity(5 + body.len());
    framed.put_u8(0);
    framed.put_u32(u32::try_from(body.len()).expect("small message"));
    framed.put_slice(&body);
    framed.freeze()
}

/// A raw unary `Say` over any HTTP/2 stream, for checking what a proxy put on
/// the wire (`:status`, `content-type`, `grpc-status` in headers or trailers).
///
/// # Errors
/// The HTTP/2 exchange failed.
pub async fn raw_say_over<IO>(
    io: IO,
    authority: &str,
    headers: &[(&str, &str)],
    message: &str,
) -> std::io::Result<H2Response>
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let mut all = vec![("content-type", "application/grpc"), ("te", "trailers")];
    all.extend_from_slice(headers);
    let body = frame(&EchoRequest {
        message: message.to_string(),
    });
    request_over(io, build_request(authority, "POST", SAY_PATH, &all, body)).await
}

/// [`raw_say_over`] on an h2c connection to `addr`.
///
/// # Errors
/// Connecting or the HTTP/2 exchange failed.
pub async fn raw_say(
    addr: SocketAddr,
    headers: &[(&str, &str)],
    message: &str,
) -> std::io::Result<H2Response> {
    let stream = tokio::time::timeout(EXCHANGE_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::other("connect timeout"))??;
    raw_say_over(stream, &addr.to_string(), headers, message).await
}
