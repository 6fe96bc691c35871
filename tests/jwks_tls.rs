//! In-cluster issuers (`issuers[].jwks.ca`, `issuers[].jwks.bearer_token_file`)
//! through the real binary: a Kubernetes-API-like issuer served over HTTPS
//! with a private CA, answering 401 unless the expected bearer token comes.

mod common;

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::tls::{Ca, Leaf};
use common::*;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use serde_json::json;

fn policy() -> &'static str {
    "@id(\"all\") permit (principal, action, resource);"
}

/// A token value that can be searched for in logs.
fn secret(label: &str) -> String {
    format!("wisp-test-secret-{label}-{}", std::process::id())
}

/// An OIDC issuer on `https://127.0.0.1:<port>` (private CA): discovery and
/// `/jwks.json` (the dev issuer's keys), each answered only when the request
/// carries `Authorization: Bearer <expected>`.
struct ClusterIssuer {
    keys: DevIssuer,
    url: String,
    state: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Seen {
    expected: String,
    /// The bearer tokens of the requests answered 200, in order.
    accepted: Vec<String>,
    rejected: usize,
    /// Answer every accepted request with a redirect to this origin.
    redirect_to: Option<String>,
}

impl ClusterIssuer {
    async fn start(ca: &Ca, expected: &str) -> ClusterIssuer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let keys = DevIssuer::start(
            "127.0.0.1:0".parse().unwrap(),
            DevIssuerOptions {
                issuer: Some(url.clone()),
                default_audience: "orders".into(),
                ..DevIssuerOptions::default()
            },
        )
        .await
        .unwrap();
        let state = Arc::new(Mutex::new(Seen {
            expected: expected.to_string(),
            ..Seen::default()
        }));
        let acceptor = tls_acceptor(&ca.server_cert());
        let (served_keys, served_state, served_url) = (keys.clone(), state.clone(), url.clone());
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let (keys, state, url) = (
                    served_keys.clone(),
                    served_state.clone(),
                    served_url.clone(),
                );
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |request| {
                        std::future::ready(Ok::<_, Infallible>(answer(
                            &request, &keys, &state, &url,
                        )))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        ClusterIssuer {
            keys,
            url,
            state,
            task,
        }
    }

    /// From now on only `token` is accepted.
    fn expect(&self, token: &str) {
        self.state.lock().unwrap().expected = token.to_string();
    }

    /// From now on accepted requests are redirected to `origin` (same path).
    fn redirect_to(&self, origin: &str) {
        self.state.lock().unwrap().redirect_to = Some(origin.to_string());
    }

    fn accepted(&self) -> Vec<String> {
        self.state.lock().unwrap().accepted.clone()
    }

    fn rejected(&self) -> usize {
        self.state.lock().unwrap().rejected
    }

