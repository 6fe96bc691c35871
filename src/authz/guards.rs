//! Guards: before Cedar evaluates a slice, drop the policies that cannot
//! apply to the request's principal (found through an index on `sub`, not by
//! looking at every policy), and decide without Cedar when what is left is
//! simple enough.
//!
//! # Guards, and why dropping policies is exact
//!
//! Cedar evaluates a policy as one conjunction, `principal scope && action
//! scope && resource scope && c1 && (c2 && …)`, where each `when { e }` adds
//! `e` and each `unless { e }` adds `!e`, in the written order, with `&&`
//! short-circuiting left to right (cedar-policy-core 4.14:
//! `TemplateBody::condition` in `ast/policy.rs`, `construct_template_policy`
//! in `parser/cst_to_ast.rs`). Scope constraints never error (see
//! `slices.rs`).
//!
//! A *guard* is a conjunct over fields every request has with a fixed type —
//! the principal's built-in attributes (`sub`, `iss`, `authn`: strings;
//! `tags`: a set of strings; the uid; `has`), `resource.path`/`host`,
//! `context.method`/`query` (strings), `context.mtls` (a bool), the
//! principal and resource uids — combined with `like`, `==`, `!=`,
//! `.contains`, `!`, `&&`, `||` and literals. Every request's entities and
//! context have those fields with those types (`entities.rs`), so a guard
//! never errors, and wisp evaluates it natively as Cedar does. A policy's
//! guards are the conjuncts from the start of its chain (its principal and
//! resource scopes when understood, then its `when`/`unless` conjuncts) up
//! to the first that is not a guard.
//!
//! When a guard is false, every conjunct before it (scopes and guards) was
//! error-free, so the policy evaluates to false without an error: it is
//! neither satisfied nor erroring, and Cedar's response (the decision, the
//! reasons and the errors) is the same without it. The guards that read only
//! the principal (*principal guards*) are the same for every request of that
//! principal: they pick the *candidate* policies.
//!
//! # Why the cost does not grow with the policy count
//!
//! A policy whose principal guards include `principal.sub like "<prefix>*"`
//! or `principal.sub == "<s>"` is indexed under that prefix or string; a
//! lookup probes the principal's `sub` once per distinct prefix length, so
//! policies for other workloads are never looked at. A policy without such a
//! guard but with `principal.tags.contains("<t>")` is indexed under `t`,
//! looked up once per tag of the principal. Only unindexed policies are
//! checked one by one, natively (tens of ns each). The policy set Cedar
//! evaluates is built once per distinct candidate list and kept.
//!
//! # Decisions without Cedar
//!
//! A policy whose every conjunct is a guard (its action scope holding:
//! slices are exact per action) is *complete*: it is satisfied exactly when
//! all its guards hold, and it never errors. When every candidate policy of
//! a request is complete, wisp decides natively as Cedar would (forbid wins;
//! the reasons are the satisfied policies of the deciding effect; no errors)
//! instead of building entities and calling Cedar (~0.4 µs instead of
//! ~7 µs).
//!
//! The equivalence property test (`tests/equivalence.rs`) checks all of this
//! against evaluating the whole set.

use std::sync::{Arc, RwLock};

use cedar_policy::{Policy, PolicySet};
use serde_json::Value;

use super::diagnostics::error_chain;
use super::entities::{ROUTE, WORKLOAD};
use super::{Decision, Effect, RequestInfo};
use crate::identity::Identity;
use crate::{same_bytes, FastMap};

/// A string that every request has: a built-in principal attribute, a
/// resource attribute, or a context field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Field {
    Sub,
    Iss,
    Authn,
    Path,
    Host,
    Method,
    Query,
}

impl Field {
    /// `<var>.<name>` → the field, when it is one.
    fn parse(var: &str, name: &str) -> Option<Field> {
        match (var, name) {
            ("principal", "sub") => Some(Field::Sub),
            ("principal", "iss") => Some(Field::Iss),
            ("principal", "authn") => Some(Field::Authn),
            ("resource", "path") => Some(Field::Path),
            ("resource", "host") => Some(Field::Host),
            ("context", "method") => Some(Field::Method),
            ("context", "query") => Some(Field::Query),
            _ => None,
        }
    }

