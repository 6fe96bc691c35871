//! Authorization with Cedar: schema + policies loaded and validated strictly,
//! principal entities built (once per verified identity), decisions as values.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::identity::Identity;

pub mod reload;

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
        write!(f, "{}:{}:{}: {}", self.file.display(), self.line, self.column, self.message)
    }
}

/// The per-request part of an authorization question.
#[derive(Debug, Clone, Copy)]
pub struct RequestInfo<'a> {
    /// HTTP method, as sent (e.g. `GET`).
    pub method: &'a str,
    /// Normalized path.
    pub path: &'a str,
    /// Host (from `Host` / `:authority`), lowercased, without port? as sent.
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

/// An authorization decision, reused by the proxy, the CLI and the decision log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The effect.
    pub effect: Effect,
    /// Ids of the policies that determined it (`@id`, else `file.cedar#N`).
    pub policy_ids: Vec<String>,
    /// Evaluation errors (`policy id: message`); any error denies.
    pub errors: Vec<String>,
}

/// A principal entity validated against the schema, ready for any number of requests.
#[derive(Debug, Clone)]
pub struct Principal {
    _private: (),
}

/// A loaded, validated policy set with its schema. Immutable; reload builds a new one.
#[derive(Debug)]
pub struct Authorizer {
    _private: (),
}

impl Authorizer {
    /// Loads the schema and every `*.cedar` file in `dir`, validating strictly.
    ///
    /// # Errors
    /// Every problem found, each with file:line:col.
    pub fn load(_schema: &Path, _dir: &Path) -> Result<Authorizer, Vec<Diagnostic>> {
        todo!("helper C")
    }

    /// Builds the principal entity for `identity`, validated against the schema.
    ///
    /// # Errors
    /// A message when an attribute does not fit the schema (the caller answers 401).
    pub fn principal(&self, _identity: &Identity) -> Result<Principal, String> {
        todo!("helper C")
    }

    /// Decides one request. Never panics; any evaluation error denies.
    pub fn authorize(&self, _principal: &Principal, _request: &RequestInfo<'_>) -> Decision {
        todo!("helper C")
    }

    /// Number of policies loaded.
    pub fn policy_count(&self) -> usize {
        todo!("helper C")
    }
}
