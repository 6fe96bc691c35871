//! The Cedar side of wisp's model (README, "Cedar model"): the principal entity
//! from an [`Identity`], and the per-request resource and context.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::LazyLock;

use cedar_policy::{
    Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, RestrictedExpression, Schema,
};

use super::diagnostics::error_chain;
use super::RequestInfo;
use crate::identity::{AttrValue, Identity};

/// Entity type of the principal.
pub(super) const WORKLOAD: &str = "Workload";
/// Entity type of the resource.
pub(super) const ROUTE: &str = "Route";

/// Principal attributes wisp always sets itself; `identity.attrs` may not use them.
const BUILT_IN_ATTRIBUTES: [&str; 4] = ["sub", "iss", "tags", "authn"];

/// The two entity types wisp builds per request, parsed once: parsing a
/// type name runs Cedar's parser (its lexer builds regex DFA state per
/// call), which was the largest single cost of building a request.
static WORKLOAD_TYPE: LazyLock<Result<EntityTypeName, String>> =
    LazyLock::new(|| parse_type(WORKLOAD));
static ROUTE_TYPE: LazyLock<Result<EntityTypeName, String>> = LazyLock::new(|| parse_type(ROUTE));

fn parse_type(type_name: &str) -> Result<EntityTypeName, String> {
    type_name
        .parse()
        .map_err(|err| format!("entity type `{type_name}`: {err}"))
}

/// `Type::"id"`.
pub(super) fn uid(type_name: &str, id: &str) -> Result<EntityUid, String> {
    let type_name = match type_name {
        WORKLOAD => WORKLOAD_TYPE.clone()?,
        ROUTE => ROUTE_TYPE.clone()?,
        other => parse_type(other)?,
    };
    Ok(EntityUid::from_type_name_and_id(
        type_name,
        EntityId::new(id),
    ))
}

/// The principal entity, not yet checked against a schema.
///
/// # Errors
/// When `identity.attrs` redefines a built-in attribute.
pub(super) fn principal_entity(identity: &Identity) -> Result<Entity, String> {
    let mut attrs = HashMap::with_capacity(identity.attrs.len() + BUILT_IN_ATTRIBUTES.len());
    for (name, value) in &identity.attrs {
        if BUILT_IN_ATTRIBUTES.contains(&name.as_str()) {
            return Err(format!(
                "attribute `{name}` is set by wisp itself and cannot come from claims"
            ));
        }
        attrs.insert(name.clone(), restricted(value)?);
    }
    attrs.insert(
        "sub".to_owned(),
        RestrictedExpression::new_string(identity.sub().to_owned()),
    );
    attrs.insert(
        "iss".to_owned(),
        RestrictedExpression::new_string(identity.iss().to_owned()),
    );
    attrs.insert("tags".to_owned(), string_set(identity.tags()));
    attrs.insert(
        "authn".to_owned(),
        RestrictedExpression::new_string(identity.authn.as_str().to_owned()),
    );
    Entity::new(uid(WORKLOAD, identity.uid())?, attrs, HashSet::new())
        .map_err(|err| format!("principal `{}`: {}", identity.uid(), error_chain(&err)))
}

/// Hash of the entity `identity` gives: equal for identities that give the
/// same entity (see [`same_entity`]).
pub(super) fn entity_hash(identity: &Identity) -> u64 {
    use std::hash::BuildHasher as _;
    // One seed for the process: a principal built under one authorizer is
    // looked up in the next one's decision cache after a reload. Fast and
    // seeded (foldhash, through quick_cache); a collision costs a full
    // comparison, never a wrong decision.
    static HASHER: LazyLock<quick_cache::DefaultHashBuilder> = LazyLock::new(Default::default);
    HASHER.hash_one(identity.entity_content())
}

/// Whether `a` and `b` give the same principal entity.
pub(super) fn same_entity(a: &Identity, b: &Identity) -> bool {
    a.entity_content() == b.entity_content()
}

/// `entity` plus the schema's action entities, with `entity` validated against
/// the schema (types, undeclared and missing attributes).
///
/// # Errors
/// Cedar's message when the entity does not conform.
pub(super) fn with_actions(entity: Entity, schema: &Schema) -> Result<Entities, String> {
    Entities::from_entities([entity], Some(schema))
        .map_err(|err| format!("principal does not match the schema: {}", error_chain(&err)))
}

/// Checks the principal entity against the schema (types of its attributes,
/// undeclared ones) without keeping the entities Cedar builds for it.
pub(super) fn validate_principal(entity: &Entity, schema: &Schema) -> Result<(), String> {
    with_actions(entity.clone(), schema).map(drop)
}

