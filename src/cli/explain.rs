//! `wisp explain` and `wisp test`: offline decisions through the pipeline
//! `serve` uses.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use wisp::config::Config;
use wisp::offline::{Explanation, Input, Offline};
use wisp::pipeline::callers::UnverifiedClaims;

/// What `wisp explain` was asked.
#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// The YAML config file.
    #[arg(long, short)]
    pub config: PathBuf,
    /// A bearer token (or @FILE), verified with the issuer's configured keys.
    #[arg(long, conflicts_with = "claims")]
    pub token: Option<String>,
    /// A token payload as JSON (or @FILE), taken as given: no signature is checked.
    #[arg(long, requires = "issuer")]
    pub claims: Option<String>,
    /// With --claims: the issuers[].name whose preset and mappings apply.
    #[arg(long)]
    pub issuer: Option<String>,
    /// The caller's SPIFFE ID, as if it presented that X.509-SVID.
    #[arg(long)]
    pub spiffe_id: Option<String>,
    /// The request method.
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// The request target as a client sends it, e.g. /api/orders?limit=5.
    #[arg(long)]
    pub path: String,
    /// The Host header.
    #[arg(long)]
    pub host: Option<String>,
    /// The client's address.
    #[arg(long)]
    pub source_ip: Option<std::net::IpAddr>,
    /// A request header, 'Name: value' (repeatable).
    #[arg(long = "header")]
    pub headers: Vec<String>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `VALUE`, or the contents of the file when written `@FILE`.
