//! The decision cache cannot be used to exhaust memory: one caller with a
//! valid token sending 2,000 requests with unique ~60 KB paths (part of the
//! key, since a policy reads `resource.path`) leaves the process's RSS within
//! a fixed bound of where it started. Before the byte bound, this traffic
//! grew it by ~130 MiB (every path was kept in one of 10,000 entries).

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

/// Denies everything (nothing permits); reads `resource.path`, so the path
/// is part of the decision cache key.
const POLICIES: &str = r#"
@id("no-blocked")
forbid (principal, action, resource) when { resource.path like "/blocked*" };
"#;

const REQUESTS: usize = 2_000;
const PATH_BYTES: usize = 60_000;

/// What the traffic may add to RSS: the default cache bound (8 MiB: the
/// 60 KB keys are not cached at all, but ordinary ones up to that would be),
/// plus room for the allocator keeping freed request buffers (each request
/// carries 60 KB through pingora's header buffer, the normalized path and
/// the log context; with 8 clients at a time, a few MiB) and its per-thread
/// caches. 40 MiB is a third of the growth the unbounded cache showed.
const RSS_BOUND: f64 = 40.0 * 1024.0 * 1024.0;

async fn rss(wisp: &Wisp) -> f64 {
    let metrics = wisp.metrics().await;
    let rss = metric_value(&metrics, "process_resident_memory_bytes");
    assert!(rss > 0.0, "no RSS in\n{metrics}");
    rss
}

#[tokio::test(flavor = "multi_thread")]
async fn unique_long_paths_from_one_caller_do_not_grow_memory_without_bound() {
    let issuer = start_issuer().await;
    let echo = start_echo().await;
    let wisp = WispBuilder::new(echo.addr())
        .issuer(issuer_yaml("dev", &issuer, ""))
        .policy("deny.cedar", POLICIES)
        // A 60 KB path in each of 2,000 log lines is not what is measured.
        .start_edited(|config| config.replace("decisions: all", "decisions: none"))
        .await;
    wisp.wait_ready().await;
    let token = issuer.token(json!({"sub": "acme:frontend:web-1"}));
    let auth = format!("Bearer {token}");

    // Warm up: the token verified and cached, buffers and threads in use.
    let padding = "p".repeat(PATH_BYTES);
    for n in 0..50 {
        let path = format!("/warm/{n}/{padding}");
        let response = wisp
            .request("GET", &path, &[("authorization", &auth)])
            .await;
        assert_eq!(response.status, 403, "{}", response.body);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let baseline = rss(&wisp).await;

    let mut clients = tokio::task::JoinSet::new();
    for client in 0..8 {
        let (listen, auth, padding) = (wisp.listen, auth.clone(), padding.clone());
        clients.spawn(async move {
            for n in (client..REQUESTS).step_by(8) {
                let path = format!("/blocked/{n}/{padding}");
                let response = request(listen, "GET", &path, &[("authorization", &auth)])
                    .await
                    .expect("request");
                assert_eq!(response.status, 403, "{}", response.body);
            }
        });
    }
    while let Some(result) = clients.join_next().await {
        result.expect("client");
    }
    let after = rss(&wisp).await;
    let grown = after - baseline;
    eprintln!(
        "RSS {:.1} → {:.1} MiB",
        baseline / 1048576.0,
        after / 1048576.0
    );
    assert!(
        grown < RSS_BOUND,
        "RSS grew by {:.1} MiB ({:.1} → {:.1} MiB)",
        grown / 1048576.0,
        baseline / 1048576.0,
        after / 1048576.0
    );
    let metrics = wisp.metrics().await;
    assert!(
        metric_value(&metrics, "wisp_decision_cache_bytes") <= 8.0 * 1024.0 * 1024.0,
        "{metrics}"
    );
    assert_eq!(
        metric_value(
            &metrics,
            "wisp_requests_total{decision=\"deny\",issuer=\"dev\",mode=\"proxy\",reason=\"policy\"}"
        ),
        (REQUESTS + 50) as f64
    );
}
