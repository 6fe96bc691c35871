//! The verified-token cache: a token verified once costs a lookup afterwards.
//!
//! Keyed by the exact token text. Each entry records the issuer it was verified
//! under, the fingerprint of the key that verified it and the policy generation
//! its principal entity was built for, so a hit is re-checked cheaply against
//! the current state: a key removed from the JWKS, or keys gone stale, stop a
//! cached token at once. Bounded by bytes; entries expire at the token's `exp`
//! (plus leeway). Backed by `moka` (concurrent, no global lock on reads).

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::sync::Cache;

use crate::authz::Principal;
use crate::identity::{AttrValue, Identity};

/// What a cache entry holds.
#[derive(Debug)]
pub struct CachedToken {
    /// The verified identity (the same allocation as the principal's).
    pub identity: Arc<Identity>,
    /// The identity headers sent upstream, built once.
    pub header_values: crate::headers::IdentityHeaderValues,
    /// The principal entity, built for `policy_generation`.
    pub principal: Principal,
    /// The policy generation `principal` was built for.
    pub policy_generation: u64,
    /// Index of the issuer (in config order) that verified the token.
    pub issuer_index: usize,
    /// Hash of the issuer rules the token was verified under; a hit under
    /// other rules is a miss.
    pub issuer_fingerprint: u64,
    /// Fingerprint of the verifying key.
    pub key_fingerprint: u64,
    /// Unix seconds after which the token is no longer accepted (`exp` + leeway).
    pub valid_until: i64,
    /// Approximate heap bytes of this entry, for the byte bound.
    pub weight: u32,
}

/// Estimates the heap bytes a cache entry holds besides its key: the
/// identity, its header values, the principal (which keeps a copy of the
/// identity), and moka's per-entry bookkeeping (nodes in its deques and timer
/// wheel). Calibrated against RSS (`memory_per_cached_token` in
/// authenticator/tests.rs: ~2.0 KB real per entry with a 336-byte token), so
/// that `max_bytes` bounds real memory.
pub fn identity_weight(identity: &Identity) -> usize {
    fn attr(value: &AttrValue) -> usize {
        match value {
            AttrValue::String(s) => s.len() + 48,
            AttrValue::Long(_) | AttrValue::Bool(_) => 32,
            AttrValue::Set(items) => items.iter().map(|s| s.len() + 48).sum::<usize>() + 64,
            AttrValue::Record(map) => map.iter().map(|(k, v)| k.len() + 64 + attr(v)).sum(),
        }
    }
    let strings = identity.uid.len() + identity.sub.len() + identity.iss.len();
    let tags: usize = identity.tags.iter().map(|t| t.len() + 48).sum();
    let attrs: usize = identity
        .attrs
        .iter()
        .map(|(k, v)| k.len() + 64 + attr(v))
        .sum();
    // Identity and header values hold the strings once each; the principal
    // entity holds them (and the tags and attributes) again as Cedar values.
    const FIXED: usize = 1408; // structs, Arcs, the principal's uid, moka's nodes
    FIXED + 2 * (strings + tags + attrs) + strings
}

struct ExpireAtValidUntil;

impl moka::Expiry<Arc<str>, Arc<CachedToken>> for ExpireAtValidUntil {
    fn expire_after_create(
        &self,
        _key: &Arc<str>,
        value: &Arc<CachedToken>,
        _created_at: Instant,
    ) -> Option<Duration> {
        let remaining = value.valid_until.saturating_sub(super::unix_now());
        Some(Duration::from_secs(u64::try_from(remaining).unwrap_or(0)))
    }
}

/// The cache.
#[derive(Clone)]
pub struct TokenCache {
    cache: Cache<Arc<str>, Arc<CachedToken>>,
}

impl TokenCache {
    /// A cache bounded to about `max_bytes`; entries pushed out by the bound
    /// are counted in `evictions`.
    pub fn new(max_bytes: u64, evictions: prometheus::IntCounter) -> TokenCache {
        let cache = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|key: &Arc<str>, value: &Arc<CachedToken>| {
                u32::try_from(key.len())
                    .unwrap_or(u32::MAX)
                    .saturating_add(value.weight)
            })
            .expire_after(ExpireAtValidUntil)
            .eviction_listener(move |_key, _value, cause| {
                if cause == moka::notification::RemovalCause::Size {
                    evictions.inc();
                }
            })
            .build();
        TokenCache { cache }
    }

    /// Looks a token up.
    pub fn get(&self, token: &str) -> Option<Arc<CachedToken>> {
        self.cache.get(token)
    }

    /// Stores a verified token.
    pub fn insert(&self, token: &str, entry: Arc<CachedToken>) {
        self.cache.insert(token.into(), entry);
    }

    /// Drops a token (e.g. its key is gone).
    pub fn remove(&self, token: &str) {
        self.cache.invalidate(token);
    }

    /// Drops everything (e.g. on a configuration change).
    pub fn clear(&self) {
        self.cache.invalidate_all();
    }

    /// (entries, weighted bytes), after running pending maintenance.
    pub fn usage(&self) -> (u64, u64) {
        self.cache.run_pending_tasks();
        (self.cache.entry_count(), self.cache.weighted_size())
    }
}
