//! The fast path (slicing + principal-guard index + decision cache) decides exactly as evaluating the
//! whole policy set, on random policy sets, principals and request sequences.

use std::net::IpAddr;

use proptest::prelude::*;

use super::super::{Authorizer, AuthorizerOptions, Principal, RequestInfo};
use super::{dir_with, identity, renamed, with_attr, with_tags};
use crate::identity::{AttrValue, AuthnMethod};

/// wisp's model plus a required Long (for overflow errors) and an optional
/// String (read behind `has`, as strict validation demands).
const SCHEMA: &str = r#"
entity Workload { sub: String, iss: String, tags: Set<String>, authn: String, count: Long, nick?: String };
entity Route { path: String, host: String };
type Ctx = { method: String, source_ip: ipaddr, query: String, mtls: Bool };
action read, write appliesTo { principal: [Workload], resource: [Route], context: Ctx };
action GET, HEAD in [read] appliesTo { principal: [Workload], resource: [Route], context: Ctx };
action POST, DELETE in [write] appliesTo { principal: [Workload], resource: [Route], context: Ctx };
"#;

const ACTION_SCOPES: &[&str] = &[
    "action",
    r#"action == Action::"GET""#,
    r#"action == Action::"POST""#,
    r#"action == Action::"read""#,
    r#"action in Action::"read""#,
    r#"action in Action::"write""#,
    r#"action in [Action::"GET", Action::"DELETE"]"#,
    r#"action in [Action::"read", Action::"POST"]"#,
];

const PRINCIPAL_SCOPES: &[&str] = &[
    "principal",
    "principal",
    r#"principal == Workload::"u1""#,
    "principal is Workload",
];

