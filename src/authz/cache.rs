//! The decision cache: (principal, method, path, context…) → [`Decision`],
//! bounded by entries, owned by one [`Authorizer`](super::Authorizer) so a
//! policy reload (a new authorizer) starts empty.
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

#[derive(Debug)]
struct Entry {
    key: StoredKey,
    decision: Decision,
}

/// A bounded, concurrent map from request keys to decisions.
pub(super) struct DecisionCache {
    /// `None` when disabled (capacity 0).
    entries: Option<quick_cache::sync::Cache<u64, Arc<Entry>>>,
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
    /// A cache of at most `capacity` decisions (0 disables it) whose keys
    /// leave out what `reads` says no policy reads.
    pub(super) fn new(capacity: u64, reads: Reads) -> DecisionCache {
        DecisionCache {
            entries: (capacity > 0).then(|| {
                quick_cache::sync::Cache::new(usize::try_from(capacity).unwrap_or(usize::MAX))
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
        entries.insert(
            hash,
            Arc::new(Entry {
                key: StoredKey::new(&view),
                decision: decision.clone(),
            }),
        );
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
