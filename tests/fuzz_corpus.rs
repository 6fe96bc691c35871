//! Every committed fuzz input (`fuzz/corpus/<target>/`) through the same
//! target code the coverage-guided fuzzer runs (`fuzz/targets/`), without
//! sanitizers: the seeds, the corpus the fuzz runs kept, and each crash found
//! so far (`regression-*`) stay fixed on every `cargo test`.

#[path = "../fuzz/targets/repo.rs"]
mod repo;

#[path = "../fuzz/targets/claims_principal.rs"]
mod claims_principal;
#[path = "../fuzz/targets/config.rs"]
mod config;
#[path = "../fuzz/targets/jwks.rs"]
mod jwks;
#[path = "../fuzz/targets/policy_tests.rs"]
mod policy_tests;
#[path = "../fuzz/targets/spiffe_id.rs"]
mod spiffe_id;
#[path = "../fuzz/targets/target.rs"]
mod target;
#[path = "../fuzz/targets/token_verify.rs"]
mod token_verify;

/// Runs every file of `fuzz/corpus/<name>/` through `run`; returns how many.
fn replay(name: &str, run: fn(&[u8])) -> usize {
    let dir = repo::root().join("fuzz/corpus").join(name);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(outcome.is_ok(), "{} panics", path.display());
        count += 1;
    }
    assert!(count > 0, "{}: no inputs", dir.display());
    count
}

#[test]
fn token_verify_corpus() {
    replay("token_verify", token_verify::run);
}

#[test]
fn jwks_corpus() {
    replay("jwks", jwks::run);
}

#[test]
fn spiffe_id_corpus() {
    replay("spiffe_id", spiffe_id::run);
}

#[test]
fn target_corpus_with_its_crash_regression() {
    replay("target", target::run);
    let crash = repo::root().join("fuzz/corpus/target/regression-multibyte-scheme");
    target::run(&std::fs::read(crash).unwrap());
}

#[test]
fn config_corpus() {
    replay("config", config::run);
}

#[test]
fn claims_principal_corpus() {
    replay("claims_principal", claims_principal::run);
}

#[test]
fn policy_tests_corpus() {
    replay("policy_tests", policy_tests::run);
}
