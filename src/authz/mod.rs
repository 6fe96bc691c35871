//! Authorization with Cedar: schema + policies loaded and validated strictly,
//! principal entities built (once per verified identity), decisions as values.
//!
//! - [`Authorizer::load`] reads the schema and the policy directory, validates
//!   strictly, and reports every problem as a [`Diagnostic`] (`load.rs`,
//!   `diagnostics.rs`).
//! - [`Authorizer::principal`] turns a verified [`Identity`] into a schema-checked
//!   Cedar entity, once per token (`entities.rs`).
//! - [`Authorizer::authorize`] builds the per-request action, resource and
//!   context and evaluates; any evaluation error denies (`decision.rs`).
//!
//! # Cost that does not grow with the policy count
//!
//! Cedar evaluates every policy of the set it is given, so the cost of one
//! decision grows linearly with the policies. Four exact reductions keep it
//! flat:
//!
//! 1. **Slicing by action** (`slices.rs`): each method evaluates only the
//!    policies whose action scope can match its action. A policy whose scope
//!    excludes the action can be neither satisfied nor erroring in Cedar
//!    (scope is checked first, and scope checks never error), so the slice
//!    gives the same permits, forbids and errors as the whole set. A request
//!    carries only its action and its ancestors, unless a condition names an
//!    action.
//! 2. **A principal-guard index** (`guards.rs`): per slice, a policy whose
//!    leading conditions exclude the principal (`principal.sub like
//!    "team-a:*"`, `principal.tags.contains(…)`, …; error-free by
//!    construction) is not evaluated for it; policies are indexed on `sub`
//!    prefixes and values, so those of other workloads are never looked at.
//! 3. **Native decisions** (`guards.rs`): when every remaining policy is made
//!    of such error-free conditions over fields every request has, wisp
//!    decides as Cedar would without building entities (~0.4 µs instead of
//!    ~7 µs).
//! 4. **A decision cache** (`cache.rs`), bounded by entries and bytes (keys
//!    over 4 KiB are not cached), and owned by the
//!    authorizer, so a reload (a new authorizer) never serves a decision made
//!    under other policies. Its key is everything a decision depends on: the
//!    principal entity's content, the method, the path, `mtls`, and `host`,
//!    `source_ip` and `query` unless a scan of the policies proves none reads
//!    them. A hit returns the decision evaluation returned for an identical
//!    question.
//!
//! A property test (`tests/equivalence.rs`) compares all of them together, on
//! random policy sets, principals and request sequences, with evaluating the
//! whole set with every action entity.

mod cache;
mod decision;
mod diagnostics;
mod entities;
mod guards;
mod load;
pub mod model;
pub mod reload;
mod shadow;
mod shape;
mod slices;

#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cedar_policy::{PolicySet, Schema};

use crate::identity::Identity;

pub use cache::{evictions as decision_cache_evictions, MAX_CACHED_KEY_BYTES};
pub use guards::GuardStats;
pub use shadow::ShadowResult;

/// One problem in the schema or a policy file, printed as `file:line:col: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file.
    pub file: PathBuf,
    /// 1-based line (0 when unknown).
    pub line: usize,
    /// 1-based column (0 when unknown).
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

/// The per-request part of an authorization question.
///
/// Every field is part of the decision cache key unless no policy reads it
/// (`cache.rs`); a new field must be added there too.
#[derive(Debug, Clone, Copy)]
pub struct RequestInfo<'a> {
    /// HTTP method, as sent (e.g. `GET`).
    pub method: &'a str,
    /// Normalized path.
    pub path: &'a str,
    /// Host (from `Host` / `:authority`), as sent.
    pub host: &'a str,
    /// Raw query string without `?` (empty when none).
    pub query: &'a str,
    /// The client's IP address.
    pub source_ip: IpAddr,
    /// Whether the caller presented a verified client certificate.
    pub mtls: bool,
}

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// A permit matched and no forbid did, with no evaluation errors.
    Allow,
    /// Anything else (default deny).
    Deny,
}

impl Effect {
    /// The stable lowercase name used in logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Allow => "allow",
            Effect::Deny => "deny",
        }
    }
}

/// An authorization decision, reused by the proxy, the CLI and the decision log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The effect.
    pub effect: Effect,
    /// Ids of the policies that determined it (`@id`, else `file.cedar#N`), sorted:
    /// the matching permits for Allow, the matching forbids for Deny, empty for
    /// a default deny.
    pub policy_ids: Vec<String>,
    /// Evaluation errors (`policy id: message`), sorted; any error denies.
    pub errors: Vec<String>,
    /// What each `@shadow` policy that applies to the request would have
    /// done, sorted by policy id; never part of `effect`.
    pub shadow: Vec<ShadowResult>,
}

