//! The soak test (`loadtests/soak.sh`): the real `wisp` binary under steady
//! load for minutes while everything that changes in production changes at
//! once, on 127.0.0.1 only.
//!
//! ```sh
//! cargo run --release --example soak -- --wisp target/release/wisp \
//!     [--duration 600] [--rate 0 (= half of a measured maximum)] [--connections 16]
//! ```
//!
//! - load at a fixed rate: `GET /api/orders` with a valid token (expect 200),
//!   one request in 20 to `/admin` (403) and one in 20 without a token (401);
//! - token churn: ten new tokens (new `sub`s) every second, each valid for
//!   30 s;
//! - JWKS rotation every 30 s (a new signing key; keys older than two
//!   rotations are withdrawn, after no token signed by them is in use);
//! - a policy reload every 5 s (the policy file replaced atomically, with
//!   `policies.settle: 0s`) and a config reload every 60 s (SIGHUP);
//! - wisp's RSS and open file descriptors sampled every 5 s.
//!
//! Prints a summary and exits 1 on any unexpected status or error, RSS more
//! than 5 % above its level after warm-up, or growing file descriptors.

use std::collections::VecDeque;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper::client::conn::http1;
use hyper::header::{HeaderValue, AUTHORIZATION, HOST};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpStream;
use tokio::time::Instant;
use wisp::devtools::echo::EchoServer;
use wisp::devtools::issuer::{DevIssuer, DevIssuerOptions};

type Error = Box<dyn std::error::Error + Send + Sync>;

const POLICY: &str = r#"@id("frontend-reads-api")
permit (principal, action in Action::"read", resource)
when { principal.sub like "acme:frontend:*" && resource.path like "/api/*" };
@id("no-admin")
forbid (principal, action, resource) when { resource.path like "/admin*" };
"#;

struct Options {
    wisp: String,
    duration: u64,
    rate: f64,
    connections: usize,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        wisp: "target/release/wisp".into(),
        duration: 600,
        rate: 0.0,
        connections: 16,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().ok_or_else(|| format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--wisp" => options.wisp = value,
            "--duration" => options.duration = value.parse().map_err(|e| format!("{arg}: {e}"))?,
            "--rate" => options.rate = value.parse().map_err(|e| format!("{arg}: {e}"))?,
            "--connections" => {
                options.connections = value.parse().map_err(|e| format!("{arg}: {e}"))?
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(options)
}

/// What the load saw.
#[derive(Default)]
struct Tally {
    sent: AtomicUsize,
    unexpected: Mutex<Vec<String>>,
}

fn free_port() -> Result<u16, Error> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn config(
    listen: u16,
    admin: u16,
    issuer: &DevIssuer,
    upstream: std::net::SocketAddr,
    generation: u64,
) -> String {
    format!(
        "listen: 127.0.0.1:{listen}\nadmin: {{ listen: 127.0.0.1:{admin} }}\nupstream: {{ address: {upstream} }}\nthreads: 2\n\
         issuers:\n  - name: soak\n    issuer: {iss}\n    jwks: {{ discovery: true, refresh: 30s, refetch_min_interval: 5s }}\n    audiences: [orders]\n    algorithms: [ES256]\n\
         policies: {{ dir: policies, watch: true, settle: 0s }}\n\
         routes: {{ public: [/healthz, /generation-{generation}] }}\n\
         log: {{ format: json, decisions: none }}\n",
        iss = issuer.issuer_url()
    )
}

/// Replaces `path` atomically with `text`.
fn replace(path: &Path, text: &str) -> Result<(), Error> {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, text)?;
    std::fs::rename(&temporary, path)?;
    Ok(())
}

/// (RSS KiB, open fds) of `pid`.
fn sample(pid: u32) -> Option<(u64, usize)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    Some((rss, fds))
}

