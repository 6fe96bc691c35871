//! Who is calling: a bearer token and/or a client certificate, as
//! `authn.require` demands, combined into one caller with its Cedar
//! principal (RFC 8705 certificate-bound tokens), and the caches that make a
//! repeat caller cost a lookup. Verification itself is `authn`'s; the
//! principal is `authz`'s; this module owns what is kept between requests.

use std::sync::Arc;

use super::token_cache::{identity_weight, CachedToken, TokenCache, TokenKey};
use crate::authn::authenticator::{check_header_values, Authenticator, Provenance, Recheck};
use crate::authn::svid::PeerIdentity;
use crate::authn::AuthnError;
use crate::authz::reload::LoadedPolicies;
use crate::config::RequireCredentials;
use crate::identity::{AttrValue, AuthnMethod, Identity, Names};
use crate::metrics::Metrics;

/// The callers known to this process: verified tokens with their principals
/// (the token cache) and certificate callers. Kept across reloads (entries
/// verified under other issuer rules are verified afresh; principals built
/// for other policies are rebuilt).
pub struct Callers {
    cache: Option<TokenCache>,
    peers: PeerCallers,
    metrics: Metrics,
}

impl Callers {
    /// A token cache bounded to `max_bytes` (`0`: no cache).
    pub fn new(max_bytes: u64, metrics: Metrics) -> Callers {
        let cache = (max_bytes > 0)
            .then(|| TokenCache::new(max_bytes, metrics.token_cache_evictions.clone()));
        Callers {
            cache,
            peers: PeerCallers::default(),
            metrics,
        }
    }

    /// Callers around an existing token cache (tests share one between
    /// stages built for different configs).
    #[cfg(test)]
    pub(crate) fn with_cache(cache: Option<TokenCache>, metrics: Metrics) -> Callers {
        Callers {
            cache,
            peers: PeerCallers::default(),
            metrics,
        }
    }

    /// The callers for a reloaded config: the same caches unless the token
    /// cache's size changed.
    pub fn for_reload(self: &Arc<Self>, max_bytes: u64) -> Arc<Callers> {
        let same = match &self.cache {
            Some(cache) => cache.max_bytes() == max_bytes,
            None => max_bytes == 0,
        };
        if same {
            Arc::clone(self)
        } else {
            Arc::new(Callers::new(max_bytes, self.metrics.clone()))
        }
    }

    /// The token cache, if enabled.
    pub fn cache(&self) -> Option<&TokenCache> {
        self.cache.as_ref()
    }

    /// A bearer token's caller: from the cache (re-checked against the
    /// issuer's rules, expiry and keys; its principal rebuilt for new
    /// policies), or verified and cached.
    ///
    /// # Errors
    /// [`AuthnError`] with the first failed check.
    pub async fn token(
        &self,
        authn: &Authenticator,
        token: &str,
        policies: &LoadedPolicies,
        now: i64,
    ) -> Result<Arc<CachedToken>, AuthnError> {
        if token.len() > authn.max_token_bytes() {
            return Err(AuthnError::TokenTooLarge {
                max: authn.max_token_bytes(),
            });
        }
        let Some(cache) = &self.cache else {
            return Ok(Arc::new(
                verified_caller(authn, token, policies, now).await?,
            ));
        };
        // A token seen lately: no digest to compute.
        let (key, entry, seen_lately) = match cache.get_recent(token) {
            Some((key, entry)) => (key, Some(entry), true),
            None => {
                let key = TokenKey::of(token);
                (key, cache.get_key(&key), false)
            }
        };
        if let Some(entry) = entry {
            let found = Arc::as_ptr(&entry);
            match revalidate(authn, cache, &key, entry, policies, now) {
                Ok(Some(hit)) => {
                    self.metrics.token_cache_hits.inc();
                    // New here, or rebuilt for new policies.
                    if !seen_lately || !std::ptr::eq(Arc::as_ptr(&hit), found) {
                        cache.put_recent(token, key, Arc::clone(&hit));
                    }
                    return Ok(hit);
                }
                Ok(None) => cache.forget_recent(token),
                Err(error) => {
                    cache.forget_recent(token);
                    return Err(error);
                }
            }
        }
        self.metrics.token_cache_misses.inc();
        let entry = Arc::new(verified_caller(authn, token, policies, now).await?);
        cache.insert_key(key, entry.clone());
        Ok(entry)
    }