/// A principal entity validated against the schema, ready for any number of requests.
///
/// Built by one [`Authorizer`]; used with another (after a reload) it is
/// re-validated against that one's schema on each request.
///
/// Immutable. Two principals built from identities with the same entity
/// content (see `entities::same_entity`) are the same entity to the
/// decision cache, so a token verified again (cache off, evicted, or a new
/// token of the same workload) reuses the decisions made for it.
#[derive(Debug, Clone)]
pub struct Principal {
    /// Hash of the entity content ([`entities::entity_hash`]); names this
    /// entity in the decision cache together with `identity`.
    content_hash: u64,
    /// The identity the entity is built from, shared with the token cache
    /// entry. Cedar's `Entity` costs ~2.4 KiB per principal (measured),
    /// several times the identity, and principals are cached per token: the
    /// entity is validated once here and rebuilt (~µs) only when the
    /// decision cache misses.
    identity: Arc<Identity>,
    /// `generation` of the authorizer that built it.
    generation: u64,
}

impl Principal {
    /// The identity this principal was built from.
    pub fn identity(&self) -> &Arc<Identity> {
        &self.identity
    }

    /// The principal's Cedar uid, e.g. `Workload::"https://issuer#alice"`.
    pub fn uid(&self) -> String {
        match entities::uid(entities::WORKLOAD, self.identity.uid()) {
            Ok(uid) => uid.to_string(),
            Err(message) => message,
        }
    }

    /// The principal entity in Cedar's entity JSON format (for `wisp explain`).
    ///
    /// # Errors
    /// A message when Cedar cannot serialize the entity (not expected for
    /// entities built from an [`Identity`]).
    pub fn to_json(&self) -> Result<serde_json::Value, String> {
        entities::principal_entity(&self.identity)?
            .to_json_value()
            .map_err(|err| err.to_string())
    }
}

/// How an [`Authorizer`] evaluates; [`AuthorizerOptions::default`] for serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthorizerOptions {
    /// Decisions kept in the decision cache (0 disables it).
    pub decision_cache_entries: u64,
    /// Bytes the decision cache may hold (estimated heap bytes of its keys
    /// and decisions; 0 disables it). Each entry counts at least
    /// `decision_cache_bytes / decision_cache_entries`.
    pub decision_cache_bytes: u64,
    /// Evaluate only the policies whose action scope can match the request's
    /// action (`false` evaluates the whole set: for benchmarks and diagnosis).
    pub slice_by_action: bool,
    /// Before evaluating, drop the policies whose principal guards exclude
    /// the principal, found through an index on `sub` (`guards.rs`; `false`
    /// evaluates the whole slice: for benchmarks and diagnosis).
    pub index_principals: bool,
}

impl AuthorizerOptions {
    /// The decision cache size by default. An entry costs roughly 0.5 KiB
    /// (key, decision and the cache's bookkeeping); 10,000 entries cover the
    /// callers of one service while keeping within the sidecar's memory
    /// budget (README, "Performance": ≤ 64 MiB with 100k cached tokens).
    pub const DEFAULT_DECISION_CACHE_ENTRIES: u64 = 10_000;

    /// The decision cache's byte bound by default: 10,000 ordinary entries
    /// at the floor of 0.8 KiB each, or ~2,000 of the largest cached keys
    /// (4 KiB of path, host and query); longer keys are not cached.
    pub const DEFAULT_DECISION_CACHE_BYTES: u64 = 8 << 20;
}

impl Default for AuthorizerOptions {
    fn default() -> Self {
        AuthorizerOptions {
            decision_cache_entries: Self::DEFAULT_DECISION_CACHE_ENTRIES,
            decision_cache_bytes: Self::DEFAULT_DECISION_CACHE_BYTES,
            slice_by_action: true,
            index_principals: true,
        }
    }
}

/// A loaded, validated policy set with its schema. Immutable (apart from its
/// decision cache); reload builds a new one.
#[derive(Debug)]
pub struct Authorizer {
    schema: Schema,
    /// `Workload`'s shape, when simple enough to check principals natively
    /// (`shape.rs`); `None`: Cedar validates every principal.
    workload_shape: Option<shape::WorkloadShape>,
    /// The whole set (policy ids, counts; the reference evaluation in tests).
    policies: PolicySet,
    /// HTTP method → its action and policy slice, for every action that is not
    /// an action group (a client cannot send `read` as a method and match
    /// `in Action::"read"`).
    slices: slices::Slices,
    /// The `@shadow` policies (evaluated, never enforced), when there are any.
    shadow: Option<shadow::Shadow>,
    /// Decisions made by this authorizer.
    cache: cache::DecisionCache,
    /// Schema and policy warnings (not errors), for `wisp check`.
    warnings: Vec<Diagnostic>,
    /// Unique per loaded instance; ties [`Principal`]s to the schema they were checked against.
    generation: u64,
}

