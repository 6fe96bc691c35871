//! The decision service's listener: one address speaking HTTP/1.1 and
//! HTTP/2 (h2c by prior knowledge, or ALPN `h2` over TLS), served by hyper
//! beside pingora's services. gRPC `Check` calls go to [`super::grpc`],
//! `/auth` to [`super::http`]; anything else is a 404.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::envoy::CHECK_PATH;
use super::grpc::Check;
use super::http::{forward_auth, is_auth_path};
use super::DecisionService;

/// The decision service as a pingora background service: binds
/// `decision_service.listen` when pingora starts it, serves until shutdown.
pub struct DecisionListener {
    service: Arc<DecisionService>,
    listen: SocketAddr,
    tls: Option<TlsAcceptor>,
}

impl DecisionListener {
    /// The listener for `service` on `listen`; TLS (with required client
    /// certificates) when `tls` is given.
    pub fn new(
        service: DecisionService,
        listen: SocketAddr,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> DecisionListener {
        DecisionListener {
            service: Arc::new(service),
            listen,
            tls: tls.map(TlsAcceptor::from),
        }
    }
}

#[async_trait]
impl BackgroundService for DecisionListener {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let listener = match TcpListener::bind(self.listen).await {
            Ok(listener) => listener,
            Err(error) => {
                // `serve` checked that the address binds before starting.
                tracing::error!(listen = %self.listen, %error, "decision service cannot listen");
                return;
            }
        };
        tracing::info!(listen = %self.listen, tls = self.tls.is_some(), "decision service listening");
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                accepted = listener.accept() => {
                    let Ok((stream, peer)) = accepted else { continue };
                    // Small request/answer exchanges: without it Nagle's
                    // algorithm and delayed ACKs hold HTTP/2 frames ~40 ms.
                    if let Err(error) = stream.set_nodelay(true) {
                        tracing::debug!(%peer, %error, "decision service: TCP_NODELAY not set");
                    }
                    let service = Arc::clone(&self.service);
                    let tls = self.tls.clone();
                    tokio::spawn(async move {
                        match tls {
                            None => serve_connection(service, stream, peer.ip()).await,
                            Some(acceptor) => match acceptor.accept(stream).await {
                                Ok(stream) => serve_connection(service, stream, peer.ip()).await,
                                Err(error) => tracing::debug!(%peer, %error, "decision service: TLS handshake failed"),
                            },
                        }
                    });
                }
            }
        }
    }
}

async fn serve_connection<S>(service: Arc<DecisionService>, stream: S, peer: IpAddr)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let handler = hyper::service::service_fn(move |request| {
        let service = Arc::clone(&service);
        async move { Ok::<_, Infallible>(route(&service, request, peer).await) }
    });
    if let Err(error) = auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(stream), handler)
        .await
    {
        tracing::debug!(%error, "decision service connection ended with an error");
    }
}

async fn route(
    service: &Arc<DecisionService>,
    request: http::Request<Incoming>,
    peer: IpAddr,
) -> http::Response<tonic::body::Body> {
    let path = request.uri().path();
    if path == CHECK_PATH {
        let codec = tonic_prost::ProstCodec::default();
        return tonic::server::Grpc::new(codec)
            .unary(Check(Arc::clone(service)), request)
            .await;
    }
    if is_auth_path(path) {
        let response = forward_auth(service, &request, Some(peer)).await;
        return response.map(|body| tonic::body::Body::new(Full::new(body)));
    }
    let mut response = http::Response::new(tonic::body::Body::new(Full::new(Bytes::from_static(
        br#"{"error":"not_found"}"#,
    ))));
    *response.status_mut() = http::StatusCode::NOT_FOUND;
    response
}
