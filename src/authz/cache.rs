//! The decision cache: (principal, method, path, context…) → [`Decision`],
//! bounded by entries and by bytes, owned by one
//! [`Authorizer`](super::Authorizer) so a policy reload (a new authorizer)
//! starts empty.
//!
//! # Why it is bounded by bytes
//!
//! A key holds the request's path (up to 64 KiB) and, when a policy reads
//! them, its host and query: one caller with any valid token could fill an
//! entry-bounded cache with 10,000 × 64 KiB. So each entry is weighed by the
//! bytes it holds ([`Entry::bytes`]), the cache keeps at most `max_bytes`
//! of them, and a decision whose path, host and query together exceed
//! [`MAX_CACHED_KEY_BYTES`] is decided without being cached (such requests
//! are rare and would each take the room of many ordinary ones).
//!
//! # Why a hit is exact
//!
//! A decision is a pure function of the request's entities, the request and
//! the policy set (Cedar has no clock, randomness or I/O). Per authorizer the
//! policy set, the schema and its action entities are fixed, so the decision
//! depends only on:
//! - the principal entity, which is built from the principal's identity
//!   alone: the key holds the identity and compares it in full
//!   (`entities::same_entity`), with the hash of that content
//!   (`entities::entity_hash`) in the lookup hash;
//! - the method (it picks the action and is `context.method`);
//! - the path (the resource uid and `resource.path`);
//! - `resource.host`, `context.source_ip`, `context.query`, `context.mtls`.
//!
//! `host`, `source_ip` and `query` are left out of the key when [`Reads`]
//! proves that no policy can read them; `mtls` is always in it. The key holds
//! every field of [`RequestInfo`] (destructured, so a new field fails to
//! compile until it is considered here).

use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use cedar_policy::PolicySet;
use serde_json::Value;

use super::{entities, Decision, Principal, RequestInfo};
use crate::identity::Identity;
use crate::same_bytes;

/// Which per-request fields some policy may read. `true` when unsure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Reads {
    /// `resource.host` (or any attribute named `host`).
    pub(super) host: bool,
    /// `context.source_ip` (or any attribute named `source_ip`).
    pub(super) source_ip: bool,
    /// `context.query` (or any attribute named `query`).
    pub(super) query: bool,
}

impl Reads {
    const ALL: Reads = Reads {
        host: true,
        source_ip: true,
        query: true,
    };
    const NONE: Reads = Reads {
        host: false,
        source_ip: false,
        query: false,
    };

    /// Scans every policy's JSON form (EST). A field counts as read when any
    /// attribute access or `has` test names it, whatever it is applied to
    /// (`Route::"/x".host` reads the request's route when the path is `/x`),
    /// or when `context` is used other than as the object of an attribute
    /// access or `has` (e.g. `context == {…}` reads every field). A policy
    /// that cannot be written as JSON counts as reading everything.
    pub(super) fn of(policies: &PolicySet) -> Reads {
        let mut reads = Reads::NONE;
        for policy in policies.policies() {
            match policy.to_json() {
                Ok(json) => scan(&json, false, &mut reads),
                Err(_) => return Reads::ALL,
            }
            if reads == Reads::ALL {
                break;
            }
        }
        reads
    }

    fn attribute(&mut self, name: &str) {
        match name {
            "host" => self.host = true,
            "source_ip" => self.source_ip = true,
            "query" => self.query = true,
            _ => {}
        }
    }
}

/// Walks an EST expression. `accessed` is true when `value` is the object of
/// an attribute access or `has` test.
fn scan(value: &Value, accessed: bool, reads: &mut Reads) {
    match value {
        Value::Object(object) => {
            if !accessed && object.get("Var").and_then(Value::as_str) == Some("context") {
                reads.source_ip = true;
                reads.query = true;
                return;
            }
            for (key, inner) in object {
                match (key.as_str(), inner) {
                    ("." | "has", Value::Object(access)) => {
                        match access.get("attr").and_then(Value::as_str) {
                            Some(name) => reads.attribute(name),
                            // An unknown shape: assume the worst.
                            None => *reads = Reads::ALL,
                        }
                        if let Some(left) = access.get("left") {
                            scan(left, true, reads);
                        }
                    }
                    _ => scan(inner, false, reads),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| scan(item, false, reads)),
        _ => {}
    }
}

/// The key as seen on a lookup: borrowed, hashed without allocating.
struct KeyView<'a> {
    /// The principal's identity; hashed as `principal_hash`.
    principal: &'a Arc<Identity>,
    /// [`entities::entity_hash`] of `principal`.
    principal_hash: u64,
    method: &'a str,
    path: &'a str,
    host: Option<&'a str>,
    query: Option<&'a str>,
    source_ip: Option<IpAddr>,
    mtls: bool,
}

impl KeyView<'_> {
    /// Bytes of request text the key would hold (path, host, query).
    fn text_len(&self) -> usize {
        self.path.len() + self.host.map_or(0, str::len) + self.query.map_or(0, str::len)
    }
}

