//! A small HTTP/1.1 load generator for the load tests (`loadtests/run.sh`):
//! a fixed request rate with latency measured from each request's intended
//! send time (what wrk cannot do), or a bounded closed loop that sends a list
//! of tokens, each once.
//!
//! ```sh
//! cargo run --release --example loadgen -- --url http://127.0.0.1:18080/api/orders \
//!     [--rate 1000] [--duration 10] [--requests N] [--connections 32] \
//!     [--token-file FILE] [--max-time 40]
//! ```
//!
//! - `--rate R`: request `i` is due at `start + i/R`. A connection that is free
//!   waits for the due time and its latency counts from the actual send; a
//!   request whose due time passed while every connection was busy counts
//!   from its due time (coordinated omission corrected, as wrk2 does, without
//!   charging the server for timer jitter). `--rate 0`: closed loop, as fast
//!   as the connections go.
//! - `--requests N` bounds the count, `--duration S` the due times
//!   (`rate × duration` requests); at least one of them is required. The run
//!   stops after `--max-time S` (default `duration + 30`) whatever happens.
//! - `--token-file FILE`: one token a line; request `i` sends
//!   `Authorization: Bearer <line i mod lines>` (a file of N tokens with
//!   `--requests N` sends each exactly once).
//!
//! Prints one line:
//! `RESULT requests=… ok=… non200=… errors=… elapsed_s=… rps=… p50_us=… p90_us=… p99_us=… p999_us=… max_us=…`
//! and exits 1 when any request failed or got another status than 200.

use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper::client::conn::http1;
use hyper::header::{HeaderValue, AUTHORIZATION, HOST};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

struct Options {
    uri: Uri,
    rate: f64,
    duration: f64,
    requests: Option<usize>,
    max_time: Option<f64>,
    connections: usize,
    tokens: Vec<HeaderValue>,
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    ok: usize,
    non200: usize,
    errors: usize,
}

