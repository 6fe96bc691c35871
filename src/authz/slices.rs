//! Slicing by action: for each HTTP method, the policies whose action scope
//! can match its action. A request evaluates only its method's slice.
//!
//! # Why this is exact
//!
//! Cedar evaluates a policy as one conjunction, `principal scope && action
//! scope && resource scope && when… && !unless…`, with `&&` short-circuiting
//! left to right (cedar-policy-core 4.14: `TemplateBody::condition` in
//! `ast/policy.rs`, `ExprKind::And` in `evaluator.rs`). Scope constraints never
//! error: `==` compares entity uids, and `in` on a uid missing from the
//! entities is plain equality (`Evaluator::eval_in`). So when the action scope
//! is false the policy is neither satisfied nor erroring, whatever the
//! principal scope says and whatever its conditions would do; the authorizer
//! (`Authorizer::is_authorized_core_internal` in `authorizer.rs`) then records
//! it only as "false", which affects neither the decision, nor the reasons,
//! nor the errors. Dropping such policies gives the same [`Response`]
//! reasons and errors as evaluating the whole set.
//!
//! The action's ancestors are taken from the schema's action entities, the
//! very entities every request carries (`entities::with_actions`), and the
//! membership test mirrors `eval_in`: `action == group` or `group` among the
//! action's (transitively closed) ancestors. When in doubt a policy is kept.
//!
//! [`Response`]: cedar_policy::Response

use std::collections::{HashMap, HashSet};

use cedar_policy::{ActionConstraint, Entities, EntityUid, Policy, PolicySet};

use super::diagnostics::error_chain;
use super::guards::Index;
use super::AuthorizerOptions;

/// One method's action and the policies that can apply to it.
#[derive(Debug)]
pub(super) struct ActionSlice {
    /// The method's action, e.g. `Action::"GET"`.
    pub(super) uid: EntityUid,
    /// The policies whose action scope can match `uid` (all of them when
    /// slicing is off).
    pub(super) policies: PolicySet,
    /// `policies` indexed by their principal guards (`None` when off).
    pub(super) index: Option<Index>,
    /// The action entities a request carries: only `uid` and its ancestors
    /// when no policy names an action in a condition (see
    /// [`names_an_action`]), else all of the schema's.
    pub(super) actions: Entities,
}

/// HTTP method → its [`ActionSlice`], for every action that is not a group.
pub(super) type Slices = crate::FastMap<String, ActionSlice>;

/// Builds one slice per method. With `options.slice_by_action` false every
/// slice holds the whole set (the unsliced reference, for benchmarks); with
/// `options.index_principals` each slice gets its guard index.
///
/// # Errors
/// A message when Cedar cannot build the action entities or a slice (not
/// expected for a set and schema that loaded and validated).
pub(super) fn build(
    methods: HashMap<String, EntityUid>,
    policies: &PolicySet,
    action_entities: &Entities,
    options: AuthorizerOptions,
) -> Result<Slices, String> {
    let all_actions = names_an_action(policies);
    methods
        .into_iter()
        .map(|(method, uid)| {
            let policies = if options.slice_by_action {
                slice_for(&uid, policies, action_entities)?
            } else {
                policies.clone()
            };
            let ancestors: HashSet<&EntityUid> = action_entities
                .ancestors(&uid)
                .map(Iterator::collect)
                .unwrap_or_default();
            let index = options
                .index_principals
                .then(|| Index::new(&policies, |policy| can_match(policy, &uid, &ancestors)))
                .transpose()?;
            let actions = if all_actions {
                action_entities.clone()
            } else {
                action_and_ancestors(&uid, action_entities)?
            };
            Ok((
                method,
                ActionSlice {
                    uid,
                    policies,
                    index,
                    actions,
                },
            ))
        })
        .collect()
}

/// The policies of `policies` whose action scope can match `action`.
fn slice_for(
    action: &EntityUid,
    policies: &PolicySet,
    action_entities: &Entities,
) -> Result<PolicySet, String> {
    let ancestors: HashSet<&EntityUid> = action_entities
        .ancestors(action)
        .map(Iterator::collect)
        .unwrap_or_default();
    let mut slice = PolicySet::new();
    for policy in policies
        .policies()
        .filter(|policy| can_match(policy, action, &ancestors))
    {
        slice
            .add(policy.clone())
            .map_err(|err| format!("slice for {action}: {}", error_chain(&err)))?;
    }
    Ok(slice)
}

/// Whether `policy`'s action scope holds for `action`, whose ancestors (in
/// the request's entities) are `ancestors`.
fn can_match(policy: &Policy, action: &EntityUid, ancestors: &HashSet<&EntityUid>) -> bool {
    let is_in = |group: &EntityUid| group == action || ancestors.contains(group);
    match policy.action_constraint() {
        ActionConstraint::Any => true,
        ActionConstraint::Eq(uid) => &uid == action,
        ActionConstraint::In(groups) => groups.iter().any(is_in),
    }
}

/// `action` and its ancestors, from `action_entities`.
///
/// # Why this is exact when no condition names an action
///
/// Evaluation reads an action entity only to test `X in Y` where `X` is
/// that entity: the request's action (the variable `action`, whose
/// ancestors are all here) or an action literal. Actions have no
/// attributes, principals and routes have no parents, and context holds no
/// entities, so without action literals in conditions (scopes are matched
/// against `action` only) no other action entity is ever looked up.
fn action_and_ancestors(
    action: &EntityUid,
    action_entities: &Entities,
) -> Result<Entities, String> {
    let mut uids = vec![action.clone()];
    if let Some(ancestors) = action_entities.ancestors(action) {
        uids.extend(ancestors.cloned());
    }
    let kept: Vec<_> = uids
        .iter()
        .filter_map(|uid| action_entities.get(uid).cloned())
        .collect();
    Entities::from_entities(kept, None)
        .map_err(|err| format!("action entities for {action}: {}", error_chain(&err)))
}

/// Whether some policy's conditions name an action entity (`Action::"x"`,
/// or `NS::Action::"x"`): then every request carries all action entities.
/// A policy that cannot be written as JSON counts as naming one.
fn names_an_action(policies: &PolicySet) -> bool {
    fn scan(value: &serde_json::Value) -> bool {
        match value {
            serde_json::Value::Object(object) => {
                let is_action = object
                    .get("__entity")
                    .and_then(|entity| entity.get("type"))
                    .and_then(serde_json::Value::as_str)
                    .is_some_and(|ty| ty == "Action" || ty.ends_with("::Action"));
                is_action || object.values().any(scan)
            }
            serde_json::Value::Array(items) => items.iter().any(scan),
            _ => false,
        }
    }
    policies.policies().any(|policy| match policy.to_json() {
        Ok(json) => json.get("conditions").is_none_or(scan),
        Err(_) => true,
    })
}
