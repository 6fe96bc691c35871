//! Test harness: a real dev issuer (JWKS/discovery over HTTP), a real echo
//! upstream, and the real `wisp` binary, all on 127.0.0.1. Requests are sent
//! with a raw HTTP/1.1 client so tests control the exact bytes (paths such as
//! `/a/../admin` and duplicate headers survive untouched).
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use wisp::devtools::echo::EchoServer;
pub use wisp::devtools::issuer::{DevIssuer, DevIssuerOptions};

/// The shipped schema, used by every test policy directory.
pub fn shipped_schema() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/wisp.cedarschema"))
        .expect("shipped schema")
}

/// A project directory: `wisp.yaml` and `policies/` holding the shipped
/// schema and `policies`.
pub fn project(config: &str, policies: &[(&str, &str)]) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::write(
        dir.path().join("policies/wisp.cedarschema"),
        shipped_schema(),
    )
    .unwrap();
    for (name, text) in policies {
        std::fs::write(dir.path().join("policies").join(name), text).unwrap();
    }
    let path = dir.path().join("wisp.yaml");
    std::fs::write(&path, config).unwrap();
    let path = path.display().to_string();
    (dir, path)
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Starts a dev issuer on a random port with audience `orders`.
pub async fn start_issuer() -> DevIssuer {
    DevIssuer::start(
        "127.0.0.1:0".parse().unwrap(),
        DevIssuerOptions {
            default_audience: "orders".into(),
            ..DevIssuerOptions::default()
        },
    )
    .await
    .expect("dev issuer")
}

/// Starts an echo upstream on a random port.
pub async fn start_echo() -> EchoServer {
    EchoServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .expect("echo upstream")
}

/// A test deployment: a temp dir with config + policies, and the running binary.
pub struct Wisp {
    pub dir: tempfile::TempDir,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    child: Child,
    pub stderr_path: PathBuf,
}

impl Drop for Wisp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Builds a config and policy directory, starts `wisp serve`, waits for `/healthz`.
pub struct WispBuilder {
    /// `issuers:` YAML list items (already indented by 2).
    issuers: Vec<String>,
    upstream: SocketAddr,
    policies: Vec<(String, String)>,
    extra: String,
}

/// YAML for one issuer using discovery on a dev issuer; `extra` may replace
/// the default `jwks:` line by carrying its own.
pub fn issuer_yaml(name: &str, issuer: &DevIssuer, extra: &str) -> String {
    let jwks = if extra.contains("    jwks:") {
        ""
    } else {
        "    jwks: { discovery: true, refresh: 5m, refetch_min_interval: 30s }\n"
    };
    format!(
        "  - name: {name}\n    issuer: {url}\n{jwks}    audiences: [orders]\n    algorithms: [ES256, RS256, PS256, EdDSA]\n{extra}",
        url = issuer.issuer_url()
    )
}

impl WispBuilder {
    pub fn new(upstream: SocketAddr) -> WispBuilder {
        WispBuilder {
            issuers: Vec::new(),
            upstream,
            policies: Vec::new(),
            extra: String::new(),
        }
    }

    pub fn issuer(mut self, yaml: String) -> WispBuilder {
        self.issuers.push(yaml);
        self
    }

    pub fn policy(mut self, file: &str, text: &str) -> WispBuilder {
        self.policies.push((file.to_string(), text.to_string()));
        self
    }

    /// Extra top-level YAML appended verbatim.
    pub fn extra(mut self, yaml: &str) -> WispBuilder {
        self.extra.push_str(yaml);
        self.extra.push('\n');
        self
    }

    /// Writes the files without starting anything; returns the dir and config path.
    pub fn write(&self) -> (tempfile::TempDir, PathBuf, SocketAddr, SocketAddr) {
        let dir = tempfile::tempdir().expect("tempdir");
        let policies = dir.path().join("policies");
        std::fs::create_dir(&policies).unwrap();
        std::fs::write(policies.join("wisp.cedarschema"), shipped_schema()).unwrap();
        for (file, text) in &self.policies {
            std::fs::write(policies.join(file), text).unwrap();
        }
        let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        // Two ports free a moment ago can be the same one: ask again.
        let admin_port = std::iter::repeat_with(free_port)
            .find(|port| *port != listen.port())
            .expect("a second free port");
        let admin: SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
        let issuers = if self.issuers.is_empty() {
            "issuers: []\n".to_string()
        } else {
            format!("issuers:\n{}", self.issuers.join(""))
        };
        let policies_line = if self.extra.contains("policies:") {
            ""
        } else {
            "policies: { dir: policies, watch: true }\n"
        };
        let config = format!(
            "listen: {listen}\nadmin: {{ listen: {admin} }}\nupstream: {{ address: {upstream}, read_timeout: 2s }}\nthreads: 2\n{issuers}{policies_line}log: {{ format: json, decisions: all }}\n{extra}",
            upstream = self.upstream,
            extra = self.extra,
        );
        let path = dir.path().join("wisp.yaml");
        std::fs::write(&path, config).unwrap();
        (dir, path, listen, admin)
    }

