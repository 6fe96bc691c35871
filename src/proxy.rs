//! The `ProxyHttp` implementation: the request path of DESIGN.md §1, top to bottom.
//!
//! 1. `request_filter`: normalize the path (400), public route?, authenticate
//!    (401/503), authorize (403). Rejections are written here.
//! 2. `upstream_request_filter`: strip client-sent identity headers, add the
//!    verified ones, drop the token unless forwarded.
//! 3. `fail_to_proxy`: 502/504 when the upstream fails.
//! 4. `logging`: metrics and the decision log.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};

use crate::authn::bearer::bearer_token;
use crate::authn::credentials::{self, Credentials};
use crate::authn::token_cache::CachedToken;
use crate::authn::{unix_now, AuthnError};
use crate::authz::{Decision, Effect, RequestInfo};
use crate::config::{DecisionLog, PolicyMode, RequireCredentials, RoutePattern};
use crate::decision_log::DecisionRecord;
use crate::identity::AuthnMethod;
use crate::lifecycle::{InFlight, Lifecycle};
use crate::live::{Live, LiveState};
use crate::metrics::Metrics;
use crate::responses::{reject, Rejection};
use crate::tls::PeerCertificate;
use crate::{headers, path};

/// The request id header, read from clients and sent upstream.
const REQUEST_ID: &str = "x-request-id";

/// The proxy: shared by every request; the state it decides under is
/// swapped whole on reload (see [`crate::live`]).
pub struct WispProxy {
    state: Arc<LiveState>,
    lifecycle: Arc<Lifecycle>,
    metrics: Metrics,
}

/// What happened to one request, for the upstream headers and the log.
pub struct RequestContext {
    /// The state this request is decided, forwarded and logged under.
    live: Arc<Live>,
    /// Counts the request in flight (for the drain) until dropped.
    _in_flight: InFlight,
    metrics: Metrics,
    started: Instant,
    method: http::Method,
    request_id: String,
    /// `decision` label / log field.
    decision: &'static str,
    /// `reason` label / log field.
    reason: &'static str,
    /// The technical detail of a refusal (logged, never sent to the client).
    detail: Option<String>,
    /// The normalized path and host, once known.
    path: String,
    host: String,
    source_ip: Option<IpAddr>,
    /// The issuer label: of the verified caller, or the one an unverified token claims.
    issuer: Option<Arc<str>>,
    /// `(iss, kid)` an unverified token claims (401s).
    claimed: (Option<String>, Option<String>),
    /// Verified caller, when authenticated.
    caller: Option<Arc<CachedToken>>,
    /// The authorization decision, when one was taken.
    authz: Option<Decision>,
    /// When the request was handed to the upstream.
    upstream_started: Option<Instant>,
    /// The status the upstream answered (for a request cut by the shutdown).
    upstream_status: u16,
    /// Whether `logging` ran (else the request was cut, see `Drop`).
    logged: bool,
}

impl RequestContext {
    fn outcome(&mut self, decision: &'static str, reason: &'static str) {
        self.decision = decision;
        self.reason = reason;
    }

    /// The (decision, reason) to count and log.
    fn labels(&self) -> (&'static str, &'static str) {
        if self.decision.is_empty() {
            ("deny", "bad_request")
        } else {
            (self.decision, self.reason)
        }
    }

    /// Counts the request and writes its decision log line (when
    /// `log.decisions` asks for it).
    fn record(&mut self, status: u16) {
        self.logged = true;
        let elapsed = self.started.elapsed().as_secs_f64();
        self.metrics.durations.total.observe(elapsed);
        let (decision, reason) = self.labels();
        self.metrics
            .requests
            .inc(decision, reason, self.issuer.as_deref());
        let config = &self.live.config;
        let log = match config.log.decisions {
            DecisionLog::All => decision != "public" || status >= 400,
            DecisionLog::Deny => decision == "deny" || reason == "dry_run",
            DecisionLog::None => false,
        };
        if !log {
            return;
        }
        let (policies, errors) = self
            .authz
            .as_ref()
            .map_or((&[][..], &[][..]), |d| (&d.policy_ids[..], &d.errors[..]));
        crate::decision_log::emit(
            config.log.format,
            &DecisionRecord {
                request_id: &self.request_id,
                decision,
                reason,
                detail: self.detail.as_deref(),
                status,
                method: self.method.as_str(),
                path: &self.path,
                host: &self.host,
                source_ip: self.source_ip,
                issuer: self.issuer.as_deref(),
                unverified_iss: self.claimed.0.as_deref(),
                unverified_kid: self.claimed.1.as_deref(),
                principal: self.caller.as_ref().map(|c| c.identity().uid()),
                policies,
                errors,
                duration_ms: elapsed * 1000.0,
            },
        );
    }
}

