use std::collections::BTreeMap;
use std::net::IpAddr;

use proptest::prelude::*;

use super::super::{Effect, RequestInfo};
use super::{demo, identity, renamed};
use crate::identity::AttrValue;

fn attr_value() -> impl Strategy<Value = AttrValue> {
    let leaf = prop_oneof![
        ".{0,12}".prop_map(AttrValue::String),
        any::<i64>().prop_map(AttrValue::Long),
        any::<bool>().prop_map(AttrValue::Bool),
        prop::collection::vec(".{0,8}", 0..4).prop_map(AttrValue::Set),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop::collection::btree_map("[a-z]{1,6}", inner, 0..3).prop_map(AttrValue::Record)
    })
}

fn attr_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("namespace".to_owned()),
        Just("ref".to_owned()),
        Just("region".to_owned()),
        Just("tags".to_owned()),
        "[a-z_]{1,10}",
    ]
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("GET".to_owned()),
        Just("POST".to_owned()),
        Just("read".to_owned()),
        "[A-Za-z]{0,8}",
        ".{0,8}",
    ]
}

proptest! {
    #[test]
    fn authorize_never_panics_and_allow_always_names_a_policy(
        sub in prop_oneof![Just("acme:frontend:web-1".to_owned()), ".{0,24}"],
        uid in ".{0,24}",
        tags in prop::collection::vec(prop_oneof![Just("tag:admin".to_owned()), ".{0,10}"], 0..4),
        attrs in prop::collection::btree_map(attr_name(), attr_value(), 0..4),
        method in method(),
        path in prop_oneof![Just("/api/orders".to_owned()), Just("/admin".to_owned()), ".{0,24}"],
        host in ".{0,16}",
        query in ".{0,16}",
        ip in any::<IpAddr>(),
        mtls in any::<bool>(),
    ) {
        let authorizer = demo();
        // A tag never holds the tags header's separator (the identity builders reject one).
        let tags: Vec<String> = tags.iter().map(|tag| tag.replace(',', ";")).collect();
        let mut caller = renamed(&identity(&sub), &uid, &sub, &tags);
        caller.attrs = attrs.into_iter().collect::<BTreeMap<_, _>>();
        if let Ok(principal) = authorizer.principal(caller.clone()) {
            let request = RequestInfo {
                method: &method,
                path: &path,
                host: &host,
                query: &query,
                source_ip: ip,
                mtls,
            };
            let decision = authorizer.authorize(&principal, &request);
            if decision.effect == Effect::Allow {
                prop_assert!(decision.errors.is_empty());
                prop_assert!(!decision.policy_ids.is_empty());
            }
        }
    }
}
