use std::collections::BTreeMap;
use std::net::IpAddr;

use super::super::{Authorizer, Effect, Principal, RequestInfo};
use super::{
    authorizer, authorizer_with_schema, decide, demo, identity, request, shipped_schema, with_attr,
    with_tags,
};
use crate::identity::AttrValue;

/// A schema with a `count: Long` and typed claim attributes, for tests the
/// shipped schema cannot express.
const TYPED_SCHEMA: &str = r#"
entity Workload {
  sub: String, iss: String, tags: Set<String>, authn: String,
  count: Long,
  admin?: Bool,
  groups?: Set<String>,
  team?: { name: String, size: Long }
};
entity Route { path: String, host: String };
type Ctx = { method: String, source_ip: ipaddr, query: String, mtls: Bool };
action GET appliesTo { principal: [Workload], resource: [Route], context: Ctx };
"#;

#[test]
fn allows_by_sub_prefix_and_denies_other_subjects() {
    let demo = demo();
    let allowed = decide(
        &demo,
        &identity("acme:frontend:web-1"),
        "GET",
        "/api/orders",
    );
    assert_eq!(allowed.effect, Effect::Allow);
    assert_eq!(allowed.policy_ids, ["frontend-reads-api"]);
    assert!(allowed.errors.is_empty());

    let denied = decide(&demo, &identity("acme:batch:job-7"), "GET", "/api/orders");
    assert_eq!(denied.effect, Effect::Deny);
    assert!(denied.policy_ids.is_empty(), "default deny names no policy");
    assert!(denied.errors.is_empty());
}

#[test]
fn allows_by_tag() {
    let demo = demo();
    let admin = with_tags(identity("acme:ops:alice"), &["tag:prod", "tag:admin"]);
    let decision = decide(&demo, &admin, "DELETE", "/api/orders/7");
    assert_eq!(decision.effect, Effect::Allow);
    assert_eq!(decision.policy_ids, ["admins-write-api"]);

    let not_admin = with_tags(identity("acme:ops:bob"), &["tag:prod"]);
    assert_eq!(
        decide(&demo, &not_admin, "DELETE", "/api/orders/7").effect,
        Effect::Deny
    );
}

#[test]
fn action_groups_cover_their_methods_only() {
    let demo = demo();
    let frontend = identity("acme:frontend:web-1");
    for method in ["GET", "HEAD", "OPTIONS"] {
        assert_eq!(
            decide(&demo, &frontend, method, "/api/x").effect,
            Effect::Allow,
            "{method}"
        );
    }
    for method in ["POST", "PUT", "PATCH", "DELETE"] {
        assert_eq!(
            decide(&demo, &frontend, method, "/api/x").effect,
            Effect::Deny,
            "{method}"
        );
    }
}

#[test]
fn allows_by_path_only_where_the_policy_says() {
    let demo = demo();
    let frontend = identity("acme:frontend:web-1");
    assert_eq!(
        decide(&demo, &frontend, "GET", "/api/orders").effect,
        Effect::Allow
    );
    assert_eq!(
        decide(&demo, &frontend, "GET", "/apix").effect,
        Effect::Deny
    );
    assert_eq!(decide(&demo, &frontend, "GET", "/").effect, Effect::Deny);
}

#[test]
fn no_policies_deny_by_default() {
    let empty = authorizer("");
    let decision = decide(
        &empty,
        &identity("acme:frontend:web-1"),
        "GET",
        "/api/orders",
    );
    assert_eq!(decision.effect, Effect::Deny);
    assert!(decision.policy_ids.is_empty() && decision.errors.is_empty());
}

#[test]
fn forbid_wins_over_permit() {
    let policies = r#"
        @id("everyone") permit (principal, action, resource);
        @id("no-admin") forbid (principal, action, resource) when { resource.path like "/admin*" };
    "#;
    let authorizer = authorizer(policies);
    let caller = identity("acme:frontend:web-1");
    let denied = decide(&authorizer, &caller, "GET", "/admin/users");
    assert_eq!(denied.effect, Effect::Deny);
    assert_eq!(denied.policy_ids, ["no-admin"]);
    assert_eq!(
        decide(&authorizer, &caller, "GET", "/api").effect,
        Effect::Allow
    );
}

#[test]
fn an_erroring_forbid_denies_and_names_the_policy() {
    let policies = r#"
        @id("everyone") permit (principal, action, resource);
        @id("overflowing-forbid") forbid (principal, action, resource)
        when { principal.count + 9223372036854775807 > 0 };
    "#;
    let authorizer = authorizer_with_schema(TYPED_SCHEMA, policies);
    let caller = with_attr(identity("svc"), "count", AttrValue::Long(1));
    let decision = decide(&authorizer, &caller, "GET", "/api");
    assert_eq!(decision.effect, Effect::Deny);
    assert!(decision.policy_ids.is_empty(), "{decision:?}");
    assert_eq!(decision.errors.len(), 1, "{decision:?}");
    assert!(
        decision.errors[0].starts_with("overflowing-forbid: "),
        "{decision:?}"
    );

    let no_overflow = with_attr(identity("svc"), "count", AttrValue::Long(i64::MIN));
    assert_eq!(
        decide(&authorizer, &no_overflow, "GET", "/api").effect,
        Effect::Allow
    );
}

