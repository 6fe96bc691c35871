//! Which published keys count, through the real binary: keys validated at
//! load (an EC point off its curve is skipped, not counted), the bound on
//! keys tried for a token without `kid`, `jwks.max_bytes`, and the dev
//! issuer's other algorithms (RS256 for Kubernetes-shaped issuers, ES512).

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::*;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use wisp::devtools::issuer::{DevIssuer, DevIssuerOptions};

const ALL: &str = "@id(\"all\") permit (principal, action, resource);";

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `count` fresh P-256 public JWKs (no `kid`).
fn p256_jwks(count: usize) -> Vec<Value> {
    let rng = SystemRandom::new();
    (0..count)
        .map(|_| {
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .expect("generate");
            let pair =
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                    .expect("parse");
            let (x, y) = pair.public_key().as_ref()[1..].split_at(32);
            json!({"kty": "EC", "crv": "P-256", "x": b64(x), "y": b64(y)})
        })
        .collect()
}

/// The dev issuer's published key(s).
fn published(issuer: &DevIssuer) -> Vec<Value> {
    let jwks: Value = serde_json::from_str(&issuer.jwks_json()).expect("jwks json");
    jwks["keys"].as_array().expect("keys").clone()
}

/// `key` with `y` replaced by a coordinate that puts it off the curve.
fn off_curve(mut key: Value) -> Value {
    let mut y = URL_SAFE_NO_PAD
        .decode(key["y"].as_str().expect("y"))
        .expect("base64url");
    y[31] ^= 1;
    key["y"] = json!(b64(&y));
    key
}

fn write_jwks(dir: &Path, name: &str, keys: &[Value], padding: usize) -> String {
    let mut doc = json!({ "keys": keys });
    if padding > 0 {
        doc["x-padding"] = json!("p".repeat(padding));
    }
    let path = dir.join(name);
    std::fs::write(&path, doc.to_string()).expect("write jwks");
    path.display().to_string()
}

fn file_issuer(name: &str, iss: &str, path: &str, extra: &str) -> String {
    format!(
        "  - name: {name}\n    issuer: {iss}\n    jwks: {{ file: {path}{extra} }}\n    audiences: [orders]\n    algorithms: [ES256]\n"
    )
}

/// `/readyz`'s entry for issuer `name`.
async fn readiness(wisp: &Wisp, name: &str) -> (u16, Value) {
    let ready = get(wisp.admin, "/readyz", &[]).await.expect("readyz");
    let detail = ready.json();
    let entry = detail["issuers"]
        .as_array()
        .and_then(|issuers| issuers.iter().find(|i| i["name"] == name).cloned())
        .unwrap_or(Value::Null);
    (ready.status, entry)
}