fn parse_args() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let mut url = None;
    let mut options = Options {
        uri: Uri::default(),
        rate: 0.0,
        duration: 0.0,
        requests: None,
        max_time: None,
        connections: 32,
        tokens: Vec::new(),
    };
    while let Some(arg) = args.next() {
        let value = args.next().ok_or_else(|| format!("{arg} needs a value"))?;
        let number = |v: &str| v.parse::<f64>().map_err(|e| format!("{arg}: {e}"));
        match arg.as_str() {
            "--url" => url = Some(value),
            "--rate" => options.rate = number(&value)?,
            "--duration" => options.duration = number(&value)?,
            "--max-time" => options.max_time = Some(number(&value)?),
            "--requests" => {
                options.requests = Some(value.parse().map_err(|e| format!("{arg}: {e}"))?)
            }
            "--connections" => {
                options.connections = value.parse().map_err(|e| format!("{arg}: {e}"))?
            }
            "--token-file" => {
                let text = std::fs::read_to_string(&value).map_err(|e| format!("{value}: {e}"))?;
                options.tokens = text
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(|l| HeaderValue::try_from(format!("Bearer {}", l.trim())))
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("{value}: {e}"))?;
                if options.tokens.is_empty() {
                    return Err(format!("{value}: no tokens"));
                }
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    let url = url.ok_or("--url is required")?;
    options.uri = url.parse().map_err(|e| format!("--url: {e}"))?;
    if options.uri.scheme_str() != Some("http") || options.uri.authority().is_none() {
        return Err("--url must be http://host:port/path".into());
    }
    let by_duration = (options.rate > 0.0 && options.duration > 0.0)
        .then(|| (options.rate * options.duration).round() as usize);
    options.requests = match (options.requests, by_duration) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    if options.requests.is_none() {
        return Err("give --requests, or --rate with --duration".into());
    }
    if options.connections == 0 {
        return Err("--connections must be at least 1".into());
    }
    Ok(options)
}

async fn connect(uri: &Uri) -> Result<http1::SendRequest<Empty<Bytes>>, String> {
    let authority = uri.authority().ok_or("no authority")?.as_str();
    let stream = TcpStream::connect(authority)
        .await
        .map_err(|e| format!("connect {authority}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(connection);
    Ok(sender)
}

async fn worker(
    options: Arc<Options>,
    next: Arc<AtomicUsize>,
    start: Instant,
    total: usize,
) -> Tally {
    let mut tally = Tally::default();
    let host = HeaderValue::from_str(options.uri.authority().map_or("", |a| a.as_str()))
        .unwrap_or(HeaderValue::from_static("localhost"));
    // Origin-form request target (`/path?query`), as browsers and wrk send it.
    let target: Uri = options
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .parse()
        .unwrap_or_default();
    let mut sender = None;
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= total {
            break;
        }
        // Due time of request i; a free connection waits for it.
        let mut sent_from = Instant::now();
        if options.rate > 0.0 {
            let due = start + Duration::from_secs_f64(i as f64 / options.rate);
            if due > sent_from {
                tokio::time::sleep_until(due).await;
                sent_from = Instant::now();
            } else {
                sent_from = due;
            }
        }
        if sender.is_none() {
            match connect(&options.uri).await {
                Ok(s) => sender = Some(s),
                Err(e) => {
                    eprintln!("loadgen: {e}");
                    tally.errors += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let Some(s) = sender.as_mut() else { continue };
        let mut request = Request::get(target.clone())
            .header(HOST, host.clone())
            .body(Empty::<Bytes>::new())
            .unwrap_or_default();
        if !options.tokens.is_empty() {
            let token = options.tokens[i % options.tokens.len()].clone();
            request.headers_mut().insert(AUTHORIZATION, token);
        }
        let outcome = async {
            s.ready().await.map_err(|e| e.to_string())?;
            let response = s.send_request(request).await.map_err(|e| e.to_string())?;
            let status = response.status();
            response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(status)
        }
        .await;
        match outcome {
            Ok(status) => {
                tally
                    .latencies_us
                    .push(u64::try_from(sent_from.elapsed().as_micros()).unwrap_or(u64::MAX));
                if status == 200 {
                    tally.ok += 1;
                } else {
                    if tally.non200 < 3 {
                        eprintln!("loadgen: status {status}");
                    }
                    tally.non200 += 1;
                }
            }
            Err(e) => {
                if tally.errors < 3 {
                    eprintln!("loadgen: request failed: {e}");
                }
                tally.errors += 1;
                sender = None;
            }
        }
    }
    tally
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn run(options: Options) -> Result<bool, String> {
    let total = options.requests.unwrap_or(0);
    let limit = Duration::from_secs_f64(
        options
            .max_time
            .unwrap_or(options.duration + 30.0)
            .clamp(1.0, 3600.0),
    );
    let options = Arc::new(options);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..options.connections)
        .map(|_| tokio::spawn(worker(options.clone(), next.clone(), start, total)))
        .collect();
    let mut tally = Tally::default();
    let joined = tokio::time::timeout(limit, async {
        for w in workers {
            match w.await {
                Ok(t) => {
                    tally.latencies_us.extend(t.latencies_us);
                    tally.ok += t.ok;
                    tally.non200 += t.non200;
                    tally.errors += t.errors;
                }
                Err(e) => return Err(format!("worker: {e}")),
            }
        }
        Ok(())
    })
    .await;
    match joined {
        Ok(result) => result?,
        Err(_) => {
            // Stop the stragglers: nothing may keep sending past the limit.
            next.store(usize::MAX / 2, Ordering::Relaxed);
            return Err(format!("run exceeded its time limit ({limit:?})"));
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    tally.latencies_us.sort_unstable();
    let l = &tally.latencies_us;
    let done = tally.ok + tally.non200;
    println!(
        "RESULT requests={done} ok={} non200={} errors={} elapsed_s={elapsed:.3} rps={:.1} \
         p50_us={} p90_us={} p99_us={} p999_us={} max_us={}",
        tally.ok,
        tally.non200,
        tally.errors,
        done as f64 / elapsed,
        percentile(l, 50.0),
        percentile(l, 90.0),
        percentile(l, 99.0),
        percentile(l, 99.9),
        l.last().copied().unwrap_or(0),
    );
    Ok(tally.non200 == 0 && tally.errors == 0 && tally.ok == total)
}

fn main() -> ExitCode {
    let options = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("loadgen: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(options)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}
