//! The decision service (README, "wisp behind another proxy"): wisp behind
//! another proxy. Envoy's ext_authz (gRPC and HTTP) and forward-auth callers
//! (nginx `auth_request`, Traefik ForwardAuth, Caddy `forward_auth`) ask
//! whether a request may pass; wisp decides it through [`pipeline::decide`],
//! the same pipeline the proxy runs, and answers with the identity headers to
//! set or the refusal to send. Nothing is forwarded.
//!
//! ```text
//! calling proxy ──▶ decision_service.listen (h2c / HTTP/1.1, or mTLS)
//!   POST /envoy.service.auth.v3.Authorization/Check   → grpc.rs  (CheckRequest → Facts)
//!   ANY  /auth, /auth/…                               → http.rs  (X-Forwarded-*/X-Original-* → Facts)
//!   Facts → DecisionService::decide → pipeline::decide → Answer (+ metrics, decision log: mode=decision)
//! ```
//!
//! Only trusted proxies may call it: what they say of the original request
//! (its method, path, source address, and the mTLS principal Envoy saw) is
//! believed. It listens on loopback by default; `decision_service.tls`
//! requires the callers' client certificates.

pub mod envoy;
mod grpc;
mod http;
mod listener;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::authn::spiffe::SpiffeId;
use crate::authn::svid::{PeerIdentity, SvidError};
use crate::authn::unix_now;
use crate::decision_log::Seen;
use crate::headers::{is_identity_header, plan, IdentityHeaderValues};
use crate::lifecycle::Lifecycle;
use crate::live::{Live, LiveState};
use crate::metrics::{Metrics, Mode};
use crate::pipeline::{self, Outcome, Verdict};
use crate::tls::PeerCertificate;

pub use listener::DecisionListener;

/// How long a principal asserted by Envoy is taken as a certificate caller:
/// its real expiry is unknown, so cached certificate callers are re-derived
/// at least this often.
const PRINCIPAL_LIFETIME_SECS: i64 = 300;

/// The request id header, read from the calling proxy and answered back.
const REQUEST_ID: &str = "x-request-id";

/// Shared by every call: the live state (token cache, decision cache,
/// policies), the metrics and the drain.
pub struct DecisionService {
    state: Arc<LiveState>,
    metrics: Metrics,
    lifecycle: Arc<Lifecycle>,
}

/// What the calling proxy tells of the original request.
#[derive(Debug, Default)]
struct Facts<'a> {
    /// The original method.
    method: &'a str,
    /// The original request target (path and query, as received).
    target: &'a str,
    /// The original host.
    host: Option<&'a str>,
    /// Every `Authorization` value of the original request.
    authorization: Vec<&'a [u8]>,
    /// The mTLS principal Envoy authenticated (`attributes.source.principal`).
    principal: Option<&'a str>,
    /// The original client's address.
    source_ip: Option<IpAddr>,
    /// The original request's `x-request-id`.
    request_id: Option<&'a str>,
    /// Every header name of the original request (for `headers_to_remove`).
    header_names: Vec<&'a str>,
}

/// The decision, in the terms a calling proxy needs.
#[derive(Debug)]
struct Answer {
    /// The request id (the caller's if sane, else generated).
    request_id: String,
    /// What the pipeline decided.
    outcome: Outcome,
    /// Allowed: the identity headers to set upstream (name, value).
    set: Vec<(String, String)>,
    /// Allowed: client-sent identity header names to remove (none of `set`'s
    /// names: setting replaces those).
    remove: Vec<String>,
    /// Allowed: the configured identity header names without a value for
    /// this caller (no tags, no SPIFFE ID, a public route).
    unset: Vec<String>,
}

impl DecisionService {
    /// The service over the live state.
    pub fn new(
        state: Arc<LiveState>,
        metrics: Metrics,
        lifecycle: Arc<Lifecycle>,
    ) -> DecisionService {
        DecisionService {
            state,
            metrics,
            lifecycle,
        }
    }

    /// Decides one request through the pipeline, counts and logs it.
    async fn decide(&self, facts: &Facts<'_>) -> Answer {
        let started = Instant::now();
        let _in_flight = self.lifecycle.request_started();
        let live = self.state.load();
        let request_id = crate::request_id::request_id(facts.request_id.map(str::as_bytes));
        let now = unix_now();
        let peer = facts
            .principal
            .and_then(|principal| peer_of_principal(principal, &live.config.trust_domains, now));
        let request = pipeline::Request {
            method: facts.method,
            target: facts.target.as_bytes(),
            host: facts.host.map(pipeline::HostField::Raw),
            authorization: &facts.authorization,
            peer: peer.as_ref(),
            source_ip: facts.source_ip,
            claims: None,
        };
        let verdict = pipeline::decide(&live, &request, &self.metrics, now).await;
        let (set, remove, unset) = header_changes(&live, &verdict, &facts.header_names);
        let status = verdict.outcome.status().unwrap_or(200);
        crate::decision_log::record(
            &live.config,
            &self.metrics,
            Some(&verdict),
            &Seen {
                mode: Mode::Decision,
                request_id: &request_id,
                method: facts.method,
                raw_path: facts.target,
                source_ip: facts.source_ip,
                status,
                transport_detail: None,
                elapsed: started.elapsed(),
            },
        );
        Answer {
            request_id,
            outcome: verdict.outcome,
            set,
            remove,
            unset,
        }
    }
}

