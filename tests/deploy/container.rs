//! The container image (Dockerfile, .dockerignore) and docker-compose.yml.

use super::*;

/// One instruction of the Dockerfile, continuation lines joined.
struct Instruction {
    stage: usize,
    keyword: String,
    args: String,
}

fn dockerfile() -> Vec<Instruction> {
    let mut instructions = Vec::new();
    let (mut stage, mut pending) = (0, String::new());
    for line in read("Dockerfile").lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && pending.is_empty()) {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(line);
        let text = std::mem::take(&mut pending);
        let (keyword, args) = text.split_once(char::is_whitespace).unwrap_or((&text, ""));
        let keyword = keyword.to_ascii_uppercase();
        if keyword == "FROM" {
            stage += 1;
        }
        instructions.push(Instruction {
            stage,
            keyword,
            args: args.trim().to_string(),
        });
    }
    instructions
}

/// (sources, destination) of a COPY/ADD from the build context; None for `--from=`.
fn context_copy(args: &str) -> Option<(Vec<String>, String)> {
    let words: Vec<String> = if args.starts_with('[') {
        serde_json::from_str(args).expect("COPY in JSON form")
    } else {
        args.split_whitespace().map(str::to_string).collect()
    };
    if words.iter().any(|w| w.starts_with("--from=")) {
        return None;
    }
    let mut paths: Vec<String> = words.into_iter().filter(|w| !w.starts_with("--")).collect();
    let destination = paths.pop().expect("COPY destination");
    assert!(!paths.is_empty(), "COPY without a source: {args}");
    Some((paths, destination))
}

fn context_copies() -> Vec<(usize, Vec<String>, String)> {
    dockerfile()
        .into_iter()
        .filter(|i| i.keyword == "COPY" || i.keyword == "ADD")
        .filter_map(|i| context_copy(&i.args).map(|(s, d)| (i.stage, s, d)))
        .collect()
}

#[test]
fn dockerfile_copies_existing_paths_and_runs_wisp_as_non_root() {
    let instructions = dockerfile();
    let copies = context_copies();
    assert!(
        copies.len() >= 3,
        "expected COPY lines for the build, config and policies"
    );
    for (_, sources, _) in &copies {
        for source in sources {
            assert!(
                repo().join(source).exists(),
                "Dockerfile copies {source}, which does not exist"
            );
        }
    }
    let last = instructions.iter().map(|i| i.stage).max().expect("a FROM");
    let runtime: Vec<&Instruction> = instructions.iter().filter(|i| i.stage == last).collect();
    let entrypoint = runtime
        .iter()
        .find(|i| i.keyword == "ENTRYPOINT")
        .expect("ENTRYPOINT in the runtime stage");
    assert_eq!(
        serde_json::from_str::<Vec<String>>(&entrypoint.args).expect("exec form"),
        ["wisp"]
    );
    let user = runtime
        .iter()
        .rev()
        .find(|i| i.keyword == "USER")
        .expect("USER in the runtime stage");
    let uid = user.args.split(':').next().unwrap_or_default();
    assert!(
        uid != "root" && uid != "0" && !uid.is_empty(),
        "runtime USER is root: {}",
        user.args
    );

    // The default command's config is a file the image contains.
    let cmd = runtime
        .iter()
        .find(|i| i.keyword == "CMD")
        .expect("CMD in the runtime stage");
    let cmd: Vec<String> = serde_json::from_str(&cmd.args).expect("CMD in exec form");
    let config = cmd
        .windows(2)
        .find(|w| w[0] == "--config")
        .map(|w| w[1].clone())
        .expect("CMD --config");
    let source = copies
        .iter()
        .filter(|(stage, _, _)| *stage == last)
        .find_map(|(_, sources, dest)| {
            let rest = config.strip_prefix(&format!("{}/", dest.trim_end_matches('/')))?;
            Some(repo().join(&sources[0]).join(rest))
        })
        .unwrap_or_else(|| panic!("CMD's config {config} is not under any COPY destination"));
    assert!(
        source.is_file(),
        "CMD's config {config} comes from {}, which does not exist",
        source.display()
    );
    // The image's layout under a temp dir, with the files only a pod has
    // (the cluster CA, the projected token) standing in under /var/run.
    let root = tempfile::tempdir().unwrap();
    let at = |path: &str| root.path().join(path.trim_start_matches('/'));
    let text = std::fs::read_to_string(&source).unwrap();
    let jwks = &yaml(&text, "CMD's config")["issuers"][0]["jwks"];
    let ca = common::tls::Ca::new("throwaway cluster CA").pem();
    for (key, contents) in [
        ("ca", ca.as_str()),
        ("bearer_token_file", "not-a-real-token\n"),
    ] {
        if let Some(path) = jwks[key].as_str() {
            std::fs::create_dir_all(at(path).parent().unwrap()).unwrap();
            std::fs::write(at(path), contents).unwrap();
        }
    }
    let policies = at("/etc/wisp/policies");
    std::fs::create_dir_all(&policies).unwrap();
    for entry in std::fs::read_dir(repo().join("policies")).unwrap() {
        let entry = entry.unwrap();
        if entry.path().is_file() {
            std::fs::copy(entry.path(), policies.join(entry.file_name())).unwrap();
        }
    }
    let rooted = text.replace("/var/run/", &format!("{}/var/run/", root.path().display()));
    let in_image = at(&config);
    std::fs::create_dir_all(in_image.parent().unwrap()).unwrap();
    std::fs::write(&in_image, rooted).unwrap();
    wisp_check(&in_image);
}