/// The schema's action entities, with their action-group parents (the
/// reference evaluation in tests carries all of them).
#[cfg(test)]
pub(super) fn schema_actions(schema: &Schema) -> Result<Entities, String> {
    Entities::from_entities([], Some(schema))
        .map_err(|err| format!("action entities of the schema: {}", error_chain(&err)))
}

/// `Route::"<path>"` with its `path` and `host` attributes.
pub(super) fn route_entity(path: &str, host: &str) -> Result<Entity, String> {
    let attrs = HashMap::from([
        (
            "path".to_owned(),
            RestrictedExpression::new_string(path.to_owned()),
        ),
        (
            "host".to_owned(),
            RestrictedExpression::new_string(host.to_owned()),
        ),
    ]);
    Entity::new(uid(ROUTE, path)?, attrs, HashSet::new())
        .map_err(|err| format!("resource `{path}`: {}", error_chain(&err)))
}

/// `ip("<source_ip>")`, kept per address: Cedar's `new_ip` parses the
/// extension's name with its full parser on every call (several µs).
fn ip_expression(ip: IpAddr) -> RestrictedExpression {
    /// Addresses kept; callers of one service come from a bounded set of
    /// pods and nodes, and a miss only costs the parse.
    const KEPT: usize = 4096;
    static EXPRESSIONS: LazyLock<quick_cache::sync::Cache<IpAddr, RestrictedExpression>> =
        LazyLock::new(|| quick_cache::sync::Cache::new(KEPT));
    if let Some(expression) = EXPRESSIONS.get(&ip) {
        return expression;
    }
    let expression = RestrictedExpression::new_ip(ip_literal(ip));
    EXPRESSIONS.insert(ip, expression.clone());
    expression
}

/// `{ method, source_ip, query, mtls }`.
pub(super) fn context(request: &RequestInfo<'_>) -> Result<Context, String> {
    Context::from_pairs([
        (
            "method".to_owned(),
            RestrictedExpression::new_string(request.method.to_owned()),
        ),
        ("source_ip".to_owned(), ip_expression(request.source_ip)),
        (
            "query".to_owned(),
            RestrictedExpression::new_string(request.query.to_owned()),
        ),
        (
            "mtls".to_owned(),
            RestrictedExpression::new_bool(request.mtls),
        ),
    ])
    .map_err(|err| format!("context: {}", error_chain(&err)))
}

/// The address as Cedar's `ip()` accepts it. IPv4-mapped IPv6 addresses (from
/// dual-stack listeners) become IPv4 so `isInRange(ip("10.0.0.0/8"))` works;
/// other IPv6 addresses are written as plain hex groups, because Cedar rejects
/// the dotted forms Rust may print.
fn ip_literal(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => v6
            .segments()
            .iter()
            .map(|segment| format!("{segment:x}"))
            .collect::<Vec<_>>()
            .join(":"),
    }
}

fn string_set<'a>(values: impl IntoIterator<Item = &'a str>) -> RestrictedExpression {
    RestrictedExpression::new_set(
        values
            .into_iter()
            .map(|value| RestrictedExpression::new_string(value.to_owned())),
    )
}

/// The Cedar value of a claim, by its type.
fn restricted(value: &AttrValue) -> Result<RestrictedExpression, String> {
    Ok(match value {
        AttrValue::String(value) => RestrictedExpression::new_string(value.clone()),
        AttrValue::Long(value) => RestrictedExpression::new_long(*value),
        AttrValue::Bool(value) => RestrictedExpression::new_bool(*value),
        AttrValue::Set(values) => string_set(values.iter().map(String::as_str)),
        AttrValue::Record(fields) => {
            let fields = fields
                .iter()
                .map(|(name, value)| Ok((name.clone(), restricted(value)?)))
                .collect::<Result<Vec<_>, String>>()?;
            RestrictedExpression::new_record(fields).map_err(|err| error_chain(&err))?
        }
    })
}

#[cfg(test)]
mod tests {
    use super::ip_literal;
    use std::net::IpAddr;

    #[test]
    fn ip_literal_writes_mapped_ipv6_as_ipv4_and_other_ipv6_as_hex_groups() {
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(ip_literal(mapped), "10.1.2.3");
        let compat: IpAddr = "::1.2.3.4".parse().unwrap();
        assert_eq!(ip_literal(compat), "0:0:0:0:0:0:102:304");
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(ip_literal(v6), "2001:db8:0:0:0:0:0:1");
    }
}
