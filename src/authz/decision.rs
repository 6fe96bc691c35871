//! One authorization: per-request entities, request and evaluation → [`Decision`].

use cedar_policy::{
    AuthorizationError, Authorizer as CedarAuthorizer, EntityUid, PolicySet, Request, Response,
};

use super::diagnostics::error_chain;
use super::{entities, Authorizer, Decision, Effect, Principal, RequestInfo};

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
    authorizer
        .cache
        .decide(principal, request, || match &slice.index {
            Some(index) => {
                let candidates = index.candidates(&principal.identity);
                decide_with(
                    authorizer,
                    principal,
                    request,
                    &slice.uid,
                    candidates.policies(),
                )
            }
            None => decide_with(authorizer, principal, request, &slice.uid, &slice.policies),
        })
}

/// The reference the fast path must equal: the whole set, no cache.
#[cfg(test)]
pub(super) fn authorize_unsliced(
    authorizer: &Authorizer,
    principal: &Principal,
    request: &RequestInfo<'_>,
) -> Decision {
    match authorizer.slices.get(request.method) {
        Some(slice) => decide_with(
            authorizer,
            principal,
            request,
            &slice.uid,
            &authorizer.policies,
        ),
        None => unknown_method(request.method),
    }
}

fn unknown_method(method: &str) -> Decision {
    Decision {
        effect: Effect::Deny,
        policy_ids: Vec::new(),
        errors: vec![format!("method `{method}` is not an action in the schema")],
    }
}

/// Evaluates `policies` for the request with `action`.
fn decide_with(
    authorizer: &Authorizer,
    principal: &Principal,
    request: &RequestInfo<'_>,
    action: &EntityUid,
    policies: &PolicySet,
) -> Decision {
    match evaluate(authorizer, principal, request, action, policies) {
        Ok(response) => decide(&response),
        Err(error) => Decision {
            effect: Effect::Deny,
            policy_ids: Vec::new(),
            errors: vec![error],
        },
    }
}

fn evaluate(
    authorizer: &Authorizer,
    principal: &Principal,
    request: &RequestInfo<'_>,
    action: &EntityUid,
    policies: &PolicySet,
) -> Result<Response, String> {
    let route = entities::route_entity(request.path, request.host)?;
    let resource = route.uid();
    // The route's shape was checked against the schema at load, so it is added
    // without re-validation; the principal was validated when it was built.
    let principal_entity = entities::principal_entity(&principal.identity)?;
    if principal.generation != authorizer.generation {
        // Built under another authorizer: a reload may have changed the schema.
        entities::validate_principal(&principal_entity, &authorizer.schema)?;
    }
    let entities = authorizer
        .actions
        .clone()
        .add_entities([principal_entity, route], None)
        .map_err(|err| format!("entities: {}", error_chain(&err)))?;
    let context = entities::context(request)?;
    let request = Request::new(
        principal.uid.clone(),
        action.clone(),
        resource,
        context,
        Some(&authorizer.schema),
    )
    .map_err(|err| format!("request does not match the schema: {}", error_chain(&err)))?;
    Ok(CedarAuthorizer::new().is_authorized(&request, policies, &entities))
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
    }
}
