//! The decision cache and the action slices: reloads, principal keys, the
//! bound, and what the key leaves out.

use std::str::FromStr;

use cedar_policy::PolicySet;

use super::super::cache::Reads;
use super::super::{Authorizer, AuthorizerOptions, Effect};
use super::{authorizer, demo, dir_with, identity, renamed, request, shipped_schema, with_tags};

const TAG_PERMIT: &str = r#"
@id("t1-reads")
permit (principal, action in Action::"read", resource) when { principal.tags.contains("t1") };
"#;

fn reads(policies: &str) -> Reads {
    Reads::of(&PolicySet::from_str(policies).unwrap())
}

#[test]
fn a_reloaded_authorizer_never_serves_a_decision_of_the_previous_one() {
    let before = authorizer(TAG_PERMIT);
    let caller = with_tags(identity("a"), &["t1"]);
    let principal = before.principal(caller.clone()).unwrap();
    let asked = request("GET", "/x");
    assert_eq!(before.authorize(&principal, &asked).effect, Effect::Allow);
    assert_eq!(before.authorize(&principal, &asked).effect, Effect::Allow);

    let after = authorizer(
        r#"forbid (principal, action, resource) when { principal.tags.contains("t1") };"#,
    );
    // The principal was built by `before`; `after` must not reuse anything.
    let decision = after.authorize(&principal, &asked);
    assert_eq!(decision.effect, Effect::Deny);
    assert_eq!(decision.policy_ids, ["policies.cedar#0"]);
    assert_eq!(before.authorize(&principal, &asked).effect, Effect::Allow);
}

#[test]
fn principals_are_cached_by_entity_content_not_by_uid_or_instance() {
    let authorizer = authorizer(TAG_PERMIT);
    let tagged = authorizer
        .principal(with_tags(identity("a"), &["t1"]))
        .unwrap();
    let untagged = authorizer.principal(identity("a")).unwrap();
    assert_eq!(tagged.uid(), untagged.uid(), "same Cedar uid");
    let asked = request("GET", "/x");
    assert_eq!(authorizer.authorize(&tagged, &asked).effect, Effect::Allow);
    assert_eq!(
        authorizer.authorize(&untagged, &asked).effect,
        Effect::Deny,
        "same uid, other attributes: never the tagged principal's decision"
    );
    assert_eq!(authorizer.cache.entry_count(), 2);

    // The same workload verified again (a new token, the cache off, an
    // eviction): another instance, another exp, the same entity.
    let mut again = with_tags(identity("a"), &["t1"]);
    again.expires_at -= 60;
    again.bound_certificate = Some(Box::new([7; 32]));
    let rebuilt = authorizer.principal(again).unwrap();
    assert_eq!(authorizer.authorize(&rebuilt, &asked).effect, Effect::Allow);
    assert_eq!(
        authorizer.cache.entry_count(),
        2,
        "the decision made for the same entity is reused"
    );

    // Any attribute that reaches the entity tells principals apart.
    let same = with_tags(identity("a"), &["t1"]);
    let other_sub = renamed(&same, same.uid(), "b", &["t1"]);
    let other_sub = authorizer.principal(other_sub).unwrap();
    assert_eq!(
        authorizer.authorize(&other_sub, &asked).effect,
        Effect::Allow
    );
    assert_eq!(authorizer.cache.entry_count(), 3);
}

#[test]
fn the_cache_holds_at_most_its_capacity() {
    let dir = dir_with(&[("policies.cedar", TAG_PERMIT)]);
    let options = AuthorizerOptions {
        decision_cache_entries: 16,
        ..AuthorizerOptions::default()
    };
    let authorizer = Authorizer::load_with(&shipped_schema(), dir.path(), options).unwrap();
    let principal = authorizer
        .principal(with_tags(identity("a"), &["t1"]))
        .unwrap();
    for n in 0..1000 {
        let path = format!("/items/{n}");
        let decision = authorizer.authorize(&principal, &request("GET", &path));
        assert_eq!(decision.effect, Effect::Allow);
    }
    let held = authorizer.cache.entry_count();
    assert!(held <= 16, "{held} entries");
}

/// Denies every request, reading `resource.path` and `resource.host` (so
/// both are in the key).
const PATH_FORBID: &str = r#"
@id("deny-admin")
forbid (principal, action, resource) when { resource.path like "/admin*" || resource.host == "admin.example" };
"#;

#[test]
fn an_entry_weighs_its_key_and_decision_bytes() {
    let authorizer = authorizer(PATH_FORBID);
    let principal = authorizer.principal(identity("a")).unwrap();
    let path = "/admin/some/path";
    let decision = authorizer.authorize(&principal, &request("GET", path));
    assert_eq!(decision.effect, Effect::Deny);
    assert_eq!(decision.policy_ids, ["deny-admin"]);
    let want = 256 + "GET".len() + path.len() + "orders.internal".len() + "deny-admin".len() + 24;
    assert_eq!(
        authorizer.decision_cache_usage(),
        (1, u64::try_from(want).unwrap())
    );
}

