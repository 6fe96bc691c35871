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

mod decision;
mod diagnostics;
mod entities;
mod load;
pub mod reload;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use cedar_policy::{Entities, EntityUid, PolicySet, Schema};

use crate::identity::Identity;

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
}

/// A principal entity validated against the schema, ready for any number of requests.
///
/// Holds the principal together with the schema's action entities, so a request
/// only adds its resource. Built by one [`Authorizer`]; used with another (after a
/// reload) it is re-validated against that one's schema on each request.
#[derive(Debug, Clone)]
pub struct Principal {
    uid: EntityUid,
    /// The principal plus the action entities of the schema it was validated against.
    entities: Entities,
    /// `generation` of the authorizer that built it.
    generation: u64,
}

impl Principal {
    /// The principal's Cedar uid, e.g. `Workload::"https://issuer#alice"`.
    pub fn uid(&self) -> String {
        self.uid.to_string()
    }

    /// The principal entity in Cedar's entity JSON format (for `wisp explain`).
    ///
    /// # Errors
    /// A message when Cedar cannot serialize the entity (not expected for
    /// entities built from an [`Identity`]).
    pub fn to_json(&self) -> Result<serde_json::Value, String> {
        let entity = self
            .entities
            .get(&self.uid)
            .ok_or_else(|| format!("principal {} missing from its entities", self.uid))?;
        entity.to_json_value().map_err(|err| err.to_string())
    }
}

/// A loaded, validated policy set with its schema. Immutable; reload builds a new one.
#[derive(Debug)]
pub struct Authorizer {
    schema: Schema,
    policies: PolicySet,
    /// HTTP method → its action, for every action that is not an action group
    /// (a client cannot send `read` as a method and match `in Action::"read"`).
    methods: HashMap<String, EntityUid>,
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
        load::load(schema, dir)
    }

    /// Builds the principal entity for `identity`, validated against the schema.
    /// Do this once per verified token and cache the result.
    ///
    /// # Errors
    /// A message when an attribute does not fit the schema: a wrong type, an
    /// attribute the schema does not declare, or a missing required one (the
    /// caller answers 401 `schema_mismatch`).
    pub fn principal(&self, identity: &Identity) -> Result<Principal, String> {
        let entity = entities::principal_entity(identity)?;
        let uid = entity.uid();
        let entities = entities::with_actions(entity, &self.schema)?;
        Ok(Principal {
            uid,
            entities,
            generation: self.generation,
        })
    }

    /// Decides one request. Never panics; default deny; forbid wins; any
    /// evaluation error (or a request that does not fit the schema, such as an
    /// unknown method) denies and is reported in [`Decision::errors`].
    pub fn authorize(&self, principal: &Principal, request: &RequestInfo<'_>) -> Decision {
        decision::authorize(self, principal, request)
    }

    /// Number of policies loaded.
    pub fn policy_count(&self) -> usize {
        self.policies.num_of_policies()
    }

    /// Warnings from the schema parser and the validator (e.g. confusable
    /// identifiers, policies that can never apply); they do not stop loading.
    pub fn warnings(&self) -> &[Diagnostic] {
        &self.warnings
    }

    /// The ids of the loaded policies, sorted.
    pub fn policy_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .policies
            .policies()
            .map(|policy| policy.id().to_string())
            .collect();
        ids.sort();
        ids
    }
}
