//! Authorization cost against the number of policies (1, 10, 100, 1000), four
//! ways:
//!
//! - `authz_full`: the whole policy set evaluated per request (no slicing, no
//!   index, no cache) — the reference the others must equal;
//! - `authz_sliced`: only the policies whose action scope can match the
//!   request's action (no index, no cache);
//! - `authz_indexed`: slicing + the principal-guard index (no cache): the
//!   cost of a decision-cache miss, e.g. a new workload's first request;
//! - `authz_cached`: slicing + index + the decision cache, on a hit;
//! - `authz_shadow`: `authz_indexed` with 100 policies plus 0, 1 or 10
//!   `@shadow` forbids that apply to the request: the cost of staging
//!   policies on a decision-cache miss (0 is the baseline, measured in the
//!   same group so the ratio comes from one run).
//!
//! Policy `n` reads `principal.sub`, `principal.tags` and `resource.path`; the
//! action scopes cycle through `in read`, `in write`, `== GET`, `== POST`, and
//! one policy in 25 is an unconstrained `forbid`. The request (GET) is allowed
//! by a policy in the middle of the set.
//!
//! `cargo bench --bench authz -- --warm-up-time 1 --measurement-time 2`

use std::fmt::Write as _;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use wisp::authz::{Authorizer, AuthorizerOptions, Effect, Principal, RequestInfo};
use wisp::identity::{AuthnMethod, Identity, Names};

const SIZES: [usize; 4] = [1, 10, 100, 1000];

/// `count` policies in the shape described above.
fn policies(count: usize) -> String {
    let mut text = String::new();
    for n in 0..count {
        let written = if n % 25 == 24 {
            writeln!(
                text,
                "forbid (principal, action, resource) when {{ principal.tags.contains(\"tag:blocked-{n}\") }};"
            )
        } else {
            let action = [
                "action in Action::\"read\"",
                "action in Action::\"write\"",
                "action == Action::\"GET\"",
                "action == Action::\"POST\"",
            ][n % 4];
            writeln!(
                text,
                "permit (principal, {action}, resource) when {{ principal.sub like \"team-{n}:*\" && principal.tags.contains(\"tag:{n}\") && resource.path like \"/svc-{n}/*\" }};"
            )
        };
        written.expect("writing to a String cannot fail");
    }
    text
}

/// The index of a GET-matching permit near the middle of `count` policies.
fn allowed_index(count: usize) -> usize {
    let middle = count / 2;
    (middle..count)
        .chain(0..middle)
        .find(|n| n % 25 != 24 && n % 4 == 0)
        .expect("policy 0 matches GET")
}

fn identity(team: usize) -> Identity {
    let names = Names {
        uid: &format!("https://issuer.example#team-{team}:web"),
        sub: &format!("team-{team}:web"),
        iss: "https://issuer.example",
        tags: &[format!("tag:{team}"), "tag:prod".to_owned()],
    };
    Identity::new(names, Arc::from("bench"), AuthnMethod::Jwt, i64::MAX)
        .expect("no tag holds a comma")
}

/// The caller one of `count` policies allows, and the path it may GET.
fn caller(authorizer: &Authorizer, count: usize) -> (Principal, String) {
    let team = allowed_index(count);
    let principal = authorizer.principal(identity(team)).expect("principal");
    (principal, format!("/svc-{team}/items"))
}

/// `GET path` from a fixed client.
fn get(path: &str) -> RequestInfo<'_> {
    RequestInfo {
        method: "GET",
        path,
        host: "orders.internal",
        query: "",
        source_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        mtls: false,
    }
}

fn load(dir: &Path, options: AuthorizerOptions) -> Authorizer {
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/wisp.cedarschema");
    Authorizer::load_with(&schema, dir, options).expect("policies load")
}

fn benches(c: &mut Criterion) {
    let ways = [
        (
            "authz_full",
            AuthorizerOptions {
                decision_cache_entries: 0,
                decision_cache_bytes: 0,
                slice_by_action: false,
                index_principals: false,
            },
        ),
        (
            "authz_sliced",
            AuthorizerOptions {
                decision_cache_entries: 0,
                decision_cache_bytes: 0,
                slice_by_action: true,
                index_principals: false,
            },
        ),
        (
            "authz_indexed",
            AuthorizerOptions {
                decision_cache_entries: 0,
                ..AuthorizerOptions::default()
            },
        ),
        ("authz_cached", AuthorizerOptions::default()),
    ];
    for (name, options) in ways {
        let mut group = c.benchmark_group(name);
        for count in SIZES {
            let dir = tempfile::tempdir().expect("tempdir");
            std::fs::write(dir.path().join("bench.cedar"), policies(count)).expect("write");
            let authorizer = load(dir.path(), options);
            let (principal, path) = caller(&authorizer, count);
            let request = get(&path);
            // Also fills the cache for `authz_cached`.
            let decision = authorizer.authorize(&principal, &request);
            assert_eq!(decision.effect, Effect::Allow, "{count} policies");
            group.bench_with_input(
                BenchmarkId::from_parameter(count),
                &request,
                |b, request| {
                    b.iter(|| authorizer.authorize(black_box(&principal), black_box(request)))
                },
            );
        }
        group.finish();
    }
    shadow(c);
}

/// `authz_shadow`: see the module docs.
fn shadow(c: &mut Criterion) {
    let mut group = c.benchmark_group("authz_shadow");
    let count = 100;
    for shadows in [0, 1, 10] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut text = policies(count);
        for n in 0..shadows {
            writeln!(
                text,
                "@id(\"staged-{n}\") @shadow\nforbid (principal, action, resource) when {{ resource.path like \"/svc-*\" && principal.tags.contains(\"tag:prod\") }};"
            )
            .expect("writing to a String cannot fail");
        }
        std::fs::write(dir.path().join("bench.cedar"), text).expect("write");
        let options = AuthorizerOptions {
            decision_cache_entries: 0,
            ..AuthorizerOptions::default()
        };
        let authorizer = load(dir.path(), options);
        let (principal, path) = caller(&authorizer, count);
        let request = get(&path);
        let decision = authorizer.authorize(&principal, &request);
        assert_eq!(decision.effect, Effect::Allow);
        assert_eq!(decision.shadow.len(), shadows);
        group.bench_with_input(
            BenchmarkId::from_parameter(shadows),
            &request,
            |b, request| b.iter(|| authorizer.authorize(black_box(&principal), black_box(request))),
        );
    }
    group.finish();
}

/// The binary's allocator, so the numbers are the server's.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

criterion_group!(authz_benches, benches);
criterion_main!(authz_benches);
