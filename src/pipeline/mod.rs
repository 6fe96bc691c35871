//! The decision pipeline, transport-neutral: normalize → public? →
//! authenticate → authorize → headers plan. The proxy (`crate::proxy`)
//! adapts pingora's session to it; the offline tools and any other front end
//! call the same [`decide`], never a copy of it.
//!
//! ```text
//! Request (method, raw target, Host, Authorization values, peer certificate, source)
//!   1. normalize the target (path, query, authority) and the host   → BadRequest (400)
//!   2. public route?                                                  → Public
//!   3. authenticate: token and/or certificate → caller (cached)     → Unauthenticated (401/503)
//!   4. authorize: Cedar(principal, action, resource, context)        → Allow / DryRunAllow / Forbidden (403)
//! Verdict { outcome, target, caller, decision, detail, … }
//! ```

pub mod callers;
mod outcome;
pub mod target;
pub mod token_cache;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

pub use outcome::Outcome;
pub use target::{HostField, Target};

use crate::authn::bearer::bearer_token;
use crate::authn::AuthnError;
use crate::authz::{Decision, Effect, RequestInfo};
use crate::config::{PolicyMode, RequireCredentials, RoutePattern};
use crate::identity::AuthnMethod;
use crate::live::Live;
use crate::metrics::Metrics;
use crate::tls::PeerCertificate;
use callers::Credentials;
use token_cache::CachedToken;

/// What a front end knows of one request.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The method.
    pub method: &'a str,
    /// The request target as received (origin-form, or absolute-form).
    pub target: &'a [u8],
    /// The `Host` header (or HTTP/2 `:authority`), if any.
    pub host: Option<HostField<'a>>,
    /// Every `Authorization` header value, in order.
    pub authorization: &'a [&'a [u8]],
    /// The client certificate, as the TLS handshake judged it.
    pub peer: Option<&'a PeerCertificate>,
    /// The client's address.
    pub source_ip: Option<IpAddr>,
    /// Claims to decide on instead of a token: offline tools only (`wisp
    /// explain --claims`, `wisp test`); a server never sets it.
    pub claims: Option<&'a callers::UnverifiedClaims>,
}

/// The pipeline's answer for one request.
#[derive(Debug)]
pub struct Verdict {
    /// What to do, and why.
    pub outcome: Outcome,
    /// The normalized target (absent when the target itself was refused).
    pub target: Option<Target>,
    /// The authenticated caller.
    pub caller: Option<Arc<CachedToken>>,
    /// The policy decision, when one was taken.
    pub decision: Option<Decision>,
    /// The issuer label: of the verified caller, or (on a refusal) the
    /// configured issuer whose `iss` the unverified token claims.
    pub issuer: Option<Arc<str>>,
    /// The `iss` and `kid` a refused token claims (unverified; for the log).
    pub claimed: (Option<String>, Option<String>),
    /// The technical detail of a refusal (for the log, never the client).
    pub detail: Option<String>,
}

impl Verdict {
    /// A refusal decided before or without the pipeline's later steps (a
    /// transport's own 400, e.g. a missing or repeated `Host`).
    pub fn refused(outcome: Outcome, target: Option<Target>) -> Verdict {
        Verdict {
            outcome,
            target,
            caller: None,
            decision: None,
            issuer: None,
            claimed: (None, None),
            detail: None,
        }
    }
}

/// Decides `request` under `live` at Unix time `now`; stage latencies and
/// dry-run denials go to `metrics`.
pub async fn decide(live: &Live, request: &Request<'_>, metrics: &Metrics, now: i64) -> Verdict {
    // 1. Normalize: policy and upstream must see the same path and host.
    let target = match Target::parse(request.target, request.host) {
        Ok(target) => target,
        Err(reason) => return Verdict::refused(Outcome::BadRequest(reason), None),
    };

    // 2. Public routes skip authentication and authorization.
    if is_public(live, &target.path) {
        return Verdict::refused(Outcome::Public, Some(target));
    }

    // 3. Authenticate.
    let authn_started = Instant::now();
    let result = authenticate(live, request, now).await;
    // One clock read ends authentication and starts authorization.
    let authz_started = Instant::now();
    metrics
        .durations
        .authn
        .observe((authz_started - authn_started).as_secs_f64());
    let caller = match result {
        Ok(caller) => caller,
        Err(error) => {
            let token = match request.authorization {
                [only] => bearer_token(&[*only]).ok().flatten(),
                _ => None,
            };
            let claimed = token
                .map(crate::authn::jwt::claimed_issuer_and_kid)
                .unwrap_or_default();
            let issuer = claimed.0.as_deref().and_then(|iss| {
                live.config
                    .issuers
                    .iter()
                    .find(|issuer| issuer.issuer == iss)
                    .map(|issuer| Arc::clone(&issuer.name))
            });
            let detail = Some(error.to_string());
            return Verdict {
                issuer,
                claimed,
                detail,
                ..Verdict::refused(Outcome::Unauthenticated(error), Some(target))
            };
        }
    };

    // 4. Authorize.
    let info = RequestInfo {
        method: request.method,
        path: &target.path,
        host: &target.host,
        query: target.query.as_deref().unwrap_or(""),
        source_ip: request
            .source_ip
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        mtls: matches!(
            caller.identity().authn,
            AuthnMethod::Mtls | AuthnMethod::JwtAndMtls
        ),
    };
    let decision = live.policies.authorizer.authorize(&caller.principal, &info);
    metrics
        .durations
        .authz
        .observe(authz_started.elapsed().as_secs_f64());
    for shadow in &decision.shadow {
        metrics
            .shadow_decisions
            .with_label_values(&[&shadow.policy, shadow.decision.as_str()])
            .inc();
    }
    let outcome = match (decision.effect, live.config.policies.mode) {
        (Effect::Allow, _) => Outcome::Allow,
        (Effect::Deny, PolicyMode::DryRun) => {
            metrics.dry_run_decisions.with_label_values(&["deny"]).inc();
            Outcome::DryRunAllow
        }
        (Effect::Deny, PolicyMode::Enforce) => Outcome::Forbidden {
            policy_error: !decision.errors.is_empty(),
        },
    };
    Verdict {
        outcome,
        target: Some(target),
        issuer: Some(Arc::clone(&caller.identity().issuer_name)),
        caller: Some(caller),
        decision: Some(decision),
        claimed: (None, None),
        detail: None,
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

/// The request's client certificate and/or bearer token, as `authn.require`
/// demands.
async fn authenticate(
    live: &Live,
    request: &Request<'_>,
    now: i64,
) -> Result<Arc<CachedToken>, AuthnError> {
    let peer = match request.peer {
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
    let token = if require == RequireCredentials::Mtls || request.claims.is_some() {
        None
    } else {
        match request.authorization {
            [] => bearer_token(&[])?,
            [only] => bearer_token(&[*only])?,
            _ => return Err(AuthnError::MultipleCredentials),
        }
    };
    live.callers
        .authenticate(
            &live.authn,
            Credentials {
                token,
                claims: request.claims,
                peer,
            },
            require,
            &live.policies,
            now,
        )
        .await
}
