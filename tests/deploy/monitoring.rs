//! deploy/prometheus and deploy/grafana: promtool, and every metric they
//! query against what a running wisp exposes.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::common::*;

use super::*;

#[test]
fn alert_rules_pass_promtool() {
    let provides = "apt-get install -y prometheus (for promtool)";
    let check = tool(
        "promtool",
        &["check", "rules", "deploy/prometheus/wisp-rules.yaml"],
        provides,
    );
    succeeded(&check, "promtool check rules");
    let test = tool(
        "promtool",
        &["test", "rules", "deploy/prometheus/wisp-rules.test.yaml"],
        provides,
    );
    succeeded(&test, "promtool test rules");
}

/// Metric names in a PromQL expression (or text): `wisp_*` and `process_*`
/// identifiers, histogram suffixes removed.
fn metric_names(text: &str, out: &mut BTreeSet<String>) {
    let bytes = text.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while i < bytes.len() {
        let starts = (i == 0 || !ident(bytes[i - 1]))
            && (text[i..].starts_with("wisp_") || text[i..].starts_with("process_"));
        if !starts {
            i += 1;
            continue;
        }
        let end = (i..bytes.len())
            .find(|&j| !ident(bytes[j]))
            .unwrap_or(bytes.len());
        let name = &text[i..end];
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        out.insert(family.to_string());
        i = end;
    }
}

fn strings_under(value: &Value, keys: &[&str], out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match v {
                    Value::String(s) if keys.contains(&k.as_str()) => out.push(s.clone()),
                    _ => strings_under(v, keys, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| strings_under(v, keys, out)),
        _ => {}
    }
}

fn dashboard() -> Value {
    serde_json::from_str(&read("deploy/grafana/wisp.json")).expect("wisp.json is JSON")
}

#[test]
fn dashboard_uses_a_datasource_variable_and_instance_filter() {
    let dashboard = dashboard();
    assert!(dashboard["schemaVersion"].as_u64().unwrap() >= 36);
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    let variable = |name: &str| {
        variables
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no ${name}"))
    };
    assert_eq!(variable("datasource")["type"], "datasource");
    assert_eq!(variable("datasource")["query"], "prometheus");
    variable("instance");
    let panels: Vec<&Value> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["type"] != "row")
        .collect();
    assert!(panels.len() >= 10);
    for panel in panels {
        let title = &panel["title"];
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            assert!(
                expr.contains("instance=~\"$instance\""),
                "{title}: {expr} ignores $instance"
            );
        }
    }
}

/// Every metric family a running wisp exposes, on a TLS listener (for the
/// certificate metrics) after an allowed and an unauthenticated request.
async fn exposed_families() -> BTreeSet<String> {
    let pki = common::tls::Pki::new();
    let (issuer, _echo, wisp) = deploy(
        "",
        &[(
            "allow.cedar",
            "permit (principal, action, resource) when { resource.path like \"/api/*\" };\n",
        )],
        &pki.listener_yaml("optional"),
    )
    .await;
    let token = issuer.token(serde_json::json!({"sub": "acme:frontend:web-1"}));
    let client = pki.client();
    let allowed = client
        .get_with_token(wisp.listen, "/api/orders", &token)
        .await;
    assert_eq!(allowed.expect("allowed request").status, 200);
    let missing = client.request(wisp.listen, "GET", "/api/orders", &[]).await;
    assert_eq!(missing.expect("request without token").status, 401);
    wisp.metrics()
        .await
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn alerts_and_dashboard_query_only_metrics_wisp_exposes() {
    let mut queried: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let rules = yaml(
        &read("deploy/prometheus/wisp-rules.yaml"),
        "wisp-rules.yaml",
    );
    let mut texts = Vec::new();
    strings_under(&rules, &["expr", "runbook", "description"], &mut texts);
    let mut names = BTreeSet::new();
    texts.iter().for_each(|t| metric_names(t, &mut names));
    queried.insert("deploy/prometheus/wisp-rules.yaml".into(), names);
    let mut texts = Vec::new();
    strings_under(&dashboard(), &["expr", "query", "definition"], &mut texts);
    let mut names = BTreeSet::new();
    texts.iter().for_each(|t| metric_names(t, &mut names));
    queried.insert("deploy/grafana/wisp.json".into(), names);
    assert!(queried.values().all(|n| n.len() >= 5), "{queried:?}");

    let exposed = exposed_families().await;
    let missing: Vec<String> = queried
        .iter()
        .flat_map(|(file, names)| {
            names
                .difference(&exposed)
                .map(move |n| format!("{file}: {n}"))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "queried but not exposed by wisp:\n{}\nexposed: {exposed:?}",
        missing.join("\n")
    );
}
