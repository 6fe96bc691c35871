//! The verified-token cache: a token verified once costs a lookup afterwards.
//!
//! Keyed by the SHA-256 digest of the exact token text (32 bytes instead of
//! the token's ~0.3–1 KB: a different token with the same digest would be a
//! SHA-256 collision). Each entry records the issuer it was verified
//! under, the fingerprint of the key that verified it and the policy generation
//! its principal entity was built for, so a hit is re-checked cheaply against
//! the current state: a key removed from the JWKS, or keys gone stale, stop a
//! cached token at once. Bounded by bytes; entries expire at the token's `exp`
//! (plus leeway): a hit past it is never served, and a sweep every
//! [`SWEEP_INTERVAL`] returns their memory. Backed by `quick_cache`
//! (sharded, S3-FIFO eviction by weight, ~70 bytes of bookkeeping per entry
//! where moka's per-entry deques and timer wheel took ~390).
//!
//! In front of it, `RecentTokens` finds a token used again by its text,
//! without computing the digest.

use std::hash::BuildHasher as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;

use crate::authn::authenticator::Provenance;
use crate::authz::Principal;
use crate::identity::{AttrValue, Identity};

/// What a cache entry holds: a verified caller and its Cedar principal.
#[derive(Debug)]
pub struct CachedToken {
    /// The principal entity, built for `policy_generation`.
    pub principal: Principal,
    /// The policy generation `principal` was built for.
    pub policy_generation: u64,
    /// Under which issuer rules, with which key and until when the token was
    /// verified (re-checked on every hit, see `Authenticator::recheck`).
    pub provenance: Provenance,
    /// Approximate heap bytes of this entry, for the byte bound.
    pub weight: u32,
}

impl CachedToken {
    /// The verified identity (the principal's).
    pub fn identity(&self) -> &Arc<Identity> {
        self.principal.identity()
    }
}

/// Estimates the bytes a cache entry holds: the entry (64 B) and identity
/// (88 B) structs with their `Arc` headers, the identity's text (names and
/// tags), its attributes and certificate binding, and the cache's own slot.
/// Calibrated against the RSS of the release binary (jemalloc):
/// `loadtests/run.sh`'s 100k distinct tokens (a 23-byte `sub`, a 24-byte
/// `iss`, two tags: 69 bytes of text) took 411 B each, weighed 421, so that
/// `max_bytes` bounds real memory.
pub fn identity_weight(identity: &Identity) -> usize {
    fn attr(value: &AttrValue) -> usize {
        match value {
            AttrValue::String(s) => s.len() + 48,
            AttrValue::Long(_) | AttrValue::Bool(_) => 32,
            AttrValue::Set(items) => items.iter().map(|s| s.len() + 48).sum::<usize>() + 64,
            AttrValue::Record(map) => map.iter().map(|(k, v)| k.len() + 64 + attr(v)).sum(),
        }
    }
    let attrs: usize = identity
        .attrs
        .iter()
        .map(|(k, v)| k.len() + 64 + attr(v))
        .sum();
    let binding = if identity.bound_certificate.is_some() {
        48
    } else {
        0
    };
    // The entry (80 B with its Arc header, as allocated) and identity
    // (112 B) allocations, the text's size-class rounding, the cache's slot
    // and table share (~75 B), and its decision-cache share.
    const FIXED: usize = 352;
    FIXED + identity.text_len() + attrs + binding
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
        let [a, b, c, d, ..] = self.0;
        write!(f, "TokenKey({a:02x}{b:02x}{c:02x}{d:02x}…)")
    }
}

/// How often expired entries are swept out (they are never served: a hit
/// re-checks `valid_until`; the sweep only returns their memory).
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(30);

#[derive(Clone)]
struct Weigh;

impl quick_cache::Weighter<TokenKey, Arc<CachedToken>> for Weigh {
    fn weight(&self, _key: &TokenKey, value: &Arc<CachedToken>) -> u64 {
        u64::from(value.weight)
    }
}

/// Counts entries pushed out by the byte bound.
#[derive(Clone)]
struct CountEvictions(prometheus::IntCounter);

impl quick_cache::Lifecycle<TokenKey, Arc<CachedToken>> for CountEvictions {
    type RequestState = ();

    fn on_evict(&self, _state: &mut (), _key: TokenKey, _value: Arc<CachedToken>) {
        self.0.inc();
    }
}

/// Hashed with seeded foldhash: the keys are SHA-256 digests (no one can
/// aim a token at a bucket), and a hit hashes one on every request.
type Entries = quick_cache::sync::Cache<
    TokenKey,
    Arc<CachedToken>,
    Weigh,
    quick_cache::DefaultHashBuilder,
    CountEvictions,
>;

/// The cache.
#[derive(Clone)]
pub struct TokenCache {
    cache: Arc<Entries>,
    /// The tokens seen last, by their text, in front of `cache`.
    recent: Arc<RecentTokens>,
    max_bytes: u64,
}

impl TokenCache {
    /// A cache bounded to about `max_bytes`; entries pushed out by the bound
    /// are counted in `evictions`.
    pub fn new(max_bytes: u64, evictions: prometheus::IntCounter) -> TokenCache {
        // The estimate sizes the shards' tables up front (they grow past it).
        let estimated = usize::try_from(max_bytes / 1024)
            .unwrap_or(usize::MAX)
            .clamp(64, 1 << 20);
        let cache = Entries::with(
            estimated,
            max_bytes,
            Weigh,
            quick_cache::DefaultHashBuilder::default(),
            CountEvictions(evictions),
        );
        TokenCache {
            cache: Arc::new(cache),
            recent: Arc::new(RecentTokens::new()),
            max_bytes,
        }
    }