impl Drop for RequestContext {
    /// A request that never reached `logging` was cut: by the end of the
    /// shutdown grace (an open WebSocket, a stuck upstream). It is still
    /// counted and logged.
    fn drop(&mut self) {
        if !self.logged && !self.decision.is_empty() {
            self.detail = Some("cut at the end of shutdown_grace".to_owned());
            self.record(self.upstream_status);
        }
    }
}

impl WispProxy {
    /// Builds the proxy over the live state.
    pub fn new(state: Arc<LiveState>, lifecycle: Arc<Lifecycle>, metrics: Metrics) -> WispProxy {
        WispProxy {
            state,
            lifecycle,
            metrics,
        }
    }

    fn is_public(live: &Live, path: &str) -> bool {
        live.config.routes.public.iter().any(|route| match route {
            RoutePattern::Exact(exact) => path == exact,
            RoutePattern::Prefix(prefix) => {
                path.starts_with(prefix.as_str()) || path == prefix.trim_end_matches('/')
            }
        })
    }

    /// Authenticates the request: its client certificate (captured at the TLS
    /// handshake) and/or its bearer token, as `authn.require` demands. On a
    /// failure with a token, `ctx` learns what the token claims to be.
    async fn authenticate(
        session: &Session,
        ctx: &mut RequestContext,
    ) -> Result<Arc<CachedToken>, AuthnError> {
        let live = Arc::clone(&ctx.live);
        let peer_certificate = crate::tls::peer_certificate(session);
        let peer = match peer_certificate.as_deref() {
            None => None,
            Some(PeerCertificate::Valid(peer)) => Some(peer),
            // Never accepted with a guessed identity, whatever else is presented.
            Some(PeerCertificate::Invalid(error)) => {
                return Err(AuthnError::ClientCertificate(error.clone()))
            }
            Some(PeerCertificate::Untrusted(reason)) => {
                return Err(AuthnError::UntrustedCertificate(reason))
            }
        };
        let require = live.config.authn.require;
        let token = if require == RequireCredentials::Mtls {
            None
        } else {
            // No allocation per request: zero or one header is all that can pass.
            let mut headers = session
                .req_header()
                .headers
                .get_all(http::header::AUTHORIZATION)
                .iter()
                .map(|value| value.as_bytes());
            match (headers.next(), headers.next()) {
                (None, _) => bearer_token(&[])?,
                (Some(only), None) => bearer_token(&[only])?,
                (Some(_), Some(_)) => return Err(AuthnError::MultipleCredentials),
            }
        };
        let result = credentials::authenticate(
            &live.authn,
            Credentials { token, peer },
            require,
            &live.policies.authorizer,
            live.policies.generation,
            unix_now(),
        )
        .await;
        if let (Err(_), Some(token)) = (&result, token) {
            let claimed = crate::authn::jwt::claimed_issuer_and_kid(token);
            ctx.issuer = claimed.0.as_deref().and_then(|iss| {
                live.config
                    .issuers
                    .iter()
                    .find(|issuer| issuer.issuer == iss)
                    .map(|issuer| Arc::clone(&issuer.name))
            });
            ctx.claimed = claimed;
        }
        result
    }

    /// Answers `rejection` and records why.
    async fn refuse(
        session: &mut Session,
        ctx: &mut RequestContext,
        reason: &'static str,
        detail: Option<String>,
        rejection: Rejection<'_>,
    ) -> Result<bool> {
        ctx.outcome("deny", reason);
        ctx.detail = detail;
        reject(session, rejection, &ctx.request_id).await;
        Ok(true)
    }
}

#[async_trait]
impl ProxyHttp for WispProxy {
    type CTX = RequestContext;

