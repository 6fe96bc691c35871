//! The schema's shape of `Workload`, checked natively: a principal that
//! conforms is accepted without building Cedar's `Entities` for it (several
//! µs per new token); anything else — a mismatch, or a schema this checker
//! does not fully understand — goes to Cedar's own validation, which then
//! decides and words the error.
//!
//! # Why a native "conforms" is as good as Cedar's
//!
//! Only the plainest schemas are understood: `Workload` in the empty
//! namespace, with a record shape whose attributes are `String`, `Long`,
//! `Bool`, `Set<String>` or records of those, no entity tags, no enum
//! declaration, and no common or entity type anywhere that could shadow
//! those primitive names. For such a shape, Cedar's entity conformance
//! (cedar-policy-core 4.14, `entities/conformance.rs`) checks exactly: every
//! attribute is declared, every required one is present, and each value has
//! its declared type — what [`WorkloadShape::conforms`] checks. A property
//! test (`tests/shape.rs`) compares both on random schemas and identities.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::identity::{AttrValue, Identity};

/// A type the native check understands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Type {
    String,
    Long,
    Bool,
    /// `Set<String>` (other element types are not understood).
    StringSet,
    Record(Fields),
}

/// Attribute name → (type, required).
type Fields = BTreeMap<String, (Type, bool)>;

/// The attributes the schema declares on `Workload`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct WorkloadShape {
    fields: Fields,
    /// Whether the built-in attributes are declared with the types every
    /// principal gives them (else nothing conforms).
    builtins_declared: bool,
    /// The required attributes that are not built in (those always are
    /// present).
    required: Vec<String>,
}

/// The attributes every principal entity has (`entities::principal_entity`).
fn builtin(name: &str) -> bool {
    matches!(name, "sub" | "iss" | "authn" | "tags")
}

/// Primitive names a schema could redefine as a common or entity type.
const PRIMITIVES: [&str; 3] = ["String", "Long", "Bool"];

impl WorkloadShape {
    /// The shape of `Workload` in the schema `text` (Cedar syntax), or `None`
    /// when the schema is beyond the native check (then Cedar validates
    /// every principal).
    pub(super) fn from_schema_text(text: &str) -> Option<WorkloadShape> {
        let (fragment, _) = cedar_policy::SchemaFragment::from_cedarschema_str(text).ok()?;
        let json = fragment.to_json_value().ok()?;
        WorkloadShape::from_json(&json)
    }

    fn from_json(json: &Value) -> Option<WorkloadShape> {
        let namespaces = json.as_object()?;
        // A common or entity type named like a primitive changes what the
        // primitive names mean: leave such schemas to Cedar.
        for namespace in namespaces.values() {
            for kind in ["commonTypes", "entityTypes"] {
                if let Some(types) = namespace.get(kind).and_then(Value::as_object) {
                    if types.keys().any(|name| PRIMITIVES.contains(&name.as_str())) {
                        return None;
                    }
                }
            }
        }
        let workload = namespaces.get("")?.get("entityTypes")?.get("Workload")?;
        let declaration = workload.as_object()?;
        if declaration
            .keys()
            .any(|key| !matches!(key.as_str(), "shape" | "memberOfTypes" | "annotations"))
        {
            return None; // enum, tags, or something newer
        }
        let fields = match declaration.get("shape") {
            None => Fields::new(),
            Some(shape) => match parse_type(shape)? {
                Type::Record(fields) => fields,
                _ => return None,
            },
        };
        // Worked out once here, not for every principal.
        let builtins_declared = ["sub", "iss", "authn"]
            .iter()
            .all(|name| fields.get(*name).is_some_and(|(ty, _)| *ty == Type::String))
            && fields
                .get("tags")
                .is_some_and(|(ty, _)| *ty == Type::StringSet);
        let required = fields
            .iter()
            .filter(|(name, (_, required))| *required && !builtin(name))
            .map(|(name, _)| name.clone())
            .collect();
        Some(WorkloadShape {
            fields,
            builtins_declared,
            required,
        })
    }

    /// Whether the principal entity built from `identity` certainly conforms
    /// (`false`: it does not, or this check cannot tell).
    pub(super) fn conforms(&self, identity: &Identity) -> bool {
        self.builtins_declared
            && self
                .required
                .iter()
                .all(|name| identity.attrs.contains_key(name))
            && identity.attrs.iter().all(|(name, value)| {
                !builtin(name) && self.fields.get(name).is_some_and(|(ty, _)| fits(value, ty))
            })
    }
}

fn fits(value: &AttrValue, ty: &Type) -> bool {
    match (value, ty) {
        (AttrValue::String(_), Type::String)
        | (AttrValue::Long(_), Type::Long)
        | (AttrValue::Bool(_), Type::Bool)
        | (AttrValue::Set(_), Type::StringSet) => true,
        (AttrValue::Record(values), Type::Record(fields)) => {
            fields
                .iter()
                .all(|(name, (_, required))| !required || values.contains_key(name))
                && values
                    .iter()
                    .all(|(name, value)| fields.get(name).is_some_and(|(ty, _)| fits(value, ty)))
        }
        _ => false,
    }
}

/// A JSON-schema type, when it is one the native check understands.
fn parse_type(json: &Value) -> Option<Type> {
    let object = json.as_object()?;
    let allowed = [
        "type",
        "name",
        "element",
        "attributes",
        "required",
        "annotations",
    ];
    if object.keys().any(|key| !allowed.contains(&key.as_str())) {
        return None; // e.g. additionalAttributes
    }
    match object.get("type")?.as_str()? {
        "String" => Some(Type::String),
        "Long" => Some(Type::Long),
        "Boolean" => Some(Type::Bool),
        "EntityOrCommon" => match object.get("name")?.as_str()? {
            // No type shadows these names (checked by the caller).
            "String" | "__cedar::String" => Some(Type::String),
            "Long" | "__cedar::Long" => Some(Type::Long),
            "Bool" | "__cedar::Bool" => Some(Type::Bool),
            _ => None,
        },
        "Set" => match parse_type(object.get("element")?)? {
            Type::String => Some(Type::StringSet),
            _ => None,
        },
        "Record" => {
            let mut fields = Fields::new();
            for (name, attribute) in object.get("attributes")?.as_object()? {
                let required = match attribute.get("required") {
                    None => true,
                    Some(required) => required.as_bool()?,
                };
                fields.insert(name.clone(), (parse_type(attribute)?, required));
            }
            Some(Type::Record(fields))
        }
        _ => None,
    }
}
