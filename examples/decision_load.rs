//! A closed-loop load client for the decision service beside the proxy
//! (`loadtests/decision.sh`): every connection sends its next request as
//! soon as the previous answer arrives, with one reused token, for a fixed
//! time. ghz is not installable here, so gRPC `Check` calls are made with
//! tonic's client over hyper's HTTP/2, like Envoy's h2c gRPC cluster.
//!
//! ```sh
//! cargo run --release --example decision_load -- --mode grpc|http|proxy \
//!     --addr 127.0.0.1:9191 --token-file FILE [--connections 32] [--duration 10]
//! ```
//!
//! - `grpc`: `envoy.service.auth.v3.Authorization/Check` for `GET /api/orders`
//!   (one HTTP/2 connection per `--connections`, one call in flight on each);
//! - `http`: forward-auth `GET /auth` with `X-Forwarded-Method/Uri/Host`;
//! - `proxy`: `GET /api/orders` through wisp's proxy listener (the hit path
//!   including the forward to the upstream).
//!
//! Prints `RESULT mode=… requests=… ok=… other=… errors=… elapsed_s=… rps=… p50_us=… p99_us=…`
//! and exits 1 when any request failed or was not allowed.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::ExitCode;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::uri::PathAndQuery;
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::time::Instant;
use wisp::decision::envoy::{
    AttributeContext, AttributeRequest, CheckRequest, CheckResponse, HttpRequest, HttpResponse,
    CHECK_PATH,
};

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Grpc,
    Http,
    Proxy,
}

struct Options {
    mode: Mode,
    addr: SocketAddr,
    token: String,
    connections: usize,
    duration: Duration,
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    ok: usize,
    other: usize,
    errors: usize,
}

fn parse_args() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let (mut mode, mut addr, mut token) = (None, None, None);
    let (mut connections, mut duration) = (32usize, 10.0f64);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--mode" => {
                mode = Some(match value.as_str() {
                    "grpc" => Mode::Grpc,
                    "http" => Mode::Http,
                    "proxy" => Mode::Proxy,
                    other => return Err(format!("unknown mode {other}")),
                })
            }
            "--addr" => addr = Some(value.parse().map_err(|e| format!("--addr: {e}"))?),
            "--token-file" => {
                let text = std::fs::read_to_string(&value).map_err(|e| format!("{value}: {e}"))?;
                token = text.lines().next().map(str::to_owned);
            }
            "--connections" => connections = value.parse().map_err(|e| format!("{e}"))?,
            "--duration" => duration = value.parse().map_err(|e| format!("{e}"))?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(Options {
        mode: mode.ok_or("--mode is required")?,
        addr: addr.ok_or("--addr is required")?,
        token: token.ok_or("--token-file is required (one token on its first line)")?,
        connections: connections.max(1),
        duration: Duration::from_secs_f64(duration),
    })
}

/// hyper's HTTP/2 sender as the tower service tonic's client drives.
#[derive(Clone)]
struct H2(http2::SendRequest<tonic::body::Body>);

impl tower_service::Service<http::Request<tonic::body::Body>> for H2 {
    type Response = http::Response<Incoming>;
    type Error = hyper::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(self.0.send_request(request))
    }
}

fn check_request(token: &str) -> CheckRequest {
    let headers = HashMap::from([("authorization".to_owned(), format!("Bearer {token}"))]);
    CheckRequest {
        attributes: Some(AttributeContext {
            source: None,
            destination: None,
            request: Some(AttributeRequest {
                http: Some(HttpRequest {
                    method: "GET".into(),
                    path: "/api/orders".into(),
                    host: "orders.internal".into(),
                    headers,
                    ..HttpRequest::default()
                }),
            }),
        }),
    }
}

