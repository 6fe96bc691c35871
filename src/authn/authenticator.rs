//! The authentication stage: bearer token → verified, cached identity and
//! principal. Ties the pure pieces ([`super::jwt`], [`super::verify`],
//! [`super::presets`]) to the key holders ([`super::jwks`]) and the
//! [`TokenCache`].

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use super::jwks::{http_client_for, HttpClientError, IssuerKeys, LoadedKeys, REFETCH_WAIT};
use super::token_cache::{identity_weight, CachedToken, TokenCache, TokenKey};
use super::{jwt, presets, verify, AuthnError};
use crate::authz::Authorizer;
use crate::config::{Config, Preset};
use crate::metrics::Metrics;

/// The authentication stage.
pub struct Authenticator {
    issuers: Vec<Arc<IssuerKeys>>,
    /// Per issuer, a hash of every rule its tokens are verified under (the
    /// issuer's config and the trust domains): a cached token verified under
    /// other rules is verified afresh.
    issuer_fingerprints: Vec<u64>,
    /// Issuer index by `iss`. Hashed with foldhash: the table is fixed by
    /// the configuration, so a forged `iss` can only miss.
    by_iss: crate::FastMap<String, usize>,
    cache: Option<TokenCache>,
    max_token_bytes: usize,
    /// The last token header parsed (tokens of one issuer share theirs).
    headers: jwt::HeaderMemo,
    trust_domains: Vec<String>,
    peer_callers: super::credentials::PeerCallers,
    metrics: Metrics,
}

impl Authenticator {
    /// Builds the stage for `config` with a token cache sized by
    /// `authn.token_cache.max_bytes`; keys are not fetched yet (see
    /// [`Authenticator::issuers`]).
    ///
    /// # Errors
    /// When an issuer's own HTTP client cannot be built (see [`Authenticator::with_cache`]).
    pub fn new(
        config: &Config,
        http: reqwest::Client,
        metrics: Metrics,
    ) -> Result<Authenticator, HttpClientError> {
        let cache = (config.authn.token_cache_max_bytes > 0).then(|| {
            TokenCache::new(
                config.authn.token_cache_max_bytes,
                metrics.token_cache_evictions.clone(),
            )
        });
        Authenticator::with_cache(config, http, metrics, cache)
    }

    /// Builds the stage around an existing token cache (e.g. one kept across a
    /// configuration change: entries verified under other issuer rules are
    /// never served, see [`CachedToken::issuer_fingerprint`]). Issuers share
    /// `http` unless they need their own client ([`super::jwks::http_client_for`]).
    ///
    /// # Errors
    /// When an issuer's own HTTP client cannot be built.
    pub fn with_cache(
        config: &Config,
        http: reqwest::Client,
        metrics: Metrics,
        cache: Option<TokenCache>,
    ) -> Result<Authenticator, HttpClientError> {
        Authenticator::build(config, http, metrics, cache, &[])
    }

    /// The stage for a reloaded `config`: an issuer whose configuration did
    /// not change keeps its key holder (its keys, its refresh loop and its
    /// state), and the token cache is kept unless its size changed. Entries
    /// verified under other issuer rules are never served (see
    /// [`CachedToken::issuer_fingerprint`]).
    ///
    /// # Errors
    /// When a new issuer's HTTP client cannot be built.
    pub fn rebuilt(
        &self,
        config: &Config,
        http: reqwest::Client,
    ) -> Result<Authenticator, HttpClientError> {
        let cache = match &self.cache {
            Some(cache) if cache.max_bytes() == config.authn.token_cache_max_bytes => {
                Some(cache.clone())
            }
            _ => (config.authn.token_cache_max_bytes > 0).then(|| {
                TokenCache::new(
                    config.authn.token_cache_max_bytes,
                    self.metrics.token_cache_evictions.clone(),
                )
            }),
        };
        Authenticator::build(config, http, self.metrics.clone(), cache, &self.issuers)
    }