impl Hash for KeyView<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (
            self.principal_hash,
            self.method,
            self.path,
            self.host,
            self.query,
            self.source_ip,
            self.mtls,
        )
            .hash(state);
    }
}

/// The key as stored, compared in full on every hit (the map is keyed by the
/// key's 64-bit hash; a collision is a miss, never a wrong decision).
#[derive(Debug)]
struct StoredKey {
    principal: Arc<Identity>,
    method: Box<str>,
    path: Box<str>,
    host: Option<Box<str>>,
    query: Option<Box<str>>,
    source_ip: Option<IpAddr>,
    mtls: bool,
}

impl StoredKey {
    fn new(view: &KeyView<'_>) -> StoredKey {
        StoredKey {
            principal: Arc::clone(view.principal),
            method: view.method.into(),
            path: view.path.into(),
            host: view.host.map(Into::into),
            query: view.query.map(Into::into),
            source_ip: view.source_ip,
            mtls: view.mtls,
        }
    }

    fn matches(&self, view: &KeyView<'_>) -> bool {
        // The view's strings are the request's, just parsed (see `same_bytes`).
        let same = |stored: &str, seen: &str| same_bytes(stored.as_bytes(), seen.as_bytes());
        let same_option = |stored: Option<&str>, seen: Option<&str>| match (stored, seen) {
            (Some(stored), Some(seen)) => same(stored, seen),
            (None, None) => true,
            _ => false,
        };
        same(&self.method, view.method)
            && same(&self.path, view.path)
            && same_option(self.host.as_deref(), view.host)
            && same_option(self.query.as_deref(), view.query)
            && self.source_ip == view.source_ip
            && self.mtls == view.mtls
            && (Arc::ptr_eq(&self.principal, view.principal)
                || entities::same_entity(&self.principal, view.principal))
    }
}

/// Path, host and query bytes above which a decision is not cached.
pub const MAX_CACHED_KEY_BYTES: usize = 4096;

/// What an entry costs besides its strings: the `Entry` allocation with its
/// `Arc` header (~150 B), the `Box<str>`/`Vec` allocations' rounding, the
/// cache's slot and table share.
const ENTRY_OVERHEAD: usize = 256;

/// Entries evicted by any decision cache of this process (a reload replaces
/// the cache; the count goes on): `wisp_decision_cache_evictions_total`.
static EVICTIONS: AtomicU64 = AtomicU64::new(0);

/// Decision-cache entries evicted so far by this process's authorizers.
pub fn evictions() -> u64 {
    EVICTIONS.load(Ordering::Relaxed)
}

#[derive(Debug)]
struct Entry {
    key: StoredKey,
    decision: Decision,
    /// [`Entry::bytes`], computed once.
    bytes: u32,
}

impl Entry {
    fn new(key: StoredKey, decision: Decision) -> Entry {
        let mut entry = Entry {
            key,
            decision,
            bytes: 0,
        };
        entry.bytes = u32::try_from(entry.bytes()).unwrap_or(u32::MAX);
        entry
    }

    /// Estimated heap bytes: the key's and decision's strings (with a
    /// `String`/`Box` header each) and [`ENTRY_OVERHEAD`].
    fn bytes(&self) -> usize {
        let key = &self.key;
        let text = key.method.len()
            + key.path.len()
            + key.host.as_ref().map_or(0, |h| h.len())
            + key.query.as_ref().map_or(0, |q| q.len());
        let strings = |items: &[String]| items.iter().map(|s| s.len() + 24).sum::<usize>();
        let shadow = self
            .decision
            .shadow
            .iter()
            .map(|result| {
                48 + result.policy.len() + result.error.as_ref().map_or(0, |e| e.len() + 24)
            })
            .sum::<usize>();
        ENTRY_OVERHEAD
            + text
            + strings(&self.decision.policy_ids)
            + strings(&self.decision.errors)
            + shadow
    }
}

/// Weighs an entry by its bytes, but at least `floor` (the byte bound
/// divided by the entry bound), so the cache also holds at most its
/// entry count.
#[derive(Clone)]
struct Weigh {
    floor: u64,
}

