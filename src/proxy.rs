//! The `ProxyHttp` implementation: a thin adapter from pingora's session to
//! the decision pipeline ([`crate::pipeline`]), top to bottom:
//!
//! 1. `new_ctx`: take the live state once; count the request in flight.
//! 2. `request_filter`: request id, then [`pipeline::decide`]; a refusal is
//!    written here (400/401/403/503), an allowed request gets its normalized
//!    target.
//! 3. `upstream_request_filter`: strip client-sent identity headers, add the
//!    verified ones and the request id, drop the token unless forwarded.
//! 4. `upstream_response_filter` / `fail_to_proxy`: the upstream's status
//!    class; 502/504 when it fails.
//! 5. `logging`: metrics and the decision log.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};

use crate::authn::unix_now;
use crate::decision_log::Seen;
use crate::headers;
use crate::lifecycle::{InFlight, Lifecycle};
use crate::live::{Live, LiveState};
use crate::metrics::{Metrics, Mode};
use crate::pipeline::{self, Outcome, Verdict};
use crate::responses::{reject, Rejection};

/// The request id header, read from clients and sent upstream.
const REQUEST_ID: &str = "x-request-id";

/// The proxy: shared by every request; the state it decides under is
/// swapped whole on reload (see [`crate::live`]).
pub struct WispProxy {
    state: Arc<LiveState>,
    lifecycle: Arc<Lifecycle>,
    /// Shared, not cloned per request: `Metrics` holds some forty `Arc`s,
    /// and cloning and dropping them on every request bounced their
    /// reference counts between the worker threads (measured: 0.5 % of
    /// the proxy's CPU in `Metrics::clone` and its drop alone).
    metrics: Arc<Metrics>,
}

/// One request: the state it is decided under, the pipeline's verdict, and
/// what the transport saw, for the upstream headers and the log.
pub struct RequestContext {
    /// The state this request is decided, forwarded and logged under.
    live: Arc<Live>,
    /// Counts the request in flight (for the drain) until dropped.
    _in_flight: InFlight,
    metrics: Arc<Metrics>,
    started: Instant,
    method: http::Method,
    request_id: String,
    /// The client sent `request_id` itself, once: the upstream request
    /// already carries it.
    request_id_kept: bool,
    source_ip: Option<IpAddr>,
    /// The pipeline's answer (absent until `request_filter` ran it).
    verdict: Option<Verdict>,
    /// The transport's own refusal or failure (a malformed request, the
    /// upstream failing): its detail, logged.
    transport_detail: Option<String>,
    /// When the request was handed to the upstream.
    upstream_started: Option<Instant>,
    /// The status the upstream answered (for a request cut by the shutdown).
    upstream_status: u16,
    /// Whether `logging` ran (else the request was cut, see `Drop`).
    logged: bool,
}

impl RequestContext {
    /// Counts the request and writes its decision log line (when
    /// `log.decisions` asks for it).
    fn record(&mut self, status: u16, raw_path: &str) {
        self.logged = true;
        crate::decision_log::record(
            &self.live.config,
            &self.metrics,
            self.verdict.as_ref(),
            &Seen {
                mode: Mode::Proxy,
                request_id: &self.request_id,
                method: self.method.as_str(),
                raw_path,
                source_ip: self.source_ip,
                status,
                transport_detail: self.transport_detail.as_deref(),
                elapsed: self.started.elapsed(),
            },
        );
    }
}

impl Drop for RequestContext {
    /// A request that never reached `logging` was cut: by the end of the
    /// shutdown grace (an open WebSocket, a stuck upstream). It is still
    /// counted and logged.
    fn drop(&mut self) {
        if !self.logged && self.verdict.is_some() {
            self.transport_detail = Some("cut at the end of shutdown_grace".to_owned());
            self.record(self.upstream_status, "");
        }
    }
}

impl WispProxy {
    /// Builds the proxy over the live state.
    pub fn new(state: Arc<LiveState>, lifecycle: Arc<Lifecycle>, metrics: Metrics) -> WispProxy {
        WispProxy {
            state,
            lifecycle,
            metrics: Arc::new(metrics),
        }
    }
}

#[async_trait]
impl ProxyHttp for WispProxy {
    type CTX = RequestContext;