#[test]
fn claims_of_every_type_reach_policies() {
    let policies = r#"
        permit (principal, action, resource)
        when {
          principal.count == 3 &&
          principal has admin && principal.admin &&
          principal has groups && principal.groups.contains("ops") &&
          principal has team && principal.team.name == "payments" && principal.team.size == 4
        };
    "#;
    let authorizer = authorizer_with_schema(TYPED_SCHEMA, policies);
    let team = BTreeMap::from([
        ("name".to_owned(), AttrValue::String("payments".to_owned())),
        ("size".to_owned(), AttrValue::Long(4)),
    ]);
    let caller = [
        ("count", AttrValue::Long(3)),
        ("admin", AttrValue::Bool(true)),
        ("groups", AttrValue::Set(vec!["ops".to_owned()])),
        ("team", AttrValue::Record(team)),
    ]
    .into_iter()
    .fold(identity("svc"), |identity, (name, value)| {
        with_attr(identity, name, value)
    });
    assert_eq!(
        decide(&authorizer, &caller, "GET", "/").effect,
        Effect::Allow
    );
}

#[test]
fn unknown_method_denies_with_an_error() {
    let authorizer = authorizer("permit (principal, action, resource);");
    let decision = decide(&authorizer, &identity("svc"), "BREW", "/");
    assert_eq!(decision.effect, Effect::Deny);
    assert_eq!(decision.errors.len(), 1);
    assert!(decision.errors[0].contains("BREW"), "{decision:?}");
}

#[test]
fn action_group_names_are_not_methods() {
    let demo = demo();
    let frontend = identity("acme:frontend:web-1");
    for method in ["read", "write", "get"] {
        let decision = decide(&demo, &frontend, method, "/api/orders");
        assert_eq!(decision.effect, Effect::Deny, "{method}");
        assert!(!decision.errors.is_empty(), "{method}");
    }
}

#[test]
fn claim_of_the_wrong_type_is_rejected_when_building_the_principal() {
    let authorizer = demo();
    let caller = with_attr(identity("svc"), "namespace", AttrValue::Long(7));
    let err = authorizer.principal(caller.clone()).unwrap_err();
    assert!(err.contains("namespace"), "{err}");
}

#[test]
fn undeclared_attribute_is_rejected_when_building_the_principal() {
    let authorizer = demo();
    let caller = with_attr(
        identity("svc"),
        "colour",
        AttrValue::String("red".to_owned()),
    );
    let err = authorizer.principal(caller.clone()).unwrap_err();
    assert!(err.contains("colour"), "{err}");
}

#[test]
fn claims_cannot_override_built_in_attributes() {
    let authorizer = demo();
    let caller = with_attr(
        identity("svc"),
        "sub",
        AttrValue::String("acme:frontend:x".to_owned()),
    );
    let err = authorizer.principal(caller.clone()).unwrap_err();
    assert!(err.contains("`sub`"), "{err}");
}

#[test]
fn declared_optional_claims_are_accepted() {
    let authorizer = demo();
    let caller = with_attr(
        identity("svc"),
        "namespace",
        AttrValue::String("prod".to_owned()),
    );
    let principal = authorizer.principal(caller.clone()).unwrap();
    let json = principal.to_json().unwrap();
    assert_eq!(json["attrs"]["namespace"], "prod");
    assert_eq!(principal.uid(), r#"Workload::"https://issuer.example#svc""#);
}

#[test]
fn context_carries_host_query_source_ip_and_mtls() {
    let policies = r#"
        permit (principal, action, resource)
        when {
          resource.host == "orders.internal" && context.query == "a=1" && context.mtls &&
          context.method == "GET" && context.source_ip.isInRange(ip("10.0.0.0/8"))
        };
    "#;
    let authorizer = authorizer(policies);
    let principal = authorizer.principal(identity("svc")).unwrap();
    let mapped: IpAddr = "::ffff:10.9.9.9".parse().unwrap();
    let mut info = RequestInfo {
        query: "a=1",
        mtls: true,
        source_ip: mapped,
        ..request("GET", "/")
    };
    assert_eq!(
        authorizer.authorize(&principal, &info).effect,
        Effect::Allow
    );
    info.source_ip = "2001:db8::1".parse().unwrap();
    assert_eq!(authorizer.authorize(&principal, &info).effect, Effect::Deny);
    info.source_ip = IpAddr::from([10, 0, 0, 1]);
    info.mtls = false;
    assert_eq!(authorizer.authorize(&principal, &info).effect, Effect::Deny);
}

#[test]
fn principal_built_before_a_reload_is_revalidated_against_the_new_schema() {
    let old = demo();
    let caller = with_attr(
        identity("acme:frontend:web-1"),
        "namespace",
        AttrValue::String("prod".to_owned()),
    );
    let principal: Principal = old.principal(caller.clone()).unwrap();

    let reloaded = Authorizer::load(&shipped_schema(), &super::shipped_policies()).unwrap();
    let decision = reloaded.authorize(&principal, &request("GET", "/api/orders"));
    assert_eq!(decision.effect, Effect::Allow);

    let narrower = authorizer_with_schema(TYPED_SCHEMA, "permit (principal, action, resource);");
    let decision = narrower.authorize(&principal, &request("GET", "/"));
    assert_eq!(decision.effect, Effect::Deny);
    assert!(decision.errors[0].contains("schema"), "{decision:?}");
}

#[test]
fn authorizer_and_principal_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Authorizer>();
    assert_send_sync::<Principal>();
}