    fn of<'a>(self, identity: &'a Identity, request: &RequestInfo<'a>) -> &'a str {
        match self {
            Field::Sub => identity.sub(),
            Field::Iss => identity.iss(),
            Field::Authn => identity.authn.as_str(),
            Field::Path => request.path,
            Field::Host => request.host,
            Field::Method => request.method,
            Field::Query => request.query,
        }
    }

    fn is_principal(self) -> bool {
        matches!(self, Field::Sub | Field::Iss | Field::Authn)
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
            return same_bytes(text.as_bytes(), first.as_bytes());
        };
        let (text_bytes, first, last) = (text.as_bytes(), first.as_bytes(), last.as_bytes());
        if text_bytes.len() < first.len() + last.len()
            || !same_bytes(&text_bytes[..first.len()], first)
            || !same_bytes(&text_bytes[text_bytes.len() - last.len()..], last)
        {
            return false;
        }
        // Both ends matched whole UTF-8 sequences, so these are char boundaries.
        let Some(mut remaining) = text.get(first.len()..text.len() - last.len()) else {
            return false;
        };
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

/// An error-free boolean expression over fields every request has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Guard {
    /// `principal == Workload::"<uid>"` (or `in`: principals have no parents).
    Uid(Box<str>),
    /// `resource == Route::"<path>"` (or `in`: routes have no parents).
    Route(Box<str>),
    /// `<field> like "<pattern>"`.
    Like(Field, Pattern),
    /// `<field> == "<s>"`.
    Equals(Field, Box<str>),
    /// `principal.tags.contains("<tag>")`.
    HasTag(Box<str>),
    /// `principal has <attribute>`.
    Has(Box<str>),
    /// `context.mtls`.
    Mtls,
    /// A constant (e.g. `principal == Other::"x"`).
    Const(bool),
    Not(Box<Guard>),
    And(Box<Guard>, Box<Guard>),
    Or(Box<Guard>, Box<Guard>),
}

impl Guard {
    /// Evaluates the guard for `identity`'s entity and `request`, as Cedar would.
    pub(super) fn holds(&self, identity: &Identity, request: &RequestInfo<'_>) -> bool {
        match self {
            Guard::Uid(uid) => identity.uid() == &**uid,
            Guard::Route(path) => request.path == &**path,
            Guard::Like(field, pattern) => pattern.matches(field.of(identity, request)),
            Guard::Equals(field, s) => field.of(identity, request) == &**s,
            Guard::HasTag(tag) => identity.has_tag(tag),
            Guard::Has(name) => {
                matches!(&**name, "sub" | "iss" | "tags" | "authn")
                    || identity.attrs.contains_key(&**name)
            }
            Guard::Mtls => request.mtls,
            Guard::Const(value) => *value,
            Guard::Not(inner) => !inner.holds(identity, request),
            Guard::And(left, right) => {
                left.holds(identity, request) && right.holds(identity, request)
            }
            Guard::Or(left, right) => {
                left.holds(identity, request) || right.holds(identity, request)
            }
        }
    }

    /// Whether the guard reads the principal only (then it is the same for
    /// every request of that principal, and can filter candidates).
    fn principal_only(&self) -> bool {
        match self {
            Guard::Uid(_) | Guard::HasTag(_) | Guard::Has(_) | Guard::Const(_) => true,
            Guard::Route(_) | Guard::Mtls => false,
            Guard::Like(field, _) | Guard::Equals(field, _) => field.is_principal(),
            Guard::Not(inner) => inner.principal_only(),
            Guard::And(left, right) | Guard::Or(left, right) => {
                left.principal_only() && right.principal_only()
            }
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
                let field = field(left()?)?;
                let pattern = Pattern::parse(args.get("pattern")?.as_array()?)?;
                Some(Guard::Like(field, pattern))
            }
            "contains" => {
                let (var, set) = attribute(left()?)?;
                let tag = string_literal(right()?)?;
                (var == "principal" && set == "tags").then(|| Guard::HasTag(tag.into()))
            }
            "has" => {
                (variable(left()?)? == "principal").then_some(())?;
                Some(Guard::Has(args.get("attr")?.as_str()?.into()))
            }
            "." => (attribute(expr)? == ("context", "mtls")).then_some(Guard::Mtls),
            _ => None,
        }
    }
}

