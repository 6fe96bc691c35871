//! Shadow policies: a policy annotated `@shadow` is validated and evaluated
//! with the others but never enforced. For each request that it applies to
//! (its conditions hold, or its evaluation errors), the pipeline reports the
//! decision the request would have had with that one policy enforced: the
//! decision log's `shadow` field and `wisp_shadow_decisions_total{policy,
//! decision}`. It is the per-policy form of `policies.mode: dry-run` (Istio's
//! `istio.io/dry-run` on one AuthorizationPolicy): stage a new `forbid`, see
//! what it would deny, then remove `@shadow`.
//!
//! # Cost
//!
//! Nothing when no policy is shadowed. Otherwise two more decisions per
//! decided request, whatever the number of shadow policies: one of the
//! shadow permits and one of the shadow forbids, each sliced by action and
//! indexed by principal guards like the enforced set, so shadow policies of
//! the usual shapes are decided natively, without Cedar. The results are
//! part of the cached [`Decision`], so a decision-cache hit costs nothing
//! more.

use std::collections::HashMap;

use cedar_policy::{AuthorizationError, Effect as PolicyEffect, Entities, EntityUid, PolicySet};

use super::decision::{evaluate, Target};
use super::diagnostics::error_chain;
use super::slices::{self, Slices};
use super::{Authorizer, AuthorizerOptions, Decision, Effect, Principal, RequestInfo};

/// What one shadow policy would have done to one request (serialized as
/// the decision log's and `wisp explain`'s `shadow` entries).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ShadowResult {
    /// The policy's id.
    pub policy: String,
    /// `permit` or `forbid`.
    pub effect: &'static str,
    /// The request's decision had this policy been enforced (an evaluation
    /// error denies, as it does for enforced policies).
    #[serde(serialize_with = "effect_name")]
    pub decision: Effect,
    /// Why its evaluation failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn effect_name<S: serde::Serializer>(effect: &Effect, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(effect.as_str())
}

/// The shadow policies of one authorizer, sliced and indexed like the
/// enforced ones: one set per effect, so that each set's decision names
/// every satisfied policy of it.
#[derive(Debug)]
pub(super) struct Shadow {
    permits: Slices,
    forbids: Slices,
    /// Every shadow policy's id, sorted.
    ids: Vec<String>,
}

impl Shadow {
    /// Splits `all` into the enforced set and the shadow policies (`None`
    /// when there are none), slicing the shadow sets per method as
    /// `options` says.
    ///
    /// # Errors
    /// A message when Cedar refuses to rebuild a set or a slice (not
    /// expected: every policy came from a valid set).
    pub(super) fn split(
        all: PolicySet,
        is_shadow: impl Fn(&str) -> bool,
        methods: &HashMap<String, EntityUid>,
        action_entities: &Entities,
        options: AuthorizerOptions,
    ) -> Result<(PolicySet, Option<Shadow>), String> {
        let mut enforced = PolicySet::new();
        let mut permits = PolicySet::new();
        let mut forbids = PolicySet::new();
        let mut ids = Vec::new();
        for policy in all.policies() {
            let shadowed = is_shadow(policy.id().as_ref());
            let set = match (shadowed, policy.effect()) {
                (false, _) => &mut enforced,
                (true, PolicyEffect::Permit) => &mut permits,
                (true, PolicyEffect::Forbid) => &mut forbids,
            };
            if shadowed {
                ids.push(policy.id().to_string());
            }
            set.add(policy.clone())
                .map_err(|err| format!("policy {}: {}", policy.id(), error_chain(&err)))?;
        }
        if ids.is_empty() {
            return Ok((enforced, None));
        }
        ids.sort();
        let shadow = Shadow {
            permits: slices::build(methods.clone(), &permits, action_entities, options)?,
            forbids: slices::build(methods.clone(), &forbids, action_entities, options)?,
            ids,
        };
        Ok((enforced, Some(shadow)))
    }

    /// The number of shadow policies.
    pub(super) fn len(&self) -> usize {
        self.ids.len()
    }