/// The identity headers to set for an allowed caller; the client-sent
/// identity header names to remove (those not set: setting replaces); the
/// configured names this caller has no value for.
type HeaderChanges = (Vec<(String, String)>, Vec<String>, Vec<String>);

fn header_changes(live: &Live, verdict: &Verdict, header_names: &[&str]) -> HeaderChanges {
    let names = &live.config.headers.identity;
    let set = match (&verdict.caller, verdict.outcome.forwards()) {
        (Some(caller), true) => plan(
            &IdentityHeaderValues::of(caller.identity()),
            &live.identity_headers,
        ),
        _ => Vec::new(),
    };
    let is_set = |name: &str| set.iter().any(|(set_name, _)| set_name == name);
    let mut remove: Vec<String> = Vec::new();
    for name in header_names {
        let lower = name.to_ascii_lowercase();
        if is_identity_header(&lower, names) && !is_set(&lower) && !remove.contains(&lower) {
            remove.push(lower);
        }
    }
    let unset = [&names.subject, &names.issuer, &names.tags, &names.spiffe_id]
        .into_iter()
        .filter(|name| !is_set(name))
        .cloned()
        .collect();
    (set, remove, unset)
}

/// The certificate caller Envoy vouches for with `attributes.source.principal`:
/// a SPIFFE ID in a configured trust domain. With no trust domain configured,
/// or a principal that is not a SPIFFE ID (a DNS SAN, a subject), it is
/// ignored (no certificate caller); a SPIFFE ID from another trust domain is
/// refused, as the proxy's TLS listener refuses such a certificate.
fn peer_of_principal(
    principal: &str,
    trust_domains: &[String],
    now: i64,
) -> Option<PeerCertificate> {
    if trust_domains.is_empty() || !principal.starts_with("spiffe://") {
        return None;
    }
    let id = match SpiffeId::parse(principal) {
        Ok(id) => id,
        Err(error) => return Some(PeerCertificate::Invalid(SvidError::InvalidSpiffeId(error))),
    };
    if !trust_domains
        .iter()
        .any(|domain| domain == id.trust_domain())
    {
        return Some(PeerCertificate::Invalid(SvidError::UntrustedDomain(
            id.trust_domain().to_owned(),
        )));
    }
    // No certificate reaches wisp: the ID's hash stands for the thumbprint
    // (it keys the certificate-caller cache), so a token bound to a real
    // certificate (`cnf.x5t#S256`) never matches and is refused.
    let digest = ring::digest::digest(&ring::digest::SHA256, principal.as_bytes());
    let mut thumbprint = [0u8; 32];
    thumbprint.copy_from_slice(digest.as_ref());
    Some(PeerCertificate::Valid(PeerIdentity {
        spiffe_id: id,
        thumbprint,
        not_after: now + PRINCIPAL_LIFETIME_SECS,
    }))
}

/// The last address of an `X-Forwarded-For` value (the hop the trusted
/// calling proxy added), if it parses.
fn last_forwarded_for(value: &str) -> Option<IpAddr> {
    let last = value.rsplit(',').next()?.trim();
    // `[v6]:port` and `v4:port` forms appear in the wild.
    let bare = last
        .strip_prefix('[')
        .and_then(|rest| rest.split_once(']').map(|(ip, _)| ip))
        .unwrap_or(last);
    bare.parse()
        .ok()
        .or_else(|| bare.rsplit_once(':').and_then(|(ip, _)| ip.parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_are_trusted_only_in_configured_trust_domains() {
        let domains = vec!["example.org".to_owned()];
        let valid = peer_of_principal("spiffe://example.org/ns/shop/sa/web", &domains, 0);
        assert!(
            matches!(valid, Some(PeerCertificate::Valid(ref p)) if p.spiffe_id.as_str() == "spiffe://example.org/ns/shop/sa/web")
        );
        let other = peer_of_principal("spiffe://evil.org/web", &domains, 0);
        assert!(matches!(
            other,
            Some(PeerCertificate::Invalid(SvidError::UntrustedDomain(_)))
        ));
        assert_eq!(peer_of_principal("web.shop.svc", &domains, 0), None);
        assert_eq!(peer_of_principal("spiffe://example.org/web", &[], 0), None);
    }

    #[test]
    fn the_last_forwarded_for_hop_is_the_client() {
        for (value, want) in [
            ("203.0.113.9", Some("203.0.113.9")),
            ("1.2.3.4, 10.0.0.1", Some("10.0.0.1")),
            ("1.2.3.4,2001:db8::1", Some("2001:db8::1")),
            ("[2001:db8::2]:443", Some("2001:db8::2")),
            ("10.0.0.7:5555", Some("10.0.0.7")),
            ("unknown", None),
        ] {
            let got = last_forwarded_for(value).map(|ip| ip.to_string());
            assert_eq!(got.as_deref(), want, "{value}");
        }
    }
}
