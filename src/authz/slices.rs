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
}

/// HTTP method → its [`ActionSlice`], for every action that is not a group.
pub(super) type Slices = HashMap<String, ActionSlice>;

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
    methods
        .into_iter()
        .map(|(method, uid)| {
            let policies = if options.slice_by_action {
                slice_for(&uid, policies, action_entities)?
            } else {
                policies.clone()
            };
            let index = options
                .index_principals
                .then(|| Index::new(&policies))
                .transpose()?;
            Ok((
                method,
                ActionSlice {
                    uid,
                    policies,
                    index,
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