    /// Authenticates a request's credentials under `require`.
    ///
    /// - token only: the token's identity (`authn = "jwt"`);
    /// - certificate only: the SVID's identity (`sub` = SPIFFE ID, `iss` =
    ///   `spiffe://<trust domain>`, `authn = "mtls"`);
    /// - both: the token's identity with `spiffe_id`/`trust_domain` from the
    ///   certificate and `authn = "jwt+mtls"`; a token whose own `spiffe_id`
    ///   (spiffe-jwt) differs from the certificate's is rejected.
    ///
    /// A token bound to a certificate (`cnf.x5t#S256`) is accepted only
    /// together with that certificate.
    ///
    /// # Errors
    /// [`AuthnError`]: missing credentials for `require`, token failures, a
    /// binding mismatch, or an identity that does not fit the schema.
    pub async fn authenticate(
        &self,
        authn: &Authenticator,
        credentials: Credentials<'_>,
        require: RequireCredentials,
        policies: &LoadedPolicies,
        now: i64,
    ) -> Result<Arc<CachedToken>, AuthnError> {
        let Credentials {
            token,
            claims,
            peer,
        } = credentials;
        // Claims taken as given stand where a token would.
        let has_token = token.is_some() || claims.is_some();
        match require {
            RequireCredentials::Jwt if !has_token => return Err(AuthnError::MissingCredentials),
            RequireCredentials::Mtls if peer.is_none() => {
                return Err(AuthnError::CertificateRequired)
            }
            RequireCredentials::Both if !has_token => return Err(AuthnError::MissingCredentials),
            RequireCredentials::Both if peer.is_none() => {
                return Err(AuthnError::CertificateRequired)
            }
            RequireCredentials::Any if !has_token && peer.is_none() => {
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
        let verified = match (token, claims) {
            _ if require == RequireCredentials::Mtls => None,
            (_, Some(claims)) => Some(unverified_caller(authn, claims, policies, now)?),
            (Some(token), None) => Some(self.token(authn, token, policies, now).await?),
            (None, None) => None,
        };
        if let Some(bound) = verified
            .as_ref()
            .and_then(|v| v.identity().bound_certificate.as_deref().copied())
        {
            match peer {
                None => return Err(AuthnError::CertificateRequired),
                Some(peer) if peer.thumbprint != bound => {
                    return Err(AuthnError::CertificateMismatch)
                }
                Some(_) => {}
            }
        }
        match (verified, peer) {
            (Some(verified), None) => Ok(verified),
            (verified, Some(peer)) => self.peers.get_or_build(peer, verified, policies, now),
            (None, None) => Err(AuthnError::MissingCredentials),
        }
    }
}

/// The caller of a claim set taken as given (never cached).
fn unverified_caller(
    authn: &Authenticator,
    claims: &UnverifiedClaims,
    policies: &LoadedPolicies,
    now: i64,
) -> Result<Arc<CachedToken>, AuthnError> {
    let verified = authn.unverified(&claims.issuer, claims.claims.clone(), now)?;
    let weight = u32::try_from(identity_weight(&verified.identity)).unwrap_or(u32::MAX);
    let principal = policies
        .authorizer
        .principal(verified.identity)
        .map_err(AuthnError::SchemaMismatch)?;
    Ok(Arc::new(CachedToken {
        principal,
        policy_generation: policies.generation,
        provenance: verified.provenance,
        weight,
    }))
}

/// Verifies `token` and builds its principal for `policies`.
async fn verified_caller(
    authn: &Authenticator,
    token: &str,
    policies: &LoadedPolicies,
    now: i64,
) -> Result<CachedToken, AuthnError> {
    let verified = authn.verify(token, now).await?;
    let weight = u32::try_from(identity_weight(&verified.identity)).unwrap_or(u32::MAX);
    let principal = policies
        .authorizer
        .principal(verified.identity)
        .map_err(AuthnError::SchemaMismatch)?;
    Ok(CachedToken {
        principal,
        policy_generation: policies.generation,
        provenance: verified.provenance,
        weight,
    })
}

/// Re-checks a cache hit against the current state: `Ok(None)` means treat
/// it as a miss.
fn revalidate(
    authn: &Authenticator,
    cache: &TokenCache,
    key: &TokenKey,
    entry: Arc<CachedToken>,
    policies: &LoadedPolicies,
    now: i64,
) -> Result<Option<Arc<CachedToken>>, AuthnError> {
    match authn.recheck(&entry.provenance, now) {
        Ok(Recheck::Valid) => {}
        Ok(Recheck::Stale) => {
            cache.remove_key(key);
            return Ok(None);
        }
        Err(AuthnError::Expired) => {
            cache.remove_key(key);
            return Err(AuthnError::Expired);
        }
        Err(error) => return Err(error),
    }
    if entry.policy_generation == policies.generation {
        return Ok(Some(entry));
    }
    // Policies (and maybe the schema) changed: rebuild the principal entity.
    let principal = policies
        .authorizer
        .principal(Arc::clone(entry.identity()))
        .map_err(AuthnError::SchemaMismatch)?;
    let rebuilt = Arc::new(CachedToken {
        principal,
        policy_generation: policies.generation,
        provenance: entry.provenance,
        weight: entry.weight,
    });
    cache.insert_key(*key, rebuilt.clone());
    Ok(Some(rebuilt))
}

/// The credentials of one request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Credentials<'a> {
    /// The bearer token, if any.
    pub token: Option<&'a str>,
    /// Claims taken as given instead of a token (offline tools only: `wisp
    /// explain --claims`, policy tests); never set by a server.
    pub claims: Option<&'a UnverifiedClaims>,
    /// The verified client certificate identity, if any.
    pub peer: Option<&'a PeerIdentity>,
}

/// A claim set to decide on without a token (see [`Credentials::claims`]).
#[derive(Debug, Clone)]
pub struct UnverifiedClaims {
    /// The configured issuer (`issuers[].name`) whose preset and mappings apply.
    pub issuer: String,
    /// The token payload; `iss`, `aud`, `iat`, `exp` default from the issuer.
    pub claims: serde_json::Map<String, serde_json::Value>,
}

/// The issuer name reported for callers authenticated by certificate alone.
pub const MTLS_ISSUER_NAME: &str = "mtls";

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
        policies: &LoadedPolicies,
        now: i64,
    ) -> Result<Arc<CachedToken>, AuthnError> {
        let policy_generation = policies.generation;
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        peer.thumbprint.hash(&mut hasher);
        token
            .as_ref()
            .map(|t| (t.identity().uid(), t.provenance.key_fingerprint))
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
                && now < hit.caller.provenance.valid_until
            {
                return Ok(hit.caller.clone());
            }
        }
        let caller = match &token {
            Some(verified) => caller(
                combined_identity(verified.identity(), peer)?,
                policies,
                verified.provenance.key_fingerprint,
                verified.provenance.issuer_index,
            )?,
            None => caller(peer_identity(peer)?, policies, 0, u32::MAX)?,
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
    policies: &LoadedPolicies,
    key_fingerprint: u64,
    issuer_index: u32,
) -> Result<Arc<CachedToken>, AuthnError> {
    let weight = u32::try_from(identity_weight(&identity)).unwrap_or(u32::MAX);
    check_header_values(&identity)?;
    let valid_until = identity.expires_at;
    let principal = policies
        .authorizer
        .principal(identity)
        .map_err(AuthnError::SchemaMismatch)?;
    Ok(Arc::new(CachedToken {
        principal,
        policy_generation: policies.generation,
        provenance: Provenance {
            issuer_index,
            // Built per request for certificate callers; never cached by token.
            issuer_fingerprint: 0,
            key_fingerprint,
            valid_until,
        },
        weight,
    }))
}

#[cfg(test)]
#[path = "callers_tests.rs"]
mod tests;
