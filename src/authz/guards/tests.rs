//! Guards: parsing from policies, `like` matching, and the index lookup.
//! (That dropping guarded-out policies never changes a decision is the
//! equivalence property test in `authz/tests/equivalence.rs`.)

use std::str::FromStr;

use cedar_policy::PolicySet;
use proptest::prelude::*;

use super::*;
use crate::authz::tests::{identity, with_tags};

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
    Index::new(&PolicySet::from_str(policies).unwrap()).unwrap()
}

fn candidate_ids(index: &Index, identity: &Identity) -> Vec<String> {
    let mut ids: Vec<String> = index
        .candidates(identity)
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
    assert_eq!(found.len(), 3, "{found:?}");
    assert_eq!(found[0], Guard::Uid("u".into()));
    assert!(matches!(found[1], Guard::Like(Field::Sub, _)));
    assert_eq!(found[2], Guard::HasTag("t".into()));
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
        r#"permit (principal, action, resource) when { context.mtls } when { principal.sub like "a*" };"#
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
    assert_eq!(index.stats(), (5, 3, 4));
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
fn equal_candidate_lists_share_one_policy_set() {
    let index = index(TEAMS);
    let first = index.candidates(&identity("acme:a:2"));
    let second = index.candidates(&identity("acme:a:3"));
    match (first, second) {
        (Candidates::Some(first), Candidates::Some(second)) => {
            assert!(Arc::ptr_eq(&first, &second))
        }
        _ => panic!("expected subsets"),
    }
    let all = index.candidates(&with_tags(identity("acme:a:1"), &["t", "blocked"]));
    assert!(
        matches!(all, Candidates::Some(_)),
        "b's sub guard fails, so not every policy is a candidate"
    );
}
