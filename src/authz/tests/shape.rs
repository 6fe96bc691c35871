//! The native principal check: whenever it says "conforms", Cedar's own
//! validation agrees (random schemas, including ones it must leave to
//! Cedar, and random identities); and the shipped schema is understood.

use std::collections::BTreeMap;

use cedar_policy::Schema;
use proptest::prelude::*;

use super::super::entities;
use super::super::shape::WorkloadShape;
use super::{identity, shipped_schema, with_tags};
use crate::identity::{AttrValue, AuthnMethod, Identity};

/// Declarations a schema may put before `Workload`, some of which change
/// what primitive names mean.
const PRELUDES: &[&str] = &[
    "",
    "",
    "",
    "type Common = { z: String };",
    "type String = Long;",
    "entity Long;",
    "type Bool = { b: Bool };",
];

const TYPES: &[&str] = &[
    "String",
    "Long",
    "Bool",
    "Set<String>",
    "Set<Long>",
    "{ x: String, y?: Long }",
    "ipaddr",
    "Workload",
    "Common",
    "__cedar::String",
];

const NAMES: &[&str] = &["a", "b", "c", "ref"];

#[derive(Debug, Clone)]
struct SchemaSpec {
    prelude: usize,
    /// Type of sub, iss, authn, tags (`None`: not declared).
    built_ins: [Option<usize>; 4],
    /// (name, type, required).
    extra: Vec<(usize, usize, bool)>,
}

/// Mostly types the native check understands, sometimes any.
fn extra_type() -> impl Strategy<Value = usize> {
    prop_oneof![3 => prop::sample::select(vec![0, 1, 2, 3, 5, 9]), 1 => 0..TYPES.len()]
}

fn schema_spec() -> impl Strategy<Value = SchemaSpec> {
    let built_in = |usual: usize| {
        prop_oneof![
            12 => Just(Some(usual)),
            1 => (0..TYPES.len()).prop_map(Some),
            1 => Just(None),
        ]
    };
    (
        0..PRELUDES.len(),
        [built_in(0), built_in(0), built_in(0), built_in(3)],
        prop::collection::vec((0..NAMES.len(), extra_type(), any::<bool>()), 0..4),
    )
        .prop_map(|(prelude, built_ins, extra)| SchemaSpec {
            prelude,
            built_ins,
            extra,
        })
}

fn render(spec: &SchemaSpec) -> String {
    let mut attrs = Vec::new();
    for (name, ty) in ["sub", "iss", "authn", "tags"].iter().zip(spec.built_ins) {
        if let Some(ty) = ty {
            attrs.push(format!("{name}: {}", TYPES[ty]));
        }
    }
    let mut seen = std::collections::HashSet::new();
    for &(name, ty, required) in &spec.extra {
        if seen.insert(name) {
            let mark = if required { "" } else { "?" };
            attrs.push(format!("\"{}\"{mark}: {}", NAMES[name], TYPES[ty]));
        }
    }
    let prelude = PRELUDES[spec.prelude];
    let common = if prelude.contains("Common") {
        ""
    } else {
        "type Common = { z: String };"
    };
    format!(
        "{prelude}\n{common}\nentity Workload {{ {} }};",
        attrs.join(", ")
    )
}

/// A value of the type `TYPES[ty]` as wisp would build it from a claim
/// (for types no claim can have, the nearest claim shape).
fn value_of(ty: usize) -> BoxedStrategy<AttrValue> {
    match TYPES[ty] {
        "Long" => any::<i64>().prop_map(AttrValue::Long).boxed(),
        "Bool" => any::<bool>().prop_map(AttrValue::Bool).boxed(),
        "Set<String>" | "Set<Long>" => prop::collection::vec("[a-c]{0,2}", 0..3)
            .prop_map(AttrValue::Set)
            .boxed(),
        "{ x: String, y?: Long }" => (
            prop::option::weighted(0.8, "[a-c]{0,2}"),
            prop::option::of(any::<i64>()),
        )
            .prop_map(|(x, y)| {
                let mut fields = BTreeMap::new();
                if let Some(x) = x {
                    fields.insert("x".to_owned(), AttrValue::String(x));
                }
                if let Some(y) = y {
                    fields.insert("y".to_owned(), AttrValue::Long(y));
                }
                AttrValue::Record(fields)
            })
            .boxed(),
        "Common" => "[a-c]{0,2}"
            .prop_map(|z| {
                AttrValue::Record(BTreeMap::from([("z".to_owned(), AttrValue::String(z))]))
            })
            .boxed(),
        _ => "[a-c]{0,2}".prop_map(AttrValue::String).boxed(),
    }
}