    /// The shadow policies' ids, sorted.
    pub(super) fn ids(&self) -> impl Iterator<Item = String> + '_ {
        self.ids.iter().cloned()
    }

    /// Whether the policy `id` is a shadow policy.
    pub(super) fn contains(&self, id: &str) -> bool {
        self.ids
            .binary_search_by(|probe| probe.as_str().cmp(id))
            .is_ok()
    }

    /// Evaluates the shadow policies for a request whose enforced decision
    /// is `enforced`, and returns what each applying one would have done,
    /// sorted by policy id.
    ///
    /// Each effect's slice is decided as the enforced set is (natively when
    /// its guards allow, else Cedar on the candidates): the decision of a
    /// set of permits names every satisfied one, that of a set of forbids
    /// every satisfied forbid. When an evaluation errors, the slice is
    /// evaluated again by Cedar alone, whose diagnostics name each erroring
    /// policy (an error hides a permit set's satisfied policies otherwise).
    pub(super) fn evaluate(
        &self,
        authorizer: &Authorizer,
        principal: &Principal,
        request: &RequestInfo<'_>,
        enforced: &Decision,
    ) -> Vec<ShadowResult> {
        let mut results = Vec::new();
        for (slices, effect) in [(&self.permits, "permit"), (&self.forbids, "forbid")] {
            let Some(slice) = slices.get(request.method) else {
                continue;
            };
            if slice.policies.num_of_policies() == 0 {
                continue;
            }
            let decision = super::decision::enforced(authorizer, slice, principal, request);
            if decision.errors.is_empty() {
                results.extend(decision.policy_ids.into_iter().map(|policy| ShadowResult {
                    policy,
                    effect,
                    decision: would_be(enforced, effect),
                    error: None,
                }));
                continue;
            }
            let target = Target {
                action: &slice.uid,
                policies: &slice.policies,
                actions: &slice.actions,
            };
            let response = match evaluate(authorizer, principal, request, &target) {
                Ok(response) => response,
                Err(error) => {
                    // The request could not be evaluated at all: every
                    // shadow policy of this effect would have denied it.
                    results.extend(slice.policies.policies().map(|policy| ShadowResult {
                        policy: policy.id().to_string(),
                        effect,
                        decision: Effect::Deny,
                        error: Some(error.clone()),
                    }));
                    continue;
                }
            };
            let diagnostics = response.diagnostics();
            for policy in diagnostics.reason() {
                results.push(ShadowResult {
                    policy: policy.to_string(),
                    effect,
                    decision: would_be(enforced, effect),
                    error: None,
                });
            }
            for error in diagnostics.errors() {
                let AuthorizationError::PolicyEvaluationError(error) = error;
                results.push(ShadowResult {
                    policy: error.policy_id().to_string(),
                    effect,
                    decision: Effect::Deny,
                    error: Some(error_chain(error.inner())),
                });
            }
        }
        results.sort_by(|a, b| a.policy.cmp(&b.policy));
        results
    }
}

/// The decision with one more satisfied policy of `effect` enforced.
fn would_be(enforced: &Decision, effect: &str) -> Effect {
    match effect {
        "forbid" => Effect::Deny,
        // A permit lifts a default deny only: not a forbid's, not an error's.
        _ if enforced.effect == Effect::Allow => Effect::Allow,
        _ if enforced.policy_ids.is_empty() && enforced.errors.is_empty() => Effect::Allow,
        _ => Effect::Deny,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(effect: Effect, policy_ids: &[&str], errors: &[&str]) -> Decision {
        Decision {
            effect,
            policy_ids: policy_ids.iter().map(|s| s.to_string()).collect(),
            errors: errors.iter().map(|s| s.to_string()).collect(),
            shadow: Vec::new(),
        }
    }

    #[test]
    fn a_permit_lifts_only_a_default_deny_and_a_forbid_always_denies() {
        let allowed = decision(Effect::Allow, &["p"], &[]);
        let default_deny = decision(Effect::Deny, &[], &[]);
        let forbidden = decision(Effect::Deny, &["f"], &[]);
        let erroring = decision(Effect::Deny, &[], &["p: error"]);
        assert_eq!(would_be(&allowed, "permit"), Effect::Allow);
        assert_eq!(would_be(&default_deny, "permit"), Effect::Allow);
        assert_eq!(would_be(&forbidden, "permit"), Effect::Deny);
        assert_eq!(would_be(&erroring, "permit"), Effect::Deny);
        for enforced in [&allowed, &default_deny, &forbidden, &erroring] {
            assert_eq!(would_be(enforced, "forbid"), Effect::Deny);
        }
    }
}
