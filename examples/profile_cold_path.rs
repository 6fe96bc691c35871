//! A profiling harness for the cold path: the whole in-process decision for
//! tokens never seen before, from workloads never seen before (what
//! `cold_path_*` in `benches/authenticate.rs` times), with nothing else in
//! the process while it runs. Criterion's `iter_batched` mints a token for
//! every iteration, and the signing would dominate a `perf record` of the
//! bench.
//!
//! ```sh
//! cargo build --release --example profile_cold_path
//! ./target/release/examples/profile_cold_path rs256 10000 10 &   # alg, tokens, rounds
//! # once it prints "minted", from another shell:
//! perf record -F 2999 --call-graph dwarf,16384 -p <pid>
//! # or count instructions, for the decisions alone:
//! valgrind --tool=callgrind --collect-atstart=no \
//!     --toggle-collect=profile_cold_path::decide \
//!     ./target/release/examples/profile_cold_path rs256 1000 1
//! ```
//!
//! It mints `tokens` tokens (distinct `sub`s) with the dev issuer, then runs
//! `rounds` rounds over them, each with a fresh authenticator and authorizer
//! (empty token and decision caches), and prints the time per token.
//!
//! With `compare` after the numbers, each round is preceded by ring alone
//! verifying the same tokens (`devtools::raw::RawVerifier`, the bound of
//! `raw_signature_*`), and it prints every round's ratio and their median.
//! Rounds of a few thousand tokens alternate every ~50 ms, so both sides
//! see the same machine: on this shared VM, the ratio from two criterion
//! measurements seconds apart moves by several percent from run to run.
//!
//! ```sh
//! ./target/release/examples/profile_cold_path rs256 2000 30 compare
//! ```

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use serde_json::json;
use wisp::authn::authenticator::Authenticator;
use wisp::authn::unix_now;
use wisp::authz::reload::LoadedPolicies;
use wisp::authz::{Authorizer, Decision, RequestInfo};
use wisp::config::Config;
use wisp::devtools::complete;
use wisp::devtools::issuer::{DevIssuer, DevIssuerOptions};
use wisp::devtools::raw::RawVerifier;
use wisp::metrics::Metrics;
use wisp::pipeline::callers::Callers;

/// The server's allocator, so the profile is the server's.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |index: usize, default: usize| {
        args.get(index)
            .map_or(Ok(default), |text| text.parse::<usize>())
    };
    let compare = match args.get(3).map(String::as_str) {
        None => Ok(false),
        Some("compare") => Ok(true),
        Some(other) => Err(other),
    };
    let (alg, tokens, rounds, compare) =
        match (args.first(), number(1, 10_000), number(2, 10), compare) {
            (alg, Ok(tokens), Ok(rounds), Ok(compare)) if tokens > 0 && rounds > 0 => (
                alg.map_or("es256", String::as_str).to_owned(),
                tokens,
                rounds,
                compare,
            ),
            _ => {
                eprintln!(
                    "usage: profile_cold_path [es256|rs256|eddsa] [tokens] [rounds] [compare]"
                );
                return ExitCode::from(2);
            }
        };
    match run(&alg, tokens, rounds, compare) {
        Ok(per_token) => {
            println!("{alg}: {per_token:.2} µs per token ({tokens} tokens × {rounds} rounds)");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("profile_cold_path: {error}");
            ExitCode::FAILURE
        }
    }
}

type Error = Box<dyn std::error::Error>;

/// One cold-path decision: what `cold_path_*` times. Never inlined, so a
/// profiler can start and stop at it (`valgrind --tool=callgrind
/// --collect-atstart=no --toggle-collect=profile_cold_path::decide`).
#[inline(never)]
fn decide(
    runtime: &tokio::runtime::Runtime,
    (authn, callers, policies): &(Authenticator, Callers, LoadedPolicies),
    token: &str,
    request: &RequestInfo<'_>,
) -> Result<Decision, Error> {
    let caller = complete(
        runtime,
        callers.token(authn, black_box(token), policies, unix_now()),
    )?;
    Ok(policies.authorizer.authorize(&caller.principal, request))
}