impl Authorizer {
    /// Loads the schema and every `*.cedar` file in `dir` (sorted by name, not
    /// recursive), validating the whole set strictly against the schema.
    ///
    /// Policy ids are the `@id("…")` annotation, else `<file name>#<index>`.
    /// An empty directory is valid (every request is denied by default).
    ///
    /// # Errors
    /// Every problem found (unreadable files, schema and policy syntax errors,
    /// duplicate ids, templates, validation errors, a schema that does not fit
    /// wisp's model), each with file:line:col.
    pub fn load(schema: &Path, dir: &Path) -> Result<Authorizer, Vec<Diagnostic>> {
        load::load(schema, dir, AuthorizerOptions::default())
    }

    /// [`Authorizer::load`] with explicit [`AuthorizerOptions`].
    ///
    /// # Errors
    /// As [`Authorizer::load`].
    pub fn load_with(
        schema: &Path,
        dir: &Path,
        options: AuthorizerOptions,
    ) -> Result<Authorizer, Vec<Diagnostic>> {
        load::load(schema, dir, options)
    }

    /// Builds the principal entity for `identity`, validated against the schema.
    /// Do this once per verified token and cache the result.
    ///
    /// # Errors
    /// A message when an attribute does not fit the schema: a wrong type, an
    /// attribute the schema does not declare, or a missing required one (the
    /// caller answers 401 `schema_mismatch`).
    pub fn principal(&self, identity: impl Into<Arc<Identity>>) -> Result<Principal, String> {
        let identity = identity.into();
        let conforms = self
            .workload_shape
            .as_ref()
            .is_some_and(|shape| shape.conforms(&identity));
        if !conforms {
            // Not certainly conforming: Cedar decides, and words the error.
            let entity = entities::principal_entity(&identity)?;
            entities::validate_principal(&entity, &self.schema)?;
        }
        Ok(Principal {
            content_hash: entities::entity_hash(&identity),
            identity,
            generation: self.generation,
        })
    }

    /// Decides one request. Never panics; default deny; forbid wins; any
    /// evaluation error (or a request that does not fit the schema, such as an
    /// unknown method) denies and is reported in [`Decision::errors`].
    ///
    /// Evaluates only the method's policy slice, and answers a repeated
    /// question from the decision cache (see the module docs: both exact).
    pub fn authorize(&self, principal: &Principal, request: &RequestInfo<'_>) -> Decision {
        decision::authorize(self, principal, request)
    }

    /// The reference the fast path is tested against: the whole policy set,
    /// no slicing, no cache.
    #[cfg(test)]
    fn authorize_unsliced(&self, principal: &Principal, request: &RequestInfo<'_>) -> Decision {
        decision::authorize_unsliced(self, principal, request)
    }

    /// How the principal-guard index covers the policies (`wisp check`
    /// reports it: unindexed policies are looked at for every principal).
    pub fn guard_stats(&self) -> GuardStats {
        GuardStats::of(&self.policies)
    }

    /// `(entries, bytes)` the decision cache holds now (set at scrape time
    /// as `wisp_decision_cache_entries` / `_bytes`).
    pub fn decision_cache_usage(&self) -> (u64, u64) {
        self.cache.usage()
    }

    /// Number of policies loaded (enforced and shadow).
    pub fn policy_count(&self) -> usize {
        self.policies.num_of_policies() + self.shadow_count()
    }

    /// Number of `@shadow` policies.
    pub fn shadow_count(&self) -> usize {
        self.shadow.as_ref().map_or(0, shadow::Shadow::len)
    }

    /// The ids of the `@shadow` policies, sorted.
    pub fn shadow_ids(&self) -> Vec<String> {
        self.shadow
            .as_ref()
            .map_or_else(Vec::new, |shadow| shadow.ids().collect())
    }

    /// Whether the policy `id` is a `@shadow` policy.
    pub fn is_shadow(&self, id: &str) -> bool {
        self.shadow
            .as_ref()
            .is_some_and(|shadow| shadow.contains(id))
    }

    /// Warnings from the schema parser and the validator (e.g. confusable
    /// identifiers, policies that can never apply); they do not stop loading.
    pub fn warnings(&self) -> &[Diagnostic] {
        &self.warnings
    }

    /// The ids of the loaded policies (enforced and shadow), sorted.
    pub fn policy_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .policies
            .policies()
            .map(|policy| policy.id().to_string())
            .collect();
        if let Some(shadow) = &self.shadow {
            ids.extend(shadow.ids());
        }
        ids.sort();
        ids
    }
}
