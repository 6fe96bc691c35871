//! The binary's CLI: `wisp check` and `wisp serve` refusing bad input.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn wisp(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wisp"))
        .args(args)
        .output()
        .expect("run wisp")
}

fn repo(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(path)
        .display()
        .to_string()
}

#[test]
fn check_accepts_the_shipped_configs() {
    for config in ["config/demo.yaml", "config/wisp.yaml"] {
        let output = wisp(&["check", "--config", &repo(config)]);
        assert!(
            output.status.success(),
            "{config}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// config/kubernetes.yaml names files that exist only in a pod (the
/// service-account CA and a projected token): checked with stand-ins.
#[test]
fn check_accepts_the_kubernetes_example_given_its_pod_files() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, token) = (dir.path().join("ca.crt"), dir.path().join("token"));
    std::fs::write(&ca, common::tls::Ca::new("kubernetes").pem()).unwrap();
    std::fs::write(&token, "t").unwrap();
    let text = std::fs::read_to_string(repo("config/kubernetes.yaml"))
        .unwrap()
        .replace(
            "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
            &ca.display().to_string(),
        )
        .replace(
            "/var/run/wisp/api-token/token",
            &token.display().to_string(),
        )
        .replace("dir: ../policies", &format!("dir: '{}'", repo("policies")));
    let config = dir.path().join("kubernetes.yaml");
    std::fs::write(&config, text).unwrap();
    let output = wisp(&["check", "--config", config.to_str().unwrap()]);
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    // As shipped, on a machine that is not a pod: refused, naming the file.
    if Path::new("/var/run/secrets/kubernetes.io/serviceaccount/ca.crt").exists() {
        return;
    }
    let output = wisp(&["check", "--config", &repo("config/kubernetes.yaml")]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("issuers[0].jwks.ca"), "{stderr}");
}

#[test]
fn check_says_ok_in_one_line_and_reports_the_policy_index_only_when_verbose() {
    let output = wisp(&["check", "--config", &repo("config/demo.yaml")]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    // One line says it is fine; the next names the mode (proxy, decision service).
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    assert_eq!(stdout.lines().nth(1), Some("mode: proxy"), "{stdout}");
    assert!(
        stdout.starts_with("ok: ") && stdout.contains("config/demo.yaml: 1 issuer, 3 policies ("),
        "{stdout}"
    );
    assert!(stdout.contains("schema "), "{stdout}");
    assert!(!stdout.contains("index"), "{stdout}");

    let output = wisp(&["check", "--verbose", "--config", &repo("config/demo.yaml")]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    // frontend-reads-api: `sub like`; admins-write-api and the /admin
    // forbid: tags; all three use only fields wisp evaluates natively.
    assert!(
        stdout.contains(
            "index: 1 indexed by principal.sub, 1 by principal.tags, 1 guarded by other \
             principal conditions, 0 looked at for every principal; 3 decided without Cedar"
        ),
        "{stdout}"
    );
}

/// A Kubernetes issuer; `claims` is appended to it (indented lines).
fn kubernetes_config(claims: &str) -> String {
    format!(
        "upstream:\n  address: 127.0.0.1:8081\nissuers:\n  - name: k8s\n    \
         issuer: https://kubernetes.default.svc.cluster.local\n    preset: kubernetes\n    \
         jwks: {{ discovery: true }}\n    audiences: [orders]\n    algorithms: [RS256]\n{claims}"
    )
}

/// Runs `wisp check` (with `extra` arguments); exit code and stdout + stderr.
fn check(config: &str, extra: &[&str]) -> (Option<i32>, String) {
    let mut args = vec!["check", "--config", config];
    args.extend(extra);
    let output = wisp(&args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text)
}

#[test]
fn check_reports_a_claims_mapping_the_schema_does_not_declare_at_its_line() {
    let config = kubernetes_config("    claims:\n      pod_uid: /kubernetes.io/pod/uid\n");
    let (dir, path) = project(&config, &[]);
    let (code, text) = check(&path, &[]);
    assert_eq!(code, Some(1), "{text}");
    let expected = format!(
        "{path}:11:7: issuers[0].claims.pod_uid: the schema's Workload does not declare pod_uid; \
         add `pod_uid?: String` to entity Workload in {}, or run `wisp schema`",
        dir.path().join("policies/wisp.cedarschema").display()
    );
    assert!(text.contains(&expected), "{text}");
    assert!(text.contains("1 problem(s) found"), "{text}");
}

#[test]
fn check_reports_an_impossible_policy_as_an_error_unless_warnings_are_allowed() {
    let policy = "@id(\"sa\")\npermit (principal, action, resource)\n\
                  when { principal has serviceaccount && principal.serviceaccount == \"frontend\" };\n";
    let (dir, path) = project(&kubernetes_config(""), &[("sa.cedar", policy)]);
    let file = dir.path().join("policies/sa.cedar").display().to_string();
    let (code, text) = check(&path, &[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains(&format!(
            "{file}:1:1: for policy `sa`, policy is impossible"
        )),
        "{text}"
    );
    assert!(
        text.contains("check the attribute's name against"),
        "{text}"
    );

    let (code, text) = check(&path, &["--allow-warnings"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains(&format!("warning: {file}:1:1: ")), "{text}");
    assert!(
        text.contains("ok: ") && text.contains("1 warning(s) allowed"),
        "{text}"
    );
}

#[test]
fn check_reports_a_workload_literal_no_caller_can_have_with_the_likely_uid() {
    let policy = "@id(\"frontend\")\n\
                  permit (principal == Workload::\"system:serviceaccount:shop:frontend\", action, resource);\n";
    let (dir, path) = project(&kubernetes_config(""), &[("frontend.cedar", policy)]);
    let (code, text) = check(&path, &[]);
    assert_eq!(code, Some(1), "{text}");
    let file = dir
        .path()
        .join("policies/frontend.cedar")
        .display()
        .to_string();
    assert!(
        text.contains(&format!(
            "{file}:2:22: principal Workload::\"system:serviceaccount:shop:frontend\" never matches"
        )),
        "{text}"
    );
    assert!(
        text.contains(
            "did you mean Workload::\"https://kubernetes.default.svc.cluster.local#system:serviceaccount:shop:frontend\", \
             or principal.sub == \"system:serviceaccount:shop:frontend\"?"
        ),
        "{text}"
    );
    // Written as suggested, the policy passes.
    let fixed = policy.replace(
        "Workload::\"system",
        "Workload::\"https://kubernetes.default.svc.cluster.local#system",
    );
    std::fs::write(dir.path().join("policies/frontend.cedar"), fixed).unwrap();
    let (code, text) = check(&path, &[]);
    assert_eq!(code, Some(0), "{text}");
}

#[test]
fn check_reports_every_config_problem_in_one_run() {
    let config = kubernetes_config("    leeway: 10m\n")
        .replace("  address: 127.0.0.1:8081\n", "  adress: 127.0.0.1:8081\n");
    let (_dir, path) = project(&config, &[]);
    let (code, text) = check(&path, &[]);
    assert_eq!(code, Some(1), "{text}");
    // Parsing stops at the misspelt key …
    assert!(
        text.contains(&format!(
            "{path}:2:3: upstream.adress: unknown field `adress`, did you mean `address`?"
        )),
        "{text}"
    );
    // … and once it parses, every conversion problem is reported.
    let config = kubernetes_config("    leeway: 10m\n    audiences: orders\n")
        .replace("    audiences: [orders]\n", "")
        .replace("  address: 127.0.0.1:8081\n", "  connect_timeout: 0s\n");
    let (_dir, path) = project(&config, &[]);
    let (code, text) = check(&path, &[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains(&format!(
            "{path}:10:16: issuers[0].audiences: must be a list, e.g. [orders]"
        )),
        "{text}"
    );
    let config = kubernetes_config("    leeway: 10m\n")
        .replace("  address: 127.0.0.1:8081\n", "  connect_timeout: 0s\n");
    let (_dir, path) = project(&config, &[]);
    let (code, text) = check(&path, &[]);
    assert_eq!(code, Some(1), "{text}");
    for expected in [
        format!("{path}:1:1: upstream.address: required"),
        format!("{path}:2:3: upstream.connect_timeout: must be longer than 0s"),
        format!("{path}:10:5: issuers[0].leeway: must be at most 5m"),
        "3 problem(s) found".to_owned(),
    ] {
        assert!(text.contains(&expected), "no {expected:?} in\n{text}");
    }
}

#[test]
fn schema_prints_a_schema_that_parses_and_passes_check_with_the_same_config() {
    let config = kubernetes_config("    claims:\n      pod_uid: /kubernetes.io/pod/uid\n");
    let policy = "@id(\"pods\")\npermit (principal, action, resource)\n\
                  when { principal has pod_uid && principal.pod_uid == \"abc\" && principal has namespace };\n";
    let (dir, path) = project(&config, &[("pods.cedar", policy)]);
    let (code, text) = check(&path, &[]);
    assert_eq!(code, Some(1), "the shipped schema lacks pod_uid: {text}");

    let output = wisp(&["schema", "--config", &path]);
    let schema = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(schema.contains("pod_uid?: String"), "{schema}");
    assert!(schema.contains("namespace?: String"), "{schema}");
    std::fs::write(dir.path().join("policies/wisp.cedarschema"), &schema).unwrap();
    let (code, text) = check(&path, &[]);
    assert_eq!(code, Some(0), "{text}\n{schema}");
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(wisp(&["check"]).status.code(), Some(2));
    assert_eq!(wisp(&["schema", "--nope"]).status.code(), Some(2));
}

#[test]
fn check_names_file_and_line_of_a_typo_in_a_policy() {
    let builder = WispBuilder::new("127.0.0.1:1".parse().unwrap()).policy(
        "bad.cedar",
        "// a typo below\n@id(\"typo\")\npermit (principal, action, resource)\nwhen { principal.subb like \"acme:*\" };\n",
    );
    let (dir, config, _, _) = builder.write();
    let output = wisp(&["check", "--config", config.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let file = dir.path().join("policies/bad.cedar");
    assert!(
        stderr.contains(&format!("{}:4:", file.display())),
        "{stderr}"
    );
    assert!(stderr.contains("subb"), "{stderr}");
}

#[test]
fn serve_refuses_a_broken_policy_with_file_and_line() {
    let builder = WispBuilder::new("127.0.0.1:1".parse().unwrap()).policy(
        "broken.cedar",
        "permit (principal, action, resource)\nwhen { principal.sub like };\n",
    );
    let (dir, config, listen, _) = builder.write();
    let output = wisp(&["serve", "--config", config.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}:2:",
            dir.path().join("policies/broken.cedar").display()
        )),
        "{stderr}"
    );
    assert!(
        std::net::TcpStream::connect(listen).is_err(),
        "nothing may be listening"
    );
}

#[test]
fn serve_refuses_unknown_keys_and_bad_values_naming_the_key() {
    let cases = [
        ("upstream: { address: 127.0.0.1:1 }\nlisten_addr: 1\n", "listen_addr"),
        ("upstream: { address: 127.0.0.1:1, timeout: 5s }\n", "timeout"),
        ("upstream: { address: 127.0.0.1:1 }\nlisten: nope\n", "listen"),
        ("upstream: { address: 127.0.0.1:1 }\nissuers:\n  - name: a\n    issuer: https://a.example\n    jwks: { discovery: true, refresh: soon }\n    audiences: [x]\n    algorithms: [ES256]\n", "issuers[0].jwks.refresh"),
        ("upstream: { address: 127.0.0.1:1 }\nissuers:\n  - name: a\n    issuer: https://a.example\n    jwks: { discovery: true }\n    audiences: [x]\n    algorithms: [HS256]\n", "issuers[0].algorithms"),
        ("listen: 127.0.0.1:0\n", "upstream"),
    ];
    for (yaml, key) in cases {
        let (_dir, config) = project(yaml, &[]);
        let output = wisp(&["serve", "--config", &config]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{yaml}: {stderr}");
        assert!(
            stderr.contains(key),
            "{yaml}: expected the key {key} in: {stderr}"
        );
    }
}

#[test]
fn serve_refuses_a_missing_config_file() {
    let output = wisp(&["serve", "--config", "/nonexistent/wisp.yaml"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/wisp.yaml"));
}

#[test]
fn demo_shows_an_allow_and_a_deny() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let shipped = std::fs::read_to_string(repo("config/demo.yaml")).unwrap();
    let (issuer, echo, listen, admin) = (free_port(), free_port(), free_port(), free_port());
    let config = shipped
        .replace("127.0.0.1:9400", &format!("127.0.0.1:{issuer}"))
        .replace("127.0.0.1:9401", &format!("127.0.0.1:{echo}"))
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{listen}"))
        .replace("127.0.0.1:9901", &format!("127.0.0.1:{admin}"))
        .replace("dir: ../policies", &format!("dir: {}", repo("policies")));
    let path = dir.path().join("demo.yaml");
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_wisp"))
        .args(["demo", "--config", path.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            text.push_str(&line);
            text.push('\n');
            if line.contains("Press Ctrl-C") {
                break;
            }
        }
        let _ = tx.send(text);
    });
    let text = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    assert!(text.contains("got HTTP 200"), "{text}");
    assert!(text.contains("got HTTP 403"), "{text}");
    assert!(
        text.contains(&format!(
            "curl -i -H \"Authorization: Bearer $TOKEN\" http://127.0.0.1:{listen}/api/orders"
        )),
        "{text}"
    );
}

#[test]
fn check_prints_the_mode_and_warns_about_an_exposed_decision_service() {
    let dir = tempfile::tempdir().unwrap();
    let policies = repo("policies");
    let cases = [
        (
            "upstream: { address: 127.0.0.1:8081 }\n",
            "mode: proxy\n",
            false,
        ),
        (
            "upstream: { address: 127.0.0.1:8081 }\ndecision_service: {}\n",
            "mode: proxy + decision service\n",
            false,
        ),
        (
            "decision_service: { listen: 0.0.0.0:9191 }\n",
            "mode: decision service\n",
            true,
        ),
    ];
    for (yaml, mode, warns) in cases {
        let config = dir.path().join("wisp.yaml");
        std::fs::write(
            &config,
            format!("{yaml}policies: {{ dir: '{policies}' }}\n"),
        )
        .unwrap();
        let output = wisp(&["check", "--config", config.to_str().unwrap()]);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{yaml}: {stdout}");
        assert!(stdout.contains(mode), "{yaml}: {stdout}");
        assert_eq!(
            stdout.contains("warning: decision_service.listen: 0.0.0.0:9191"),
            warns,
            "{yaml}: {stdout}"
        );
    }
}