fn value_or_file(value: &str) -> Result<String, String> {
    match value.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .map(|text| text.trim().to_owned())
            .map_err(|e| format!("{path}: {e}")),
        None => Ok(value.to_owned()),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

fn offline(config: &Path) -> Result<Offline, String> {
    let config = Config::load(config).map_err(|e| e.to_string())?;
    Offline::load(config).map_err(|e| e.to_string())
}

fn input(args: &ExplainArgs, issuers: &[String]) -> Result<Input, String> {
    let token = args.token.as_deref().map(value_or_file).transpose()?;
    let claims = match (&args.claims, &args.issuer) {
        (None, _) => None,
        (Some(_), None) => {
            return Err(format!(
                "--claims needs --issuer NAME (one of: {})",
                issuers.join(", ")
            ))
        }
        (Some(claims), Some(issuer)) => {
            if !issuers.contains(issuer) {
                return Err(format!(
                    "--issuer {issuer}: no such issuer (the config has: {})",
                    issuers.join(", ")
                ));
            }
            let text = value_or_file(claims)?;
            let claims: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text)
                .map_err(|e| format!("--claims: not a JSON object: {e}"))?;
            Some(UnverifiedClaims {
                issuer: issuer.clone(),
                claims,
            })
        }
    };
    if token.is_some() && claims.is_some() {
        return Err("give --token or --claims, not both".to_owned());
    }
    let headers = args
        .headers
        .iter()
        .map(|header| {
            header
                .split_once(':')
                .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
                .ok_or_else(|| format!("--header {header:?}: expected 'Name: value'"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Input {
        token,
        claims,
        spiffe_id: args.spiffe_id.clone(),
        method: args.method.to_ascii_uppercase(),
        path: args.path.clone(),
        host: args.host.clone(),
        source_ip: args.source_ip,
        headers,
    })
}

/// `wisp explain`: exit 0 whatever the decision, 1 when it cannot run.
pub fn explain(args: ExplainArgs) -> ExitCode {
    let result = (|| -> Result<Explanation, String> {
        let offline = offline(&args.config)?;
        let issuers: Vec<String> = offline
            .config()
            .issuers
            .iter()
            .map(|i| i.name.to_string())
            .collect();
        let input = input(&args, &issuers)?;
        let runtime = runtime()?;
        runtime.block_on(async {
            let token_present = input.token.is_some()
                || input
                    .headers
                    .iter()
                    .any(|(n, _)| n.eq_ignore_ascii_case("authorization"));
            if token_present {
                for (issuer, error) in offline.fetch_keys().await {
                    eprintln!("note: issuer {issuer}: keys not loaded: {error}");
                }
            }
            Ok(offline.explain(&input, wisp::authn::unix_now()).await)
        })
    })();
    match result {
        Ok(explanation) => {
            if args.json {
                match serde_json::to_string_pretty(&explanation) {
                    Ok(json) => println!("{json}"),
                    Err(error) => {
                        eprintln!("error: {error}");
                        return ExitCode::from(1);
                    }
                }
            } else {
                print!("{}", text(&explanation));
            }
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(1)
        }
    }
}

/// The explanation for people.
fn text(e: &Explanation) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "decision: {} — {} ({}){}",
        e.decision,
        e.status,
        e.reason,
        if e.verified {
            ""
        } else {
            "   [claims taken as given: no signature was checked]"
        }
    );
    if let Some(detail) = &e.detail {
        let _ = writeln!(out, "detail:   {detail}");
    }
    if let Some(path) = &e.path {
        let _ = writeln!(out, "path:     {path}");
    }
    if let Some(principal) = &e.principal {
        let _ = writeln!(out, "principal: Workload::{}", principal["uid"]["id"]);
        if let Some(attrs) = principal["attrs"].as_object() {
            for (name, value) in attrs {
                let _ = writeln!(out, "  {name}: {value}");
            }
        }
    }
    let _ = writeln!(out, "action:   Action::{}", e.action["id"]);
    if let Some(resource) = &e.resource {
        let _ = writeln!(
            out,
            "resource: Route::{} (host {})",
            resource["uid"]["id"], resource["attrs"]["host"]
        );
    }
    if let Some(context) = &e.context {
        let _ = writeln!(out, "context:  {context}");
    }
    let _ = writeln!(
        out,
        "policies: {}",
        if e.policies.is_empty() {
            "(none: default deny unless public)".to_owned()
        } else {
            e.policies.join(", ")
        }
    );
    for error in &e.errors {
        let _ = writeln!(out, "error:    {}: {}", error.policy, error.message);
    }
    for line in shadow_lines(&e.shadow) {
        let _ = writeln!(out, "{line}");
    }
    for (name, value) in &e.headers {
        let _ = writeln!(out, "upstream header: {name}: {value}");
    }
    out
}

/// One line per applying `@shadow` policy: what enforcing it would do.
fn shadow_lines(shadow: &[wisp::authz::ShadowResult]) -> Vec<String> {
    shadow
        .iter()
        .map(|result| {
            let error = result
                .error
                .as_ref()
                .map_or_else(String::new, |error| format!(" (evaluation error: {error})"));
            format!(
                "shadow:   {} ({}) would {}{error}; not enforced",
                result.policy,
                result.effect,
                result.decision.as_str()
            )
        })
        .collect()
}

/// `wisp test`: exit 1 on any failed case or malformed file.
pub fn test(config: &Path, paths: Vec<PathBuf>, junit: Option<PathBuf>) -> ExitCode {
    let offline = match offline(config) {
        Ok(offline) => offline,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(1);
        }
    };
    let paths = if paths.is_empty() {
        vec![offline.config().policies.dir.join("tests")]
    } else {
        paths
    };
    let files = match wisp::policy_tests::files(&paths) {
        Ok(files) if files.is_empty() => {
            eprintln!(
                "error: no test files (*.yaml) in {}",
                paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            return ExitCode::from(1);
        }
        Ok(files) => files,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(1);
        }
    };
    let issuers: Vec<String> = offline
        .config()
        .issuers
        .iter()
        .map(|i| i.name.to_string())
        .collect();
    let mut malformed = 0usize;
    let mut cases = Vec::new();
    for file in &files {
        match wisp::policy_tests::load(file, &issuers) {
            Ok(found) => cases.extend(found),
            Err(message) => {
                eprintln!("error: {message}");
                malformed += 1;
            }
        }
    }
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(1);
        }
    };
    let results = runtime.block_on(async {
        if cases.iter().any(|case| case.input.token.is_some()) {
            for (issuer, error) in offline.fetch_keys().await {
                eprintln!("note: issuer {issuer}: keys not loaded: {error}");
            }
        }
        let now = wisp::authn::unix_now();
        let mut results = Vec::with_capacity(cases.len());
        for case in cases {
            results.push(wisp::policy_tests::run(&offline, case, now).await);
        }
        results
    });
    let mut failed = 0usize;
    for result in &results {
        match &result.failure {
            None => {
                println!("ok   {} {}", result.case.location, result.case.name);
                for line in shadow_lines(&result.got.shadow) {
                    println!("     {line}");
                }
            }
            Some(failure) => {
                failed += 1;
                println!("FAIL {} {}", result.case.location, result.case.name);
                for line in failure.lines() {
                    println!("     {line}");
                }
            }
        }
    }
    if let Some(path) = junit {
        if let Err(error) = std::fs::write(&path, wisp::policy_tests::junit(&results)) {
            eprintln!("error: {}: {error}", path.display());
            return ExitCode::from(1);
        }
    }
    let passed = results.len() - failed;
    if malformed > 0 {
        println!("{passed} passed, {failed} failed, {malformed} malformed file(s)");
    } else {
        println!("{passed} passed, {failed} failed");
    }
    if failed > 0 || malformed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