const RESOURCE_SCOPES: &[&str] = &["resource", "resource", r#"resource == Route::"/a""#];

/// Condition atoms; the last ones error at runtime for some inputs.
const ATOMS: &[&str] = &[
    r#"principal.sub like "a*""#,
    r#"principal.sub like "ab*""#,
    r#"principal.tags.contains("t1")"#,
    r#"principal.tags.contains("t2")"#,
    r#"principal.authn == "jwt""#,
    r#"principal has nick && principal.nick like "n*""#,
    // Names action entities in a condition: requests then carry every
    // action entity, not just their own action's (`slices.rs`).
    r#"Action::"GET" in Action::"read" && !(Action::"POST" in Action::"read")"#,
    r#"action in Action::"write""#,
    // Principal guards of every shape the index understands.
    r#"principal.sub == "a1""#,
    r#""ab2" == principal.sub"#,
    r#"principal.sub != "nx""#,
    r#"principal.sub like "nx""#,
    r#"principal.sub like "*b*""#,
    r#"principal.sub like "a*2""#,
    r#"principal.sub like "é*""#,
    r#"principal.sub like "**""#,
    r#"principal.iss like "https://*.example""#,
    r#"principal has nick"#,
    r#"principal == Workload::"u2""#,
    r#"principal.tags.contains("t3") || principal.sub like "b*""#,
    r#"!(principal.sub like "a*" && principal.authn == "jwt+mtls")"#,
    r#"resource.path like "/a*""#,
    r#"resource.host == "h1""#,
    r#"context.source_ip.isInRange(ip("10.0.0.0/8"))"#,
    r#"context.query == "x=1""#,
    "context.mtls",
    r#"context.method == "GET""#,
    // Overflows when `count` is i64::MAX.
    "principal.count + 1 > 0",
    // Overflows when |count| > i64::MAX / 2.
    "principal.count * 2 < 7",
    // Errors (no such entity) unless the request's path is `/a`; reads `host`.
    r#"Route::"/a".host == "h1""#,
];

/// One `when`/`unless` clause: atoms (indices into the set's allowed atoms),
/// joined by `&&` or `||`, each maybe negated.
#[derive(Debug, Clone)]
struct Clause {
    unless: bool,
    any: bool,
    atoms: Vec<(bool, usize)>,
}

#[derive(Debug, Clone)]
struct PolicySpec {
    forbid: bool,
    principal: usize,
    action: usize,
    resource: usize,
    clauses: Vec<Clause>,
}

fn clause() -> impl Strategy<Value = Clause> {
    (
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec((prop::bool::weighted(0.2), 0..ATOMS.len()), 1..=3),
    )
        .prop_map(|(unless, any, atoms)| Clause { unless, any, atoms })
}

fn policy() -> impl Strategy<Value = PolicySpec> {
    (
        prop::bool::weighted(0.3),
        0..PRINCIPAL_SCOPES.len(),
        0..ACTION_SCOPES.len(),
        0..RESOURCE_SCOPES.len(),
        prop::collection::vec(clause(), 0..=2),
    )
        .prop_map(
            |(forbid, principal, action, resource, clauses)| PolicySpec {
                forbid,
                principal,
                action,
                resource,
                clauses,
            },
        )
}

/// The policy file: each set draws its atoms from a random subset of
/// [`ATOMS`], so some sets read no host, source IP or query (and the cache
/// key leaves them out).
fn render(allowed: &[usize], policies: &[PolicySpec]) -> String {
    let mut text = String::new();
    for (n, policy) in policies.iter().enumerate() {
        let effect = if policy.forbid { "forbid" } else { "permit" };
        text.push_str(&format!(
            "@id(\"p{n}\")\n{effect} ({}, {}, {})",
            PRINCIPAL_SCOPES[policy.principal],
            ACTION_SCOPES[policy.action],
            RESOURCE_SCOPES[policy.resource],
        ));
        for clause in &policy.clauses {
            let joiner = if clause.any { " || " } else { " && " };
            let body: Vec<String> = clause
                .atoms
                .iter()
                .map(|&(negated, atom)| {
                    let atom = ATOMS[allowed[atom % allowed.len()]];
                    if negated {
                        format!("!({atom})")
                    } else {
                        format!("({atom})")
                    }
                })
                .collect();
            let kind = if clause.unless { "unless" } else { "when" };
            text.push_str(&format!("\n{kind} {{ {} }}", body.join(joiner)));
        }
        text.push_str(";\n");
    }
    text
}

#[derive(Debug, Clone)]
struct Caller {
    uid: &'static str,
    sub: &'static str,
    tags: Vec<&'static str>,
    count: i64,
    nick: Option<&'static str>,
    mtls: bool,
}

fn caller() -> impl Strategy<Value = Caller> {
    (
        prop::sample::select(vec!["u1", "u2"]),
        prop::sample::select(vec!["a1", "ab2", "b3", "nx", "é1", "éa", ""]),
        // Repeats allowed: a token may list a tag twice.
        prop::collection::vec(prop::sample::select(vec!["t1", "t2", "t3"]), 0..=3),
        prop::sample::select(vec![0, 5, -3, i64::MAX, i64::MIN, i64::MAX / 2 + 1]),
        prop::option::of(prop::sample::select(vec!["n1", "m2"])),
        any::<bool>(),
    )
        .prop_map(|(uid, sub, tags, count, nick, mtls)| Caller {
            uid,
            sub,
            tags,
            count,
            nick,
            mtls,
        })
}

fn build(authorizer: &Authorizer, caller: &Caller) -> Principal {
    let mut built = with_attr(
        with_tags(identity(caller.sub), &caller.tags),
        "count",
        AttrValue::Long(caller.count),
    );
    built = renamed(&built, caller.uid, caller.sub, &caller.tags);
    if let Some(nick) = caller.nick {
        built = with_attr(built, "nick", AttrValue::String(nick.to_owned()));
    }
    if caller.mtls {
        built.authn = AuthnMethod::JwtAndMtls;
    }
    authorizer.principal(built).unwrap()
}

#[derive(Debug, Clone)]
struct Question {
    principal: usize,
    method: &'static str,
    path: &'static str,
    host: &'static str,
    query: &'static str,
    source_ip: IpAddr,
    mtls: bool,
}

impl Question {
    fn info(&self) -> RequestInfo<'_> {
        RequestInfo {
            method: self.method,
            path: self.path,
            host: self.host,
            query: self.query,
            source_ip: self.source_ip,
            mtls: self.mtls,
        }
    }
}

