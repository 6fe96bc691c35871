//! Which credentials a request carries, what `authn.require` demands of them,
//! and how a bearer token and a client certificate combine into one caller
//! (DESIGN.md §4, §6; RFC 8705 certificate-bound tokens).

use std::sync::Arc;

use super::authenticator::Authenticator;
use super::svid::PeerIdentity;
use super::token_cache::{identity_weight, CachedToken};
use super::AuthnError;
use crate::authz::Authorizer;
use crate::config::RequireCredentials;
use crate::identity::{AttrValue, AuthnMethod, Identity, Names};

/// The credentials of one request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Credentials<'a> {
    /// The bearer token, if any.
    pub token: Option<&'a str>,
    /// The verified client certificate identity, if any.
    pub peer: Option<&'a PeerIdentity>,
}

/// The issuer name reported for callers authenticated by certificate alone.
pub const MTLS_ISSUER_NAME: &str = "mtls";

/// Authenticates a request's credentials under `require`.
///
/// - token only: the token's identity (`authn = "jwt"`);
/// - certificate only: the SVID's identity (`sub` = SPIFFE ID, `iss` =
///   `spiffe://<trust domain>`, `authn = "mtls"`);
/// - both: the token's identity with `spiffe_id`/`trust_domain` from the
///   certificate and `authn = "jwt+mtls"`; a token whose own `spiffe_id`
///   (spiffe-jwt) differs from the certificate's is rejected.
///
/// A token bound to a certificate (`cnf.x5t#S256`) is accepted only together
/// with that certificate.
///
/// # Errors
/// [`AuthnError`]: missing credentials for `require`, token failures, a
/// binding mismatch, or an identity that does not fit the schema.
pub async fn authenticate(
    authn: &Authenticator,
    credentials: Credentials<'_>,
    require: RequireCredentials,
    authorizer: &Authorizer,
    policy_generation: u64,
    now: i64,
) -> Result<Arc<CachedToken>, AuthnError> {
    let Credentials { token, peer } = credentials;
    match require {
        RequireCredentials::Jwt if token.is_none() => return Err(AuthnError::MissingCredentials),
        RequireCredentials::Mtls if peer.is_none() => return Err(AuthnError::CertificateRequired),
        RequireCredentials::Both if token.is_none() => return Err(AuthnError::MissingCredentials),
        RequireCredentials::Both if peer.is_none() => return Err(AuthnError::CertificateRequired),
        RequireCredentials::Any if token.is_none() && peer.is_none() => {
            return Err(AuthnError::MissingCredentials)
        }
        _ => {}
    }
    // With `require: mtls` a token is not consulted (nor forwarded as identity).
    let token = if require == RequireCredentials::Mtls {
        None
    } else {
        token
    };
    let verified = match token {
        Some(token) => Some(
            authn
                .authenticate(token, authorizer, policy_generation, now)
                .await?,
        ),
        None => None,
    };
    if let Some(bound) = verified
        .as_ref()
        .and_then(|v| v.identity().bound_certificate.as_deref().copied())
    {
        match peer {
            None => return Err(AuthnError::CertificateRequired),
            Some(peer) if peer.thumbprint != bound => return Err(AuthnError::CertificateMismatch),
            Some(_) => {}
        }
    }
    match (verified, peer) {
        (Some(verified), None) => Ok(verified),
        (verified, Some(peer)) => {
            authn
                .peer_callers()
                .get_or_build(peer, verified, authorizer, policy_generation, now)
        }
        (None, None) => Err(AuthnError::MissingCredentials),
    }
}

/// Callers with a client certificate (alone, or with a token), cached so a
/// connection's repeated requests cost a lookup: keyed by the certificate's
/// thumbprint (and the token), checked on every hit against the policy
/// generation, the token cache entry it was built from, and expiry.
#[derive(Clone)]
pub struct PeerCallers {
    cache: Arc<quick_cache::sync::Cache<u64, Arc<PeerCaller>>>,
}

struct PeerCaller {
    thumbprint: [u8; 32],
    /// The verified token this caller was combined with (identity, not value:
    /// a re-verified token is a new entry, so its combination is rebuilt).
    token: Option<Arc<CachedToken>>,
    caller: Arc<CachedToken>,
}

impl Default for PeerCallers {
    fn default() -> Self {
        PeerCallers::new(10_000)
    }
}

impl PeerCallers {
    /// A cache of at most `capacity` callers (the least used are evicted
    /// beyond it; a hit is re-checked, so a stale entry is never served).
    pub fn new(capacity: usize) -> PeerCallers {
        PeerCallers {
            cache: Arc::new(quick_cache::sync::Cache::new(capacity)),
        }
    }

