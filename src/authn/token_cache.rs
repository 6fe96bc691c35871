//! The verified-token cache: a token verified once costs a lookup afterwards.
//!
//! Keyed by the SHA-256 digest of the exact token text (32 bytes instead of
//! the token's ~0.3–1 KB: a different token with the same digest would be a
//! SHA-256 collision). Each entry records the issuer it was verified
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

impl moka::Expiry<TokenKey, Arc<CachedToken>> for ExpireAtValidUntil {
    fn expire_after_create(
        &self,
        _key: &TokenKey,
        value: &Arc<CachedToken>,
        _created_at: Instant,
    ) -> Option<Duration> {
        let remaining = value.valid_until.saturating_sub(super::unix_now());
        Some(Duration::from_secs(u64::try_from(remaining).unwrap_or(0)))
    }
}

/// A cache key: the SHA-256 digest of the token text.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenKey([u8; 32]);

impl TokenKey {
    /// The key of `token`.
    pub fn of(token: &str) -> TokenKey {
        let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
        let mut key = [0; 32];
        key.copy_from_slice(digest.as_ref());
        TokenKey(key)
    }
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A key names a bearer token: print a prefix, enough to tell keys apart.
        write!(
            f,
            "TokenKey({:02x}{:02x}{:02x}{:02x}…)",
            self.0[0], self.0[1], self.0[2], self.0[3]
        )
    }
}

/// The cache.
#[derive(Clone)]
pub struct TokenCache {
    cache: Cache<TokenKey, Arc<CachedToken>>,
}

impl TokenCache {
    /// A cache bounded to about `max_bytes`; entries pushed out by the bound
    /// are counted in `evictions`.
    pub fn new(max_bytes: u64, evictions: prometheus::IntCounter) -> TokenCache {
        let cache = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_key: &TokenKey, value: &Arc<CachedToken>| value.weight)
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
        self.get_key(&TokenKey::of(token))
    }

    /// Looks a token up by its key.
    pub fn get_key(&self, key: &TokenKey) -> Option<Arc<CachedToken>> {
        self.cache.get(key)
    }

    /// Stores a verified token.
    pub fn insert(&self, token: &str, entry: Arc<CachedToken>) {
        self.insert_key(TokenKey::of(token), entry);
    }

    /// Stores a verified token by its key.
    pub fn insert_key(&self, key: TokenKey, entry: Arc<CachedToken>) {
        self.cache.insert(key, entry);
    }

    /// Drops a token (e.g. its key is gone).
    pub fn remove_key(&self, key: &TokenKey) {
        self.cache.invalidate(key);
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