    fn build(
        config: &Config,
        http: reqwest::Client,
        metrics: Metrics,
        cache: Option<TokenCache>,
        previous: &[Arc<IssuerKeys>],
    ) -> Result<Authenticator, HttpClientError> {
        let issuers: Vec<Arc<IssuerKeys>> = config
            .issuers
            .iter()
            .map(
                |issuer| match previous.iter().find(|keys| **keys.config() == *issuer) {
                    Some(unchanged) => Ok(Arc::clone(unchanged)),
                    None => Ok(Arc::new(IssuerKeys::new(
                        Arc::new(issuer.clone()),
                        http_client_for(issuer, &http)?,
                        metrics.clone(),
                    ))),
                },
            )
            .collect::<Result<_, _>>()?;
        let by_iss = config
            .issuers
            .iter()
            .enumerate()
            .map(|(index, issuer)| (issuer.issuer.clone(), index))
            .collect();
        let issuer_fingerprints = config
            .issuers
            .iter()
            .map(|issuer| {
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                issuer.hash(&mut hasher);
                config.trust_domains.hash(&mut hasher);
                hasher.finish()
            })
            .collect();
        Ok(Authenticator {
            issuers,
            issuer_fingerprints,
            by_iss,
            cache,
            max_token_bytes: config.authn.max_token_bytes,
            headers: jwt::HeaderMemo::default(),
            trust_domains: config.trust_domains.clone(),
            peer_callers: super::credentials::PeerCallers::default(),
            metrics,
        })
    }

    /// The issuers' key holders (for the refresh loops and `/readyz`).
    pub fn issuers(&self) -> &[Arc<IssuerKeys>] {
        &self.issuers
    }

    /// The cache of callers with a client certificate.
    pub fn peer_callers(&self) -> &super::credentials::PeerCallers {
        &self.peer_callers
    }

    /// The token cache, if enabled.
    pub fn cache(&self) -> Option<&TokenCache> {
        self.cache.as_ref()
    }

