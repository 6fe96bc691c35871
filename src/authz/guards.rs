//! Principal guards: before Cedar evaluates a slice, drop the policies that
//! cannot apply to the request's principal, found through an index on `sub`
//! rather than by evaluating every policy.
//!
//! # Why this is exact
//!
//! Cedar evaluates a policy as one conjunction, `principal scope && action
//! scope && resource scope && c1 && (c2 && …)`, where each `when { e }` adds
//! `e` and each `unless { e }` adds `!e`, in the written order, with `&&`
//! short-circuiting left to right (cedar-policy-core 4.14:
//! `TemplateBody::condition` in `ast/policy.rs`, `construct_template_policy`
//! in `parser/cst_to_ast.rs`). Scope constraints never error (see
//! `slices.rs`).
//!
//! A *guard* is a conjunct that reads only the principal's built-in
//! attributes (`sub`, `iss`, `authn`: strings; `tags`: a set of strings; the
//! uid; `has`), through `like`, `==`, `!=`, `.contains`, `!`, `&&`, `||` and
//! string literals. Every principal entity has those attributes with those
//! types (`entities::principal_entity`), so a guard never errors, and wisp
//! evaluates it natively as Cedar does. A policy's guards are the conjuncts
//! from the start of its chain (the principal scope when it is `==`, then the
//! leading `when`/`unless` conjuncts) up to the first that is not a guard.
//!
//! When a guard is false for a principal, every conjunct before it (scopes
//! and guards) was error-free, so the policy evaluates to false without an
//! error: it is neither satisfied nor erroring, and Cedar's response (the
//! decision, the reasons and the errors) is the same without it. The
//! equivalence property test (`tests/equivalence.rs`) checks this against
//! evaluating the whole set.
//!
//! # Why the cost does not grow with the policy count
//!
//! A policy whose guards include `principal.sub like "<prefix>*"` or
//! `principal.sub == "<s>"` is indexed under that prefix or string; a lookup
//! probes the principal's `sub` once per distinct prefix length, so policies
//! for other workloads are never looked at. Only unindexed policies (no such
//! guard) are checked one by one, natively (tens of ns each). The policy set
//! Cedar evaluates is built once per distinct candidate list and kept.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use cedar_policy::{Policy, PolicySet};
use serde_json::Value;

use super::diagnostics::error_chain;
use super::entities::WORKLOAD;
use crate::identity::Identity;

/// A built-in string attribute of the principal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Field {
    Sub,
    Iss,
    Authn,
}

impl Field {
    fn parse(name: &str) -> Option<Field> {
        match name {
            "sub" => Some(Field::Sub),
            "iss" => Some(Field::Iss),
            "authn" => Some(Field::Authn),
            _ => None,
        }
    }

    fn of(self, identity: &Identity) -> &str {
        match self {
            Field::Sub => &identity.sub,
            Field::Iss => &identity.iss,
            Field::Authn => identity.authn.as_str(),
        }
    }
}

/// A Cedar `like` pattern: the literal pieces between its wildcards (one
/// more piece than wildcards; consecutive wildcards merged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Pattern {
    pieces: Vec<Box<str>>,
}

impl Pattern {
    /// From the EST form: `["Wildcard" | {"Literal": "…"}]`.
    fn parse(elements: &[Value]) -> Option<Pattern> {
        let mut pieces = vec![String::new()];
        let mut after_wildcard = false;
        for element in elements {
            match element {
                Value::String(w) if w == "Wildcard" => {
                    if !after_wildcard {
                        pieces.push(String::new());
                    }
                    after_wildcard = true;
                }
                Value::Object(literal) if literal.len() == 1 => {
                    let text = literal.get("Literal")?.as_str()?;
                    pieces.last_mut()?.push_str(text);
                    after_wildcard = text.is_empty() && after_wildcard;
                }
                _ => return None,
            }
        }
        Some(Pattern {
            pieces: pieces.into_iter().map(String::into_boxed_str).collect(),
        })
    }

    /// Whether `text` matches: the first piece is a prefix, the last a
    /// suffix (not overlapping it), the middle ones occur in order. Works on
    /// bytes, which for UTF-8 text and pattern matches exactly what Cedar's
    /// char-wise matching does (a UTF-8 piece can only match at char
    /// boundaries).
    pub(super) fn matches(&self, text: &str) -> bool {
        let (first, rest) = match self.pieces.split_first() {
            Some(split) => split,
            None => return text.is_empty(),
        };
        let Some((last, middle)) = rest.split_last() else {
            return text == &**first;
        };
        let Some(mut remaining) = text.strip_prefix(&**first) else {
            return false;
        };
        let Some(inner) = remaining.strip_suffix(&**last) else {
            return false;
        };
        remaining = inner;
        for piece in middle {
            match remaining.find(&**piece) {
                Some(at) => remaining = &remaining[at + piece.len()..],
                None => return false,
            }
        }
        true
    }

