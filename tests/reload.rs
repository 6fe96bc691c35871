//! Reloading the whole config, with real signals and files: SIGHUP and the
//! file watcher (including the `..data` symlink swap of Kubernetes ConfigMap
//! volumes); broken and restart-only changes keep the old state; tokens
//! verified under an issuer's old rules are never served afterwards.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

const ALLOW_ALL: &str = "permit (principal, action, resource);";

fn config_path(wisp: &Wisp) -> std::path::PathBuf {
    wisp.dir.path().join("wisp.yaml")
}

/// Rewrites the config file through `edit`, atomically (write + rename).
fn edit_config(wisp: &Wisp, edit: impl FnOnce(String) -> String) {
    let path = config_path(wisp);
    let text = std::fs::read_to_string(&path).unwrap();
    let edited = edit(text.clone());
    assert_ne!(edited, text, "the edit changed nothing");
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, edited).unwrap();
    std::fs::rename(&temporary, &path).unwrap();
}

/// Polls `check` until it holds (the watcher reads files every second).
async fn eventually(what: &str, wisp: &Wisp, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check().await {
        assert!(Instant::now() < deadline, "never: {what}\n{}", wisp.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_applies_new_issuer_rules_and_never_serves_a_token_verified_under_the_old_ones() {
    let (issuer, _echo, wisp) = deploy("", &[("all.cedar", ALLOW_ALL)], "").await;
    let token = issuer.token(json!({"sub": "acme:frontend:web-1"}));
    // Verified once, then served from the token cache.
    for _ in 0..2 {
        assert_eq!(wisp.get_with_token("/api", &token).await.status, 200);
    }
    let metrics = wisp.metrics().await;
    assert_eq!(metric_value(&metrics, "wisp_token_cache_hits_total"), 1.0);

    edit_config(&wisp, |text| {
        text.replace("audiences: [orders]", "audiences: [billing]")
    });
    wisp.signal("HUP");
    wisp.wait_log("config reloaded").await;

    let refused = wisp.get_with_token("/api", &token).await;
    assert_eq!(refused.status, 401, "{}", refused.body);
    assert_eq!(refused.json()["reason"], "bad_audience");
    let billing = issuer.token(json!({"sub": "acme:frontend:web-1", "aud": "billing"}));
    assert_eq!(wisp.get_with_token("/api", &billing).await.status, 200);
    let metrics = wisp.metrics().await;
    assert_eq!(
        metric_value(&metrics, r#"wisp_config_reload_total{result="success"}"#),
        1.0,
        "{metrics}"
    );
    assert!(wisp.log().contains("issuer dev changed"), "{}", wisp.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_or_restart_only_config_is_refused_with_file_and_line_and_the_old_state_stays() {
    let (issuer, _echo, wisp) = deploy("", &[("all.cedar", ALLOW_ALL)], "").await;
    let token = issuer.token(json!({"sub": "acme:frontend:web-1"}));
    assert_eq!(wisp.get_with_token("/api", &token).await.status, 200);
    let original = std::fs::read_to_string(config_path(&wisp)).unwrap();

    // An unknown key: named with the file, line and column.
    edit_config(&wisp, |text| {
        text.replace("threads: 2", "threads: 2\nupstreem: oops")
    });
    let line = std::fs::read_to_string(config_path(&wisp))
        .unwrap()
        .lines()
        .position(|l| l.starts_with("upstreem"))
        .unwrap()
        + 1;
    wisp.signal("HUP");
    wisp.wait_log("config reload rejected").await;
    let expected = format!("wisp.yaml:{line}:1: upstreem: unknown field");
    assert!(
        wisp.log().contains(&expected),
        "no {expected:?} in\n{}",
        wisp.log()
    );
    assert_eq!(wisp.get_with_token("/api", &token).await.status, 200);

    // A setting only a restart can change.
    std::fs::write(config_path(&wisp), &original).unwrap();
    let moved = format!("listen: 127.0.0.1:{}", free_port());
    edit_config(&wisp, |text| {
        text.replace(&format!("listen: {}", wisp.listen), &moved)
    });
    wisp.signal("HUP");
    wisp.wait_log("listen changed").await;
    assert!(
        wisp.log().contains("it takes effect only after a restart"),
        "{}",
        wisp.log()
    );
    assert_eq!(wisp.get_with_token("/api", &token).await.status, 200);

    // Broken policies named in a config reload: the old policies stay.
    std::fs::write(config_path(&wisp), &original).unwrap();
    std::fs::write(
        wisp.dir.path().join("policies/broken.cedar"),
        "permit (principal, action, resource) when { principal.nope };",
    )
    .unwrap();
    wisp.signal("HUP");
    eventually("the policy error is logged", &wisp, async || {
        wisp.log().contains("broken.cedar:1:")
    })
    .await;
    assert_eq!(wisp.get_with_token("/api", &token).await.status, 200);

    let metrics = wisp.metrics().await;
    assert_eq!(
        metric_value(&metrics, r#"wisp_config_reload_total{result="failure"}"#),
        3.0,
        "{metrics}"
    );
    assert_eq!(
        metric_value(&metrics, r#"wisp_config_reload_total{result="success"}"#),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn issuers_added_and_removed_by_an_edited_file_take_effect_without_a_signal() {
    let first = start_issuer().await;
    let second = start_issuer().await;
    let echo = start_echo().await;
    let wisp = WispBuilder::new(echo.addr())
        .issuer(issuer_yaml("first", &first, ""))
        .policy("all.cedar", ALLOW_ALL)
        .start()
        .await;
    wisp.wait_ready().await;
    let first_token = first.token(json!({"sub": "a"}));
    let second_token = second.token(json!({"sub": "b"}));
    assert_eq!(wisp.get_with_token("/", &first_token).await.status, 200);
    let unknown = wisp.get_with_token("/", &second_token).await;
    assert_eq!(unknown.json()["reason"], "unknown_issuer");

    // Add the second issuer.
    let second_yaml = issuer_yaml("second", &second, "");
    edit_config(&wisp, |text| {
        text.replace("issuers:\n", &format!("issuers:\n{second_yaml}"))
    });
    eventually("the second issuer's token is accepted", &wisp, async || {
        wisp.get_with_token("/", &second_token).await.status == 200
    })
    .await;
    assert!(wisp.log().contains("issuer second added"), "{}", wisp.log());

    // Remove the first.
    let first_yaml = issuer_yaml("first", &first, "");
    edit_config(&wisp, |text| text.replace(&first_yaml, ""));
    eventually("the first issuer is gone", &wisp, async || {
        wisp.get_with_token("/", &first_token).await.status == 401
    })
    .await;
    assert_eq!(wisp.get_with_token("/", &second_token).await.status, 200);
    let ready = get(wisp.admin, "/readyz", &[]).await.unwrap();
    assert_eq!(ready.status, 200);
    let names: Vec<_> = ready.json()["issuers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["second"]);
    let metrics = wisp.metrics().await;
    assert!(
        !metrics.contains(r#"wisp_jwks_keys{issuer="first"}"#),
        "{metrics}"
    );
    assert_eq!(
        metric_value(&metrics, r#"wisp_jwks_ready{issuer="second"}"#),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn public_routes_identity_headers_and_the_policy_mode_change_on_reload() {
    let policy = r#"permit (principal, action, resource) when { resource.path == "/a" };"#;
    let (issuer, _echo, wisp) = deploy("", &[("a.cedar", policy)], "").await;
    let token = issuer.token(json!({"sub": "acme:frontend:web-1"}));
    assert_eq!(wisp.request("GET", "/open", &[]).await.status, 401);
    assert_eq!(wisp.get_with_token("/b", &token).await.status, 403);

    edit_config(&wisp, |text| {
        format!(
            "{text}routes: {{ public: [/open] }}\nheaders: {{ identity: {{ subject: x-caller }} }}\n"
        )
        .replace(
            "policies: { dir: policies, watch: true }",
            "policies: { dir: policies, watch: true, mode: dry-run }",
        )
    });
    wisp.signal("HUP");
    wisp.wait_log("config reloaded").await;

    assert_eq!(wisp.request("GET", "/open", &[]).await.status, 200);
    let dry = wisp.get_with_token("/b", &token).await;
    assert_eq!(dry.status, 200, "dry-run forwards what policy denies");
    assert_eq!(dry.upstream_header("x-caller"), ["acme:frontend:web-1"]);
    assert!(dry.upstream_header("x-wisp-subject").is_empty());
}

/// Lays out `files` the way the kubelet writes a ConfigMap volume:
/// `dir/..<version>/<file>`, `dir/..data -> ..<version>`, and
/// `dir/<file> -> ..data/<file>`; a later version is swapped in by renaming
/// a new `..data` link over the old one, atomically.
fn configmap_version(dir: &Path, version: &str, files: &[(&str, &str)]) {
    let versioned = dir.join(format!("..{version}"));
    std::fs::create_dir_all(&versioned).unwrap();
    for (name, text) in files {
        std::fs::write(versioned.join(name), text).unwrap();
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{name}"), &link).unwrap();
        }
    }
    let staging = dir.join("..data_tmp");
    std::os::unix::fs::symlink(format!("..{version}"), &staging).unwrap();
    std::fs::rename(&staging, dir.join("..data")).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kubernetes_configmap_update_swaps_config_and_policies_through_the_data_symlink() {
    let issuer = start_issuer().await;
    let echo = start_echo().await;
    let dir = tempfile::tempdir().unwrap();
    let listen: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let admin: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config = |public: &str| {
        format!(
            "listen: {listen}\nadmin: {{ listen: {admin} }}\nupstream: {{ address: {} }}\n\
             issuers:\n{}policies: {{ dir: ../policies, watch: true }}\n\
             routes: {{ public: [{public}] }}\nlog: {{ format: json, decisions: all }}\n",
            echo.addr(),
            issuer_yaml("dev", &issuer, "")
        )
    };
    let schema = shipped_schema();
    let only_a = r#"permit (principal, action, resource) when { resource.path == "/a" };"#;
    let only_b = r#"permit (principal, action, resource) when { resource.path == "/b" };"#;
    let config_dir = dir.path().join("config");
    let policy_dir = dir.path().join("policies");
    configmap_version(
        &config_dir,
        "2026_12_06_00_00_01.1",
        &[("wisp.yaml", &config("/healthz"))],
    );
    configmap_version(
        &policy_dir,
        "2026_12_06_00_00_01.1",
        &[("wisp.cedarschema", &schema), ("a.cedar", only_a)],
    );
    let config_file = config_dir.join("wisp.yaml");
    let wisp = Wisp::spawn(dir, &config_file, listen, admin).await;
    wisp.wait_ready().await;
    let token = issuer.token(json!({"sub": "acme:frontend:web-1"}));
    assert_eq!(wisp.get_with_token("/a", &token).await.status, 200);
    assert_eq!(wisp.get_with_token("/b", &token).await.status, 403);

    // The policies ConfigMap changes: a.cedar becomes b's policy.
    configmap_version(
        &policy_dir,
        "2026_12_06_00_01_00.2",
        &[("wisp.cedarschema", &schema), ("a.cedar", only_b)],
    );
    eventually("the new policy allows /b", &wisp, async || {
        wisp.get_with_token("/b", &token).await.status == 200
    })
    .await;
    assert_eq!(wisp.get_with_token("/a", &token).await.status, 403);

    // The config ConfigMap changes: a new public route.
    assert_eq!(wisp.request("GET", "/open", &[]).await.status, 401);
    configmap_version(
        &config_dir,
        "2026_12_06_00_02_00.3",
        &[("wisp.yaml", &config("/open"))],
    );
    eventually("the new public route is open", &wisp, async || {
        wisp.request("GET", "/open", &[]).await.status == 200
    })
    .await;
    assert!(wisp.log().contains("config reloaded"), "{}", wisp.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn one_issuer_losing_its_keys_after_startup_does_not_make_the_process_unready() {
    let healthy = start_issuer().await;
    let failing = start_issuer().await;
    let echo = start_echo().await;
    let fast =
        "    jwks: { discovery: true, refresh: 1s, max_stale: 1s, refetch_min_interval: 1s }\n";
    let wisp = WispBuilder::new(echo.addr())
        .issuer(issuer_yaml("healthy", &healthy, ""))
        .issuer(issuer_yaml("failing", &failing, fast))
        .policy("all.cedar", ALLOW_ALL)
        .start()
        .await;
    wisp.wait_ready().await;
    let failing_token = failing.token(json!({"sub": "f"}));
    assert_eq!(wisp.get_with_token("/", &failing_token).await.status, 200);

    failing.set_discovery_status(Some(500));
    failing.set_jwks_status(Some(500));
    eventually("the failing issuer's tokens get 503", &wisp, async || {
        wisp.get_with_token("/", &failing_token).await.status == 503
    })
    .await;
    let healthy_token = healthy.token(json!({"sub": "h"}));
    assert_eq!(wisp.get_with_token("/", &healthy_token).await.status, 200);

    let ready = get(wisp.admin, "/readyz", &[]).await.unwrap();
    assert_eq!(ready.status, 200, "{}", ready.body);
    let detail = ready.json();
    let state = |name: &str| {
        detail["issuers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == name)
            .map(|i| i["state"].as_str().unwrap().to_owned())
    };
    assert_eq!(state("failing").as_deref(), Some("stale"), "{detail}");
    assert_eq!(state("healthy").as_deref(), Some("ready"), "{detail}");
    let metrics = wisp.metrics().await;
    assert_eq!(
        metric_value(&metrics, r#"wisp_jwks_ready{issuer="failing"}"#),
        0.0
    );
    assert_eq!(
        metric_value(&metrics, r#"wisp_jwks_ready{issuer="healthy"}"#),
        1.0
    );
    assert!(
        metric_value(
            &metrics,
            r#"wisp_jwks_refresh_total{issuer="failing",result="failure"}"#
        ) >= 1.0,
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn log_settings_change_on_reload() {
    let (issuer, _echo, wisp) = deploy("", &[("all.cedar", ALLOW_ALL)], "").await;
    let token = issuer.token(json!({"sub": "acme:frontend:web-1"}));
    let auth = format!("Bearer {token}");
    wisp.request(
        "GET",
        "/before",
        &[("authorization", &auth), ("x-request-id", "before")],
    )
    .await;
    assert!(wisp.decisions().iter().any(|l| l["request_id"] == "before"));

    edit_config(&wisp, |text| {
        text.replace(
            "log: { format: json, decisions: all }",
            "log: { format: text, decisions: deny }",
        )
    });
    wisp.signal("HUP");
    wisp.wait_log("config reloaded").await;
    let lines_before = wisp.log().lines().count();
    // An allowed request is no longer logged; a refused one is, as text.
    wisp.request(
        "GET",
        "/after",
        &[("authorization", &auth), ("x-request-id", "allowed")],
    )
    .await;
    assert_eq!(
        wisp.request("GET", "/after", &[("x-request-id", "refused")])
            .await
            .status,
        401
    );
    wisp.wait_log("refused").await;
    let log = wisp.log();
    let new_lines: Vec<&str> = log.lines().skip(lines_before).collect();
    assert!(!log.contains("allowed"), "{log}");
    let refused = new_lines
        .iter()
        .find(|line| line.contains("refused"))
        .unwrap();
    assert!(
        serde_json::from_str::<serde_json::Value>(refused).is_err(),
        "still JSON: {refused}"
    );
    assert!(
        refused.contains("reason=\"missing_token\"") || refused.contains("reason=missing_token"),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_file_written_in_two_steps_is_never_loaded_half_way() {
    let whole = "permit (principal, action, resource);\n\
                 @id(\"no-admin\") forbid (principal, action, resource) when { resource.path like \"/admin*\" };\n";
    let (issuer, _echo, wisp) = deploy("", &[("policy.cedar", whole)], "").await;
    let token = issuer.token(json!({"sub": "acme:frontend:web-1"}));
    assert_eq!(wisp.get_with_token("/admin", &token).await.status, 403);
    let file = wisp.dir.path().join("policies/policy.cedar");

    // An editor saving in two steps, 3 s apart: first the permissive half…
    std::fs::write(&file, "permit (principal, action, resource);\n").unwrap();
    let mut statuses = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        statuses.push(wisp.get_with_token("/admin", &token).await.status);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // … then the forbid, and a new comment (so the file differs from before).
    let mut second = std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap();
    std::io::Write::write_all(
        &mut second,
        b"@id(\"no-admin\") forbid (principal, action, resource) when { resource.path like \"/admin*\" };\n// v2\n",
    )
    .unwrap();
    drop(second);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(2) {
        statuses.push(wisp.get_with_token("/admin", &token).await.status);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(statuses.len() > 30, "{}", statuses.len());
    assert!(
        statuses.iter().all(|status| *status == 403),
        "the half-written file was loaded: {statuses:?}\n{}",
        wisp.log()
    );
    // Once it has stayed the same for the settle interval, the whole file loads.
    wisp.wait_log("policies reloaded").await;
    assert_eq!(wisp.get_with_token("/admin", &token).await.status, 403);
    assert_eq!(wisp.get_with_token("/api", &token).await.status, 200);
}
