//! `wisp check`: config, schema, policies and static JWKS files, offline.

use std::path::Path;
use std::process::ExitCode;

use wisp::authn::keys::KeySet;
use wisp::authz::Authorizer;
use wisp::config::{Config, JwksSource};

/// Runs the check; exit 1 on any problem, each printed as `file:line:col: message`.
pub fn run(path: &Path) -> ExitCode {
    wisp::server::install_crypto();
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(1);
        }
    };
    let mut problems = 0usize;
    let (policies, stats) = match Authorizer::load(&config.policies.schema, &config.policies.dir) {
        Ok(authorizer) => (authorizer.policy_count(), Some(authorizer.guard_stats())),
        Err(diagnostics) => {
            for diagnostic in &diagnostics {
                eprintln!("{diagnostic}");
            }
            problems += diagnostics.len();
            (0, None)
        }
    };
    for issuer in &config.issuers {
        if let JwksSource::File(file) = &issuer.jwks {
            let result = std::fs::read(file)
                .map_err(|e| e.to_string())
                .and_then(|bytes| {
                    KeySet::from_jwks_json(&bytes, &issuer.algorithms).map_err(|e| e.to_string())
                });
            if let Err(message) = result {
                eprintln!(
                    "{}: issuers[{}].jwks.file: {message}",
                    file.display(),
                    issuer.name
                );
                problems += 1;
            }
        }
    }
    if problems > 0 {
        eprintln!("{problems} problem(s) found");
        return ExitCode::from(1);
    }
    println!(
        "ok: {} — {} issuer(s), {} polic{} in {}",
        path.display(),
        config.issuers.len(),
        policies,
        if policies == 1 { "y" } else { "ies" },
        config.policies.dir.display()
    );
    println!("mode: {}", config.mode());
    for warning in config.warnings() {
        println!("warning: {warning}");
    }
    if let Some(stats) = stats.filter(|s| s.policies > 0) {
        let unguarded = stats.policies - stats.indexed - stats.indexed_by_tag - stats.guarded_only;
        println!(
            "index: {} indexed by principal.sub, {} by principal.tags, {} guarded by other \
             principal conditions, {} looked at for every principal; {} decided without Cedar",
            stats.indexed, stats.indexed_by_tag, stats.guarded_only, unguarded, stats.native
        );
    }
    ExitCode::SUCCESS
}