    /// `Some(prefix)` when the pattern is `<prefix>*`.
    fn as_prefix(&self) -> Option<&str> {
        match &*self.pieces {
            [prefix, last] if last.is_empty() => Some(prefix),
            _ => None,
        }
    }

    /// `Some(s)` when the pattern has no wildcard.
    fn as_exact(&self) -> Option<&str> {
        match &*self.pieces {
            [exact] => Some(exact),
            _ => None,
        }
    }
}

/// An error-free boolean expression over the principal's built-in attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Guard {
    /// `principal == Workload::"<uid>"`.
    Uid(Box<str>),
    /// `principal.<field> like "<pattern>"`.
    Like(Field, Pattern),
    /// `principal.<field> == "<s>"`.
    Equals(Field, Box<str>),
    /// `principal.tags.contains("<tag>")`.
    HasTag(Box<str>),
    /// `principal has <attribute>`.
    Has(Box<str>),
    /// A constant (e.g. `principal == Other::"x"`).
    Const(bool),
    Not(Box<Guard>),
    And(Box<Guard>, Box<Guard>),
    Or(Box<Guard>, Box<Guard>),
}

impl Guard {
    /// Evaluates the guard for `identity`'s entity, as Cedar would.
    pub(super) fn holds(&self, identity: &Identity) -> bool {
        match self {
            Guard::Uid(uid) => identity.uid == **uid,
            Guard::Like(field, pattern) => pattern.matches(field.of(identity)),
            Guard::Equals(field, s) => field.of(identity) == &**s,
            Guard::HasTag(tag) => identity.tags.iter().any(|t| t == &**tag),
            Guard::Has(name) => {
                matches!(&**name, "sub" | "iss" | "tags" | "authn")
                    || identity.attrs.contains_key(&**name)
            }
            Guard::Const(value) => *value,
            Guard::Not(inner) => !inner.holds(identity),
            Guard::And(left, right) => left.holds(identity) && right.holds(identity),
            Guard::Or(left, right) => left.holds(identity) || right.holds(identity),
        }
    }

    /// Parses an EST expression; `None` when it is not a guard.
    fn parse(expr: &Value) -> Option<Guard> {
        let object = expr.as_object()?;
        if object.len() != 1 {
            return None;
        }
        let (op, args) = object.iter().next()?;
        let left = || args.get("left");
        let right = || args.get("right");
        match op.as_str() {
            "!" => Some(Guard::Not(Box::new(Guard::parse(args.get("arg")?)?))),
            "&&" => Some(Guard::And(
                Box::new(Guard::parse(left()?)?),
                Box::new(Guard::parse(right()?)?),
            )),
            "||" => Some(Guard::Or(
                Box::new(Guard::parse(left()?)?),
                Box::new(Guard::parse(right()?)?),
            )),
            "==" | "!=" => {
                let equals = equality(left()?, right()?).or_else(|| equality(right()?, left()?))?;
                Some(if op == "!=" {
                    Guard::Not(Box::new(equals))
                } else {
                    equals
                })
            }
            "like" => {
                let field = principal_field(left()?)?;
                let pattern = Pattern::parse(args.get("pattern")?.as_array()?)?;
                Some(Guard::Like(field, pattern))
            }
            "contains" => {
                let set = attribute_of_principal(left()?)?;
                let tag = string_literal(right()?)?;
                (set == "tags").then(|| Guard::HasTag(tag.into()))
            }
            "has" => {
                is_principal(left()?).then_some(())?;
                Some(Guard::Has(args.get("attr")?.as_str()?.into()))
            }
            _ => None,
        }
    }
}

/// `principal.<field> == "<s>"` or `principal == Type::"id"`, one side each.
fn equality(subject: &Value, literal: &Value) -> Option<Guard> {
    if is_principal(subject) {
        let entity = literal.get("Value")?.get("__entity")?;
        let (type_name, id) = (entity.get("type")?.as_str()?, entity.get("id")?.as_str()?);
        return Some(if type_name == WORKLOAD {
            Guard::Uid(id.into())
        } else {
            Guard::Const(false)
        });
    }
    Some(Guard::Equals(
        principal_field(subject)?,
        string_literal(literal)?.into(),
    ))
}

fn is_principal(expr: &Value) -> bool {
    expr.get("Var").and_then(Value::as_str) == Some("principal")
}

/// `principal.<name>` → `name`.
fn attribute_of_principal(expr: &Value) -> Option<&str> {
    let access = expr.get(".")?;
    is_principal(access.get("left")?).then_some(())?;
    access.get("attr")?.as_str()
}

