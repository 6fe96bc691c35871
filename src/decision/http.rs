//! Envoy ext_authz over HTTP, and forward-auth (nginx `auth_request`,
//! Traefik ForwardAuth, Caddy `forward_auth`) on `/auth` and `/auth/…`.
//!
//! The original request is read from, in order:
//! - method: `X-Forwarded-Method`, `X-Original-Method`, else this request's;
//! - target: `X-Forwarded-Uri`, `X-Original-URI`, else this request's path
//!   after `/auth` (Envoy's HTTP mode appends the original path to its
//!   `path_prefix`: `/auth/api/orders?x=1` → `/api/orders?x=1`);
//! - host: `X-Forwarded-Host`, else `Host`;
//! - client: the last `X-Forwarded-For` hop (the caller is the trusted
//!   proxy), else the caller's own address;
//! - credentials: `Authorization`.
//!
//! 200 carries the identity headers (for `auth_request_set`,
//! `authResponseHeaders`, `copy_headers`), those without a value for this
//! caller present and empty; a refusal carries the proxy's
//! status, JSON body, `WWW-Authenticate` and `Retry-After`.

use std::net::IpAddr;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};

use super::{last_forwarded_for, Answer, DecisionService, Facts, REQUEST_ID};
use crate::responses::Rejection;

/// The forward-auth path; any path under `/auth/` too.
pub(super) const AUTH_PATH: &str = "/auth";

/// Whether `path` is served here.
pub(super) fn is_auth_path(path: &str) -> bool {
    path == AUTH_PATH || path.starts_with("/auth/")
}

/// Decides one forward-auth / HTTP ext_authz call.
pub(super) async fn forward_auth<B>(
    service: &DecisionService,
    request: &Request<B>,
    peer: Option<IpAddr>,
) -> Response<Bytes> {
    let headers = request.headers();
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let own_target = own_target(request);
    let facts = Facts {
        method: text("x-forwarded-method")
            .or_else(|| text("x-original-method"))
            .unwrap_or(request.method().as_str()),
        target: text("x-forwarded-uri")
            .or_else(|| text("x-original-uri"))
            .unwrap_or(&own_target),
        host: text("x-forwarded-host")
            .or_else(|| text("host"))
            .or_else(|| request.uri().authority().map(|a| a.as_str())),
        authorization: headers
            .get_all(http::header::AUTHORIZATION)
            .iter()
            .map(|v| v.as_bytes())
            .collect(),
        principal: None,
        source_ip: source_ip(headers).or(peer),
        request_id: crate::request_id::sent_once(
            headers.get_all(REQUEST_ID).iter().map(|v| v.as_bytes()),
        )
        .and_then(|id| std::str::from_utf8(id).ok()),
        header_names: headers.keys().map(|n| n.as_str()).collect(),
    };
    to_response(service.decide(&facts).await)
}

/// This request's own target after `/auth` (Envoy's HTTP ext_authz mode).
fn own_target<B>(request: &Request<B>) -> String {
    let path_and_query = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let rest = path_and_query
        .strip_prefix(AUTH_PATH)
        .unwrap_or(path_and_query);
    if rest.starts_with('/') {
        rest.to_owned()
    } else {
        // `/auth` or `/auth?x=1`: the root.
        format!("/{rest}")
    }
}

/// The last hop of the last `X-Forwarded-For` header.
fn source_ip(headers: &HeaderMap) -> Option<IpAddr> {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .next_back()
        .and_then(|v| v.to_str().ok())
        .and_then(last_forwarded_for)
}

fn to_response(answer: Answer) -> Response<Bytes> {
    let mut builder = Response::builder()
        .header(REQUEST_ID, &answer.request_id)
        .header(http::header::CACHE_CONTROL, "no-store");
    let body = match Rejection::of(&answer.outcome) {
        None => {
            builder = builder.status(200);
            for (name, value) in &answer.set {
                builder = builder.header(name.as_str(), value.as_str());
            }
            // Empty rather than absent: a caller that copies the header
            // (Caddy's `copy_headers`, Traefik's `authResponseHeaders`)
            // then replaces the client's copy with nothing, and Caddy 2.6
            // would otherwise forward its unresolved placeholder.
            for name in &answer.unset {
                builder = builder.header(name.as_str(), "");
            }
            Bytes::new()
        }
        Some(rejection) => {
            let parts = rejection.parts();
            builder = builder
                .status(parts.status)
                .header(http::header::CONTENT_TYPE, "application/json");
            if let Some(challenge) = &parts.challenge {
                builder = builder.header(http::header::WWW_AUTHENTICATE, challenge.as_str());
            }
            if parts.retry_after {
                builder = builder.header(http::header::RETRY_AFTER, "5");
            }
            Bytes::from(parts.body)
        }
    };
    builder.body(body).unwrap_or_else(|_| {
        // Every name and value above is a checked header (identity values
        // were checked when the identity was built): not expected.
        let mut response = Response::new(Bytes::from_static(br#"{"error":"internal"}"#));
        *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
        response
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envoy_http_mode_targets_are_the_path_after_auth() {
        for (uri, want) in [
            ("/auth", "/"),
            ("/auth?x=1", "/?x=1"),
            ("/auth/api/orders?x=1", "/api/orders?x=1"),
            ("/auth/api/../admin", "/api/../admin"),
        ] {
            let request = Request::get(uri).body(()).unwrap();
            assert_eq!(own_target(&request), want, "{uri}");
        }
        assert!(is_auth_path("/auth") && is_auth_path("/auth/x"));
        assert!(!is_auth_path("/authx") && !is_auth_path("/"));
    }
}
