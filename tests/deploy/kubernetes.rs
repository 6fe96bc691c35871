//! deploy/kubernetes: rendered with kustomize, validated against the
//! Kubernetes schemas, cross-checked with the wisp config it mounts.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::*;

const KUBERNETES: &str = "deploy/kubernetes";
const OVERLAYS: [&str; 2] = [
    "deploy/kubernetes/base",
    "deploy/kubernetes/overlays/example",
];
const KUBECTL: &str = "install `kubectl` (it includes kustomize; Kubernetes' apt repository)";
const KUBERNETES_VALIDATE: &str = "pip install kubernetes-validate";

fn kustomizations() -> Vec<PathBuf> {
    let mut files = Vec::new();
    files_under(repo(), KUBERNETES, &mut files);
    files
        .into_iter()
        .filter(|f| f.ends_with("/kustomization.yaml"))
        .map(PathBuf::from)
        .collect()
}

/// Files a kustomization names that are not full objects: patches and
/// generator inputs.
fn kustomization_inputs() -> BTreeSet<PathBuf> {
    let mut inputs = BTreeSet::new();
    for file in kustomizations() {
        let dir = file.parent().unwrap().to_path_buf();
        let k = yaml(&read(file.to_str().unwrap()), &file.display().to_string());
        let list = |key: &str| k[key].as_array().cloned().unwrap_or_default();
        for resource in list("resources") {
            let path = dir.join(resource.as_str().expect("resource path"));
            assert!(
                repo().join(&path).exists(),
                "{}: resource {} does not exist",
                file.display(),
                path.display()
            );
        }
        for patch in list("patches") {
            if let Some(path) = patch["path"].as_str() {
                let path = dir.join(path);
                assert!(
                    repo().join(&path).is_file(),
                    "{}: patch {} does not exist",
                    file.display(),
                    path.display()
                );
                inputs.insert(path);
            }
        }
        for generator in list("configMapGenerator") {
            for source in generator["files"].as_array().cloned().unwrap_or_default() {
                let source = source.as_str().expect("generator file");
                let path = dir.join(source.rsplit('=').next().unwrap());
                assert!(
                    repo().join(&path).is_file(),
                    "{}: {} does not exist",
                    file.display(),
                    path.display()
                );
                inputs.insert(path);
            }
        }
    }
    inputs
}

fn kubernetes_validate(files: &[PathBuf]) {
    for version in ["1.30.0", "1.37.0"] {
        let mut args = vec!["--strict", "--quiet", "-k", version];
        let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        args.extend(names.iter().map(String::as_str));
        let output = tool("kubernetes-validate", &args, KUBERNETES_VALIDATE);
        succeeded(
            &output,
            &format!("kubernetes-validate --strict -k {version}"),
        );
    }
}

/// `kubectl kustomize <dir>`: the objects `kubectl apply -k` would send.
fn render(dir: &str) -> (String, Vec<Value>) {
    let output = tool("kubectl", &["kustomize", dir], KUBECTL);
    let text = succeeded(&output, &format!("kubectl kustomize {dir}"));
    let docs = yaml_documents(&text, dir);
    (text, docs)
}

fn object<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind}"))
}

fn config_map<'a>(docs: &'a [Value], name: &str) -> &'a serde_json::Map<String, Value> {
    docs.iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == name)
        .and_then(|d| d["data"].as_object())
        .unwrap_or_else(|| panic!("no ConfigMap {name} with data"))
}

#[test]
fn kubernetes_manifests_render_and_validate() {
    let inputs = kustomization_inputs();
    let mut files = Vec::new();
    files_under(repo(), KUBERNETES, &mut files);
    let mut objects = Vec::new();
    for file in files.iter().map(PathBuf::from) {
        let is_yaml = file.extension().is_some_and(|e| e == "yaml");
        if !is_yaml || file.ends_with("kustomization.yaml") || inputs.contains(&file) {
            continue;
        }
        let docs = yaml_documents(&read(file.to_str().unwrap()), &file.display().to_string());
        assert!(!docs.is_empty(), "{}: empty", file.display());
        for doc in &docs {
            assert!(
                doc["apiVersion"].is_string()
                    && doc["kind"].is_string()
                    && doc["metadata"]["name"].is_string(),
                "{}: not an object",
                file.display()
            );
        }
        // kubernetes-validate has no schema for the Prometheus Operator's
        // CRDs (it warns and passes them): checked by hand below.
        if docs.iter().all(|d| {
            !d["apiVersion"]
                .as_str()
                .unwrap()
                .starts_with("monitoring.coreos.com/")
        }) {
            objects.push(file);
        }
    }
    assert!(objects.len() >= 5, "{objects:?}");
    kubernetes_validate(&objects);

    let dir = tempfile::tempdir().unwrap();
    for overlay in OVERLAYS {
        let (text, docs) = render(overlay);
        let rendered = dir
            .path()
            .join(format!("{}.yaml", overlay.replace('/', "_")));
        std::fs::write(&rendered, text).unwrap();
        kubernetes_validate(&[rendered]);
        let monitor = object(&docs, "PodMonitor");
        assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
        check_deployment(overlay, &docs);
    }
}