async fn grpc_worker(options: &Options, deadline: Instant) -> Result<Tally, String> {
    let stream = TcpStream::connect(options.addr)
        .await
        .map_err(|e| e.to_string())?;
    // As Envoy does: no Nagle delay between a request's HEADERS and DATA frames.
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let origin: http::Uri = format!("http://{}", options.addr)
        .parse()
        .map_err(|e| format!("{e}"))?;
    let mut grpc = tonic::client::Grpc::with_origin(H2(sender), origin);
    let message = check_request(&options.token);
    let mut tally = Tally::default();
    while Instant::now() < deadline {
        let started = Instant::now();
        let result = async {
            grpc.ready().await.map_err(|e| e.to_string())?;
            let codec = tonic_prost::ProstCodec::<CheckRequest, CheckResponse>::default();
            grpc.unary(
                tonic::Request::new(message.clone()),
                PathAndQuery::from_static(CHECK_PATH),
                codec,
            )
            .await
            .map_err(|e| e.to_string())
        }
        .await;
        tally
            .latencies_us
            .push(started.elapsed().as_micros() as u64);
        match result {
            Ok(response) => match response.into_inner().http_response {
                Some(HttpResponse::OkResponse(_)) => tally.ok += 1,
                _ => tally.other += 1,
            },
            Err(_) => tally.errors += 1,
        }
    }
    Ok(tally)
}

async fn http_worker(options: &Options, deadline: Instant) -> Result<Tally, String> {
    let stream = TcpStream::connect(options.addr)
        .await
        .map_err(|e| e.to_string())?;
    // As Envoy does: no Nagle delay between a request's HEADERS and DATA frames.
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (mut sender, connection) = http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let bearer = format!("Bearer {}", options.token);
    let mut tally = Tally::default();
    while Instant::now() < deadline {
        let mut builder = http::Request::get(if options.mode == Mode::Http {
            "/auth"
        } else {
            "/api/orders"
        })
        .header(http::header::HOST, "orders.internal")
        .header(http::header::AUTHORIZATION, &bearer);
        if options.mode == Mode::Http {
            builder = builder
                .header("x-forwarded-method", "GET")
                .header("x-forwarded-uri", "/api/orders")
                .header("x-forwarded-host", "orders.internal");
        }
        let request = builder.body(Empty::new()).map_err(|e| e.to_string())?;
        let started = Instant::now();
        let result = async {
            sender.ready().await.map_err(|e| e.to_string())?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status();
            response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(status)
        }
        .await;
        tally
            .latencies_us
            .push(started.elapsed().as_micros() as u64);
        match result {
            Ok(status) if status == http::StatusCode::OK => tally.ok += 1,
            Ok(_) => tally.other += 1,
            Err(_) => {
                tally.errors += 1;
                break;
            }
        }
    }
    Ok(tally)
}

fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> ExitCode {
    let options = match parse_args() {
        Ok(options) => std::sync::Arc::new(options),
        Err(message) => {
            eprintln!("decision_load: {message}");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let deadline = started + options.duration;
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..options.connections {
        let options = options.clone();
        workers.spawn(async move {
            match options.mode {
                Mode::Grpc => grpc_worker(&options, deadline).await,
                Mode::Http | Mode::Proxy => http_worker(&options, deadline).await,
            }
        });
    }
    let mut total = Tally::default();
    // Bounded: every worker stops at the deadline (plus one request).
    while let Some(joined) = workers.join_next().await {
        match joined {
            Ok(Ok(tally)) => {
                total.latencies_us.extend(tally.latencies_us);
                total.ok += tally.ok;
                total.other += tally.other;
                total.errors += tally.errors;
            }
            Ok(Err(error)) => {
                eprintln!("decision_load: {error}");
                total.errors += 1;
            }
            Err(error) => {
                eprintln!("decision_load: worker: {error}");
                total.errors += 1;
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    total.latencies_us.sort_unstable();
    let requests = total.latencies_us.len();
    let mode = match options.mode {
        Mode::Grpc => "grpc",
        Mode::Http => "http",
        Mode::Proxy => "proxy",
    };
    println!(
        "RESULT mode={mode} requests={requests} ok={} other={} errors={} elapsed_s={elapsed:.2} rps={:.0} p50_us={} p99_us={}",
        total.ok,
        total.other,
        total.errors,
        requests as f64 / elapsed,
        percentile(&total.latencies_us, 0.50),
        percentile(&total.latencies_us, 0.99),
    );
    if total.other > 0 || total.errors > 0 || total.ok == 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