    /// Starts the binary and waits until `/healthz` answers.
    pub async fn start(self) -> Wisp {
        self.start_edited(|config| config).await
    }
}

impl Wisp {
    /// Everything wisp wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(response) = get(self.admin, "/readyz", &[]).await {
                if response.status == 200 {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "wisp not ready:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends a request through the proxy.
    pub async fn request(&self, method: &str, target: &str, headers: &[(&str, &str)]) -> Response {
        request(self.listen, method, target, headers)
            .await
            .expect("request through wisp")
    }

    /// GET with a bearer token.
    pub async fn get_with_token(&self, target: &str, token: &str) -> Response {
        let auth = format!("Bearer {token}");
        self.request("GET", target, &[("authorization", &auth)])
            .await
    }

    /// Sends `signal` (`TERM`, `INT`, `HUP`) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits up to `timeout` for the process to exit; its status if it did.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The decision log lines written so far (JSON format).
    pub fn decisions(&self) -> Vec<serde_json::Value> {
        self.log()
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|entry| entry["target"] == "wisp::decision")
            .collect()
    }

    /// Waits until the log contains `needle`.
    pub async fn wait_log(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !self.log().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "log never said {needle:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Scrapes `/metrics`.
    pub async fn metrics(&self) -> String {
        get(self.admin, "/metrics", &[])
            .await
            .expect("metrics")
            .body
    }
}

/// A parsed HTTP/1.1 response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    /// The first header with this (lowercase) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// For echo upstream responses: every value of the header `name` the upstream received.
    pub fn upstream_header(&self, name: &str) -> Vec<String> {
        self.json()["headers"]
            .as_array()
            .expect("echo headers")
            .iter()
            .filter(|pair| pair[0].as_str() == Some(name))
            .map(|pair| pair[1].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// For echo upstream responses: every header name the upstream received.
    pub fn upstream_header_names(&self) -> Vec<String> {
        self.json()["headers"]
            .as_array()
            .expect("echo headers")
            .iter()
            .map(|pair| pair[0].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

/// GET a path on an address.
pub async fn get(
    addr: SocketAddr,
    target: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<Response> {
    request(addr, "GET", target, headers).await
}

/// Sends one raw HTTP/1.1 request (`Connection: close`) and reads the whole response.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<Response> {
    let mut stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::other("connect timeout"))??;
    let mut head = format!("{method} {target} HTTP/1.1\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("Connection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .map_err(|_| std::io::Error::other("read timeout"))??;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> std::io::Result<Response> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("incomplete response: {text:?}")))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line: {head:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// Value of one sample line in Prometheus text output (`name{labels} value`), 0 when absent.
pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|line| line.starts_with(series) && line[series.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Test shorthands over the dev issuer's fallible API.
pub trait TestIssuer {
    /// Mints a token with the issuer's defaults filled in.
    fn token(&self, claims: serde_json::Value) -> String;
    /// Signs exactly this header and these claims with key `kid`.
    fn raw(&self, kid: &str, header: serde_json::Value, claims: serde_json::Value) -> String;
    /// The current signing key's kid.
    fn kid(&self) -> String;
}

impl TestIssuer for DevIssuer {
    fn token(&self, claims: serde_json::Value) -> String {
        self.mint(claims).expect("mint")
    }
    fn raw(&self, kid: &str, header: serde_json::Value, claims: serde_json::Value) -> String {
        self.sign_raw(kid, header, claims).expect("sign_raw")
    }
    fn kid(&self) -> String {
        self.signer().expect("a signer")
    }
}

pub mod ext_authz;
pub mod grpc;
pub mod h2;
pub mod tls;
pub mod ws;

impl WispBuilder {
    /// Like [`WispBuilder::start`], with the generated config text passed
    /// through `edit` first: for keys the builder writes itself (`upstream:`).
    pub async fn start_edited(self, edit: impl FnOnce(String) -> String) -> Wisp {
        let (dir, config, listen, admin) = self.write();
        let text = std::fs::read_to_string(&config).expect("read config");
        std::fs::write(&config, edit(text)).expect("write config");
        Wisp::spawn(dir, &config, listen, admin).await
    }
}

impl Wisp {
    /// Starts `wisp serve --config config` (files under `dir`, which the
    /// result keeps alive) and waits until `/healthz` answers.
    pub async fn spawn(
        dir: tempfile::TempDir,
        config: &Path,
        listen: SocketAddr,
        admin: SocketAddr,
    ) -> Wisp {
        let stderr_path = dir.path().join("wisp.log");
        let stderr = std::fs::File::create(&stderr_path).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_wisp"))
            .args(["serve", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn wisp");
        let wisp = Wisp {
            dir,
            listen,
            admin,
            child,
            stderr_path,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(response) = get(admin, "/healthz", &[]).await {
                if response.status == 200 {
                    return wisp;
                }
            }
            assert!(
                Instant::now() < deadline,
                "wisp did not start:\n{}",
                wisp.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A [`WispBuilder::start_edited`] edit: speak h2c (prior knowledge) to the upstream.
pub fn upstream_http2(config: String) -> String {
    assert!(config.contains("upstream: { address:"), "{config}");
    config.replacen(
        "upstream: { address:",
        "upstream: { http2: true, address:",
        1,
    )
}

/// The usual deployment: a dev issuer, an echo upstream, and wisp with one
/// issuer named `dev` (plus `issuer_extra` YAML under it), these policy files
/// and `extra` top-level YAML; returns once `/readyz` answers 200.
pub async fn deploy(
    issuer_extra: &str,
    policies: &[(&str, &str)],
    extra: &str,
) -> (DevIssuer, EchoServer, Wisp) {
    let issuer = start_issuer().await;
    let echo = start_echo().await;
    let mut builder =
        WispBuilder::new(echo.addr()).issuer(issuer_yaml("dev", &issuer, issuer_extra));
    for (file, text) in policies {
        builder = builder.policy(file, text);
    }
    if !extra.is_empty() {
        builder = builder.extra(extra);
    }
    let wisp = builder.start().await;
    wisp.wait_ready().await;
    (issuer, echo, wisp)
}

/// Sends exactly `bytes` (a whole raw request, nothing added: no `Host`,
/// no `Connection: close` unless they are in it) and reads until the server
/// closes the connection.
pub async fn raw_request(addr: SocketAddr, bytes: &[u8]) -> std::io::Result<Response> {
    let mut stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::other("connect timeout"))??;
    stream.write_all(bytes).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .map_err(|_| std::io::Error::other("read timeout"))??;
    parse_response(&raw)
}

/// Reads one response with a `Content-Length` body from a connection kept
/// open (the server decides whether it closes), within 10 s.
pub async fn read_one_response(stream: &mut TcpStream) -> std::io::Result<Response> {
    let read = async {
        let mut raw = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = parse_response(&raw[..end + 4])?;
                let length: usize = head
                    .header("content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                if raw.len() >= end + 4 + length {
                    return parse_response(&raw[..end + 4 + length]);
                }
            }
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::Error::other(format!(
                    "closed before a whole response: {:?}",
                    String::from_utf8_lossy(&raw)
                )));
            }
            raw.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .map_err(|_| std::io::Error::other("read timeout"))?
}

/// Whether the server closes `stream` within `within` (EOF or reset;
/// whatever else arrives first is discarded).
pub async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let wait = async {
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    };
    tokio::time::timeout(within, wait).await.is_ok()
}

/// `decision_service:` YAML on a free loopback port, and that address.
pub fn decision_service_yaml() -> (String, SocketAddr) {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    (format!("decision_service: {{ listen: {addr} }}\n"), addr)
}

/// Waits until something accepts TCP connections on `addr`.
pub async fn wait_listening(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// [`deploy`] with a decision service beside the proxy; returns its address too.
pub async fn deploy_with_decision(
    issuer_extra: &str,
    policies: &[(&str, &str)],
    extra: &str,
) -> (DevIssuer, EchoServer, Wisp, SocketAddr) {
    let (yaml, addr) = decision_service_yaml();
    let (issuer, echo, wisp) = deploy(issuer_extra, policies, &format!("{yaml}{extra}")).await;
    wait_listening(addr).await;
    (issuer, echo, wisp, addr)
}

/// A [`WispBuilder::start_edited`] edit: no proxy listener and no upstream
/// (decision-service-only mode).
pub fn decision_only(config: String) -> String {
    config
        .lines()
        .filter(|line| !line.starts_with("listen:") && !line.starts_with("upstream:"))
        .map(|line| format!("{line}\n"))
        .collect()
}