    fn get_or_build(
        &self,
        peer: &PeerIdentity,
        token: Option<Arc<CachedToken>>,
        authorizer: &Authorizer,
        policy_generation: u64,
        now: i64,
    ) -> Result<Arc<CachedToken>, AuthnError> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        peer.thumbprint.hash(&mut hasher);
        token
            .as_ref()
            .map(|t| (t.identity().uid(), t.key_fingerprint))
            .hash(&mut hasher);
        let key = hasher.finish();
        if let Some(hit) = self.cache.get(&key) {
            let same_token = match (&hit.token, &token) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            };
            if hit.thumbprint == peer.thumbprint
                && same_token
                && hit.caller.policy_generation == policy_generation
                && now < hit.caller.valid_until
            {
                return Ok(hit.caller.clone());
            }
        }
        let caller = match &token {
            Some(verified) => caller(
                combined_identity(verified.identity(), peer)?,
                authorizer,
                policy_generation,
                verified.key_fingerprint,
                verified.issuer_index,
            )?,
            None => caller(
                peer_identity(peer)?,
                authorizer,
                policy_generation,
                0,
                u32::MAX,
            )?,
        };
        self.cache.insert(
            key,
            Arc::new(PeerCaller {
                thumbprint: peer.thumbprint,
                token,
                caller: caller.clone(),
            }),
        );
        Ok(caller)
    }
}

/// The identity of a caller authenticated by its X.509-SVID alone.
///
/// # Errors
/// The SPIFFE ID cannot be an identity (more than 64 KiB: never, a SPIFFE
/// ID is at most 2048 bytes).
pub fn peer_identity(peer: &PeerIdentity) -> Result<Identity, AuthnError> {
    let spiffe_id = peer.spiffe_id.as_str();
    let trust_domain = peer.spiffe_id.trust_domain();
    let iss = format!("spiffe://{trust_domain}");
    let names = Names::<&str> {
        uid: spiffe_id,
        sub: spiffe_id,
        iss: &iss,
        tags: &[],
    };
    let mut identity = Identity::new(
        names,
        Arc::from(MTLS_ISSUER_NAME),
        AuthnMethod::Mtls,
        peer.not_after,
    )
    .map_err(|why| AuthnError::InvalidClaim {
        claim: "spiffe_id".to_owned(),
        detail: why.to_string(),
    })?;
    identity.attrs.insert(
        "spiffe_id".to_owned(),
        AttrValue::String(spiffe_id.to_owned()),
    );
    identity.attrs.insert(
        "trust_domain".to_owned(),
        AttrValue::String(trust_domain.to_owned()),
    );
    Ok(identity)
}

/// The token's identity, enriched with the certificate's SPIFFE ID.
fn combined_identity(token: &Identity, peer: &PeerIdentity) -> Result<Identity, AuthnError> {
    let spiffe_id = peer.spiffe_id.as_str();
    if let Some(AttrValue::String(own)) = token.attrs.get("spiffe_id") {
        if own != spiffe_id {
            return Err(AuthnError::CertificateMismatch);
        }
    }
    let mut identity = token.clone();
    identity.authn = AuthnMethod::JwtAndMtls;
    identity.attrs.insert(
        "spiffe_id".to_owned(),
        AttrValue::String(spiffe_id.to_owned()),
    );
    identity.attrs.insert(
        "trust_domain".to_owned(),
        AttrValue::String(peer.spiffe_id.trust_domain().to_owned()),
    );
    identity.expires_at = identity.expires_at.min(peer.not_after);
    Ok(identity)
}

/// Builds the principal for a per-request identity (certificate callers).
fn caller(
    identity: Identity,
    authorizer: &Authorizer,
    policy_generation: u64,
    key_fingerprint: u64,
    issuer_index: u32,
) -> Result<Arc<CachedToken>, AuthnError> {
    let weight = u32::try_from(identity_weight(&identity)).unwrap_or(u32::MAX);
    super::authenticator::check_header_values(&identity)?;
    let valid_until = identity.expires_at;
    let principal = authorizer
        .principal(identity)
        .map_err(AuthnError::SchemaMismatch)?;
    Ok(Arc::new(CachedToken {
        valid_until,
        principal,
        policy_generation,
        issuer_index,
        // Built per request for certificate callers; never cached by token.
        issuer_fingerprint: 0,
        key_fingerprint,
        weight,
    }))
}
