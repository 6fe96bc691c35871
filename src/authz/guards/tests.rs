//! Guards: parsing from policies, `like` matching, and the index lookup.
//! (That dropping guarded-out policies never changes a decision is the
//! equivalence property test in `authz/tests/equivalence.rs`.)

use std::str::FromStr;

use cedar_policy::PolicySet;
use proptest::prelude::*;

use super::*;
use crate::authz::tests::{identity, with_tags};
use crate::authz::{Decision, Effect, RequestInfo};

fn guards(policy: &str) -> Vec<Guard> {
    let set = PolicySet::from_str(policy).unwrap();
    let policy = set.policies().next().unwrap();
    of_policy(&policy.to_json().unwrap())
}

fn pattern(text: &str) -> Pattern {
    match guards(&format!(
        r#"permit (principal, action, resource) when {{ principal.sub like "{text}" }};"#
    ))
    .as_slice()
    {
        [Guard::Like(Field::Sub, pattern)] => pattern.clone(),
        other => panic!("{other:?}"),
    }
}

fn index(policies: &str) -> Index {
    Index::new(&PolicySet::from_str(policies).unwrap(), |_| true).unwrap()
}

fn get(path: &str) -> RequestInfo<'_> {
    RequestInfo {
        method: "GET",
        path,
        host: "orders.internal",
        query: "",
        source_ip: std::net::IpAddr::from([127, 0, 0, 1]),
        mtls: false,
    }
}

fn candidate_ids(index: &Index, identity: &Identity) -> Vec<String> {
    let found = index.candidate_positions(identity, &get("/"));
    let mut ids: Vec<String> = index
        .candidates(found)
        .policies()
        .policies()
        .map(|p| p.annotation("id").unwrap_or_default().to_owned())
        .collect();
    ids.sort();
    ids
}

#[test]
fn guards_are_the_leading_principal_conjuncts() {
    let found = guards(
        r#"permit (principal == Workload::"u", action, resource)
           when { principal.sub like "acme:*" && principal.tags.contains("t") && resource.path like "/a*" && principal.sub == "x" };"#,
    );
    // `resource.path like` never errors: the chain goes on past it (it is
    // a guard, not a principal guard).
    assert_eq!(found.len(), 4, "{found:?}");
    assert_eq!(found[0], Guard::Uid("u".into()));
    assert!(matches!(found[1], Guard::Like(Field::Sub, _)));
    assert_eq!(found[2], Guard::HasTag("t".into()));
    assert_eq!(found[3], Guard::Equals(Field::Sub, "x".into()));
}

#[test]
fn the_chain_stops_at_the_first_conjunct_that_is_not_a_guard() {
    // `principal.count` may overflow or be absent: everything after it could
    // be skipped by an error, so nothing after it is a guard.
    assert!(guards(
        r#"permit (principal, action, resource) when { principal.nick like "n*" && principal.sub like "a*" };"#
    )
    .is_empty());
    assert!(guards(
        r#"permit (principal, action, resource) when { context.source_ip.isLoopback() } when { principal.sub like "a*" };"#
    )
    .is_empty());
}

#[test]
fn unless_clauses_and_later_when_clauses_continue_the_chain() {
    let found = guards(
        r#"permit (principal, action, resource)
           unless { principal.authn == "jwt" }
           when { principal.sub like "a*" || principal has nick };"#,
    );
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(matches!(found[0], Guard::Not(_)));
    assert!(matches!(found[1], Guard::Or(_, _)));
}