fn run(alg: &str, tokens: usize, rounds: usize, compare: bool) -> Result<f64, Error> {
    wisp::server::install_crypto();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let issuer = runtime.block_on(DevIssuer::start(
        "127.0.0.1:0".parse()?,
        DevIssuerOptions {
            issuer: Some("https://issuer.example".into()),
            default_audience: "orders".into(),
            ..DevIssuerOptions::default()
        },
    ))?;
    let signer = match alg {
        "es256" => issuer.signer(),
        "rs256" => Some(issuer.add_rsa_key(
            include_bytes!("../src/devtools/testdata/rsa-2048.pk8"),
            "RS256".parse()?,
        )?),
        "eddsa" => Some(issuer.add_ed25519_key()?),
        other => return Err(format!("unknown algorithm {other:?}").into()),
    };
    let kid = signer.ok_or("the issuer has no signing key")?;
    issuer.set_signer(&kid)?;
    let minted = (0..tokens)
        .map(|n| {
            issuer.mint(json!({"sub": format!("acme:frontend:cold-{n}"), "tags": ["tag:prod"]}))
        })
        .collect::<Result<Vec<String>, _>>()?;

    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("jwks.json"), issuer.jwks_json())?;
    let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let yaml = format!(
        "upstream: {{ address: 127.0.0.1:1 }}\n\
         issuers:\n  - name: profile\n    issuer: https://issuer.example\n    jwks: {{ file: jwks.json }}\n    audiences: [orders]\n    algorithms: [ES256, RS256, EdDSA]\n    claims: {{ tags: /tags }}\n\
         policies: {{ dir: {} }}\n",
        policies.display()
    );
    let config = Config::from_yaml(&yaml, &dir.path().join("wisp.yaml"))?;
    let http = wisp::authn::jwks::http_client()?;
    // Built before the timed loop, so a round starts with empty caches.
    let fresh = (0..rounds)
        .map(
            |_| -> Result<(Authenticator, Callers, LoadedPolicies), Error> {
                let metrics = Metrics::new()?;
                let authn = Authenticator::new(&config, http.clone(), metrics.clone())?;
                let callers = Callers::new(config.authn.token_cache_max_bytes, metrics);
                runtime.block_on(authn.issuers()[0].refresh())?;
                let authorizer = Authorizer::load(&policies.join("wisp.cedarschema"), &policies)
                    .map_err(|diagnostics| {
                        let lines: Vec<String> =
                            diagnostics.iter().map(ToString::to_string).collect();
                        lines.join("\n")
                    })?;
                Ok((
                    authn,
                    callers,
                    LoadedPolicies {
                        authorizer,
                        generation: 1,
                    },
                ))
            },
        )
        .collect::<Result<Vec<_>, _>>()?;
    let request = RequestInfo {
        method: "GET",
        path: "/api/orders",
        host: "orders.internal",
        query: "",
        source_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        mtls: false,
    };

    // As in a request task (see `complete`).
    let _context = runtime.enter();
    eprintln!("minted; pid {}", std::process::id());
    let raw = compare
        .then(|| RawVerifier::new(&issuer.jwks_json(), &minted, &kid))
        .transpose()?;
    let mut ratios = Vec::new();
    let mut elapsed = std::time::Duration::ZERO;
    for (round, stage) in fresh.iter().enumerate() {
        let raw_time = match &raw {
            Some(raw) => {
                let started = Instant::now();
                for i in 0..minted.len() {
                    if !raw.verify(black_box(i)) {
                        return Err("ring refused a token".into());
                    }
                }
                Some(started.elapsed())
            }
            None => None,
        };
        let started = Instant::now();
        for token in &minted {
            black_box(decide(&runtime, stage, token, &request)?);
        }
        let cold_time = started.elapsed();
        elapsed += cold_time;
        if let Some(raw_time) = raw_time {
            let ratio = raw_time.as_secs_f64() / cold_time.as_secs_f64();
            let per = |time: std::time::Duration| time.as_secs_f64() * 1e6 / tokens as f64;
            println!(
                "round {round}: raw {:.2} µs, cold path {:.2} µs, {ratio:.3}×",
                per(raw_time),
                per(cold_time)
            );
            ratios.push(ratio);
        }
    }
    if !ratios.is_empty() {
        ratios.sort_by(f64::total_cmp);
        println!(
            "cold path / raw rate, median of {} rounds: {:.3}× (range {:.3}–{:.3})",
            ratios.len(),
            ratios[ratios.len() / 2],
            ratios[0],
            ratios[ratios.len() - 1]
        );
    }
    // Dropping the caches is not part of the cold path.
    std::mem::forget(fresh);
    Ok(elapsed.as_secs_f64() * 1e6 / (tokens * rounds) as f64)
}