/// A schema and a caller made for it: mostly fitting, sometimes not (a
/// value of another type, an undeclared or reserved attribute, a missing
/// required one).
fn schema_and_caller() -> impl Strategy<Value = (SchemaSpec, Identity)> {
    schema_spec()
        .prop_flat_map(|spec| {
            let mut declared: Vec<(usize, usize, bool)> = Vec::new();
            for &(name, ty, required) in &spec.extra {
                if !declared.iter().any(|(n, _, _)| *n == name) {
                    declared.push((name, ty, required));
                }
            }
            let values: Vec<_> = declared
                .iter()
                .map(|&(name, ty, required)| {
                    let ty =
                        prop_oneof![2 => Just(ty), 1 => prop::sample::select(vec![0, 1, 2, 3, 5])];
                    let keep = if required {
                        prop::bool::weighted(0.8)
                    } else {
                        prop::bool::weighted(0.5)
                    };
                    (Just(name), ty.prop_flat_map(value_of), keep)
                })
                .collect();
            let stray = prop::option::weighted(
                0.1,
                (prop::sample::select(vec!["zz", "tags", "sub"]), value_of(0)),
            );
            (
                Just(spec),
                values,
                stray,
                prop::collection::vec("[a-c]{1,2}", 0..3),
            )
        })
        .prop_map(|(spec, values, stray, tags)| {
            let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
            let mut caller = with_tags(identity("acme:a:1"), &tags);
            for (name, value, keep) in values {
                if keep {
                    caller.attrs.insert(NAMES[name].to_owned(), value);
                }
            }
            if let Some((name, value)) = stray {
                caller.attrs.insert(name.to_owned(), value);
            }
            (spec, caller)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn a_native_conforms_is_always_cedars_conforms((spec, caller) in schema_and_caller()) {
        let text = render(&spec);
        let Ok((schema, _)) = Schema::from_cedarschema_str(&text) else {
            // Not a schema Cedar accepts: nothing to compare.
            return Ok(());
        };
        let Some(shape) = WorkloadShape::from_schema_text(&text) else {
            return Ok(());
        };
        if shape.conforms(&caller) {
            let entity = entities::principal_entity(&caller);
            prop_assert!(entity.is_ok(), "{text}\n{caller:?}\n{entity:?}");
            let validated = entity.and_then(|entity| entities::validate_principal(&entity, &schema));
            prop_assert!(validated.is_ok(), "{text}\n{caller:?}\n{validated:?}");
        }
    }
}

#[test]
fn the_shipped_schema_is_checked_natively() {
    let text = std::fs::read_to_string(shipped_schema()).unwrap();
    let shape = WorkloadShape::from_schema_text(&text).expect("understood");
    let mut caller = with_tags(identity("system:serviceaccount:ns:sa"), &["t"]);
    caller
        .attrs
        .insert("namespace".to_owned(), AttrValue::String("ns".to_owned()));
    caller.authn = AuthnMethod::Jwt;
    assert!(shape.conforms(&caller));

    // What Cedar rejects, the native check never accepts.
    let mut undeclared = caller.clone();
    undeclared
        .attrs
        .insert("team".to_owned(), AttrValue::String("x".to_owned()));
    assert!(!shape.conforms(&undeclared));
    let mut mistyped = caller.clone();
    mistyped
        .attrs
        .insert("namespace".to_owned(), AttrValue::Long(1));
    assert!(!shape.conforms(&mistyped));
    let mut reserved = caller;
    reserved
        .attrs
        .insert("sub".to_owned(), AttrValue::String("x".to_owned()));
    assert!(!shape.conforms(&reserved));
}

#[test]
fn schemas_that_redefine_primitive_names_are_left_to_cedar() {
    for prelude in [
        "type String = Long;",
        "entity Long;",
        "entity Workload enum [\"a\"];",
    ] {
        let text = format!("{prelude}\nentity Workload {{ sub: String, iss: String, tags: Set<String>, authn: String }};");
        assert_eq!(WorkloadShape::from_schema_text(&text), None, "{prelude}");
    }
}