/// Docker's .dockerignore matching: `*` and `?` within one path segment,
/// `**` across segments, a pattern excluding a directory excludes its
/// contents, later patterns win, `!` re-includes.
fn dockerignored(patterns: &[String], path: &str) -> bool {
    fn matches(pattern: &[&str], path: &[&str]) -> bool {
        match (pattern.first(), path.first()) {
            (None, _) => true, // a matched directory covers everything below it
            (Some(&"**"), _) => {
                matches(&pattern[1..], path) || (!path.is_empty() && matches(pattern, &path[1..]))
            }
            (Some(p), Some(s)) => {
                glob(p.as_bytes(), s.as_bytes()) && matches(&pattern[1..], &path[1..])
            }
            (Some(_), None) => false,
        }
    }
    fn glob(p: &[u8], s: &[u8]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(b'*'), _) => glob(&p[1..], s) || (!s.is_empty() && glob(p, &s[1..])),
            (Some(b'?'), Some(_)) => glob(&p[1..], &s[1..]),
            (Some(a), Some(b)) if a == b => glob(&p[1..], &s[1..]),
            _ => false,
        }
    }
    let path: Vec<&str> = path.split('/').collect();
    let mut excluded = false;
    for pattern in patterns {
        let (negated, pattern) = match pattern.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, pattern.as_str()),
        };
        let pattern: Vec<&str> = pattern
            .trim_matches('/')
            .split('/')
            .filter(|s| !s.is_empty() && *s != ".")
            .collect();
        if matches(&pattern, &path) {
            excluded = !negated;
        }
    }
    excluded
}

#[test]
fn dockerignore_excludes_nothing_the_dockerfile_copies() {
    let own = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert!(dockerignored(&own(&["target"]), "target/debug/wisp"));
    assert!(dockerignored(&own(&["**/*.swp"]), "src/a/.b.swp"));
    assert!(!dockerignored(&own(&["*.md"]), "policies/README.md"));
    assert!(!dockerignored(
        &own(&["src", "!src/main.rs"]),
        "src/main.rs"
    ));

    let patterns: Vec<String> = read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    let mut copied = Vec::new();
    for (_, sources, _) in context_copies() {
        for source in sources {
            files_under(repo(), source.trim_end_matches('/'), &mut copied);
        }
    }
    assert!(copied.iter().any(|f| f == "src/main.rs"), "{copied:?}");
    for file in &copied {
        assert!(
            !dockerignored(&patterns, file),
            ".dockerignore excludes {file}, which the Dockerfile copies"
        );
    }
}