/// One side a variable or field, the other a literal: `principal ==
/// Type::"id"`, `resource == Type::"id"`, `<field> == "<s>"`,
/// `context.mtls == <bool>`.
fn equality(subject: &Value, literal: &Value) -> Option<Guard> {
    if let Some(var) = variable(subject) {
        let (type_name, id) = entity_literal(literal.get("Value")?)?;
        return match var {
            "principal" => Some(entity_guard(type_name, id, WORKLOAD, Guard::Uid)),
            "resource" => Some(entity_guard(type_name, id, ROUTE, Guard::Route)),
            _ => None,
        };
    }
    if attribute(subject)? == ("context", "mtls") {
        let value = literal.get("Value")?.as_bool()?;
        return Some(if value {
            Guard::Mtls
        } else {
            Guard::Not(Box::new(Guard::Mtls))
        });
    }
    Some(Guard::Equals(
        field(subject)?,
        string_literal(literal)?.into(),
    ))
}

/// `Type::"id"` compared with a `var` of type `var_type`: a uid guard, or
/// never true for another type.
fn entity_guard(type_name: &str, id: &str, var_type: &str, guard: fn(Box<str>) -> Guard) -> Guard {
    if type_name == var_type {
        guard(id.into())
    } else {
        Guard::Const(false)
    }
}

/// `{"__entity": {"type": …, "id": …}}` → (type, id).
fn entity_literal(value: &Value) -> Option<(&str, &str)> {
    let entity = value.get("__entity").unwrap_or(value);
    Some((entity.get("type")?.as_str()?, entity.get("id")?.as_str()?))
}

/// `{"Var": "<name>"}` → name.
fn variable(expr: &Value) -> Option<&str> {
    let object = expr.as_object()?;
    (object.len() == 1).then_some(())?;
    object.get("Var")?.as_str()
}

/// `<var>.<name>` → (var, name).
fn attribute(expr: &Value) -> Option<(&str, &str)> {
    let access = expr.get(".")?;
    Some((
        variable(access.get("left")?)?,
        access.get("attr")?.as_str()?,
    ))
}

fn field(expr: &Value) -> Option<Field> {
    let (var, name) = attribute(expr)?;
    Field::parse(var, name)
}

fn string_literal(expr: &Value) -> Option<&str> {
    expr.get("Value")?.as_str()
}

/// A scope constraint (`{"op": …}`) on a variable of type `var_type`:
/// `Some(None)` when it always holds, `Some(Some(guard))`, or `None` when
/// it is not understood (it still never errors).
fn scope(
    constraint: Option<&Value>,
    var_type: &str,
    guard: fn(Box<str>) -> Guard,
) -> Option<Option<Guard>> {
    let constraint = constraint?;
    let entity = || entity_literal(constraint.get("entity")?);
    let in_entity = || entity_literal(constraint.get("in")?.get("entity")?);
    match constraint.get("op")?.as_str()? {
        "All" => Some(None),
        // `in` an entity: the principal and the route have no parents.
        "==" | "in" => {
            let (type_name, id) = entity()?;
            Some(Some(entity_guard(type_name, id, var_type, guard)))
        }
        "is" => {
            let is_type = constraint.get("entity_type")?.as_str()? == var_type;
            match constraint.get("in") {
                None if is_type => Some(None),
                None => Some(Some(Guard::Const(false))),
                Some(_) if !is_type => Some(Some(Guard::Const(false))),
                Some(_) => {
                    let (type_name, id) = in_entity()?;
                    Some(Some(entity_guard(type_name, id, var_type, guard)))
                }
            }
        }
        _ => None,
    }
}

