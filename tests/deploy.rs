//! Deployment artifacts, checked with the tools that read them: the
//! Dockerfile and .dockerignore (parsed here), docker-compose.yml
//! (`docker-compose config`), the Kubernetes manifests (`kubectl kustomize`,
//! `kubernetes-validate`), the ConfigMaps' wisp config and policies
//! (`wisp check`), the Prometheus rules (`promtool`), and every metric the
//! alerts and the Grafana dashboard query (against a running wisp).
//!
//! A missing tool fails its test with the package to install: never a skip.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn yaml(text: &str, what: &str) -> Value {
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("{what}: not YAML: {e}"))
}

fn yaml_documents(text: &str, what: &str) -> Vec<Value> {
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(text).unwrap_or_else(|e| panic!("{what}: not YAML: {e}"));
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

/// Runs an external tool from the repository root; a missing program fails
/// the test naming what provides it.
fn tool(program: &str, args: &[&str], provides: &str) -> Output {
    match Command::new(program)
        .args(args)
        .current_dir(repo())
        .output()
    {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("`{program}` is not installed: {provides}")
        }
        Err(e) => panic!("running {program}: {e}"),
    }
}

fn succeeded(output: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn wisp_check(config: &Path) {
    let output = Command::new(env!("CARGO_BIN_EXE_wisp"))
        .args(["check", "--config"])
        .arg(config)
        .output()
        .expect("run wisp check");
    succeeded(
        &output,
        &format!("wisp check --config {}", config.display()),
    );
}

/// The file's `command:`/`args:` starts with a wisp subcommand that exists.
fn assert_wisp_subcommand(command: &[&str], context: &str) {
    let name = command
        .first()
        .unwrap_or_else(|| panic!("{context}: empty command"));
    let output = Command::new(env!("CARGO_BIN_EXE_wisp"))
        .args([name, "--help"])
        .output()
        .expect("run wisp");
    succeeded(&output, &format!("{context}: `wisp {name} --help`"));
}

/// `5s`, `30s`, `1m`, `1h30m` (the forms the shipped files use).
fn duration(text: &str) -> Duration {
    let (mut total, mut number) = (0u64, String::new());
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            _ => panic!("duration {text:?}"),
        };
        total += number
            .parse::<u64>()
            .unwrap_or_else(|_| panic!("duration {text:?}"))
            * unit;
        number.clear();
    }
    assert!(number.is_empty(), "duration {text:?} lacks a unit");
    Duration::from_secs(total)
}

/// drain_delay + shutdown_grace of a wisp config.
fn shutdown_budget(config: &Value) -> Duration {
    let key = |k: &str| {
        duration(
            config[k]
                .as_str()
                .unwrap_or_else(|| panic!("config lacks {k}")),
        )
    };
    key("drain_delay") + key("shutdown_grace")
}

fn port_of(address: &str) -> u64 {
    address
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("address {address}"))
}

/// Every file under `relative` (a file or a directory), as paths relative to `root`.
fn files_under(root: &Path, relative: &str, out: &mut Vec<String>) {
    let path = root.join(relative);
    if path.is_dir() {
        for entry in std::fs::read_dir(&path).expect("read dir") {
            let name = entry
                .expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned();
            files_under(root, &format!("{relative}/{name}"), out);
        }
    } else {
        out.push(relative.to_string());
    }
}

#[path = "deploy/container.rs"]
mod container;
#[path = "deploy/kubernetes.rs"]
mod kubernetes;
#[path = "deploy/monitoring.rs"]
mod monitoring;
