//! The `ProxyHttp` implementation: the request path of DESIGN.md §1, top to bottom.
//!
//! 1. `request_filter`: normalize the path (400), public route?, authenticate
//!    (401/503), authorize (403). Rejections are written here.
//! 2. `upstream_request_filter`: strip client-sent identity headers, add the
//!    verified ones, drop the token unless forwarded.
//! 3. `fail_to_proxy`: 502/504 when the upstream fails.
//! 4. `logging`: metrics and the decision log.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};

use crate::authn::authenticator::Authenticator;
use crate::authn::bearer::bearer_token;
use crate::authn::credentials::{self, Credentials};
use crate::authn::token_cache::CachedToken;
use crate::authn::{unix_now, AuthnError};
use crate::authz::reload::PolicyStore;
use crate::authz::{Decision, Effect, RequestInfo};
use crate::config::{Config, DecisionLog, PolicyMode, RequireCredentials, RoutePattern};
use crate::identity::AuthnMethod;
use crate::metrics::Metrics;
use crate::responses::{reject, Rejection};
use crate::tls::PeerCertificate;
use crate::{headers, path};

/// The proxy: shared, immutable per process (policies swap inside the store).
pub struct WispProxy {
    config: Arc<Config>,
    authn: Arc<Authenticator>,
    policies: Arc<PolicyStore>,
    metrics: Metrics,
    upstream: HttpPeer,
    /// `config.headers.identity`, prepared once.
    identity_headers: headers::PreparedNames,
}

/// What happened to one request, for the upstream headers and the log.
#[derive(Debug, Default)]
pub struct RequestContext {
    started: Option<Instant>,
    /// `decision` label / log field.
    decision: &'static str,
    /// `reason` label / log field.
    reason: &'static str,
    /// Verified caller, when authenticated.
    caller: Option<Arc<CachedToken>>,
    /// The authorization decision, when one was taken.
    authz: Option<Decision>,
    /// When the request was handed to the upstream.
    upstream_started: Option<Instant>,
}

impl RequestContext {
    fn outcome(&mut self, decision: &'static str, reason: &'static str) {
        self.decision = decision;
        self.reason = reason;
    }
}

impl WispProxy {
    /// Builds the proxy for a validated config.
    pub fn new(
        config: Arc<Config>,
        authn: Arc<Authenticator>,
        policies: Arc<PolicyStore>,
        metrics: Metrics,
        upstream: HttpPeer,
    ) -> WispProxy {
        WispProxy {
            identity_headers: headers::PreparedNames::new(&config.headers.identity),
            config,
            authn,
            policies,
            metrics,
            upstream,
        }
    }

    fn is_public(&self, path: &str) -> bool {
        self.config.routes.public.iter().any(|route| match route {
            RoutePattern::Exact(exact) => path == exact,
            RoutePattern::Prefix(prefix) => {
                path.starts_with(prefix.as_str()) || path == prefix.trim_end_matches('/')
            }
        })
    }

    /// Authenticates the request: its client certificate (captured at the TLS
    /// handshake) and/or its bearer token, as `authn.require` demands.
    async fn authenticate(
        &self,
        session: &Session,
        policies: &crate::authz::reload::LoadedPolicies,
    ) -> Result<Arc<CachedToken>, AuthnError> {
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
        let require = self.config.authn.require;
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
        credentials::authenticate(
            &self.authn,
            Credentials { token, peer },
            require,
            &policies.authorizer,
            policies.generation,
            unix_now(),
        )
        .await
    }
}

#[async_trait]
impl ProxyHttp for WispProxy {
    type CTX = RequestContext;