/// Waits until issuer `name` has been fetched at least once (successfully or not).
async fn wait_fetched(wisp: &Wisp, name: &str) -> (u16, Value) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, entry) = readiness(wisp, name).await;
        if entry["ready"] == true || entry["last_error"].is_string() {
            return (status, entry);
        }
        assert!(Instant::now() < deadline, "{name} never fetched: {entry}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_off_curve_key_is_not_counted_and_an_issuer_with_only_that_key_is_not_ready() {
    let issuer = start_issuer().await;
    let echo = start_echo().await;
    let keys_dir = tempfile::tempdir().expect("tempdir");
    let good = published(&issuer);
    let mut bad = off_curve(good[0].clone());
    bad["kid"] = json!("off-curve");
    let only_bad = write_jwks(keys_dir.path(), "bad.json", &[bad.clone()], 0);
    let mixed = write_jwks(keys_dir.path(), "mixed.json", &[good[0].clone(), bad], 0);
    let wisp = WispBuilder::new(echo.addr())
        .issuer(file_issuer("bad", "https://bad.example", &only_bad, ""))
        .issuer(file_issuer("mixed", issuer.issuer_url(), &mixed, ""))
        .policy("all.cedar", ALL)
        .start()
        .await;

    let (_, mixed_entry) = wait_fetched(&wisp, "mixed").await;
    assert_eq!(
        mixed_entry["keys"], 1,
        "only the valid key counts: {mixed_entry}"
    );
    let (status, bad_entry) = wait_fetched(&wisp, "bad").await;
    assert_eq!(
        status, 503,
        "an issuer with no usable key keeps wisp unready"
    );
    assert_eq!(bad_entry["ready"], false, "{bad_entry}");
    assert_eq!(bad_entry["keys"], 0, "{bad_entry}");
    let error = bad_entry["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains(r#"kid "off-curve": EC point is not on the curve"#),
        "{error}"
    );

    let metrics = wisp.metrics().await;
    assert_eq!(
        metric_value(&metrics, r#"wisp_jwks_keys{issuer="mixed"}"#),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        metric_value(&metrics, r#"wisp_jwks_keys{issuer="bad"}"#),
        0.0
    );
    wisp.wait_log("jwks key skipped").await;
    let skipped: Vec<Value> = wisp
        .log()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["message"] == "jwks key skipped")
        .collect();
    assert!(
        skipped.iter().any(|line| line["issuer"] == "mixed"
            && line["kid"] == "off-curve"
            && line["reason"] == "EC point is not on the curve"),
        "{skipped:?}"
    );

    // The valid key of the mixed issuer verifies as usual.
    let token = issuer.token(json!({"sub": "acme:a:b"}));
    assert_eq!(wisp.get_with_token("/", &token).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_without_kid_against_2000_keys_is_unknown_key() {
    let issuer = start_issuer().await;
    let echo = start_echo().await;
    let keys_dir = tempfile::tempdir().expect("tempdir");
    let mut keys = p256_jwks(1_999);
    keys.extend(published(&issuer));
    let path = write_jwks(keys_dir.path(), "many.json", &keys, 0);
    let wisp = WispBuilder::new(echo.addr())
        .issuer(file_issuer("many", issuer.issuer_url(), &path, ""))
        .policy("all.cedar", ALL)
        .start()
        .await;
    wisp.wait_ready().await;
    let (_, entry) = readiness(&wisp, "many").await;
    assert_eq!(entry["keys"], 2_000, "{entry}");

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let claims = json!({"sub": "acme:a:b", "iss": issuer.issuer_url(), "aud": "orders",
                        "exp": now + 300, "iat": now});
    let kidless = issuer.raw(&issuer.kid(), json!({"alg": "ES256"}), claims.clone());
    let response = wisp.get_with_token("/", &kidless).await;
    assert_eq!(response.status, 401, "{}", response.body);
    assert_eq!(response.json()["reason"], "unknown_key");
    // The same key set verifies a token that names its key.
    let with_kid = issuer.raw(
        &issuer.kid(),
        json!({"alg": "ES256", "kid": issuer.kid()}),
        claims,
    );
    assert_eq!(wisp.get_with_token("/", &with_kid).await.status, 200);
    assert_eq!(echo.requests(), 1);
}

/// Serves `body` as `200 application/json` to every request, forever.
async fn serve_static(body: String) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(body.as_bytes()).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread")]
async fn a_jwks_over_the_default_cap_loads_when_max_bytes_allows_it() {
    let issuer = start_issuer().await;
    let echo = start_echo().await;
    let doc = json!({ "keys": published(&issuer), "x-padding": "p".repeat(1_200_000) });
    let server = serve_static(doc.to_string()).await;
    let uri = format!("http://{server}/jwks.json");
    let keys_dir = tempfile::tempdir().expect("tempdir");
    let file = write_jwks(keys_dir.path(), "big.json", &published(&issuer), 1_200_000);
    let http = |name: &str, iss: &str, extra: &str| {
        format!(
            "  - name: {name}\n    issuer: {iss}\n    jwks: {{ uri: '{uri}'{extra} }}\n    audiences: [orders]\n    algorithms: [ES256]\n"
        )
    };
    let wisp = WispBuilder::new(echo.addr())
        .issuer(http("capped", "https://capped.example", ""))
        .issuer(http("roomy", issuer.issuer_url(), ", max_bytes: 2MiB"))
        .issuer(file_issuer(
            "capped-file",
            "https://capped-file.example",
            &file,
            "",
        ))
        .issuer(file_issuer(
            "roomy-file",
            "https://roomy-file.example",
            &file,
            ", max_bytes: 2MiB",
        ))
        .policy("all.cedar", ALL)
        .start()
        .await;

    for name in ["capped", "capped-file"] {
        let (_, entry) = wait_fetched(&wisp, name).await;
        assert_eq!(entry["ready"], false, "{entry}");
        let error = entry["last_error"].as_str().unwrap_or_default();
        assert!(
            error.contains("larger than 1048576 bytes (jwks.max_bytes)"),
            "{name}: {error}"
        );
    }
    for name in ["roomy", "roomy-file"] {
        let (_, entry) = wait_fetched(&wisp, name).await;
        assert_eq!(entry["ready"], true, "{entry}");
        assert_eq!(entry["keys"], 1, "{entry}");
    }
    let token = issuer.token(json!({"sub": "acme:a:b"}));
    assert_eq!(wisp.get_with_token("/", &token).await.status, 200);
}

/// `wisp dev-issuer` as a child process, killed on drop.
struct DevIssuerProcess(Child);

impl Drop for DevIssuerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// POSTs `body` and returns the response body.
async fn post(addr: SocketAddr, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test(flavor = "multi_thread")]
async fn dev_issuer_mints_kubernetes_shaped_rs256_tokens_that_wisp_verifies() {
    const ISS: &str = "https://kubernetes.default.svc.cluster.local";
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let _dev = DevIssuerProcess(
        Command::new(env!("CARGO_BIN_EXE_wisp"))
            .args(["dev-issuer", "--listen", &addr.to_string()])
            .args(["--issuer", ISS, "--audience", "orders", "--alg", "RS256"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn wisp dev-issuer"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let discovery = loop {
        if let Ok(response) = get(addr, "/.well-known/openid-configuration", &[]).await {
            break response.json();
        }
        assert!(Instant::now() < deadline, "dev issuer did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(discovery["issuer"], ISS);
    assert_eq!(discovery["jwks_uri"], format!("http://{addr}/jwks.json"));
    assert_eq!(
        discovery["id_token_signing_alg_values_supported"],
        json!(["RS256"])
    );

    let (status, token) = post(
        addr,
        "/token",
        r#"{"sub":"system:serviceaccount:shop:web","kubernetes.io":{"namespace":"shop","serviceaccount":{"name":"web"}}}"#,
    )
    .await;
    assert_eq!(status, 200, "{token}");
    let token = token.trim_end();
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap_or_default())
            .expect("header"),
    )
    .expect("header json");
    assert_eq!(header["alg"], "RS256");

    let echo = start_echo().await;
    let jwks_uri = discovery["jwks_uri"].as_str().unwrap_or_default();
    let wisp = WispBuilder::new(echo.addr())
        .issuer(format!(
            "  - name: kubernetes\n    issuer: {ISS}\n    preset: kubernetes\n    jwks: {{ uri: '{jwks_uri}' }}\n    audiences: [orders]\n    algorithms: [RS256]\n"
        ))
        .policy("all.cedar", ALL)
        .start()
        .await;
    wisp.wait_ready().await;
    let response = wisp.get_with_token("/", token).await;
    assert_eq!(response.status, 200, "{}", response.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_es512_dev_issuer_is_verified_end_to_end() {
    let issuer = DevIssuer::start(
        "127.0.0.1:0".parse().unwrap(),
        DevIssuerOptions {
            default_audience: "orders".into(),
            alg: "ES512".parse().unwrap(),
            ..DevIssuerOptions::default()
        },
    )
    .await
    .expect("dev issuer");
    let echo = start_echo().await;
    let yaml = |name: &str, algorithms: &str| {
        format!(
            "  - name: {name}\n    issuer: {iss}\n    jwks: {{ discovery: true }}\n    audiences: [orders]\n    algorithms: [{algorithms}]\n",
            iss = issuer.issuer_url()
        )
    };
    let wisp = WispBuilder::new(echo.addr())
        .issuer(yaml("p521", "ES256, ES512"))
        .policy("all.cedar", ALL)
        .start()
        .await;
    wisp.wait_ready().await;
    let token = issuer.token(json!({"sub": "acme:a:b"}));
    let response = wisp.get_with_token("/", &token).await;
    assert_eq!(response.status, 200, "{}", response.body);

    // Tampered: another subject under the same signature.
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("payload")).expect("json");
    claims["sub"] = json!("acme:admin:x");
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64(claims.to_string().as_bytes()),
        parts[2]
    );
    let response = wisp.get_with_token("/", &forged).await;
    assert_eq!(response.status, 401);
    assert_eq!(response.json()["reason"], "bad_signature");
    assert_eq!(echo.requests(), 1);
}
