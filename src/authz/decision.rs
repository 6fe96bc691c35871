//! One authorization: per-request entities, request and evaluation → [`Decision`].

use cedar_policy::{
    AuthorizationError, Authorizer as CedarAuthorizer, Entities, EntityUid, PolicySet, Request,
    Response,
};

use super::diagnostics::error_chain;
use super::guards::{Candidates, Outcome};
use super::{entities, slices, Authorizer, Decision, Effect, Principal, RequestInfo};

/// What one evaluation runs: the request's action, the policies, and the
/// action entities the request carries.
pub(super) struct Target<'a> {
    pub(super) action: &'a EntityUid,
    pub(super) policies: &'a PolicySet,
    pub(super) actions: &'a Entities,
}

/// See [`Authorizer::authorize`]: the method's slice, through the cache.
pub(super) fn authorize(
    authorizer: &Authorizer,
    principal: &Principal,
    request: &RequestInfo<'_>,
) -> Decision {
    // Unknown methods are answered before the cache, so arbitrary method
    // strings cannot fill it.
    let Some(slice) = authorizer.slices.get(request.method) else {
        return unknown_method(request.method);
    };
    authorizer.cache.decide(principal, request, || {
        let decision = enforced(authorizer, slice, principal, request);
        match &authorizer.shadow {
            Some(shadow) => {
                let results = shadow.evaluate(authorizer, principal, request, &decision);
                Decision {
                    shadow: results,
                    ..decision
                }
            }
            None => decision,
        }
    })
}

/// One slice's decision: natively when the guards decide, else Cedar on
/// the slice's candidates.
pub(super) fn enforced(
    authorizer: &Authorizer,
    slice: &slices::ActionSlice,
    principal: &Principal,
    request: &RequestInfo<'_>,
) -> Decision {
    let native = slice
        .index
        .as_ref()
        // A principal built by another authorizer is re-validated by
        // `evaluate` (a reload may have changed the schema).
        .filter(|_| principal.generation == authorizer.generation)
        .map(|index| index.decide(&principal.identity, request));
    let candidates = match native {
        Some(Outcome::Decided(decision)) => return decision,
        Some(Outcome::Evaluate(candidates)) => Some(candidates),
        None => None,
    };
    let target = Target {
        action: &slice.uid,
        policies: candidates
            .as_ref()
            .map_or(&slice.policies, Candidates::policies),
        actions: &slice.actions,
    };
    decide_with(authorizer, principal, request, &target)
}

/// The reference the fast path must equal: the whole set with every action
/// entity, no index, no cache.
#[cfg(test)]
pub(super) fn authorize_unsliced(
    authorizer: &Authorizer,
    principal: &Principal,
    request: &RequestInfo<'_>,
) -> Decision {
    match authorizer.slices.get(request.method) {
        Some(slice) => {
            let actions = match entities::schema_actions(&authorizer.schema) {
                Ok(actions) => actions,
                Err(error) => {
                    return Decision {
                        effect: Effect::Deny,
                        policy_ids: Vec::new(),
                        errors: vec![error],
                        shadow: Vec::new(),
                    }
                }
            };
            let target = Target {
                action: &slice.uid,
                policies: &authorizer.policies,
                actions: &actions,
            };
            decide_with(authorizer, principal, request, &target)
        }
        None => unknown_method(request.method),
    }
}

fn unknown_method(method: &str) -> Decision {
    Decision {
        effect: Effect::Deny,
        policy_ids: Vec::new(),
        errors: vec![format!("method `{method}` is not an action in the schema")],
        shadow: Vec::new(),
    }
}

/// Evaluates the target's policies for the request.
fn decide_with(
    authorizer: &Authorizer,
    principal: &Principal,
    request: &RequestInfo<'_>,
    target: &Target<'_>,
) -> Decision {
    match evaluate(authorizer, principal, request, target) {
        Ok(response) => decide(&response),
        Err(error) => Decision {
            effect: Effect::Deny,
            policy_ids: Vec::new(),
            errors: vec![error],
            shadow: Vec::new(),
        },
    }
}

pub(super) fn evaluate(
    authorizer: &Authorizer,
    principal: &Principal,
    request: &RequestInfo<'_>,
    target: &Target<'_>,
) -> Result<Response, String> {
    let route = entities::route_entity(request.path, request.host)?;
    let resource = route.uid();
    // The route's shape was checked against the schema at load, so it is added
    // without re-validation; the principal was validated when it was built.
    let principal_entity = entities::principal_entity(&principal.identity)?;
    let principal_uid = principal_entity.uid();
    if principal.generation != authorizer.generation {
        // Built under another authorizer: a reload may have changed the schema.
        entities::validate_principal(&principal_entity, &authorizer.schema)?;
    }
    let entities = target
        .actions
        .clone()
        .add_entities([principal_entity, route], None)
        .map_err(|err| format!("entities: {}", error_chain(&err)))?;
    let context = entities::context(request)?;
    // Not validated against the schema here: every action was validated at
    // load with a request of exactly this shape (`load::check_model`: the
    // principal and resource types and the context's attribute types are
    // the same for every request), and validation reads types, not values.
    let request = Request::new(
        principal_uid,
        target.action.clone(),
        resource,
        context,
        None,
    )
    .map_err(|err| format!("request: {}", error_chain(&err)))?;
    Ok(CedarAuthorizer::new().is_authorized(&request, target.policies, &entities))
}

/// Cedar's response with one change: any evaluation error denies, because Cedar
/// skips an erroring policy and an erroring `forbid` would otherwise allow.
fn decide(response: &Response) -> Decision {
    let mut errors: Vec<String> = response
        .diagnostics()
        .errors()
        .map(|error| match error {
            AuthorizationError::PolicyEvaluationError(error) => {
                format!("{}: {}", error.policy_id(), error_chain(error.inner()))
            }
        })
        .collect();
    errors.sort();
    let cedar_effect = match response.decision() {
        cedar_policy::Decision::Allow => Effect::Allow,
        cedar_policy::Decision::Deny => Effect::Deny,
    };
    let effect = if errors.is_empty() {
        cedar_effect
    } else {
        Effect::Deny
    };
    // The determining policies: Cedar's reasons are the satisfied permits for
    // its Allow and the satisfied forbids for its Deny. When an error overrides
    // an Allow, no policy determined the Deny; `errors` says why.
    let mut policy_ids: Vec<String> = if effect == cedar_effect {
        response
            .diagnostics()
            .reason()
            .map(ToString::to_string)
            .collect()
    } else {
        Vec::new()
    };
    policy_ids.sort();
    Decision {
        effect,
        policy_ids,
        errors,
        shadow: Vec::new(),
    }
}