// ------------------------------------------------------------------ compose

#[test]
fn compose_file_is_valid_and_wires_the_sidecar_to_a_config_wisp_accepts() {
    let output = tool(
        "docker-compose",
        &["-f", "docker-compose.yml", "config"],
        "apt-get install -y docker-compose",
    );
    let compose = yaml(
        &succeeded(&output, "docker-compose config"),
        "docker-compose config output",
    );
    let services = &compose["services"];
    let config_path = repo().join("config/compose.yaml");
    let config = yaml(&read("config/compose.yaml"), "config/compose.yaml");

    // wisp runs the repository's config/compose.yaml (mounted), beside the policies.
    let wisp = &services["wisp"];
    let command: Vec<&str> = wisp["command"]
        .as_array()
        .expect("wisp command")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let in_container = command
        .windows(2)
        .find(|w| w[0] == "--config")
        .map(|w| w[1])
        .expect("--config");
    let volumes: Vec<&str> = wisp["volumes"]
        .as_array()
        .expect("wisp volumes")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        volumes
            .iter()
            .any(|v| v.starts_with(&format!("{}:{in_container}", config_path.display()))),
        "{in_container} is not config/compose.yaml: {volumes:?}"
    );
    assert!(
        volumes.iter().any(|v| v.starts_with(&format!(
            "{}:/etc/wisp/policies",
            repo().join("policies").display()
        ))),
        "{volumes:?}"
    );

    // One network namespace: the app's.
    for name in ["wisp", "dev-issuer"] {
        assert_eq!(services[name]["network_mode"], "service:app", "{name}");
    }
    for name in ["app", "wisp", "dev-issuer"] {
        assert_eq!(services[name]["read_only"], true, "{name}");
        assert_eq!(
            services[name]["cap_drop"],
            serde_json::json!(["ALL"]),
            "{name}"
        );
    }
    assert!(
        duration(
            wisp["stop_grace_period"]
                .as_str()
                .expect("stop_grace_period")
        ) > shutdown_budget(&config),
        "stop_grace_period must exceed drain_delay + shutdown_grace"
    );

    // The dev issuer mints what wisp accepts; the app is wisp's upstream.
    let issuer_cmd: Vec<&str> = services["dev-issuer"]["command"]
        .as_array()
        .expect("command")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let flag = |cmd: &[&str], name: &str| {
        cmd.windows(2)
            .find(|w| w[0] == name)
            .map(|w| w[1].to_string())
            .expect(name)
    };
    assert_eq!(
        flag(&issuer_cmd, "--issuer"),
        config["issuers"][0]["issuer"].as_str().unwrap()
    );
    let audience = flag(&issuer_cmd, "--audience");
    assert!(config["issuers"][0]["audiences"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a == audience.as_str()));
    let app_cmd: Vec<&str> = services["app"]["command"]
        .as_array()
        .expect("command")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        flag(&app_cmd, "--listen"),
        config["upstream"]["address"].as_str().unwrap()
    );
    for (name, command) in [
        ("app", &app_cmd),
        ("dev-issuer", &issuer_cmd),
        ("wisp", &command),
    ] {
        assert_wisp_subcommand(command, &format!("docker-compose.yml service {name}"));
    }
    let ports = services["app"]["ports"].to_string();
    for port in [
        port_of(config["listen"].as_str().unwrap()),
        port_of(config["admin"]["listen"].as_str().unwrap()),
        9400,
    ] {
        assert!(
            ports.contains(&format!("127.0.0.1:{port}:{port}")),
            "port {port} not published: {ports}"
        );
    }
    wisp_check(&config_path);
}