    fn new_ctx(&self) -> RequestContext {
        RequestContext {
            started: Some(Instant::now()),
            ..RequestContext::default()
        }
    }

    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestContext,
    ) -> Result<bool> {
        // a. Normalize the path: policy and upstream must see the same one.
        let mut target = match normalized_target(session.req_header()) {
            Ok(target) => target,
            Err(reason) => {
                ctx.outcome("deny", reason);
                reject(session, Rejection::BadRequest(reason)).await;
                return Ok(true);
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
                ctx.outcome("deny", "path_not_absolute");
                reject(session, Rejection::BadRequest("path_not_absolute")).await;
                return Ok(true);
            }
        }
        if let Some(uri) = target.rewritten_uri.take() {
            session.req_header_mut().set_uri(uri);
        }

        // b. Public routes skip authn/authz.
        if self.is_public(&target.path) {
            ctx.outcome("public", "public_route");
            return Ok(false);
        }

        // c. Authenticate.
        let policies = self.policies.current();
        let authn_started = Instant::now();
        let result = self.authenticate(session, &policies).await;
        // One clock read ends authentication and starts authorization.
        let authz_started = Instant::now();
        self.metrics
            .durations
            .authn
            .observe((authz_started - authn_started).as_secs_f64());
        let caller = match result {
            Ok(caller) => caller,
            Err(error) => {
                ctx.outcome("deny", error.reason());
                reject(session, Rejection::Unauthenticated(&error)).await;
                return Ok(true);
            }
        };

        // d. Authorize.
        let request = session.req_header();
        let source_ip = session
            .client_addr()
            .and_then(|addr| addr.as_inet())
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |addr| addr.ip());
        let host = request_host(request);
        let info = RequestInfo {
            method: request.method.as_str(),
            path: &target.path,
            host: &host,
            query: target.query.as_deref().unwrap_or(""),
            source_ip,
            mtls: matches!(
                caller.identity().authn,
                AuthnMethod::Mtls | AuthnMethod::JwtAndMtls
            ),
        };
        let decision = policies.authorizer.authorize(&caller.principal, &info);
        self.metrics
            .durations
            .authz
            .observe(authz_started.elapsed().as_secs_f64());
        let effect = decision.effect;
        let errored = !decision.errors.is_empty();
        ctx.caller = Some(caller);
        ctx.authz = Some(decision);
        match (effect, self.config.policies.mode) {
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
                ctx.outcome("deny", if errored { "policy_error" } else { "policy" });
                reject(session, Rejection::Forbidden).await;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestContext,
    ) -> Result<Box<HttpPeer>> {
        ctx.upstream_started = Some(Instant::now());
        Ok(Box::new(self.upstream.clone()))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestContext,
    ) -> Result<()> {
        let names = &self.config.headers.identity;
        headers::strip(upstream_request, names);
        if !self.config.headers.forward_token {
            upstream_request.remove_header(&http::header::AUTHORIZATION);
        }
        if let Some(caller) = &ctx.caller {
            let prepared = &self.identity_headers;
            let values = headers::IdentityHeaderValues::of(caller.identity());
            headers::inject(upstream_request, &values, prepared).map_err(|message| {
                Error::explain(
                    ErrorType::InternalError,
                    format!("identity header: {message}"),
                )
            })?;
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        _upstream_response: &mut ResponseHeader,
        ctx: &mut RequestContext,
    ) -> Result<()> {
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
        let mut code = 0;
        if let Some(rejection) = rejection {
            code = match &rejection {
                Rejection::Upstream { status, .. } => *status,
                _ => 400,
            };
            if session.response_written().is_none() {
                reject(session, rejection).await;
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
        error: Option<&Error>,
        ctx: &mut RequestContext,
    ) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let elapsed = ctx.started.map_or(0.0, |s| s.elapsed().as_secs_f64());
        self.metrics.durations.total.observe(elapsed);
        let (decision, reason) = if ctx.decision.is_empty() {
            ("deny", "bad_request")
        } else {
            (ctx.decision, ctx.reason)
        };
        self.metrics.requests.inc(decision, reason);
        let log = match self.config.log.decisions {
            DecisionLog::All => decision != "public" || status >= 400,
            DecisionLog::Deny => decision == "deny" || reason == "dry_run",
            DecisionLog::None => false,
        };
        if !log {
            return;
        }
        let request = session.req_header();
        let principal = ctx.caller.as_ref().map(|c| c.identity().uid());
        let issuer = ctx.caller.as_ref().map(|c| &*c.identity().issuer_name);
        let policy_ids = ctx
            .authz
            .as_ref()
            .map(|d| d.policy_ids.join(","))
            .unwrap_or_default();
        let errors = ctx
            .authz
            .as_ref()
            .map(|d| d.errors.join("; "))
            .unwrap_or_default();
        tracing::info!(
            target: "wisp::decision",
            decision,
            reason,
            status,
            method = request.method.as_str(),
            path = request.uri.path(),
            principal,
            issuer,
            policy_ids,
            errors,
            upstream_error = error.map(|e| e.to_string()),
            duration_ms = elapsed * 1000.0,
            "decision"
        );
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

/// The request's host, lowercased, without port: from `Host`, else the URI authority.
fn request_host(request: &RequestHeader) -> String {
    let raw = request
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri.authority().map(|a| a.as_str()))
        .unwrap_or("");
    let without_port = if raw.starts_with('[') {
        raw.find(']').map_or(raw, |end| &raw[..=end])
    } else {
        match raw.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => raw,
        }
    };
    without_port.to_ascii_lowercase()
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

    #[test]
    fn host_is_lowercased_without_port() {
        for (raw, want) in [
            ("Orders.Example:8080", "orders.example"),
            ("orders", "orders"),
            ("[::1]:8080", "[::1]"),
            ("[::1]", "[::1]"),
            ("127.0.0.1:80", "127.0.0.1"),
        ] {
            let mut request = RequestHeader::build("GET", b"/", None).unwrap();
            request.insert_header("host", raw).unwrap();
            assert_eq!(request_host(&request), want, "{raw}");
        }
    }
}