impl quick_cache::Weighter<u64, Arc<Entry>> for Weigh {
    fn weight(&self, _key: &u64, entry: &Arc<Entry>) -> u64 {
        u64::from(entry.bytes).max(self.floor)
    }
}

/// Counts entries pushed out by the bounds.
#[derive(Clone, Default)]
struct CountEvictions;

impl quick_cache::Lifecycle<u64, Arc<Entry>> for CountEvictions {
    type RequestState = ();

    fn on_evict(&self, _state: &mut (), _key: u64, _entry: Arc<Entry>) {
        EVICTIONS.fetch_add(1, Ordering::Relaxed);
    }
}

type Entries = quick_cache::sync::Cache<
    u64,
    Arc<Entry>,
    Weigh,
    quick_cache::DefaultHashBuilder,
    CountEvictions,
>;

/// A bounded, concurrent map from request keys to decisions.
pub(super) struct DecisionCache {
    /// `None` when disabled (capacity 0).
    entries: Option<Entries>,
    /// Randomly seeded per cache, so colliding keys cannot be precomputed
    /// (and a collision is a miss, never a wrong decision). quick_cache's
    /// own hasher (foldhash): a lookup on every request hashes the path, and
    /// SipHash was most of what a decision-cache hit cost.
    hasher: quick_cache::DefaultHashBuilder,
    reads: Reads,
}

impl std::fmt::Debug for DecisionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecisionCache")
            .field(
                "entries",
                &self.entries.as_ref().map(quick_cache::sync::Cache::len),
            )
            .field("reads", &self.reads)
            .finish()
    }
}

impl DecisionCache {
    /// A cache of at most `capacity` decisions and about `max_bytes` (either
    /// 0 disables it) whose keys leave out what `reads` says no policy reads.
    pub(super) fn new(capacity: u64, max_bytes: u64, reads: Reads) -> DecisionCache {
        DecisionCache {
            entries: (capacity > 0 && max_bytes > 0).then(|| {
                Entries::with(
                    usize::try_from(capacity).unwrap_or(usize::MAX),
                    max_bytes,
                    Weigh {
                        floor: max_bytes / capacity,
                    },
                    quick_cache::DefaultHashBuilder::default(),
                    CountEvictions,
                )
            }),
            hasher: quick_cache::DefaultHashBuilder::default(),
            reads,
        }
    }

    /// The cached decision for `principal` and `request`, else `evaluate()`'s,
    /// which is then cached.
    pub(super) fn decide(
        &self,
        principal: &Principal,
        request: &RequestInfo<'_>,
        evaluate: impl FnOnce() -> Decision,
    ) -> Decision {
        let Some(entries) = &self.entries else {
            return evaluate();
        };
        let view = self.key(principal, request);
        let hash = self.hasher.hash_one(&view);
        if let Some(entry) = entries.get(&hash) {
            if entry.key.matches(&view) {
                return entry.decision.clone();
            }
        }
        let decision = evaluate();
        if view.text_len() <= MAX_CACHED_KEY_BYTES {
            let entry = Entry::new(StoredKey::new(&view), decision.clone());
            entries.insert(hash, Arc::new(entry));
        }
        decision
    }

    fn key<'a>(&self, principal: &'a Principal, request: &RequestInfo<'a>) -> KeyView<'a> {
        // Destructured so that a new request field must be considered here.
        let RequestInfo {
            method,
            path,
            host,
            query,
            source_ip,
            mtls,
        } = *request;
        KeyView {
            principal: &principal.identity,
            principal_hash: principal.content_hash,
            method,
            path,
            host: self.reads.host.then_some(host),
            query: self.reads.query.then_some(query),
            source_ip: self.reads.source_ip.then_some(source_ip),
            mtls,
        }
    }

    /// `(entries, bytes)` held now: the entries' estimated heap bytes
    /// (what [`Entry::bytes`] counts), not the floor-raised weights.
    pub(super) fn usage(&self) -> (u64, u64) {
        let Some(entries) = &self.entries else {
            return (0, 0);
        };
        let (count, bytes) = entries
            .iter()
            .fold((0u64, 0u64), |(count, bytes), (_, entry)| {
                (count + 1, bytes + u64::from(entry.bytes))
            });
        (count, bytes)
    }

    /// What the key includes.
    #[cfg(test)]
    pub(super) fn reads(&self) -> Reads {
        self.reads
    }

    /// Entries held, after pending evictions are applied.
    #[cfg(test)]
    pub(super) fn entry_count(&self) -> u64 {
        self.entries.as_ref().map_or(0, |entries| {
            u64::try_from(entries.len()).unwrap_or(u64::MAX)
        })
    }
}