/// A policy's native form: its leading error-free conjuncts, and whether
/// they are all of it.
#[derive(Debug, Default)]
pub(super) struct Analysis {
    /// The conjuncts, in evaluation order, up to the first that is not a guard.
    pub(super) guards: Vec<Guard>,
    /// Every conjunct is in `guards` (and the action scope holds).
    pub(super) complete: bool,
}

/// Analyzes a policy (EST form) whose action scope holds for the request's
/// action (`action_holds`; scopes never error, so the chain goes on past
/// any scope, understood or not).
pub(super) fn analyze(policy: &Value, action_holds: bool) -> Analysis {
    let mut analysis = Analysis {
        guards: Vec::new(),
        complete: action_holds,
    };
    for (constraint, var_type, guard) in [
        (
            policy.get("principal"),
            WORKLOAD,
            Guard::Uid as fn(Box<str>) -> Guard,
        ),
        (policy.get("resource"), ROUTE, Guard::Route),
    ] {
        match scope(constraint, var_type, guard) {
            Some(Some(guard)) => analysis.guards.push(guard),
            Some(None) => {}
            None => analysis.complete = false,
        }
    }
    let conditions = policy.get("conditions").and_then(Value::as_array);
    for condition in conditions.into_iter().flatten() {
        let Some(body) = condition.get("body") else {
            analysis.complete = false;
            return analysis;
        };
        let parsed = match condition.get("kind").and_then(Value::as_str) {
            Some("when") => {
                let mut conjuncts = Vec::new();
                flatten_and(body, &mut conjuncts);
                conjuncts.into_iter().map(Guard::parse).collect()
            }
            Some("unless") => vec![Guard::parse(body).map(|guard| Guard::Not(Box::new(guard)))],
            _ => vec![None],
        };
        for guard in parsed {
            match guard {
                Some(guard) => analysis.guards.push(guard),
                None => {
                    analysis.complete = false;
                    return analysis;
                }
            }
        }
    }
    analysis
}