async fn connect(port: u16) -> Result<http1::SendRequest<Empty<Bytes>>, Error> {
    let stream = TcpStream::connect(("127.0.0.1", port)).await?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// One connection's share of the load: request `i` due at `start + i/rate`.
#[allow(clippy::too_many_arguments)]
async fn worker(
    port: u16,
    tokens: Arc<Mutex<Vec<HeaderValue>>>,
    next: Arc<AtomicU64>,
    rate: f64,
    start: Instant,
    end: Instant,
    tally: Arc<Tally>,
) {
    let mut sender = None;
    let host = HeaderValue::from_str(&format!("127.0.0.1:{port}"))
        .unwrap_or(HeaderValue::from_static("localhost"));
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        if due >= end {
            return;
        }
        tokio::time::sleep_until(due).await;
        if sender.is_none() {
            match connect(port).await {
                Ok(s) => sender = Some(s),
                Err(e) => {
                    tally
                        .unexpected
                        .lock()
                        .map(|mut u| u.push(format!("connect: {e}")))
                        .ok();
                    continue;
                }
            }
        }
        let Some(s) = sender.as_mut() else { continue };
        let (path, token, want) = match i % 20 {
            0 => ("/admin/users", true, 403),
            1 => ("/api/orders", false, 401),
            _ => ("/api/orders", true, 200),
        };
        let mut request = match Request::get(path).body(Empty::<Bytes>::new()) {
            Ok(r) => r,
            Err(_) => continue,
        };
        request.headers_mut().insert(HOST, host.clone());
        if token {
            let value = tokens
                .lock()
                .ok()
                .and_then(|t| t.get(i as usize % t.len().max(1)).cloned());
            if let Some(value) = value {
                request.headers_mut().insert(AUTHORIZATION, value);
            }
        }
        tally.sent.fetch_add(1, Ordering::Relaxed);
        match s.send_request(request).await {
            Ok(response) => {
                let status = response.status().as_u16();
                let body = response.into_body().collect().await.map(|b| b.to_bytes());
                if status != want || body.is_err() {
                    let detail = body
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .unwrap_or_default();
                    if let Ok(mut u) = tally.unexpected.lock() {
                        u.push(format!(
                            "{path} token={token}: {status}, expected {want}: {detail}"
                        ));
                    }
                    sender = None;
                }
            }
            Err(e) => {
                if let Ok(mut u) = tally.unexpected.lock() {
                    u.push(format!("{path}: {e}"));
                }
                sender = None;
            }
        }
    }
}