fn principal_field(expr: &Value) -> Option<Field> {
    Field::parse(attribute_of_principal(expr)?)
}

fn string_literal(expr: &Value) -> Option<&str> {
    expr.get("Value")?.as_str()
}

/// The guards at the start of a policy's conjunction chain (EST form), in
/// evaluation order; empty when there are none.
pub(super) fn of_policy(policy: &Value) -> Vec<Guard> {
    let mut guards = Vec::new();
    let principal = policy.get("principal");
    if principal.and_then(|p| p.get("op")).and_then(Value::as_str) == Some("==") {
        // Scope `principal == Type::"id"`: a guard too (other scope forms
        // are not, but never error, so the chain goes on past them).
        let entity = principal.and_then(|p| p.get("entity"));
        match entity.and_then(|e| Some((e.get("type")?.as_str()?, e.get("id")?.as_str()?))) {
            Some((type_name, id)) if type_name == WORKLOAD => guards.push(Guard::Uid(id.into())),
            Some(_) => guards.push(Guard::Const(false)),
            None => {}
        }
    }
    let conditions = policy.get("conditions").and_then(Value::as_array);
    for condition in conditions.into_iter().flatten() {
        let Some(body) = condition.get("body") else {
            return guards;
        };
        match condition.get("kind").and_then(Value::as_str) {
            Some("when") => {
                let mut conjuncts = Vec::new();
                flatten_and(body, &mut conjuncts);
                for conjunct in conjuncts {
                    match Guard::parse(conjunct) {
                        Some(guard) => guards.push(guard),
                        None => return guards,
                    }
                }
            }
            Some("unless") => match Guard::parse(body) {
                Some(guard) => guards.push(Guard::Not(Box::new(guard))),
                None => return guards,
            },
            _ => return guards,
        }
    }
    guards
}

/// `a && (b && c)` → `[a, b, c]`, in evaluation order.
fn flatten_and<'a>(expr: &'a Value, out: &mut Vec<&'a Value>) {
    match expr.get("&&") {
        Some(and) if expr.as_object().is_some_and(|o| o.len() == 1) => {
            match (and.get("left"), and.get("right")) {
                (Some(left), Some(right)) => {
                    flatten_and(left, out);
                    flatten_and(right, out);
                }
                _ => out.push(expr),
            }
        }
        _ => out.push(expr),
    }
}

/// Policy sets kept per candidate list, per slice; beyond this a set is
/// built per decision instead (still exact, just slower).
const MAX_KEPT_SETS: usize = 4096;

/// One slice's policies with their guards, indexed on `sub`.
#[derive(Debug)]
pub(super) struct Index {
    /// The slice's policies, in order, each with its guards.
    policies: Vec<(Policy, Vec<Guard>)>,
    /// Policies with a `sub like "<prefix>*"` guard, by prefix.
    by_prefix: HashMap<Box<str>, Vec<u32>>,
    /// The distinct prefix lengths in `by_prefix`, ascending.
    prefix_lengths: Vec<usize>,
    /// Policies with a `sub == "<s>"` guard, by `s`.
    by_sub: HashMap<Box<str>, Vec<u32>>,
    /// Every other policy (checked one by one).
    unindexed: Vec<u32>,
    /// The slice itself, for when every policy is a candidate.
    all: PolicySet,
    /// Candidate list → the policy set Cedar evaluates.
    sets: RwLock<HashMap<Box<[u32]>, Arc<PolicySet>>>,
}

/// What to evaluate for one principal.
pub(super) enum Candidates<'a> {
    /// Every policy of the slice.
    All(&'a PolicySet),
    /// A subset.
    Some(Arc<PolicySet>),
}

impl Candidates<'_> {
    pub(super) fn policies(&self) -> &PolicySet {
        match self {
            Candidates::All(set) => set,
            Candidates::Some(set) => set,
        }
    }
}

impl Index {
    /// Indexes `slice`.
    ///
    /// # Errors
    /// A message when a policy cannot be written as JSON (not expected for a
    /// set that loaded).
    pub(super) fn new(slice: &PolicySet) -> Result<Index, String> {
        let mut index = Index {
            policies: Vec::new(),
            by_prefix: HashMap::new(),
            prefix_lengths: Vec::new(),
            by_sub: HashMap::new(),
            unindexed: Vec::new(),
            all: slice.clone(),
            sets: RwLock::new(HashMap::new()),
        };
        for policy in slice.policies() {
            let position = u32::try_from(index.policies.len())
                .map_err(|_| "more than 2^32 policies".to_owned())?;
            let json = policy
                .to_json()
                .map_err(|err| format!("policy {}: {}", policy.id(), error_chain(&err)))?;
            let guards = of_policy(&json);
            match index_key(&guards) {
                Some(Key::Prefix(prefix)) => {
                    if !index.prefix_lengths.contains(&prefix.len()) {
                        index.prefix_lengths.push(prefix.len());
                    }
                    index
                        .by_prefix
                        .entry(prefix.into())
                        .or_default()
                        .push(position);
                }
                Some(Key::Sub(sub)) => index.by_sub.entry(sub.into()).or_default().push(position),
                None => index.unindexed.push(position),
            }
            index.policies.push((policy.clone(), guards));
        }
        index.prefix_lengths.sort_unstable();
        Ok(index)
    }