    /// The `issuers:` entry for wisp, `jwks:` given inline.
    fn yaml(&self, jwks: &str) -> String {
        format!(
            "  - name: cluster\n    issuer: {}\n    jwks: {jwks}\n    audiences: [orders]\n    algorithms: [ES256]\n",
            self.url
        )
    }
}

impl Drop for ClusterIssuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn answer(
    request: &http::Request<hyper::body::Incoming>,
    keys: &DevIssuer,
    state: &Mutex<Seen>,
    url: &str,
) -> http::Response<Full<Bytes>> {
    let presented = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let mut seen = state.lock().unwrap();
    let respond = |status: u16, body: String| {
        http::Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    };
    if presented.as_deref() != Some(seen.expected.as_str()) {
        seen.rejected += 1;
        return respond(401, r#"{"kind":"Status","code":401}"#.to_string());
    }
    seen.accepted.extend(presented);
    if let Some(origin) = &seen.redirect_to {
        return http::Response::builder()
            .status(307)
            .header("location", format!("{origin}{}", request.uri().path()))
            .body(Full::new(Bytes::new()))
            .unwrap();
    }
    match request.uri().path() {
        "/.well-known/openid-configuration" => respond(
            200,
            json!({"issuer": url, "jwks_uri": format!("{url}/jwks.json")}).to_string(),
        ),
        "/jwks.json" => respond(200, keys.jwks_json()),
        _ => respond(404, "{}".to_string()),
    }
}

fn tls_acceptor(server: &Leaf) -> tokio_rustls::TlsAcceptor {
    let provider = Arc::new(wisp::tls::ring_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![server.der.clone()], server.key())
        .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// The CA bundle and a token file, written into a temp dir.
struct Files {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    token: PathBuf,
}

impl Files {
    fn new(ca: &Ca, token: &str) -> Files {
        let dir = tempfile::tempdir().unwrap();
        let (ca_path, token_path) = (dir.path().join("ca.pem"), dir.path().join("token"));
        std::fs::write(&ca_path, ca.pem()).unwrap();
        // Trailing newline, as kubelet-written and hand-written files have.
        std::fs::write(&token_path, format!("{token}\n")).unwrap();
        Files {
            _dir: dir,
            ca: ca_path,
            token: token_path,
        }
    }
}

fn quoted(path: &Path) -> String {
    format!("'{}'", path.display())
}

async fn start_wisp(echo: &EchoServer, issuer_yaml: String) -> Wisp {
    WispBuilder::new(echo.addr())
        .issuer(issuer_yaml)
        .policy("all.cedar", policy())
        .start()
        .await
}

async fn readyz(wisp: &Wisp) -> Response {
    get(wisp.admin, "/readyz", &[]).await.unwrap()
}

/// Polls `/readyz` until `done` holds for the `cluster` issuer's entry.
async fn wait_for_issuer(wisp: &Wisp, what: &str, done: impl Fn(&serde_json::Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let detail = readyz(wisp).await.json();
        if done(&detail["issuers"][0]) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {detail}\n{}",
            wisp.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn assert_never_shown(wisp: &Wisp, readyz_body: &str, token: &str) {
    assert!(
        !wisp.log().contains(token),
        "token in stderr:\n{}",
        wisp.log()
    );
    assert!(
        !readyz_body.contains(token),
        "token in /readyz: {readyz_body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_issuer_behind_a_private_ca_and_a_bearer_token_lets_its_tokens_through() {
    let ca = Ca::new("cluster test CA");
    let token = secret("a");
    let issuer = ClusterIssuer::start(&ca, &token).await;
    let files = Files::new(&ca, &token);
    let echo = start_echo().await;
    let jwks = format!(
        "{{ discovery: true, ca: {}, bearer_token_file: {} }}",
        quoted(&files.ca),
        quoted(&files.token)
    );
    let wisp = start_wisp(&echo, issuer.yaml(&jwks)).await;
    wisp.wait_ready().await;

    let jwt = issuer
        .keys
        .token(json!({"sub": "system:serviceaccount:shop:web"}));
    let response = wisp.get_with_token("/api", &jwt).await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(echo.requests(), 1);
    // Discovery and the JWKS both carried the token, trimmed.
    assert!(issuer.accepted().len() >= 2, "{:?}", issuer.accepted());
    assert!(issuer.accepted().iter().all(|seen| *seen == token));
    assert_eq!(issuer.rejected(), 0);

    let ready = readyz(&wisp).await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_never_shown(&wisp, &ready.body, &token);
    drop(files);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_issuers_ca_keys_never_load_and_readyz_shows_the_tls_error() {
    let ca = Ca::new("cluster test CA");
    let token = secret("b");
    let issuer = ClusterIssuer::start(&ca, &token).await;
    let files = Files::new(&ca, &token);
    let echo = start_echo().await;
    // The same issuer, but trusting the system roots only.
    let jwks = format!(
        "{{ discovery: true, bearer_token_file: {} }}",
        quoted(&files.token)
    );
    let wisp = start_wisp(&echo, issuer.yaml(&jwks)).await;

    wait_for_issuer(&wisp, "a TLS error", |issuer| {
        issuer["last_error"].is_string()
    })
    .await;
    let ready = readyz(&wisp).await;
    assert_eq!(ready.status, 503, "never had keys: {}", ready.body);
    let detail = ready.json();
    let error = detail["issuers"][0]["last_error"].as_str().unwrap();
    assert!(error.contains(&issuer.url), "{error}");
    assert!(
        error.contains("certificate") && error.contains("UnknownIssuer"),
        "the TLS cause is shown: {error}"
    );
    assert_eq!(detail["issuers"][0]["ready"], false);

    let jwt = issuer
        .keys
        .token(json!({"sub": "system:serviceaccount:shop:web"}));
    let response = wisp.get_with_token("/api", &jwt).await;
    assert_eq!(response.status, 503, "{}", response.body);
    assert_eq!(response.json()["reason"], "issuer_unavailable");
    assert_eq!(echo.requests(), 0);
    // The handshake failed: no request, so no token, ever reached the server.
    assert!(issuer.accepted().is_empty());
    assert_eq!(issuer.rejected(), 0);
    assert_never_shown(&wisp, &ready.body, &token);
    drop(files);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_token_file_is_used_at_the_next_fetch_and_an_empty_one_is_a_fetch_error() {
    let ca = Ca::new("cluster test CA");
    let (first, second) = (secret("c1"), secret("c2"));
    let issuer = ClusterIssuer::start(&ca, &first).await;
    let files = Files::new(&ca, &first);
    let echo = start_echo().await;
    let jwks = format!(
        "{{ discovery: true, ca: {}, bearer_token_file: {}, refresh: 1s, refetch_min_interval: 1s }}",
        quoted(&files.ca),
        quoted(&files.token)
    );
    let wisp = start_wisp(&echo, issuer.yaml(&jwks)).await;
    wisp.wait_ready().await;

    // The token rotates: the file first, then the server accepts only the new one.
    replace_token(&files.token, &format!("{second}\n"));
    issuer.expect(&second);
    // A token signed with a new key is verified only after a fetch that
    // presented the new token.
    issuer.keys.rotate().unwrap();
    let jwt = issuer
        .keys
        .token(json!({"sub": "system:serviceaccount:shop:web"}));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let response = wisp.get_with_token("/api", &jwt).await;
        if response.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{}\n{}",
            response.body,
            wisp.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        issuer.accepted().contains(&second),
        "the server saw the new token"
    );

    // An empty file is a fetch error naming the file; the keys are kept.
    replace_token(&files.token, "\n");
    let expected = format!("bearer_token_file {}: empty", files.token.display());
    wait_for_issuer(&wisp, "the empty-file error", |issuer| {
        issuer["last_error"] == expected.as_str()
    })
    .await;
    let ready = readyz(&wisp).await;
    assert_eq!(ready.status, 200, "the last good keys stay: {}", ready.body);
    assert_eq!(wisp.get_with_token("/api", &jwt).await.status, 200);
    assert_never_shown(&wisp, &ready.body, &first);
    assert_never_shown(&wisp, &ready.body, &second);
    drop(files);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_bearer_token_never_follows_a_redirect_to_another_origin() {
    let ca = Ca::new("cluster test CA");
    let token = secret("d");
    let issuer = ClusterIssuer::start(&ca, &token).await;
    // Same CA, same host, another port: another origin.
    let elsewhere = ClusterIssuer::start(&ca, &token).await;
    issuer.redirect_to(&elsewhere.url);
    let files = Files::new(&ca, &token);
    let echo = start_echo().await;
    let jwks = format!(
        "{{ discovery: true, ca: {}, bearer_token_file: {} }}",
        quoted(&files.ca),
        quoted(&files.token)
    );
    let wisp = start_wisp(&echo, issuer.yaml(&jwks)).await;

    wait_for_issuer(&wisp, "the redirect error", |issuer| {
        issuer["last_error"].is_string()
    })
    .await;
    let ready = readyz(&wisp).await;
    let error = ready.json()["issuers"][0]["last_error"].to_string();
    assert!(error.contains("HTTP 307"), "{error}");
    assert!(!issuer.accepted().is_empty());
    assert!(elsewhere.accepted().is_empty(), "the redirect was followed");
    assert_eq!(elsewhere.rejected(), 0, "the redirect was followed");
    assert_never_shown(&wisp, &ready.body, &token);
    drop(files);
}

/// Replaces the token file atomically, as the kubelet does (`..data` swap).
fn replace_token(path: &Path, contents: &str) {
    common::tls::replace_file(path, contents);
}