/// The principal-only guards among a policy's leading guards (EST form).
#[cfg(test)]
pub(super) fn of_policy(policy: &Value) -> Vec<Guard> {
    analyze(policy, true)
        .guards
        .into_iter()
        .filter(Guard::principal_only)
        .collect()
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

/// One policy of a slice, analyzed.
#[derive(Debug)]
struct Indexed {
    policy: Policy,
    /// The id Cedar reports it by.
    id: String,
    forbid: bool,
    /// Its leading guards; `complete` when they are the whole policy.
    analysis: Analysis,
    /// The principal guards among them (they pick the candidates).
    principal_guards: Vec<Guard>,
}

impl Indexed {
    /// Its principal guards hold for `identity`.
    fn may_apply(&self, identity: &Identity, request: &RequestInfo<'_>) -> bool {
        self.principal_guards
            .iter()
            .all(|guard| guard.holds(identity, request))
    }
}

/// One slice's policies with their guards, indexed on `sub`.
#[derive(Debug)]
pub(super) struct Index {
    /// The slice's policies, in order.
    policies: Vec<Indexed>,
    /// Policies with a `sub like "<prefix>*"` guard, by prefix.
    by_prefix: FastMap<Box<str>, Vec<u32>>,
    /// The distinct prefix lengths in `by_prefix`, ascending.
    prefix_lengths: Vec<usize>,
    /// Policies with a `sub == "<s>"` guard, by `s`.
    by_sub: FastMap<Box<str>, Vec<u32>>,
    /// Policies with no `sub` guard but a `tags.contains("<t>")` one, by `t`.
    by_tag: FastMap<Box<str>, Vec<u32>>,
    /// Every other policy (checked one by one).
    unindexed: Vec<u32>,
    /// The slice itself, for when every policy is a candidate.
    all: PolicySet,
    /// Candidate list → the policy set Cedar evaluates.
    sets: RwLock<FastMap<Box<[u32]>, Arc<PolicySet>>>,
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

/// How one request is decided.
pub(super) enum Outcome<'a> {
    /// Decided natively: every candidate policy is complete.
    Decided(Decision),
    /// Cedar must evaluate these policies.
    Evaluate(Candidates<'a>),
}

impl Index {
    /// Indexes `slice`, whose policies' action scopes hold for the slice's
    /// action when `action_holds` says so.
    ///
    /// # Errors
    /// A message when a policy cannot be written as JSON (not expected for a
    /// set that loaded).
    pub(super) fn new(
        slice: &PolicySet,
        action_holds: impl Fn(&Policy) -> bool,
    ) -> Result<Index, String> {
        let mut index = Index {
            policies: Vec::new(),
            by_prefix: FastMap::default(),
            prefix_lengths: Vec::new(),
            by_sub: FastMap::default(),
            by_tag: FastMap::default(),
            unindexed: Vec::new(),
            all: slice.clone(),
            sets: RwLock::new(FastMap::default()),
        };
        for policy in slice.policies() {
            let position = u32::try_from(index.policies.len())
                .map_err(|_| "more than 2^32 policies".to_owned())?;
            let json = policy
                .to_json()
                .map_err(|err| format!("policy {}: {}", policy.id(), error_chain(&err)))?;
            let analysis = analyze(&json, action_holds(policy));
            match index_key(&analysis.guards) {
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
                Some(Key::Tag(tag)) => index.by_tag.entry(tag.into()).or_default().push(position),
                None => index.unindexed.push(position),
            }
            let principal_guards = analysis
                .guards
                .iter()
                .filter(|guard| guard.principal_only())
                .cloned()
                .collect();
            index.policies.push(Indexed {
                id: policy.id().to_string(),
                forbid: policy.effect() == cedar_policy::Effect::Forbid,
                policy: policy.clone(),
                analysis,
                principal_guards,
            });
        }
        index.prefix_lengths.sort_unstable();
        Ok(index)
    }

    /// Decides natively when every candidate policy is complete, else names
    /// the candidates Cedar must evaluate.
    pub(super) fn decide(&self, identity: &Identity, request: &RequestInfo<'_>) -> Outcome<'_> {
        let found = self.candidate_positions(identity, request);
        let mut permits = Vec::new();
        let mut forbids = Vec::new();
        for &position in &found {
            let Some(indexed) = self.policies.get(position as usize) else {
                continue;
            };
            if !indexed.analysis.complete {
                return Outcome::Evaluate(self.candidates(found));
            }
            if indexed
                .analysis
                .guards
                .iter()
                .all(|guard| guard.holds(identity, request))
            {
                if indexed.forbid {
                    forbids.push(indexed.id.clone());
                } else {
                    permits.push(indexed.id.clone());
                }
            }
        }
        // As Cedar: forbid wins, then permit, else default deny; the reasons
        // are the satisfied policies of the deciding effect.
        let (effect, mut policy_ids) = if !forbids.is_empty() {
            (Effect::Deny, forbids)
        } else if !permits.is_empty() {
            (Effect::Allow, permits)
        } else {
            (Effect::Deny, Vec::new())
        };
        policy_ids.sort();
        Outcome::Decided(Decision {
            effect,
            policy_ids,
            errors: Vec::new(),
            shadow: Vec::new(),
        })
    }

    /// The positions of the policies whose principal guards hold, sorted.
    fn candidate_positions(&self, identity: &Identity, request: &RequestInfo<'_>) -> Vec<u32> {
        let mut found: Vec<u32> = Vec::new();
        let mut consider = |positions: &[u32]| {
            for &position in positions {
                let indexed = self.policies.get(position as usize);
                if indexed.is_some_and(|indexed| indexed.may_apply(identity, request)) {
                    found.push(position);
                }
            }
        };
        consider(&self.unindexed);
        let sub = identity.sub();
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
        if !self.by_tag.is_empty() {
            for tag in identity.tags() {
                if let Some(positions) = self.by_tag.get(tag) {
                    consider(positions);
                }
            }
        }
        found.sort_unstable();
        // A tag listed twice finds its policies twice.
        found.dedup();
        found
    }

    /// The policy set of the candidates at `found` (sorted positions).
    fn candidates(&self, found: Vec<u32>) -> Candidates<'_> {
        if found.len() == self.policies.len() {
            return Candidates::All(&self.all);
        }
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
            if let Some(indexed) = self.policies.get(position as usize) {
                // Ids are unique in the slice they come from, so adding
                // cannot fail; were it to, the policy would be missing and
                // the decision could only lose a permit or a forbid, so
                // fall back to the whole slice instead.
                if set.add(indexed.policy.clone()).is_err() {
                    return self.all.clone();
                }
            }
        }
        set
    }

    fn read_sets(&self) -> std::sync::RwLockReadGuard<'_, FastMap<Box<[u32]>, Arc<PolicySet>>> {
        // A poisoned lock only means a panic elsewhere while holding it; the
        // map is still a valid cache (entries are inserted whole).
        self.sets
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write_sets(&self) -> std::sync::RwLockWriteGuard<'_, FastMap<Box<[u32]>, Arc<PolicySet>>> {
        self.sets
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// (policies, indexed on `sub`, with at least one principal guard).
    #[cfg(test)]
    pub(super) fn stats(&self) -> (usize, usize, usize) {
        let indexed = self.policies.len() - self.unindexed.len();
        let guarded = self
            .policies
            .iter()
            .filter(|p| !p.principal_guards.is_empty())
            .count();
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
    /// Policies indexed on a tag (`principal.tags.contains("t")`, no `sub`
    /// guard): looked at only for principals with that tag.
    pub indexed_by_tag: usize,
    /// Policies with principal guards but no index key (checked natively
    /// for every principal, then evaluated only when the guards hold).
    pub guarded_only: usize,
    /// Policies wisp evaluates natively, without Cedar (every condition a
    /// guard).
    pub native: usize,
}

impl GuardStats {
    /// Counts `policies`.
    pub(super) fn of(policies: &PolicySet) -> GuardStats {
        let mut stats = GuardStats::default();
        for policy in policies.policies() {
            stats.policies += 1;
            let analysis = policy
                .to_json()
                .map(|json| analyze(&json, true))
                .unwrap_or_default();
            match index_key(&analysis.guards) {
                Some(Key::Prefix(_) | Key::Sub(_)) => stats.indexed += 1,
                Some(Key::Tag(_)) => stats.indexed_by_tag += 1,
                None if analysis.guards.iter().any(Guard::principal_only) => {
                    stats.guarded_only += 1
                }
                None => {}
            }
            if analysis.complete {
                stats.native += 1;
            }
        }
        stats
    }
}

enum Key<'a> {
    Prefix(&'a str),
    Sub(&'a str),
    Tag(&'a str),
}

/// The first guard usable as an index key: every guard is necessary for the
/// policy to be satisfied or to error, so any one of them can index it. A
/// `sub` guard is preferred (one workload, or one family of them); a tag
/// guard (`principal.tags.contains("t")`) otherwise.
fn index_key(guards: &[Guard]) -> Option<Key<'_>> {
    let sub = guards.iter().find_map(|guard| match guard {
        Guard::Like(Field::Sub, pattern) => pattern
            .as_prefix()
            .map(Key::Prefix)
            .or_else(|| pattern.as_exact().map(Key::Sub)),
        Guard::Equals(Field::Sub, sub) => Some(Key::Sub(sub)),
        _ => None,
    });
    sub.or_else(|| {
        guards.iter().find_map(|guard| match guard {
            Guard::HasTag(tag) => Some(Key::Tag(tag)),
            _ => None,
        })
    })
}

#[cfg(test)]
mod tests;