/// One step of a request sequence: ask the previous question again, or
/// change one of its fields.
#[derive(Debug, Clone)]
enum Step {
    Repeat,
    Principal(usize),
    Method(&'static str),
    Path(&'static str),
    Host(&'static str),
    Query(&'static str),
    SourceIp(IpAddr),
    Mtls(bool),
}

fn source_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        prop::sample::select(vec![
            IpAddr::from([10, 1, 2, 3]),
            IpAddr::from([192, 168, 1, 1]),
            "::ffff:10.0.0.1".parse().unwrap(),
            "2001:db8::1".parse().unwrap(),
        ]),
        any::<IpAddr>(),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => Just(Step::Repeat),
        1 => (0..3usize).prop_map(Step::Principal),
        // PUT is not in the test schema; `read` is a group, not a method.
        2 => prop::sample::select(vec!["GET", "HEAD", "POST", "DELETE", "PUT", "read"])
            .prop_map(Step::Method),
        2 => prop::sample::select(vec!["/a", "/a/b", "/b", "/"]).prop_map(Step::Path),
        1 => prop::sample::select(vec!["h1", "h2"]).prop_map(Step::Host),
        1 => prop::sample::select(vec!["", "x=1"]).prop_map(Step::Query),
        1 => source_ip().prop_map(Step::SourceIp),
        1 => any::<bool>().prop_map(Step::Mtls),
    ]
}

/// The questions a sequence of steps asks, starting from a fixed one.
fn questions(steps: &[Step]) -> Vec<Question> {
    let mut current = Question {
        principal: 0,
        method: "GET",
        path: "/a",
        host: "h1",
        query: "",
        source_ip: IpAddr::from([10, 1, 2, 3]),
        mtls: false,
    };
    let mut asked = vec![current.clone()];
    for step in steps {
        match *step {
            Step::Repeat => {}
            Step::Principal(principal) => current.principal = principal,
            Step::Method(method) => current.method = method,
            Step::Path(path) => current.path = path,
            Step::Host(host) => current.host = host,
            Step::Query(query) => current.query = query,
            Step::SourceIp(ip) => current.source_ip = ip,
            Step::Mtls(mtls) => current.mtls = mtls,
        }
        asked.push(current.clone());
    }
    asked
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(160))]

    #[test]
    fn sliced_and_cached_decisions_equal_whole_set_evaluation(
        allowed in prop::sample::subsequence((0..ATOMS.len()).collect::<Vec<_>>(), 1..=ATOMS.len()),
        policies in prop::collection::vec(policy(), 1..=30),
        callers in prop::collection::vec(caller(), 3),
        steps in prop::collection::vec(step(), 1..40),
        earlier in prop::collection::vec(any::<prop::sample::Index>(), 40),
        capacity in prop::sample::select(vec![0u64, 1, 4, 100_000]),
        index_principals in any::<bool>(),
    ) {
        let text = render(&allowed, &policies);
        let dir = dir_with(&[("wisp.cedarschema", SCHEMA), ("policies.cedar", &text)]);
        let options = AuthorizerOptions { decision_cache_entries: capacity, decision_cache_bytes: capacity.saturating_mul(1024), slice_by_action: true, index_principals };
        let authorizer = Authorizer::load_with(&dir.path().join("wisp.cedarschema"), dir.path(), options)
            .unwrap_or_else(|diagnostics| panic!("{text}\n{diagnostics:#?}"));
        let principals: Vec<Principal> = callers.iter().map(|caller| build(&authorizer, caller)).collect();
        let asked = questions(&steps);
        let check = |question: &Question| -> Result<(), TestCaseError> {
            let principal = &principals[question.principal];
            let fast = authorizer.authorize(principal, &question.info());
            let reference = authorizer.authorize_unsliced(principal, &question.info());
            prop_assert_eq!(fast, reference, "{:?} {:?}\n{}", question, callers[question.principal], text);
            Ok(())
        };
        // Each question, then an earlier one again (a likely cache hit, or a
        // miss after an eviction), then the whole sequence once more.
        for (n, question) in asked.iter().enumerate() {
            check(question)?;
            check(&asked[earlier[n % earlier.len()].index(n + 1)])?;
        }
        for question in &asked {
            check(question)?;
        }
    }
}