    /// The policies that can apply to `identity`'s principal.
    pub(super) fn candidates(&self, identity: &Identity) -> Candidates<'_> {
        let mut found: Vec<u32> = Vec::new();
        let mut consider = |positions: &[u32]| {
            for &position in positions {
                let guards = self.policies.get(position as usize).map(|(_, g)| g);
                if guards.is_some_and(|guards| guards.iter().all(|g| g.holds(identity))) {
                    found.push(position);
                }
            }
        };
        consider(&self.unindexed);
        let sub = identity.sub.as_str();
        if let Some(positions) = self.by_sub.get(sub) {
            consider(positions);
        }
        for &length in &self.prefix_lengths {
            let Some(prefix) = sub.get(..length) else {
                // Longer than `sub`, or not at a char boundary (then no
                // UTF-8 prefix of that length can match).
                continue;
            };
            if let Some(positions) = self.by_prefix.get(prefix) {
                consider(positions);
            }
        }
        if found.len() == self.policies.len() {
            return Candidates::All(&self.all);
        }
        found.sort_unstable();
        if let Some(set) = self.read_sets().get(&*found) {
            return Candidates::Some(Arc::clone(set));
        }
        let set = Arc::new(self.build(&found));
        let mut sets = self.write_sets();
        if sets.len() < MAX_KEPT_SETS {
            sets.insert(found.into_boxed_slice(), Arc::clone(&set));
        }
        Candidates::Some(set)
    }

    fn build(&self, positions: &[u32]) -> PolicySet {
        let mut set = PolicySet::new();
        for &position in positions {
            if let Some((policy, _)) = self.policies.get(position as usize) {
                // Ids are unique in the slice they come from, so adding
                // cannot fail; were it to, the policy would be missing and
                // the decision could only lose a permit or a forbid, so
                // fall back to the whole slice instead.
                if set.add(policy.clone()).is_err() {
                    return self.all.clone();
                }
            }
        }
        set
    }

    fn read_sets(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Box<[u32]>, Arc<PolicySet>>> {
        // A poisoned lock only means a panic elsewhere while holding it; the
        // map is still a valid cache (entries are inserted whole).
        self.sets
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write_sets(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Box<[u32]>, Arc<PolicySet>>> {
        self.sets
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// (policies, indexed on `sub`, with at least one guard).
    #[cfg(test)]
    pub(super) fn stats(&self) -> (usize, usize, usize) {
        let indexed = self.policies.len() - self.unindexed.len();
        let guarded = self.policies.iter().filter(|(_, g)| !g.is_empty()).count();
        (self.policies.len(), indexed, guarded)
    }
}

/// How a policy set is covered by the index, for `wisp check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GuardStats {
    /// Policies in the set.
    pub policies: usize,
    /// Policies indexed on `principal.sub` (looked at only for matching principals).
    pub indexed: usize,
    /// Policies with principal guards but no index key (checked natively
    /// for every principal, then evaluated only when the guards hold).
    pub guarded_only: usize,
}

impl GuardStats {
    /// Counts `policies`.
    pub(super) fn of(policies: &PolicySet) -> GuardStats {
        let mut stats = GuardStats::default();
        for policy in policies.policies() {
            stats.policies += 1;
            let guards = policy
                .to_json()
                .map(|json| of_policy(&json))
                .unwrap_or_default();
            if index_key(&guards).is_some() {
                stats.indexed += 1;
            } else if !guards.is_empty() {
                stats.guarded_only += 1;
            }
        }
        stats
    }
}

enum Key<'a> {
    Prefix(&'a str),
    Sub(&'a str),
}

/// The first guard usable as an index key: every guard is necessary for the
/// policy to be satisfied or to error, so any one of them can index it.
fn index_key(guards: &[Guard]) -> Option<Key<'_>> {
    guards.iter().find_map(|guard| match guard {
        Guard::Like(Field::Sub, pattern) => pattern
            .as_prefix()
            .map(Key::Prefix)
            .or_else(|| pattern.as_exact().map(Key::Sub)),
        Guard::Equals(Field::Sub, sub) => Some(Key::Sub(sub)),
        _ => None,
    })
}

#[cfg(test)]
mod tests;
