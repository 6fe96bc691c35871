//! Real reverse proxies in front of the decision service: nginx
//! (`auth_request`) and Caddy (`forward_auth`), each started from a config
//! written here (the same snippets README shows), on 127.0.0.1, in front of
//! the harness's echo upstream. Needs the Debian packages `nginx` and
//! `caddy` (see README); a missing binary fails the test with that message.
//!
//! For each: an allow reaches the upstream with the identity header, a 401
//! and a 403 are answered by the proxy, `/api/../admin` is decided on the
//! normalized path, and a client-sent `x-wisp-subject` never reaches the
//! upstream (on an allowed route and on a public one).

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::*;
use serde_json::json;

const POLICIES: &str = r#"
@id("frontend-reads-api")
permit (principal, action in Action::"read", resource)
when { principal.sub like "acme:frontend:*" && resource.path like "/api/*" };
"#;

/// A reverse proxy process, stopped (by its own pid) when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
    log: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn spawn(
        mut command: Command,
        addr: SocketAddr,
        log: std::path::PathBuf,
        what: &str,
    ) -> Server {
        let stderr = std::fs::File::create(&log).expect("log file");
        let child = command
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {what} ({e}): install the Debian package, see README")
            });
        Server { child, addr, log }
    }

    async fn ready(self) -> Server {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while tokio::net::TcpStream::connect(self.addr).await.is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "not listening on {}:\n{}",
                self.addr,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        self
    }
}

fn nginx_config(dir: &Path, listen: SocketAddr, echo: SocketAddr, wisp: SocketAddr) -> String {
    let dir = dir.display();
    format!(
        r#"worker_processes 1;
error_log {dir}/error.log info;
pid {dir}/nginx.pid;
events {{ worker_connections 64; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen {listen};
        location / {{
            auth_request /_wisp/auth;
            auth_request_set $wisp_subject $upstream_http_x_wisp_subject;
            # Replaces (or, when empty, removes) the client's copy.
            proxy_set_header X-Wisp-Subject $wisp_subject;
            proxy_pass http://{echo};
        }}
        location = /_wisp/auth {{
            internal;
            proxy_pass http://{wisp}/auth;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Original-Method $request_method;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
}}
"#
    )
}

fn caddyfile(listen: SocketAddr, echo: SocketAddr, wisp: SocketAddr) -> String {
    format!(
        r#"{{
    admin off
    auto_https off
}}
http://{listen} {{
    # `route` keeps the order written (Caddy would otherwise run
    # `request_header` after `forward_auth`, deleting the copied header).
    route {{
        # Client copies of wisp's headers never pass, whatever wisp answers.
        request_header -X-Wisp-*
        forward_auth {wisp} {{
            uri /auth
            copy_headers X-Wisp-Subject
        }}
        reverse_proxy {echo}
    }}
}}
"#
    )
}

async fn start_nginx(dir: &Path, echo: SocketAddr, wisp: SocketAddr) -> Server {
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, nginx_config(dir, listen, echo, wisp)).unwrap();
    let mut command = Command::new("/usr/sbin/nginx");
    command
        .arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-c")
        .arg(&conf)
        .args(["-g", "daemon off;"]);
    Server::spawn(command, listen, dir.join("nginx.stderr"), "nginx")
        .ready()
        .await
}

async fn start_caddy(dir: &Path, echo: SocketAddr, wisp: SocketAddr) -> Server {
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let file = dir.join("Caddyfile");
    std::fs::write(&file, caddyfile(listen, echo, wisp)).unwrap();
    let mut command = Command::new("/usr/bin/caddy");
    command
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&file)
        // Caddy's data and config directories, kept in the test's directory.
        .env("HOME", dir)
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("XDG_CONFIG_HOME", dir.join("config"));
    Server::spawn(command, listen, dir.join("caddy.stderr"), "caddy")
        .ready()
        .await
}

/// The shared checks, through `front` (nginx or Caddy).
async fn check_through(front: &Server, issuer: &DevIssuer, wisp: &Wisp, name: &str) {
    let token = issuer.token(json!({"sub": "acme:frontend:web-1"}));
    let other = issuer.token(json!({"sub": "evil:web"}));
    let auth = format!("Bearer {token}");
    let send = |target: &'static str, headers: Vec<(&'static str, String)>| async move {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        request(front.addr, "GET", target, &headers)
            .await
            .unwrap_or_else(|e| panic!("{name}: {target}: {e}"))
    };

    // Allowed: the upstream sees the verified subject, not the client's copy.
    let allowed = send(
        "/api/orders?limit=5",
        vec![
            ("authorization", auth.clone()),
            ("x-wisp-subject", "spoofed".into()),
        ],
    )
    .await;
    assert_eq!(allowed.status, 200, "{name}: {allowed:?}");
    assert_eq!(
        allowed.upstream_header("x-wisp-subject"),
        ["acme:frontend:web-1"],
        "{name}: {allowed:?}"
    );

    // 401: no token; the challenge reaches the client.
    let missing = send("/api/orders", vec![]).await;
    assert_eq!(missing.status, 401, "{name}: {missing:?}");
    assert!(
        missing
            .header("www-authenticate")
            .is_some_and(|v| v.starts_with("Bearer")),
        "{name}: {missing:?}"
    );

    // 403: a caller no policy permits.
    let forbidden = send(
        "/api/orders",
        vec![("authorization", format!("Bearer {other}"))],
    )
    .await;
    assert_eq!(forbidden.status, 403, "{name}: {forbidden:?}");

    // `/api/../admin` is `/admin`: decided (and denied) on the normalized
    // path, although its raw form matches `/api/*`.
    let dotdot = send("/api/../admin", vec![("authorization", auth.clone())]).await;
    assert_eq!(dotdot.status, 403, "{name}: {dotdot:?}");
    assert!(
        wisp.decisions()
            .iter()
            .any(|l| l["path"] == "/admin" && l["decision"] == "deny" && l["mode"] == "decision"),
        "{name}: no decision on /admin:\n{}",
        wisp.log()
    );

    // A public route: wisp answers 200 without identity; the client's copy
    // still never reaches the upstream.
    let public = send("/public/doc", vec![("x-wisp-subject", "spoofed".into())]).await;
    assert_eq!(public.status, 200, "{name}: {public:?}");
    let seen: Vec<String> = public
        .upstream_header("x-wisp-subject")
        .into_iter()
        .filter(|v| !v.is_empty())
        .collect();
    assert!(
        seen.is_empty(),
        "{name}: spoofed header reached the upstream: {public:?}"
    );
}

async fn deployment() -> (DevIssuer, EchoServer, Wisp, SocketAddr) {
    deploy_with_decision(
        "",
        &[("api.cedar", POLICIES)],
        "routes: { public: [/public/*] }\n",
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_auth_request_in_front_of_the_decision_service() {
    let (issuer, echo, wisp, decision) = deployment().await;
    let dir = tempfile::tempdir().unwrap();
    let nginx = start_nginx(dir.path(), echo.addr(), decision).await;
    check_through(&nginx, &issuer, &wisp, "nginx").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn caddy_forward_auth_in_front_of_the_decision_service() {
    let (issuer, echo, wisp, decision) = deployment().await;
    let dir = tempfile::tempdir().unwrap();
    let caddy = start_caddy(dir.path(), echo.addr(), decision).await;
    check_through(&caddy, &issuer, &wisp, "caddy").await;
}
