//! `wisp check`: config, schema, policies and static JWKS files, offline,
//! and whether they fit together: what would otherwise fail every request
//! or never match at runtime. `wisp schema`: the schema that fits.

use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use wisp::authn::keys::KeySet;
use wisp::authz::{model, Authorizer, Diagnostic};
use wisp::config::{Config, JwksSource, KeyPositions, Position};

/// How `wisp check` reports.
#[derive(Debug, Clone, Copy)]
pub struct CheckOptions {
    /// Cedar validator and schema warnings do not count as problems.
    pub allow_warnings: bool,
    /// Also print how the policy index covers the policies.
    pub verbose: bool,
}

/// Runs the check; exit 1 on any problem (warnings count unless allowed),
/// each printed as `file:line:col: message`.
pub fn run(path: &Path, options: CheckOptions) -> ExitCode {
    wisp::server::install_crypto();
    let config = match Config::load_all(path) {
        Ok(config) => config,
        Err(errors) => {
            for error in errors.errors() {
                eprintln!("{error}");
            }
            eprintln!("{} problem(s) found", errors.errors().len());
            return ExitCode::from(1);
        }
    };
    let mut problems = 0usize;
    let mut report = |diagnostic: &Diagnostic| {
        eprintln!("{diagnostic}");
        problems += 1;
    };
    let mut warnings = 0usize;
    let authorizer = match Authorizer::load(&config.policies.schema, &config.policies.dir) {
        Ok(authorizer) => {
            for warning in authorizer.warnings().iter().map(|w| with_hint(w, &config)) {
                if options.allow_warnings {
                    eprintln!("warning: {warning}");
                    warnings += 1;
                } else {
                    report(&warning);
                }
            }
            Some(authorizer)
        }
        Err(diagnostics) => {
            diagnostics.iter().for_each(&mut report);
            None
        }
    };
    // Read again rather than kept from loading: the config file is small.
    let text = std::fs::read_to_string(path).unwrap_or_default();
    model::check_fit(&config, &text)
        .iter()
        .for_each(&mut report);
    let positions = KeyPositions::of(&text);
    for (index, issuer) in config.issuers.iter().enumerate() {
        let (file, source_key) = match &issuer.jwks {
            JwksSource::File(file) => (Some(file), "file"),
            JwksSource::SpiffeBundle { path, .. } => (Some(path), "spiffe_bundle"),
            JwksSource::Discovery | JwksSource::Uri(_) => (None, ""),
        };
        if let Some(file) = file {
            let result = std::fs::read(file)
                .map_err(|e| e.to_string())
                .and_then(|bytes| {
                    KeySet::from_jwks_json(&bytes, &issuer.algorithms).map_err(|e| e.to_string())
                });
            if let Err(message) = result {
                let key = format!("issuers[{index}].jwks.{source_key}");
                let at = positions
                    .find(&key)
                    .unwrap_or(Position { line: 1, column: 1 });
                report(&Diagnostic {
                    file: config.source.clone(),
                    line: at.line,
                    column: at.column,
                    message: format!("{key}: `{}`: {message}", file.display()),
                });
            }
        }
    }
    if problems > 0 {
        eprintln!("{problems} problem(s) found");
        return ExitCode::from(1);
    }
    let policies = authorizer.as_ref().map_or(0, Authorizer::policy_count);
    let issuers = config.issuers.len();
    println!(
        "ok: {}: {issuers} issuer{}, {policies} polic{} ({}), schema {}{}",
        shown(path).display(),
        if issuers == 1 { "" } else { "s" },
        if policies == 1 { "y" } else { "ies" },
        shown(&config.policies.dir).display(),
        shown(&config.policies.schema).display(),
        if warnings > 0 {
            format!(", {warnings} warning(s) allowed")
        } else {
            String::new()
        }
    );
    println!("mode: {}", config.mode());
    if let Some(authorizer) = authorizer.as_ref().filter(|a| a.shadow_count() > 0) {
        println!(
            "shadow: {} (evaluated and logged, not enforced)",
            authorizer.shadow_ids().join(", ")
        );
    }
    for warning in config.warnings() {
        println!("warning: {warning}");
    }
    if let Some(stats) = authorizer
        .map(|a| a.guard_stats())
        .filter(|s| options.verbose && s.policies > 0)
    {
        let unguarded = stats.policies - stats.indexed - stats.indexed_by_tag - stats.guarded_only;
        println!(
            "index: {} indexed by principal.sub, {} by principal.tags, {} guarded by other \
             principal conditions, {} looked at for every principal; {} decided without Cedar",
            stats.indexed, stats.indexed_by_tag, stats.guarded_only, unguarded, stats.native
        );
    }
    ExitCode::SUCCESS
}

/// A validator warning with what usually causes it and how to fix it.
fn with_hint(warning: &Diagnostic, config: &Config) -> Diagnostic {
    let mut warning = warning.clone();
    if warning.message.contains("policy is impossible") {
        warning.message.push_str(&format!(
            "; a `has` test of an attribute that entity Workload does not declare is always \
             false: check the attribute's name against {}, or declare it there",
            shown(&config.policies.schema).display()
        ));
    }
    warning
}

/// `wisp schema`: prints the Cedar schema that fits the config's issuers.
pub fn schema(path: &Path) -> ExitCode {
    match Config::load_all(path) {
        Ok(config) => {
            print!("{}", model::schema_for(&config));
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            ExitCode::from(1)
        }
    }
}

/// `path` without `dir/..` pairs, for messages (`config/../policies` →
/// `policies`); nothing is resolved on disk.
fn shown(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}
