//! `wisp demo` and `wisp dev-issuer`.

use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use wisp::config::{Config, JwksSource, LogFormat};
use wisp::devtools::echo::EchoServer;
use wisp::devtools::issuer::{DevIssuer, DevIssuerOptions};
use wisp::devtools::Algorithm;

/// Runs the dev issuer until interrupted.
pub fn dev_issuer(
    listen: SocketAddr,
    issuer: Option<String>,
    audience: String,
    alg: Algorithm,
) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async move {
        let options = DevIssuerOptions {
            issuer,
            default_audience: audience,
            alg,
            ..DevIssuerOptions::default()
        };
        match DevIssuer::start(listen, options).await {
            Ok(issuer) => {
                eprintln!("{}", issuer.banner());
                until_stopped().await;
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("error: dev issuer on {listen}: {error}");
                ExitCode::from(1)
            }
        }
    })
}

/// Runs an echo upstream until SIGTERM or SIGINT.
pub fn echo(listen: SocketAddr) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async move {
        match EchoServer::start(listen).await {
            Ok(echo) => {
                eprintln!("echo upstream on http://{} (development only)", echo.addr());
                until_stopped().await;
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("error: echo upstream on {listen}: {error}");
                ExitCode::from(1)
            }
        }
    })
}

/// Resolves on SIGTERM (a container stopping) or SIGINT (Ctrl-C).
async fn until_stopped() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn socket_addr(host_port: &str) -> Option<SocketAddr> {
    host_port.to_socket_addrs().ok()?.next()
}

/// Starts dev issuer + echo upstream (from the demo config's addresses), then the proxy.
pub fn run(config: Config, set_log_format: Box<dyn Fn(LogFormat) + Send + Sync>) -> ExitCode {
    let Some(issuer) = config.issuers.first().cloned() else {
        eprintln!("error: the demo config needs one issuer");
        return ExitCode::from(1);
    };
    let issuer_addr = issuer
        .issuer
        .strip_prefix("http://")
        .and_then(|rest| socket_addr(rest.trim_end_matches('/')));
    let (Some(issuer_addr), Some(upstream_addr), JwksSource::Discovery) = (
        issuer_addr,
        config
            .upstream
            .as_ref()
            .and_then(|u| socket_addr(&u.address)),
        &issuer.jwks,
    ) else {
        eprintln!("error: the demo config needs an http://host:port issuer with discovery and a host:port upstream");
        return ExitCode::from(1);
    };
    let audience = issuer.audiences.first().cloned().unwrap_or_default();
    let issuer_url = issuer.issuer.clone();

    // The dev issuer and the echo upstream run on their own runtime thread.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = match tokio::runtime::Runtime::new() {
            Ok(runtime) => runtime,
            Err(error) => {
                let _ = ready_tx.send(Err(error.to_string()));
                return;
            }
        };
        runtime.block_on(async move {
            let options = DevIssuerOptions {
                issuer: Some(issuer_url),
                default_audience: audience,
                ..DevIssuerOptions::default()
            };
            let started = async {
                let issuer = DevIssuer::start(issuer_addr, options)
                    .await
                    .map_err(|e| format!("dev issuer on {issuer_addr}: {e}"))?;
                let echo = EchoServer::start(upstream_addr)
                    .await
                    .map_err(|e| format!("echo upstream on {upstream_addr}: {e}"))?;
                Ok::<_, String>((issuer, echo))
            }
            .await;
            match started {
                Ok(servers) => {
                    let _ = ready_tx.send(Ok(servers.0.banner()));
                    let _keep = servers;
                    std::future::pending::<()>().await;
                }
                Err(message) => {
                    let _ = ready_tx.send(Err(message));
                }
            }
        });
    });
    let banner = match ready_rx.recv() {
        Ok(Ok(banner)) => banner,
        Ok(Err(message)) => {
            eprintln!("error: {message}");
            return ExitCode::from(1);
        }
        Err(_) => {
            eprintln!("error: demo servers did not start");
            return ExitCode::from(1);
        }
    };
    eprintln!("{banner}");
    let proxy = format!("http://{}", config.listen);
    let issuer_url = issuer.issuer.clone();
    let admin = config
        .admin
        .as_ref()
        .map(|a| format!("http://{}", a.listen));
    std::thread::spawn(move || show_examples(&issuer_url, &proxy, admin.as_deref()));
    match wisp::server::serve(config, set_log_format) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(1)
        }
    }
}

/// Waits for the proxy, then prints ready-to-paste commands and their live results.
fn show_examples(issuer: &str, proxy: &str, admin: Option<&str>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(_) => return,
    };
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let mut ready = false;
        for _ in 0..100 {
            let url = admin.map_or_else(|| format!("{proxy}/"), |a| format!("{a}/readyz"));
            if let Ok(response) = client.get(&url).send().await {
                if admin.is_none() || response.status().is_success() {
                    ready = true;
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if !ready {
            eprintln!("demo: the proxy did not become ready; see the log above");
            return;
        }
        let mint = |sub: &str, tags: &str| format!(r#"{{"sub":"{sub}","tags":[{tags}]}}"#);
        let allowed_claims = mint("acme:frontend:web-1", r#""tag:prod""#);
        let denied_claims = mint("acme:batch:job-7", "");
        let mut outcomes = Vec::new();
        for claims in [&allowed_claims, &denied_claims] {
            let token = match client
                .post(format!("{issuer}/token"))
                .body(claims.clone())
                .send()
                .await
            {
                Ok(response) => response.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            let status = client
                .get(format!("{proxy}/api/orders"))
                .bearer_auth(token.trim())
                .send()
                .await
                .map_or(0, |r| r.status().as_u16());
            outcomes.push(status);
        }
        println!(
            r#"
wisp demo is running: proxy {proxy}, dev issuer {issuer}{admin_line}

Allowed (policy frontend-reads-api) — got HTTP {allow_status} just now:
  TOKEN=$(curl -s -X POST -d '{allowed_claims}' {issuer}/token)
  curl -i -H "Authorization: Bearer $TOKEN" {proxy}/api/orders

Denied (no policy permits acme:batch:*) — got HTTP {deny_status} just now:
  TOKEN=$(curl -s -X POST -d '{denied_claims}' {issuer}/token)
  curl -i -H "Authorization: Bearer $TOKEN" {proxy}/api/orders

No token at all → 401:
  curl -i {proxy}/api/orders

Press Ctrl-C to stop.
"#,
            admin_line = admin.map_or(String::new(), |a| format!(", admin {a}/metrics")),
            allow_status = outcomes.first().copied().unwrap_or(0),
            deny_status = outcomes.get(1).copied().unwrap_or(0),
        );
    });
}