    /// The bound it was made with.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// A token seen lately, by its text (see [`RecentTokens`]): its key and
    /// entry, to be re-checked as any hit is.
    pub fn get_recent(&self, token: &str) -> Option<(TokenKey, Arc<CachedToken>)> {
        self.recent.get(token)
    }

    /// Remembers `token` (verified, cached under `key`) as seen lately.
    pub fn put_recent(&self, token: &str, key: TokenKey, entry: Arc<CachedToken>) {
        self.recent.put(token, key, entry);
    }

    /// Stops remembering `token` as seen lately (its entry failed a re-check).
    pub fn forget_recent(&self, token: &str) {
        self.recent.forget(token);
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
        self.cache.remove(key);
    }

    /// Drops every entry no longer valid at Unix time `now`.
    pub fn remove_expired(&self, now: i64) {
        self.cache
            .retain(|_, entry| entry.provenance.valid_until > now);
        self.recent
            .retain(|entry| entry.provenance.valid_until > now);
    }

    /// Drops everything (e.g. on a configuration change).
    pub fn clear(&self) {
        self.recent.retain(|_| false);
        self.cache.clear();
    }

    /// (entries, weighted bytes).
    pub fn usage(&self) -> (u64, u64) {
        let entries = u64::try_from(self.cache.len()).unwrap_or(u64::MAX);
        (entries, self.cache.weight())
    }
}

/// The tokens seen last, by their exact text, in front of [`TokenCache`]: a
/// repeat caller's token is found without its SHA-256 digest, which was
/// most of what a cache hit cost (~0.45 µs for a typical token, against
/// ~0.1 µs for this lookup).
///
/// Direct-mapped: a token's slot is picked from its length and last bytes
/// (its signature's, which differ between any two tokens), and a slot holds
/// one token, compared in full, so a hit is exactly that token, never a
/// collision. Entries are the [`TokenCache`]'s own, with their key: whoever
/// takes one re-checks it exactly as a cache hit (expiry, issuer rules, the
/// key still published, the policy generation). A token comes here on its
/// second use (a [`TokenCache`] hit), so tokens seen once never do. Bounded
/// by its slot count; a token pushed out is still in the [`TokenCache`].
///
/// A slot changes tokens at most every [`RecentTokens::HOLD`]: with more
/// callers than slots, a slot would otherwise be rewritten (a token copied,
/// an allocation) on nearly every request while serving none of them.
struct RecentTokens {
    slots: Box<[ArcSwapOption<Recent>]>,
    hasher: quick_cache::DefaultHashBuilder,
}

struct Recent {
    token: Box<str>,
    key: TokenKey,
    entry: Arc<CachedToken>,
    placed: Instant,
}

impl RecentTokens {
    /// Slots, a power of two: few workloads call one service, and each slot
    /// holds a copy of a token (~1 KB).
    const SLOTS: usize = 256;

    /// How long a slot keeps its token before another may take it.
    const HOLD: Duration = Duration::from_millis(100);

    /// An empty set of [`RecentTokens::SLOTS`] slots.
    fn new() -> RecentTokens {
        RecentTokens {
            slots: (0..Self::SLOTS).map(|_| ArcSwapOption::empty()).collect(),
            hasher: quick_cache::DefaultHashBuilder::default(),
        }
    }

    fn slot(&self, token: &str) -> &ArcSwapOption<Recent> {
        let tail = token.len().saturating_sub(16);
        let hash = self
            .hasher
            .hash_one((token.len(), token.as_bytes().get(tail..)));
        // Truncating the hash is the point: it picks one of the slots.
        let index = (hash as usize) & (Self::SLOTS - 1);
        // `index` is below the slot count, which `new` fixed.
        &self.slots[index]
    }

    /// The entry and key of `token`, when it is the token in its slot.
    fn get(&self, token: &str) -> Option<(TokenKey, Arc<CachedToken>)> {
        match &*self.slot(token).load() {
            Some(recent) if *recent.token == *token => {
                Some((recent.key, Arc::clone(&recent.entry)))
            }
            _ => None,
        }
    }

    /// Puts `token` (verified, cached under `key`) in its slot: in place of
    /// an older entry of the same token at once, of another token once that
    /// one has held the slot for [`RecentTokens::HOLD`].
    fn put(&self, token: &str, key: TokenKey, entry: Arc<CachedToken>) {
        let slot = self.slot(token);
        let now = Instant::now();
        if let Some(held) = &*slot.load() {
            if *held.token != *token && now.duration_since(held.placed) < Self::HOLD {
                return;
            }
        }
        slot.store(Some(Arc::new(Recent {
            token: token.into(),
            key,
            entry,
            placed: now,
        })));
    }

    /// Empties `token`'s slot (its entry failed a re-check).
    fn forget(&self, token: &str) {
        let slot = self.slot(token);
        if slot
            .load()
            .as_ref()
            .is_some_and(|recent| *recent.token == *token)
        {
            slot.store(None);
        }
    }

    /// Empties every slot whose entry `keep` refuses.
    fn retain(&self, keep: impl Fn(&CachedToken) -> bool) {
        for slot in &*self.slots {
            if slot
                .load()
                .as_ref()
                .is_some_and(|recent| !keep(&recent.entry))
            {
                slot.store(None);
            }
        }
    }
}