    fn new_ctx(&self) -> RequestContext {
        RequestContext {
            live: self.state.load(),
            _in_flight: self.lifecycle.request_started(),
            metrics: self.metrics.clone(),
            started: Instant::now(),
            method: http::Method::GET,
            request_id: String::new(),
            decision: "",
            reason: "",
            detail: None,
            path: String::new(),
            host: String::new(),
            source_ip: None,
            issuer: None,
            claimed: (None, None),
            caller: None,
            authz: None,
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
        ctx.method = session.req_header().method.clone();
        ctx.request_id = crate::request_id::request_id(
            session
                .req_header()
                .headers
                .get(REQUEST_ID)
                .map(|v| v.as_bytes()),
        );
        ctx.source_ip = session
            .client_addr()
            .and_then(|addr| addr.as_inet())
            .map(|addr| addr.ip());
        if self.lifecycle.is_draining() {
            // Clients move to other replicas rather than reuse this connection.
            session.set_keepalive(None);
        }

        // a. Normalize the path: policy and upstream must see the same one.
        let mut target = match normalized_target(session.req_header()) {
            Ok(target) => target,
            Err(reason) => {
                ctx.path = String::from_utf8_lossy(session.req_header().raw_path()).into_owned();
                return Self::refuse(session, ctx, reason, None, Rejection::BadRequest(reason))
                    .await;
            }
        };
        if let Some(authority) = &target.authority {
            // RFC 9112 §3.2.2: the target's authority wins over `Host`; the
            // upstream (and policy) see it as the `Host`.
            if session
                .req_header_mut()
                .insert_header(http::header::HOST, authority.as_str())
                .is_err()
            {
                let reason = "path_not_absolute";
                return Self::refuse(session, ctx, reason, None, Rejection::BadRequest(reason))
                    .await;
            }
        }
        if let Some(uri) = target.rewritten_uri.take() {
            session.req_header_mut().set_uri(uri);
        }
        // harden: exactly one valid host, normalized for policy and upstream.
        ctx.host = match crate::host::normalize_request(session.req_header_mut()) {
            Ok(host) => host.name().to_owned(),
            Err(error) => {
                ctx.path = target.path;
                let reason = error.reason();
                return Self::refuse(session, ctx, reason, None, Rejection::BadRequest(reason))
                    .await;
            }
        };

        // b. Public routes skip authn/authz.
        if Self::is_public(&ctx.live, &target.path) {
            ctx.path = target.path;
            ctx.outcome("public", "public_route");
            return Ok(false);
        }

        // c. Authenticate.
        let authn_started = Instant::now();
        let result = Self::authenticate(session, ctx).await;
        // One clock read ends authentication and starts authorization.
        let authz_started = Instant::now();
        self.metrics
            .durations
            .authn
            .observe((authz_started - authn_started).as_secs_f64());
        let caller = match result {
            Ok(caller) => caller,
            Err(error) => {
                ctx.path = target.path;
                let detail = Some(error.to_string());
                return Self::refuse(
                    session,
                    ctx,
                    error.reason(),
                    detail,
                    Rejection::Unauthenticated(&error),
                )
                .await;
            }
        };
        ctx.issuer = Some(Arc::clone(&caller.identity().issuer_name));

        // d. Authorize.
        let request = session.req_header();
        let info = RequestInfo {
            method: request.method.as_str(),
            path: &target.path,
            host: &ctx.host,
            query: target.query.as_deref().unwrap_or(""),
            source_ip: ctx
                .source_ip
                .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
            mtls: matches!(
                caller.identity().authn,
                AuthnMethod::Mtls | AuthnMethod::JwtAndMtls
            ),
        };
        let decision = ctx
            .live
            .policies
            .authorizer
            .authorize(&caller.principal, &info);
        self.metrics
            .durations
            .authz
            .observe(authz_started.elapsed().as_secs_f64());
        ctx.path = target.path;
        let effect = decision.effect;
        let errored = !decision.errors.is_empty();
        ctx.caller = Some(caller);
        ctx.authz = Some(decision);
        match (effect, ctx.live.config.policies.mode) {
            (Effect::Allow, _) => {
                ctx.outcome("allow", "policy");
                Ok(false)
            }
            (Effect::Deny, PolicyMode::DryRun) => {
                self.metrics
                    .dry_run_decisions
                    .with_label_values(&["deny"])
                    .inc();
                ctx.outcome("allow", "dry_run");
                Ok(false)
            }
            (Effect::Deny, PolicyMode::Enforce) => {
                let reason = if errored { "policy_error" } else { "policy" };
                Self::refuse(session, ctx, reason, None, Rejection::Forbidden).await
            }
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestContext,
    ) -> Result<Box<HttpPeer>> {
        ctx.upstream_started = Some(Instant::now());
        Ok(Box::new(ctx.live.upstream.clone()))
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
        upstream_request
            .insert_header(REQUEST_ID, ctx.request_id.as_str())
            .map_err(|_| Error::explain(ErrorType::InternalError, "request id header"))?;
        if let Some(caller) = &ctx.caller {
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
        ctx.detail = Some(error.to_string());
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
        if ctx.decision.is_empty() {
            ctx.outcome("deny", "bad_request");
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
        ctx.record(status);
    }
}

/// The request target after normalization.
struct Target {
    path: String,
    query: Option<String>,
    /// The URI to forward when normalization changed anything.
    rewritten_uri: Option<http::Uri>,
    /// The authority of an absolute-form target, which replaces `Host`.
    authority: Option<String>,
}

/// Splits an absolute-form request target (`http://host:port/path?q`, which
/// HTTP/1.1 servers must accept, RFC 9112 §3.2.2) into its authority and its
/// origin-form rest (`/path?q`, or `/` when there is no path). Other targets
/// are returned as they are, with no authority.
fn split_absolute_form(raw: &str) -> (Option<&str>, std::borrow::Cow<'_, str>) {
    let scheme_len = ["http://", "https://"]
        .iter()
        .find(|scheme| {
            raw.len() >= scheme.len() && raw[..scheme.len()].eq_ignore_ascii_case(scheme)
        })
        .map(|scheme| scheme.len());
    let Some(scheme_len) = scheme_len else {
        return (None, std::borrow::Cow::Borrowed(raw));
    };
    let rest = &raw[scheme_len..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, origin) = rest.split_at(end);
    let origin = if origin.starts_with('/') {
        std::borrow::Cow::Borrowed(origin)
    } else {
        std::borrow::Cow::Owned(format!("/{origin}"))
    };
    (Some(authority), origin)
}

/// Normalizes the raw request target; `Err` carries the 400 reason.
fn normalized_target(request: &RequestHeader) -> std::result::Result<Target, &'static str> {
    let raw = std::str::from_utf8(request.raw_path()).map_err(|_| "invalid_path")?;
    let (authority, origin) = split_absolute_form(raw);
    if authority.is_some_and(|a| a.is_empty() || a.contains('@')) {
        // No host, or userinfo (`http://user@host/`): ambiguous, refused.
        return Err("path_not_absolute");
    }
    let normalized = path::normalize(&origin).map_err(|error| error.reason())?;
    // The common case, a target already in normal form, costs no allocation.
    let unchanged =
        raw.strip_prefix(normalized.path.as_str())
            .is_some_and(|rest| match &normalized.query {
                Some(query) => rest.strip_prefix('?') == Some(query.as_str()),
                None => rest.is_empty(),
            });
    let rewritten_uri = if unchanged {
        None
    } else {
        let forwarded = match &normalized.query {
            Some(query) => format!("{}?{}", normalized.path, query),
            None => normalized.path.clone(),
        };
        Some(forwarded.parse::<http::Uri>().map_err(|_| "invalid_path")?)
    };
    Ok(Target {
        path: normalized.path,
        query: normalized.query,
        rewritten_uri,
        authority: authority.map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_form_targets_are_split_into_authority_and_origin_form() {
        for (raw, authority, origin) in [
            (
                "http://orders.internal/a/b?x=1",
                Some("orders.internal"),
                "/a/b?x=1",
            ),
            ("HTTPS://Orders:8443/a", Some("Orders:8443"), "/a"),
            ("http://orders.internal", Some("orders.internal"), "/"),
            (
                "http://orders.internal?x=1",
                Some("orders.internal"),
                "/?x=1",
            ),
            ("/a/b", None, "/a/b"),
            ("*", None, "*"),
        ] {
            let (got_authority, got_origin) = split_absolute_form(raw);
            assert_eq!(
                (got_authority, got_origin.as_ref()),
                (authority, origin),
                "{raw}"
            );
        }
    }

    #[test]
    fn absolute_form_is_normalized_and_ambiguous_authorities_are_refused() {
        let request =
            RequestHeader::build("GET", b"http://orders.internal/a/../admin?x=1", None).unwrap();
        let target = normalized_target(&request).unwrap();
        assert_eq!(target.path, "/admin");
        assert_eq!(target.query.as_deref(), Some("x=1"));
        assert_eq!(target.authority.as_deref(), Some("orders.internal"));
        let with_userinfo = RequestHeader::build("GET", b"http://user@orders/a", None).unwrap();
        assert!(normalized_target(&with_userinfo).is_err());
    }

    #[test]
    fn only_targets_that_normalization_changed_are_rewritten() {
        for (raw, rewritten) in [
            ("/api/orders", None),
            ("/api/orders?limit=5", None),
            ("/api/orders?", None),
            ("/a/../api", Some("/api")),
            ("//api?x=1", Some("/api?x=1")),
            ("/%61pi", Some("/api")),
        ] {
            let request = RequestHeader::build("GET", raw.as_bytes(), None).unwrap();
            let target = normalized_target(&request).unwrap();
            let got = target.rewritten_uri.map(|uri| uri.to_string());
            assert_eq!(got.as_deref(), rewritten, "{raw}");
        }
    }
}
