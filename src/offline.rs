//! Offline decisions: `wisp explain` and `wisp test` run a request through
//! the same pipeline `serve` uses ([`crate::pipeline::decide`]), with no
//! listener and no upstream. Tokens are verified with the issuers'
//! configured keys (files, or URIs and discovery fetched once); claims can be
//! taken as given instead, and the answer then says it was not verified.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::authn::spiffe::SpiffeId;
use crate::authn::svid::{PeerIdentity, SvidError};
use crate::authz::ShadowResult;
use crate::config::Config;
use crate::headers;
use crate::live::{Live, ReloadError};
use crate::metrics::Metrics;
use crate::pipeline::callers::{Callers, UnverifiedClaims};
use crate::pipeline::{self, Outcome};
use crate::tls::PeerCertificate;

/// How long one issuer's key fetch may take.
const FETCH_WAIT: Duration = Duration::from_secs(10);

/// A request to decide offline.
#[derive(Debug, Clone, Default)]
pub struct Input {
    /// A bearer token, verified with the issuer's keys.
    pub token: Option<String>,
    /// Or claims taken as given (unverified).
    pub claims: Option<UnverifiedClaims>,
    /// The caller's SPIFFE ID, as if it had presented that X.509-SVID.
    pub spiffe_id: Option<String>,
    /// The method (default `GET`).
    pub method: String,
    /// The request target, as a client sends it (`/api/orders?x=1`).
    pub path: String,
    /// The `Host` header.
    pub host: Option<String>,
    /// The client's address.
    pub source_ip: Option<IpAddr>,
    /// Other request headers (`Authorization` among them, when no token is given).
    pub headers: Vec<(String, String)>,
}

/// What `serve` would do with the request (`wisp explain --json`).
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    /// The HTTP status `serve` would answer (200 when forwarded: the
    /// upstream's answer).
    pub status: u16,
    /// `allow`, `deny`, `public`, `unauthenticated`, `bad_request`, `unavailable`.
    pub decision: &'static str,
    /// The stable reason `serve` logs.
    pub reason: &'static str,
    /// Whether a signature was checked (false with claims taken as given).
    pub verified: bool,
    /// The technical detail of a refusal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The normalized path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The principal entity (Cedar entity JSON), when authenticated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<serde_json::Value>,
    /// The action entity uid.
    pub action: serde_json::Value,
    /// The resource entity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<serde_json::Value>,
    /// The request context.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<serde_json::Value>,
    /// Ids of the policies that determined the decision.
    pub policies: Vec<String>,
    /// Policy evaluation errors.
    pub errors: Vec<PolicyError>,
    /// What each applying `@shadow` policy would have decided (never part
    /// of `decision`).
    pub shadow: Vec<ShadowResult>,
    /// The identity headers `serve` would send upstream (name → value).
    #[serde(serialize_with = "as_object")]
    pub headers: Vec<(String, String)>,
    /// The outcome itself, for callers that compare (`wisp test`).
    #[serde(skip)]
    pub outcome: Option<Outcome>,
}

/// One policy evaluation error.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyError {
    /// The policy id.
    pub policy: String,
    /// What went wrong.
    pub message: String,
}

/// The state to decide offline under.
pub struct Offline {
    live: Live,
    metrics: Metrics,
}

impl Offline {
    /// Loads the policies and the issuers of `config` (keys not fetched yet).
    ///
    /// # Errors
    /// [`ReloadError`] when the policies are invalid or an issuer's HTTP
    /// client cannot be built.
    pub fn load(config: Config) -> Result<Offline, ReloadError> {
        crate::server::install_crypto();
        let metrics = Metrics::new().map_err(|error| ReloadError::Setup(error.to_string()))?;
        let http = crate::authn::jwks::http_client()
            .map_err(|error| ReloadError::Setup(error.to_string()))?;
        let loader = crate::authz::reload::PolicyLoader::new(metrics.clone());
        let policies = loader
            .load(&config.policies.schema, &config.policies.dir)
            .map_err(ReloadError::Policies)?;
        let authn =
            crate::authn::authenticator::Authenticator::new(&config, http, metrics.clone())?;
        let live = Live {
            identity_headers: crate::headers::PreparedNames::new(&config.headers.identity),
            // Offline: every token is verified afresh.
            callers: Arc::new(Callers::new(0, metrics.clone())),
            authn: Arc::new(authn),
            policies,
            // Nothing is forwarded offline.
            upstream: None,
            config: Arc::new(config),
        };
        Ok(Offline { live, metrics })
    }

    /// Whether the policy `id` is a `@shadow` policy of the loaded set.
    pub fn is_shadow(&self, id: &str) -> bool {
        self.live.policies.authorizer.is_shadow(id)
    }

    /// The config in force.
    pub fn config(&self) -> &Config {
        &self.live.config
    }