    /// Authenticates a bearer token at Unix time `now`, for the policy set
    /// `authorizer` (generation `policy_generation`).
    ///
    /// # Errors
    /// [`AuthnError`] with the first failed check.
    pub async fn authenticate(
        &self,
        token: &str,
        authorizer: &Authorizer,
        policy_generation: u64,
        now: i64,
    ) -> Result<Arc<CachedToken>, AuthnError> {
        if token.len() > self.max_token_bytes {
            return Err(AuthnError::TokenTooLarge {
                max: self.max_token_bytes,
            });
        }
        let Some(cache) = &self.cache else {
            return Ok(Arc::new(
                self.verify(token, authorizer, policy_generation, now)
                    .await?,
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
            match self.revalidate(cache, &key, entry, authorizer, policy_generation, now) {
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
        let entry = Arc::new(
            self.verify(token, authorizer, policy_generation, now)
                .await?,
        );
        cache.insert_key(key, entry.clone());
        Ok(entry)
    }

    /// Re-checks a cache hit against the current state: `Ok(None)` means treat as a miss.
    fn revalidate(
        &self,
        cache: &TokenCache,
        key: &TokenKey,
        entry: Arc<CachedToken>,
        authorizer: &Authorizer,
        policy_generation: u64,
        now: i64,
    ) -> Result<Option<Arc<CachedToken>>, AuthnError> {
        let Some(issuer) = self.issuers.get(entry.issuer_index as usize) else {
            cache.remove_key(key);
            return Ok(None);
        };
        if self.issuer_fingerprints.get(entry.issuer_index as usize)
            != Some(&entry.issuer_fingerprint)
        {
            // Verified under other rules (the configuration changed): verify afresh.
            cache.remove_key(key);
            return Ok(None);
        }
        if now >= entry.valid_until {
            cache.remove_key(key);
            return Err(AuthnError::Expired);
        }
        match issuer.has_key(entry.key_fingerprint) {
            None => {
                return Err(AuthnError::IssuerUnavailable(
                    issuer.config().name.to_string(),
                ))
            }
            Some(false) => {
                // The key was withdrawn: verify afresh (it will fail unless re-signed).
                cache.remove_key(key);
                return Ok(None);
            }
            Some(true) => {}
        }
        if entry.policy_generation == policy_generation {
            return Ok(Some(entry));
        }
        // Policies (and maybe the schema) changed: rebuild the principal entity.
        let principal = authorizer
            .principal(Arc::clone(entry.identity()))
            .map_err(AuthnError::SchemaMismatch)?;
        let rebuilt = Arc::new(CachedToken {
            principal,
            policy_generation,
            issuer_index: entry.issuer_index,
            issuer_fingerprint: entry.issuer_fingerprint,
            key_fingerprint: entry.key_fingerprint,
            valid_until: entry.valid_until,
            weight: entry.weight,
        });
        cache.insert_key(*key, rebuilt.clone());
        Ok(Some(rebuilt))
    }

    async fn verify(
        &self,
        token: &str,
        authorizer: &Authorizer,
        policy_generation: u64,
        now: i64,
    ) -> Result<CachedToken, AuthnError> {
        let parsed = jwt::parse_remembering(token, self.max_token_bytes, &self.headers)?;
        let iss = parsed
            .claims
            .get("iss")
            .and_then(serde_json::Value::as_str)
            .ok_or(AuthnError::UnknownIssuer)?;
        let issuer_index = *self.by_iss.get(iss).ok_or(AuthnError::UnknownIssuer)?;
        let issuer = &self.issuers[issuer_index];
        let keys = self
            .usable_keys(issuer, parsed.header.kid.as_deref())
            .await?;
        // Read before the token moves into verification, reported after it
        // (a forged token learns nothing from the header checks).
        let svid_type = check_jwt_svid_type(parsed.header.typ.as_deref());
        let verified = verify::verify(parsed, issuer.config(), &keys.set, now)?;
        if issuer.config().preset == Preset::SpiffeJwt {
            svid_type?;
        }
        let identity = presets::identity(
            issuer.config(),
            &verified.claims,
            verified.expires_at,
            &self.trust_domains,
        )?;
        check_header_values(&identity)?;
        let leeway = i64::try_from(issuer.config().leeway.as_secs()).unwrap_or(0);
        let weight = u32::try_from(identity_weight(&identity)).unwrap_or(u32::MAX);
        let principal = authorizer
            .principal(identity)
            .map_err(AuthnError::SchemaMismatch)?;
        Ok(CachedToken {
            principal,
            policy_generation,
            // Never more than u32::MAX issuers; were there, the index would
            // match none and the token be verified afresh.
            issuer_index: u32::try_from(issuer_index).unwrap_or(u32::MAX),
            issuer_fingerprint: self.issuer_fingerprints[issuer_index],
            key_fingerprint: verified.key_fingerprint,
            valid_until: verified.expires_at.saturating_add(leeway),
            weight,
        })
    }

    /// The issuer's keys, refetching (single flight, rate-limited) when there are
    /// none yet or the token names an unknown `kid`.
    async fn usable_keys(
        &self,
        issuer: &IssuerKeys,
        kid: Option<&str>,
    ) -> Result<Arc<LoadedKeys>, AuthnError> {
        let unavailable = || AuthnError::IssuerUnavailable(issuer.config().name.to_string());
        let current = issuer.keys();
        let needs_refetch = match (&current, kid) {
            (None, _) => true,
            (Some(keys), Some(kid)) => !keys.set.has_kid(kid),
            (Some(_), None) => false,
        };
        if !needs_refetch {
            return current.ok_or_else(unavailable);
        }
        let refreshed = tokio::time::timeout(REFETCH_WAIT, issuer.refetch_for_unknown_kid())
            .await
            .unwrap_or_else(|_| issuer.keys());
        refreshed.or(current).ok_or_else(unavailable)
    }
}

/// Checks the identity's upstream header values; a value that cannot be a
/// header is an authentication failure (never a 500 later).
pub(super) fn check_header_values(identity: &crate::identity::Identity) -> Result<(), AuthnError> {
    crate::headers::IdentityHeaderValues::of(identity)
        .check()
        .map_err(|detail| AuthnError::InvalidClaim {
            claim: "sub".to_owned(),
            detail,
        })
}

/// JWT-SVID §3: `typ`, when present, is `JWT` or `JOSE`.
fn check_jwt_svid_type(typ: Option<&str>) -> Result<(), AuthnError> {
    match typ {
        None | Some("JWT") | Some("JOSE") => Ok(()),
        Some(_) => Err(AuthnError::InvalidClaim {
            claim: "typ".to_owned(),
            detail: "a JWT-SVID's typ header must be JWT or JOSE".to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests;