#[test]
fn a_principal_scope_of_another_type_is_never_true() {
    let found = guards(r#"permit (principal == Other::"u", action, resource);"#);
    assert_eq!(found, [Guard::Const(false)]);
}

#[test]
fn patterns_match_as_cedar_like() {
    let cases = [
        ("a*", "a", true),
        ("a*", "ab", true),
        ("a*", "ba", false),
        ("*", "", true),
        ("", "", true),
        ("", "a", false),
        ("a*b", "ab", true),
        ("a*b", "aXb", true),
        ("a*b", "aXbY", false),
        ("ab*ba", "aba", false),
        ("ab*ba", "abba", true),
        ("*a*a*", "aa", true),
        ("*a*a*", "a", false),
        ("é*", "éa", true),
        ("*é", "aé", true),
        (r"a\*", "a*", true),
        (r"a\*", "ab", false),
    ];
    for (text, subject, expected) in cases {
        assert_eq!(
            pattern(text).matches(subject),
            expected,
            "{subject:?} like {text:?}"
        );
    }
}

/// The textbook recursive matcher over chars, as the reference.
fn reference(pattern: &[Option<char>], text: &[char]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((None, rest)) => (0..=text.len()).any(|skip| reference(rest, &text[skip..])),
        Some((Some(c), rest)) => text.first() == Some(c) && reference(rest, &text[1..]),
    }
}

proptest! {
    #[test]
    fn pattern_matching_equals_the_char_wise_reference(
        elements in prop::collection::vec(prop::option::of(prop::sample::select(vec!['a', 'b', 'é', '*'])), 0..8),
        text in prop::collection::vec(prop::sample::select(vec!['a', 'b', 'é', '*']), 0..10),
    ) {
        // `None` is a wildcard; `Some('*')` a literal star (escaped).
        let written: String = elements
            .iter()
            .map(|e| match e {
                None => "*".to_owned(),
                Some('*') => r"\*".to_owned(),
                Some(c) => c.to_string(),
            })
            .collect();
        let text_string: String = text.iter().collect();
        prop_assert_eq!(
            pattern(&written).matches(&text_string),
            reference(&elements, &text),
            "{:?} like {:?}", text_string, written
        );
    }
}

const TEAMS: &str = r#"
@id("a") permit (principal, action, resource) when { principal.sub like "acme:a:*" };
@id("a-exact") permit (principal, action, resource) when { principal.sub == "acme:a:1" };
@id("b") permit (principal, action, resource) when { principal.tags.contains("t") && principal.sub like "acme:b:*" };
@id("tagged") forbid (principal, action, resource) when { principal.tags.contains("blocked") };
@id("open") permit (principal, action, resource) when { resource.path like "/public/*" };
"#;

#[test]
fn the_index_finds_exactly_the_policies_whose_guards_hold() {
    let index = index(TEAMS);
    assert_eq!(index.stats(), (5, 4, 4), "`tagged` is indexed by its tag");
    assert_eq!(
        candidate_ids(&index, &identity("acme:a:1")),
        ["a", "a-exact", "open"]
    );
    assert_eq!(candidate_ids(&index, &identity("acme:a:2")), ["a", "open"]);
    assert_eq!(
        candidate_ids(&index, &identity("acme:b:1")),
        ["open"],
        "no tag t"
    );
    assert_eq!(
        candidate_ids(&index, &with_tags(identity("acme:b:1"), &["t", "blocked"])),
        ["b", "open", "tagged"]
    );
    assert_eq!(candidate_ids(&index, &identity("acme")), ["open"]);
    assert_eq!(
        candidate_ids(&index, &identity("é")),
        ["open"],
        "no char boundary at 7"
    );
}

#[test]
fn a_tag_listed_twice_finds_its_policies_once() {
    let index = index(TEAMS);
    let twice = with_tags(identity("acme:a:1"), &["blocked", "blocked"]);
    assert_eq!(
        index.candidate_positions(&twice, &get("/")),
        index.candidate_positions(&with_tags(identity("acme:a:1"), &["blocked"]), &get("/"))
    );
    assert_eq!(
        candidate_ids(&index, &twice),
        ["a", "a-exact", "open", "tagged"]
    );
    let denied = decided(&index, &twice, &get("/x")).unwrap();
    assert_eq!(denied.policy_ids, ["policy3"]);
}