#[test]
fn the_cache_holds_at_most_its_bytes_and_never_an_oversized_key() {
    let dir = dir_with(&[("policies.cedar", PATH_FORBID)]);
    let max_bytes = 256 << 10;
    let options = AuthorizerOptions {
        decision_cache_entries: 10_000,
        decision_cache_bytes: max_bytes,
        ..AuthorizerOptions::default()
    };
    let authorizer = Authorizer::load_with(&shipped_schema(), dir.path(), options).unwrap();
    let principal = authorizer.principal(identity("a")).unwrap();
    let evicted_before = super::super::decision_cache_evictions();
    // 3 KiB keys: cached, and evicted to stay within the bound.
    for n in 0..500 {
        let path = format!("/admin/{n}/{}", "x".repeat(3 << 10));
        let decision = authorizer.authorize(&principal, &request("GET", &path));
        assert_eq!(decision.effect, Effect::Deny);
    }
    let (entries, bytes) = authorizer.decision_cache_usage();
    assert!(bytes <= max_bytes, "{bytes} bytes in {entries} entries");
    assert!(
        entries >= 20,
        "the bound holds many 3 KiB entries: {entries}"
    );
    assert!(super::super::decision_cache_evictions() > evicted_before);

    // Over MAX_CACHED_KEY_BYTES (path + host + query): decided, not cached.
    let cold = Authorizer::load_with(&shipped_schema(), dir.path(), options).unwrap();
    let principal = cold.principal(identity("a")).unwrap();
    for n in 0..50 {
        let path = format!("/admin/{n}/{}", "x".repeat(60 << 10));
        let decision = cold.authorize(&principal, &request("GET", &path));
        assert_eq!(decision.effect, Effect::Deny);
        assert_eq!(decision.policy_ids, ["deny-admin"]);
    }
    let longest = "x".repeat(crate::authz::MAX_CACHED_KEY_BYTES - "orders.internal".len());
    let decision = cold.authorize(&principal, &request("GET", &longest));
    assert_eq!(decision.effect, Effect::Deny);
    assert!(decision.policy_ids.is_empty(), "a default deny");
    assert_eq!(
        cold.decision_cache_usage().0,
        1,
        "only the key at the limit"
    );
}

#[test]
fn unknown_methods_are_answered_without_filling_the_cache() {
    let authorizer = demo();
    let principal = authorizer.principal(identity("a")).unwrap();
    for method in ["BREW", "read", "get"] {
        let decision = authorizer.authorize(&principal, &request(method, "/"));
        assert_eq!(decision.effect, Effect::Deny);
        assert_eq!(decision.errors.len(), 1);
    }
    assert_eq!(authorizer.cache.entry_count(), 0);
}

#[test]
fn a_disabled_cache_still_decides() {
    let dir = dir_with(&[("policies.cedar", TAG_PERMIT)]);
    let options = AuthorizerOptions {
        decision_cache_entries: 0,
        decision_cache_bytes: 0,
        slice_by_action: false,
        index_principals: false,
    };
    let authorizer = Authorizer::load_with(&shipped_schema(), dir.path(), options).unwrap();
    let principal = authorizer
        .principal(with_tags(identity("a"), &["t1"]))
        .unwrap();
    let decision = authorizer.authorize(&principal, &request("GET", "/"));
    assert_eq!(decision.effect, Effect::Allow);
    assert_eq!(decision.policy_ids, ["t1-reads"]);
    assert_eq!(authorizer.cache.entry_count(), 0);
}

#[test]
fn the_key_leaves_out_host_source_ip_and_query_when_no_policy_reads_them() {
    let none = reads(
        r#"permit (principal, action, resource) when { principal.sub like "a*" && resource.path like "/a*" && context.mtls && context.method == "GET" };"#,
    );
    assert_eq!(
        none,
        Reads {
            host: false,
            source_ip: false,
            query: false
        }
    );
    assert_eq!(authorizer(TAG_PERMIT).cache.reads(), none);
}

#[test]
fn the_key_keeps_each_field_some_policy_reads() {
    let cases = [
        (
            r#"permit (principal, action, resource) when { resource.host == "h" };"#,
            (true, false, false),
        ),
        (
            r#"permit (principal, action, resource) unless { context.source_ip.isInRange(ip("10.0.0.0/8")) };"#,
            (false, true, false),
        ),
        (
            r#"forbid (principal, action, resource) when { context has query && context["query"] == "" };"#,
            (false, false, true),
        ),
        // An entity literal reads the request's route when the paths agree.
        (
            r#"permit (principal, action, resource) when { Route::"/a".host == "h" };"#,
            (true, false, false),
        ),
        // The whole context, not one attribute of it.
        (
            r#"permit (principal, action, resource) when { context == {method: "GET"} };"#,
            (false, true, true),
        ),
    ];
    for (policy, (host, source_ip, query)) in cases {
        let read = reads(policy);
        assert_eq!(read.host, host, "{policy}");
        assert_eq!(read.source_ip, source_ip, "{policy}");
        assert_eq!(read.query, query, "{policy}");
    }
}

#[test]
fn slices_hold_only_policies_whose_action_scope_can_match() {
    let authorizer = authorizer(
        r#"
        @id("any") permit (principal, action, resource);
        @id("read") permit (principal, action in Action::"read", resource);
        @id("write") permit (principal, action in Action::"write", resource);
        @id("get") permit (principal, action == Action::"GET", resource);
        @id("list") permit (principal, action in [Action::"HEAD", Action::"write"], resource);
        "#,
    );
    let ids = |method: &str| {
        let mut ids: Vec<String> = authorizer.slices[method]
            .policies
            .policies()
            .map(|policy| policy.id().to_string())
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(ids("GET"), ["any", "get", "read"]);
    assert_eq!(ids("HEAD"), ["any", "list", "read"]);
    assert_eq!(ids("POST"), ["any", "list", "write"]);
    assert_eq!(ids("OPTIONS"), ["any", "read"]);
}