/// Closed-loop requests per second over `seconds` (to size the soak's rate).
async fn maximum(port: u16, token: HeaderValue, connections: usize, seconds: f64) -> f64 {
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let count = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (count, token) = (count.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let Ok(mut s) = connect(port).await else {
                return;
            };
            while Instant::now() < end {
                let Ok(mut request) = Request::get("/api/orders").body(Empty::<Bytes>::new())
                else {
                    return;
                };
                request
                    .headers_mut()
                    .insert(HOST, HeaderValue::from_static("soak"));
                request.headers_mut().insert(AUTHORIZATION, token.clone());
                match s.send_request(request).await {
                    Ok(response) => {
                        let _ = response.into_body().collect().await;
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => return,
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    count.load(Ordering::Relaxed) as f64 / seconds
}

async fn soak(options: Options) -> Result<bool, Error> {
    wisp::server::install_crypto();
    let dir = tempfile::tempdir()?;
    let issuer = DevIssuer::start(
        "127.0.0.1:0".parse()?,
        DevIssuerOptions {
            default_audience: "orders".into(),
            // Short-lived, as workload tokens are, so that the token cache
            // (ten new tokens a second, expired entries swept every 30 s)
            // reaches its steady state, about 600 entries, within the
            // warm-up minute. With the default 10 minutes it would grow for
            // the whole run: 6,000 entries, +2 MB, mistaken for a leak.
            token_lifetime: Duration::from_secs(30),
            ..DevIssuerOptions::default()
        },
    )
    .await?;
    let echo = EchoServer::start("127.0.0.1:0".parse()?).await?;
    let (listen, admin) = (free_port()?, free_port()?);
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies)?;
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/policies/wisp.cedarschema"),
        policies.join("wisp.cedarschema"),
    )?;
    replace(&policies.join("soak.cedar"), POLICY)?;
    let config_path = dir.path().join("wisp.yaml");
    replace(
        &config_path,
        &config(listen, admin, &issuer, echo.addr(), 0),
    )?;
    let log = std::fs::File::create(dir.path().join("wisp.log"))?;
    let mut child = Command::new(&options.wisp)
        .args(["serve", "--config"])
        .arg(&config_path)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?;
    let pid = child.id();
    let ready_by = Instant::now() + Duration::from_secs(20);
    loop {
        let ready = reqwest::get(format!("http://127.0.0.1:{admin}/readyz"))
            .await
            .map(|r| r.status().is_success())
            .unwrap_or(false);
        if ready {
            break;
        }
        if Instant::now() > ready_by {
            let _ = child.kill();
            return Err("wisp did not become ready".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mint = |n: u64| -> Result<Vec<HeaderValue>, Error> {
        (0..10)
            .map(|k| {
                let token = issuer.mint(json!({"sub": format!("acme:frontend:soak-{n}-{k}")}))?;
                Ok(HeaderValue::try_from(format!("Bearer {token}"))?)
            })
            .collect()
    };
    let tokens = Arc::new(Mutex::new(mint(0)?));
    let rate = if options.rate > 0.0 {
        options.rate
    } else {
        let first = tokens.lock().map(|t| t[0].clone()).map_err(|_| "lock")?;
        let max = maximum(listen, first, options.connections, 5.0).await;
        println!(
            "measured maximum: {max:.0} req/s (closed loop, {} connections, 5 s); soaking at half",
            options.connections
        );
        (max / 2.0).max(10.0)
    };

    let tally = Arc::new(Tally::default());
    let start = Instant::now();
    let end = start + Duration::from_secs(options.duration);
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..options.connections {
        workers.push(tokio::spawn(worker(
            listen,
            tokens.clone(),
            next.clone(),
            rate,
            start,
            end,
            tally.clone(),
        )));
    }

    // The changes, on one clock.
    let mut samples: Vec<(u64, u64, usize)> = Vec::new();
    let mut keys: VecDeque<String> = issuer.signer().into_iter().collect();
    let (mut policy_reloads, mut config_reloads, mut rotations) = (0u64, 0u64, 0u64);
    let mut second = 0u64;
    while Instant::now() < end {
        tokio::time::sleep_until(start + Duration::from_secs(second + 1)).await;
        second += 1;
        let fresh = mint(second)?;
        if let Ok(mut t) = tokens.lock() {
            *t = fresh;
        }
        if second % 5 == 0 {
            let version = format!("{POLICY}// version {second}\n");
            replace(&policies.join("soak.cedar"), &version)?;
            policy_reloads += 1;
            if let Some((rss, fds)) = sample(pid) {
                samples.push((second, rss, fds));
            }
        }
        if second % 30 == 0 {
            keys.push_back(issuer.rotate()?);
            rotations += 1;
            // Tokens signed by a key two rotations old were replaced 30 s ago.
            while keys.len() > 2 {
                if let Some(old) = keys.pop_front() {
                    issuer.remove_key(&old);
                }
            }
        }
        if second % 60 == 0 {
            replace(
                &config_path,
                &config(listen, admin, &issuer, echo.addr(), second),
            )?;
            let _ = Command::new("kill")
                .args(["-HUP", &pid.to_string()])
                .status();
            config_reloads += 1;
        }
    }
    for worker in workers {
        let _ = worker.await;
    }
    let metrics = reqwest::get(format!("http://127.0.0.1:{admin}/metrics"))
        .await?
        .text()
        .await?;
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = child.wait();

    let sent = tally.sent.load(Ordering::Relaxed);
    let unexpected = tally
        .unexpected
        .lock()
        .map(|u| u.clone())
        .unwrap_or_default();
    let elapsed = options.duration as f64;
    println!(
        "duration {elapsed:.0} s at {rate:.0} req/s: {sent} requests ({:.0} req/s), {} unexpected",
        sent as f64 / elapsed,
        unexpected.len()
    );
    for line in unexpected.iter().take(10) {
        println!("  unexpected: {line}");
    }
    println!("changes: {rotations} key rotations, {policy_reloads} policy file replacements, {config_reloads} config reloads (SIGHUP)");
    for line in metrics.lines().filter(|l| {
        l.starts_with("wisp_config_reload_total")
            || l.starts_with("wisp_policy_reload_total")
            || l.starts_with("wisp_token_cache_entries")
            || l.starts_with("wisp_jwks_refresh_total")
    }) {
        println!("  {line}");
    }
    // Warm-up: the first minute (caches filling, the first rotations).
    let settled: Vec<_> = samples.iter().filter(|(s, _, _)| *s >= 60).collect();
    let mut ok = unexpected.is_empty();
    if let (Some(first), Some(max_rss), Some(last)) = (
        settled.first(),
        settled.iter().map(|s| s.1).max(),
        settled.last(),
    ) {
        let growth = (max_rss as f64 / first.1 as f64 - 1.0) * 100.0;
        let fds: Vec<usize> = settled.iter().map(|s| s.2).collect();
        let (min_fds, max_fds) = (
            fds.iter().min().copied().unwrap_or(0),
            fds.iter().max().copied().unwrap_or(0),
        );
        println!(
            "RSS after warm-up: {} KiB at 60 s, max {max_rss} KiB ({growth:+.1} %), {} KiB at the end; fds {min_fds}–{max_fds} (end {})",
            first.1, last.1, last.2
        );
        if growth > 5.0 {
            println!("FAIL: RSS grew more than 5 % after warm-up");
            ok = false;
        }
        if last.2 > first.2 + 8 {
            println!("FAIL: file descriptors grew from {} to {}", first.2, last.2);
            ok = false;
        }
    } else {
        println!("(too short for RSS after warm-up: run at least 70 s)");
    }
    println!("{}", if ok { "PASS" } else { "FAIL" });
    Ok(ok)
}

fn main() -> ExitCode {
    let options = match options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("soak: {message}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("soak: {error}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(soak(options)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("soak: {error}");
            ExitCode::from(1)
        }
    }
}
