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
fn check_reports_how_the_policy_index_covers_the_policies() {
    let output = wisp(&["check", "--config", &repo("config/demo.yaml")]);
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
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("policies")).unwrap();
        std::fs::write(
            dir.path().join("policies/wisp.cedarschema"),
            shipped_schema(),
        )
        .unwrap();
        let config = dir.path().join("wisp.yaml");
        std::fs::write(&config, yaml).unwrap();
        let output = wisp(&["serve", "--config", config.to_str().unwrap()]);
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