fn wisp_container(pod: &Value) -> &Value {
    pod["initContainers"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "wisp"))
        .expect("wisp among the initContainers (a native sidecar)")
}

fn named_port(container: &Value, port: &Value) -> u64 {
    match port {
        Value::Number(n) => n.as_u64().unwrap(),
        Value::String(name) => container["ports"]
            .as_array()
            .and_then(|ports| ports.iter().find(|p| p["name"] == name.as_str()))
            .and_then(|p| p["containerPort"].as_u64())
            .unwrap_or_else(|| panic!("no port named {name}")),
        other => panic!("port {other}"),
    }
}

/// The Deployment, Service, NetworkPolicy and PodMonitor agree with the
/// wisp config they mount.
fn check_deployment(overlay: &str, docs: &[Value]) {
    let deployment = object(docs, "Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let wisp = wisp_container(pod);
    let config = yaml(
        config_map(docs, "wisp-config")["wisp.yaml"]
            .as_str()
            .unwrap(),
        "wisp.yaml",
    );
    let listen = port_of(config["listen"].as_str().unwrap());
    let admin = port_of(config["admin"]["listen"].as_str().unwrap());
    let app = port_of(config["upstream"]["address"].as_str().unwrap());
    assert!(
        config["upstream"]["address"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"),
        "{overlay}: the app must be on loopback"
    );

    assert_eq!(wisp["restartPolicy"], "Always", "{overlay}");
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &wisp[probe]["httpGet"];
        assert_eq!(get["path"], path, "{overlay} {probe}");
        assert_eq!(
            named_port(wisp, &get["port"]),
            admin,
            "{overlay} {probe} must use the admin port"
        );
    }
    for container in std::iter::once(wisp).chain(pod["containers"].as_array().unwrap()) {
        let security = &container["securityContext"];
        let name = &container["name"];
        assert_eq!(security["readOnlyRootFilesystem"], true, "{overlay} {name}");
        assert_eq!(
            security["allowPrivilegeEscalation"], false,
            "{overlay} {name}"
        );
        assert_eq!(security["runAsNonRoot"], true, "{overlay} {name}");
        assert_eq!(
            security["capabilities"]["drop"],
            serde_json::json!(["ALL"]),
            "{overlay} {name}"
        );
        assert_eq!(
            security["seccompProfile"]["type"], "RuntimeDefault",
            "{overlay} {name}"
        );
        assert!(
            container["resources"]["limits"]["memory"].is_string(),
            "{overlay} {name}: memory limit"
        );
    }

    // Termination: the app's preStop sleep, then wisp's drain, within the grace period.
    let pre_stop: u64 = pod["containers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["lifecycle"]["preStop"]["sleep"]["seconds"].as_u64())
        .max()
        .unwrap_or(0);
    let grace = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("terminationGracePeriodSeconds");
    assert!(
        Duration::from_secs(grace) > shutdown_budget(&config) + Duration::from_secs(pre_stop),
        "{overlay}: terminationGracePeriodSeconds {grace} ≤ preStop + drain_delay + shutdown_grace"
    );
    assert!(
        wisp["lifecycle"].is_null(),
        "{overlay}: wisp drains on SIGTERM itself, no preStop"
    );

    // The API-server token wisp sends on discovery fetches.
    let token_file = config["issuers"][0]["jwks"]["bearer_token_file"]
        .as_str()
        .expect("bearer_token_file");
    let (token_dir, token_name) = token_file.rsplit_once('/').unwrap();
    let mount = wisp["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == token_dir)
        .unwrap_or_else(|| panic!("{overlay}: nothing mounted at {token_dir}"));
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap();
    let source = &volume["projected"]["sources"][0]["serviceAccountToken"];
    assert_eq!(source["path"], token_name, "{overlay}");
    assert!(
        source["audience"].is_null(),
        "{overlay}: the token is for the API server"
    );

    // Traffic: the Service and the NetworkPolicy reach wisp, never the app.
    let service = object(docs, "Service");
    for port in service["spec"]["ports"].as_array().unwrap() {
        assert_eq!(
            named_port(wisp, &port["targetPort"]),
            listen,
            "{overlay}: Service must target wisp"
        );
    }
    let labels = deployment["spec"]["template"]["metadata"]["labels"]
        .as_object()
        .unwrap();
    let selects_pods = |selector: &Value| {
        let selector = selector
            .as_object()
            .filter(|s| !s.is_empty())
            .expect("a non-empty selector");
        selector.iter().all(|(k, v)| labels.get(k) == Some(v))
    };
    assert!(
        selects_pods(&service["spec"]["selector"]),
        "{overlay}: Service selector"
    );
    let policy = object(docs, "NetworkPolicy");
    assert!(
        selects_pods(&policy["spec"]["podSelector"]["matchLabels"]),
        "{overlay}: NetworkPolicy selector"
    );
    for rule in policy["spec"]["ingress"].as_array().unwrap() {
        for port in rule["ports"]
            .as_array()
            .expect("ingress rules name their ports")
        {
            let port = port["port"].as_u64().unwrap();
            assert!(
                port == listen || port == admin,
                "{overlay}: NetworkPolicy admits port {port}"
            );
            assert_ne!(port, app);
        }
    }
    let monitor = object(docs, "PodMonitor");
    assert!(
        selects_pods(&monitor["spec"]["selector"]["matchLabels"]),
        "{overlay}: PodMonitor selector"
    );
    let endpoint = &monitor["spec"]["podMetricsEndpoints"][0];
    assert_eq!(
        named_port(wisp, &endpoint["port"]),
        admin,
        "{overlay}: PodMonitor port"
    );
    assert_eq!(endpoint["path"], "/metrics");

    // Every container runs a wisp subcommand that exists.
    for container in std::iter::once(wisp).chain(pod["containers"].as_array().unwrap()) {
        let args: Vec<&str> = container["args"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        assert_wisp_subcommand(&args, &format!("{overlay} container {}", container["name"]));
    }
}

#[test]
fn kubernetes_configmaps_hold_a_config_and_policies_wisp_accepts() {
    assert_eq!(
        read("deploy/kubernetes/base/policies/wisp.cedarschema"),
        read("policies/wisp.cedarschema"),
        "the base's schema is a copy of policies/wisp.cedarschema"
    );
    let ca = common::tls::Ca::new("throwaway cluster CA").pem();
    for overlay in OVERLAYS {
        let (_, docs) = render(overlay);
        let pod = &object(&docs, "Deployment")["spec"]["template"]["spec"];
        let wisp = wisp_container(pod);
        // The pod's filesystem, under a temp dir: each ConfigMap where wisp mounts it.
        let root = tempfile::tempdir().unwrap();
        let at = |path: &str| root.path().join(path.trim_start_matches('/'));
        for mount in wisp["volumeMounts"].as_array().unwrap() {
            let volume = pod["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["name"] == mount["name"])
                .unwrap();
            if let Some(name) = volume["configMap"]["name"].as_str() {
                let dir = at(mount["mountPath"].as_str().unwrap());
                std::fs::create_dir_all(&dir).unwrap();
                for (key, value) in config_map(&docs, name) {
                    std::fs::write(dir.join(key), value.as_str().unwrap()).unwrap();
                }
            }
        }
        let args: Vec<&str> = wisp["args"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(args[0], "serve", "{overlay}");
        let config = args
            .windows(2)
            .find(|w| w[0] == "--config")
            .map(|w| at(w[1]))
            .expect("--config");
        assert!(
            config.is_file(),
            "{overlay}: --config is not in a mounted ConfigMap"
        );

        // Pod-only files: the cluster CA and the projected token.
        let text = std::fs::read_to_string(&config).unwrap();
        let jwks = &yaml(&text, "wisp.yaml")["issuers"][0]["jwks"];
        for (key, contents) in [
            ("ca", ca.as_str()),
            ("bearer_token_file", "not-a-real-token\n"),
        ] {
            let path = at(jwks[key]
                .as_str()
                .unwrap_or_else(|| panic!("{overlay}: jwks.{key}")));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, contents).unwrap();
        }
        let mut rooted = text.clone();
        for prefix in ["/etc/wisp/", "/var/run/"] {
            rooted = rooted.replace(prefix, &format!("{}{prefix}", root.path().display()));
        }
        assert_ne!(rooted, text);
        std::fs::write(&config, rooted).unwrap();
        wisp_check(&config);
    }
}