    /// Fetches every issuer's keys once; returns `(issuer, error)` for those
    /// that failed (their tokens then answer 503, as `serve` would).
    pub async fn fetch_keys(&self) -> Vec<(String, String)> {
        let mut failures = Vec::new();
        for issuer in self.live.authn.issuers() {
            let name = issuer.config().name.to_string();
            match tokio::time::timeout(FETCH_WAIT, issuer.refresh()).await {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => failures.push((name, error.to_string())),
                Err(_) => failures.push((name, "timed out".to_owned())),
            }
        }
        failures
    }

    /// Decides `input` as `serve` would at Unix time `now`.
    pub async fn explain(&self, input: &Input, now: i64) -> Explanation {
        let mut authorization: Vec<Vec<u8>> = input
            .headers
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case("authorization"))
            .map(|(_, value)| value.as_bytes().to_vec())
            .collect();
        if let Some(token) = &input.token {
            authorization = vec![format!("Bearer {token}").into_bytes()];
        }
        let authorization: Vec<&[u8]> = authorization.iter().map(Vec::as_slice).collect();
        let host = input.host.clone().or_else(|| {
            input
                .headers
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case("host"))
                .map(|(_, value)| value.clone())
        });
        let peer = input.spiffe_id.as_deref().map(|id| self.peer(id, now));
        let method = if input.method.is_empty() {
            "GET"
        } else {
            input.method.as_str()
        };
        let request = pipeline::Request {
            method,
            target: input.path.as_bytes(),
            host: host.as_deref().map(pipeline::HostField::Raw),
            authorization: &authorization,
            peer: peer.as_ref(),
            source_ip: input.source_ip,
            claims: input.claims.as_ref(),
        };
        let verdict = pipeline::decide(&self.live, &request, &self.metrics, now).await;
        let source_ip = input
            .source_ip
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        let target = verdict.target.as_ref();
        let caller = verdict.caller.as_ref();
        let decision = verdict.decision.as_ref();
        Explanation {
            status: verdict.outcome.status().unwrap_or(200),
            decision: verdict.outcome.verdict(),
            reason: verdict.outcome.reason(),
            verified: input.claims.is_none(),
            detail: verdict.detail.clone(),
            path: target.map(|t| t.path.clone()),
            principal: caller.map(|c| {
                c.principal
                    .to_json()
                    .unwrap_or_else(serde_json::Value::String)
            }),
            action: serde_json::json!({ "type": "Action", "id": method }),
            resource: target.map(|t| {
                serde_json::json!({
                    "uid": { "type": "Route", "id": t.path },
                    "attrs": { "path": t.path, "host": t.host },
                })
            }),
            context: target.map(|t| {
                serde_json::json!({
                    "method": method,
                    "source_ip": source_ip.to_string(),
                    "query": t.query.as_deref().unwrap_or(""),
                    "mtls": caller.is_some_and(|c| matches!(
                        c.identity().authn,
                        crate::identity::AuthnMethod::Mtls | crate::identity::AuthnMethod::JwtAndMtls
                    )),
                })
            }),
            policies: decision.map(|d| d.policy_ids.clone()).unwrap_or_default(),
            errors: decision
                .map(|d| {
                    d.errors
                        .iter()
                        .map(|error| match error.split_once(": ") {
                            Some((policy, message)) => PolicyError {
                                policy: policy.to_owned(),
                                message: message.to_owned(),
                            },
                            None => PolicyError {
                                policy: String::new(),
                                message: error.clone(),
                            },
                        })
                        .collect()
                })
                .unwrap_or_default(),
            shadow: decision.map(|d| d.shadow.clone()).unwrap_or_default(),
            headers: match (caller, verdict.outcome.forwards()) {
                (Some(caller), true) => headers::plan(
                    &headers::IdentityHeaderValues::of(caller.identity()),
                    &self.live.identity_headers,
                ),
                _ => Vec::new(),
            },
            outcome: Some(verdict.outcome),
        }
    }

    /// The certificate a caller with `spiffe_id` would present: valid for an
    /// hour, refused as the TLS listener would when its trust domain is not
    /// configured or the ID is not a SPIFFE ID.
    fn peer(&self, spiffe_id: &str, now: i64) -> PeerCertificate {
        let id = match SpiffeId::parse(spiffe_id) {
            Ok(id) => id,
            Err(error) => return PeerCertificate::Invalid(SvidError::InvalidSpiffeId(error)),
        };
        if !self
            .live
            .config
            .trust_domains
            .iter()
            .any(|domain| domain == id.trust_domain())
        {
            return PeerCertificate::Invalid(SvidError::UntrustedDomain(
                id.trust_domain().to_owned(),
            ));
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, spiffe_id.as_bytes());
        let mut thumbprint = [0u8; 32];
        thumbprint.copy_from_slice(digest.as_ref());
        PeerCertificate::Valid(PeerIdentity {
            spiffe_id: id,
            thumbprint,
            not_after: now + 3600,
        })
    }
}

/// (name, value) pairs as one JSON object, in order.
fn as_object<S: serde::Serializer>(
    pairs: &[(String, String)],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap as _;
    let mut map = serializer.serialize_map(Some(pairs.len()))?;
    for (name, value) in pairs {
        map.serialize_entry(name, value)?;
    }
    map.end()
}