#[test]
fn equal_candidate_lists_share_one_policy_set() {
    let index = index(TEAMS);
    let positions = |sub: &str| index.candidate_positions(&identity(sub), &get("/"));
    let first = index.candidates(positions("acme:a:2"));
    let second = index.candidates(positions("acme:a:3"));
    match (first, second) {
        (Candidates::Some(first), Candidates::Some(second)) => {
            assert!(Arc::ptr_eq(&first, &second))
        }
        _ => panic!("expected subsets"),
    }
    let all = index.candidates(index.candidate_positions(
        &with_tags(identity("acme:a:1"), &["t", "blocked"]),
        &get("/"),
    ));
    assert!(
        matches!(all, Candidates::Some(_)),
        "b's sub guard fails, so not every policy is a candidate"
    );
}

fn decided(index: &Index, identity: &Identity, request: &RequestInfo<'_>) -> Option<Decision> {
    match index.decide(identity, request) {
        Outcome::Decided(decision) => Some(decision),
        Outcome::Evaluate(_) => None,
    }
}

#[test]
fn complete_candidates_are_decided_without_cedar_as_cedar_would() {
    let index = index(TEAMS);
    let allowed = decided(&index, &identity("acme:a:1"), &get("/x")).unwrap();
    assert_eq!(allowed.effect, Effect::Allow);
    assert_eq!(
        allowed.policy_ids,
        ["policy0", "policy1"],
        "every satisfied permit, sorted"
    );
    let blocked = with_tags(identity("acme:a:1"), &["blocked"]);
    let denied = decided(&index, &blocked, &get("/x")).unwrap();
    assert_eq!(
        (denied.effect, denied.policy_ids),
        (Effect::Deny, vec!["policy3".to_owned()]),
        "forbid wins"
    );
    let nobody = decided(&index, &identity("other"), &get("/x")).unwrap();
    assert_eq!(
        (nobody.effect, nobody.policy_ids.len()),
        (Effect::Deny, 0),
        "default deny"
    );
    let public = decided(&index, &identity("other"), &get("/public/a")).unwrap();
    assert_eq!(public.policy_ids, ["policy4"]);
}

#[test]
fn a_candidate_with_a_condition_wisp_cannot_evaluate_goes_to_cedar() {
    let index = index(
        r#"
        permit (principal, action, resource) when { principal.sub like "acme:a:*" && context.source_ip.isLoopback() };
        permit (principal, action, resource) when { principal.sub like "acme:b:*" };
        "#,
    );
    assert!(decided(&index, &identity("acme:a:1"), &get("/")).is_none());
    assert!(
        decided(&index, &identity("acme:b:1"), &get("/")).is_some(),
        "the incomplete policy is not a candidate for acme:b"
    );
}

#[test]
fn request_fields_and_scopes_are_native() {
    let complete = |policy: &str| {
        let set = PolicySet::from_str(policy).unwrap();
        let json = set.policies().next().unwrap().to_json().unwrap();
        analyze(&json, true).complete
    };
    for policy in [
        r#"permit (principal, action, resource == Route::"/a");"#,
        r#"permit (principal in Workload::"u", action, resource is Route);"#,
        r#"permit (principal, action, resource) when { context.mtls && context.method == "GET" && resource.host like "*.internal" && context.query != "debug" };"#,
        r#"permit (principal, action, resource) unless { context.mtls == false };"#,
        r#"forbid (principal, action, resource) when { resource == Route::"/admin" || principal.iss == "https://x" };"#,
    ] {
        assert!(complete(policy), "{policy}");
    }
    for policy in [
        r#"permit (principal, action, resource) when { principal.nick == "x" };"#,
        r#"permit (principal, action, resource) when { context.source_ip == ip("127.0.0.1") };"#,
        r#"permit (principal, action, resource) when { principal.sub == context.query };"#,
        r#"permit (principal, action, resource) when { resource.path.isEmpty() };"#,
    ] {
        assert!(!complete(policy), "{policy}");
    }
    let set = PolicySet::from_str(r#"permit (principal, action, resource);"#).unwrap();
    let json = set.policies().next().unwrap().to_json().unwrap();
    assert!(
        !analyze(&json, false).complete,
        "an action scope that does not hold"
    );
}