    fn new_ctx(&self) -> RequestContext {
        RequestContext {
            live: self.state.load(),
            _in_flight: self.lifecycle.request_started(),
            metrics: Arc::clone(&self.metrics),
            started: Instant::now(),
            method: http::Method::GET,
            request_id: String::new(),
            request_id_kept: false,
            source_ip: None,
            verdict: None,
            transport_detail: None,
            upstream_started: None,
            upstream_status: 0,
            logged: false,
        }
    }

    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestContext,
    ) -> Result<bool> {
        let header = session.req_header();
        ctx.method = header.method.clone();
        // One sane client id is kept (and left in place upstream); none, two
        // or an insane one get a fresh id.
        let sent = crate::request_id::sent_once(
            header
                .headers
                .get_all(REQUEST_ID)
                .iter()
                .map(|v| v.as_bytes()),
        );
        ctx.request_id = crate::request_id::request_id(sent);
        ctx.request_id_kept = sent == Some(ctx.request_id.as_bytes());
        ctx.source_ip = session
            .client_addr()
            .and_then(|addr| addr.as_inet())
            .map(|addr| addr.ip());
        if self.lifecycle.is_draining() {
            // Clients move to other replicas rather than reuse this connection.
            session.set_keepalive(None);
        }

        // Exactly one valid host (RFC 9112 §3.2), normalized in the request:
        // what policy decides on is what the upstream receives.
        let host = match crate::host::normalize_request(session.req_header_mut()) {
            // Policy sees the name; the port is only forwarded.
            Ok(host) => host,
            Err(error) => {
                let reason = error.reason();
                reject(session, Rejection::BadRequest(reason), &ctx.request_id).await;
                ctx.verdict = Some(Verdict::refused(Outcome::BadRequest(reason), None));
                return Ok(true);
            }
        };
        let header = session.req_header();
        // No allocation: zero, one, or "more than one" is all that matters.
        let mut authorization: [&[u8]; 2] = [&[], &[]];
        let mut count = 0;
        for value in header.headers.get_all(http::header::AUTHORIZATION) {
            if count == 2 {
                break;
            }
            authorization[count] = value.as_bytes();
            count += 1;
        }
        let peer = crate::tls::peer_certificate(session);
        let request = pipeline::Request {
            method: header.method.as_str(),
            target: header.raw_path(),
            host: Some(pipeline::HostField::Normalized(&host)),
            authorization: &authorization[..count],
            peer: peer.as_deref(),
            source_ip: ctx.source_ip,
            claims: None,
        };
        let mut verdict = pipeline::decide(&ctx.live, &request, &self.metrics, unix_now()).await;

        if let Some(target) = verdict.target.as_mut() {
            if let Some(authority) = &target.authority {
                // RFC 9112 §3.2.2: the target's authority wins over `Host`;
                // the upstream sees it as the `Host`.
                if session
                    .req_header_mut()
                    .insert_header(http::header::HOST, authority.as_str())
                    .is_err()
                {
                    verdict.outcome = Outcome::BadRequest("path_not_absolute");
                }
            }
            if let Some(uri) = target.rewritten_uri.take() {
                session.req_header_mut().set_uri(uri);
            }
        }
        let refusal = Rejection::of(&verdict.outcome).is_some();
        if refusal {
            if let Some(rejection) = Rejection::of(&verdict.outcome) {
                reject(session, rejection, &ctx.request_id).await;
            }
        }
        ctx.verdict = Some(verdict);
        Ok(refusal)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestContext,
    ) -> Result<Box<HttpPeer>> {
        ctx.upstream_started = Some(Instant::now());
        // The proxy listener runs only with an upstream, and a reload cannot
        // remove it (`upstream` is restart-only); still an error, not a panic.
        let peer =
            ctx.live.upstream.clone().ok_or_else(|| {
                Error::explain(ErrorType::InternalError, "no upstream configured")
            })?;
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestContext,
    ) -> Result<()> {
        let config = &ctx.live.config;
        headers::strip(upstream_request, &config.headers.identity);
        if !config.headers.forward_token {
            upstream_request.remove_header(&http::header::AUTHORIZATION);
        }
        if !ctx.request_id_kept {
            // Growing pingora's two header maps for this costs ~2,000
            // instructions: skipped when the client's id is already there.
            upstream_request
                .insert_header(REQUEST_ID, ctx.request_id.as_str())
                .map_err(|_| Error::explain(ErrorType::InternalError, "request id header"))?;
        }
        if let Some(caller) = ctx.verdict.as_ref().and_then(|v| v.caller.as_ref()) {
            let values = headers::IdentityHeaderValues::of(caller.identity());
            headers::inject(upstream_request, &values, &ctx.live.identity_headers).map_err(
                |message| {
                    Error::explain(
                        ErrorType::InternalError,
                        format!("identity header: {message}"),
                    )
                },
            )?;
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestContext,
    ) -> Result<()> {
        let status = upstream_response.status.as_u16();
        ctx.upstream_status = status;
        self.metrics.upstream_responses.status(status);
        if let Some(started) = ctx.upstream_started {
            self.metrics
                .durations
                .upstream
                .observe(started.elapsed().as_secs_f64());
        }
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        error: &Error,
        ctx: &mut RequestContext,
    ) -> FailToProxy {
        let rejection = match (error.etype(), error.esource()) {
            (
                ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout,
                ErrorSource::Upstream,
            ) => Some(Rejection::Upstream {
                status: 504,
                error: "upstream_timeout",
            }),
            (_, ErrorSource::Upstream) => Some(Rejection::Upstream {
                status: 502,
                error: "bad_gateway",
            }),
            // The client went away: nobody to answer.
            (
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed,
                ErrorSource::Downstream,
            ) => None,
            (_, ErrorSource::Downstream) => Some(Rejection::BadRequest("bad_request")),
            (_, ErrorSource::Internal | ErrorSource::Unset) => Some(Rejection::Upstream {
                status: 500,
                error: "internal",
            }),
        };
        if error.esource() == &ErrorSource::Upstream && ctx.upstream_status == 0 {
            self.metrics.upstream_responses.error();
        }
        ctx.transport_detail = Some(error.to_string());
        let mut code = 0;
        if let Some(rejection) = rejection {
            code = match &rejection {
                Rejection::Upstream { status, .. } => *status,
                _ => 400,
            };
            if session.response_written().is_none() {
                // harden: `can_reuse_downstream: false` below: say `Connection: close`.
                crate::responses::reject_and_close(session, rejection, &ctx.request_id).await;
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(
        &self,
        session: &mut Session,
        _error: Option<&Error>,
        ctx: &mut RequestContext,
    ) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let raw_path = String::from_utf8_lossy(session.req_header().raw_path());
        ctx.record(status, &raw_path);
    }
}
