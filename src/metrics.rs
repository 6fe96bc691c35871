//! Typed Prometheus metric handles, registered once at startup (README, "Admin
//! endpoints and metrics").
//!
//! Every handle the request path touches is resolved here, so a request never
//! formats a metric name or allocates a label set.

use prometheus::{
    Encoder, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

mod requests;
mod stages;

pub use requests::{Mode, RequestCounters, NO_ISSUER};
pub use stages::StageTimer;

/// Stages timed by `wisp_request_duration_seconds{stage}` (per-thread
/// shards: see [`stages`]).
#[derive(Debug, Clone)]
pub struct StageTimers {
    /// Authentication (token parse, cache, verification).
    pub authn: StageTimer,
    /// Authorization (Cedar evaluation).
    pub authz: StageTimer,
    /// From upstream connect to the response header.
    pub upstream: StageTimer,
    /// The whole request as seen by wisp.
    pub total: StageTimer,
}

/// All of wisp's metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// `wisp_requests_total{mode,decision,reason,issuer}`.
    pub requests: RequestCounters,
    /// `wisp_request_duration_seconds{stage}`.
    pub durations: StageTimers,
    /// `wisp_token_cache_hits_total`.
    pub token_cache_hits: IntCounter,
    /// `wisp_token_cache_misses_total`.
    pub token_cache_misses: IntCounter,
    /// `wisp_token_cache_evictions_total`: entries pushed out by the byte bound.
    pub token_cache_evictions: IntCounter,
    /// `wisp_token_cache_entries` (set at scrape time).
    pub token_cache_entries: IntGauge,
    /// `wisp_token_cache_bytes` (set at scrape time).
    pub token_cache_bytes: IntGauge,
    /// `wisp_jwks_refresh_total{issuer,result}`.
    pub jwks_refresh: IntCounterVec,
    /// `wisp_jwks_keys{issuer}`.
    pub jwks_keys: IntGaugeVec,
    /// `wisp_jwks_last_success_timestamp_seconds{issuer}`.
    pub jwks_last_success: IntGaugeVec,
    /// `wisp_policy_reload_total{result}`.
    pub policy_reload: IntCounterVec,
    /// `wisp_policies`.
    pub policies: IntGauge,
    /// `wisp_dry_run_decisions_total{decision}`.
    pub dry_run_decisions: IntCounterVec,
    /// `wisp_shadow_decisions_total{policy,decision}`: requests a `@shadow`
    /// policy applied to, by the decision it would have given.
    pub shadow_decisions: IntCounterVec,
    /// `wisp_tls_cert_expiry_timestamp_seconds{cert}`: `server` (the listener's
    /// leaf) and `client_ca` (the earliest CA in the client trust bundle).
    pub tls_cert_expiry: IntGaugeVec,
    /// `wisp_tls_client_cert_rejections_total{reason}`: client certificates
    /// refused at the handshake (chain) or after it (X.509-SVID rules).
    pub tls_client_cert_rejections: IntCounterVec,
    /// `wisp_jwks_ready{issuer}`: 1 while the issuer's tokens can be
    /// verified (set at scrape time).
    pub jwks_ready: IntGaugeVec,
    /// `wisp_config_reload_total{result}`.
    pub config_reload: IntCounterVec,
    /// `wisp_config_last_reload_success_timestamp_seconds`.
    pub config_last_reload_success: IntGauge,
    /// `wisp_upstream_responses_total{status_class}`: `1xx`…`5xx` from the
    /// upstream, `error` when wisp answered 502/504 itself.
    pub upstream_responses: UpstreamResponses,
    /// `wisp_draining`: 1 from SIGTERM/SIGINT on.
    pub draining: IntGauge,
    /// `wisp_in_flight_requests` (set at scrape time).
    pub in_flight: IntGauge,
    /// `wisp_decision_cache_entries` (set at scrape time).
    pub decision_cache_entries: IntGauge,
    /// `wisp_decision_cache_bytes` (set at scrape time).
    pub decision_cache_bytes: IntGauge,
    /// `wisp_downstream_connections`: proxy connections open now.
    pub downstream_connections: IntGauge,
    /// `wisp_downstream_connections_refused_total`: connections closed at
    /// once because `limits.max_connections` were open.
    pub downstream_connections_refused: IntCounter,
}

/// `wisp_decision_cache_evictions_total`, read at scrape time from the
/// process-wide count (each policy reload starts a new cache; the count
/// goes on).
#[derive(Debug, Clone)]
struct DecisionCacheEvictions {
    desc: Vec<prometheus::core::Desc>,
}

impl DecisionCacheEvictions {
    const NAME: &'static str = "wisp_decision_cache_evictions_total";
    const HELP: &'static str = "Decision cache entries evicted to stay within its bounds.";

    fn new() -> Result<DecisionCacheEvictions, prometheus::Error> {
        let counter = IntCounter::new(Self::NAME, Self::HELP)?;
        Ok(DecisionCacheEvictions {
            desc: prometheus::core::Collector::desc(&counter)
                .into_iter()
                .cloned()
                .collect(),
        })
    }
}

impl prometheus::core::Collector for DecisionCacheEvictions {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.desc.iter().collect()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        match IntCounter::new(Self::NAME, Self::HELP) {
            Ok(counter) => {
                counter.inc_by(crate::authz::decision_cache_evictions());
                prometheus::core::Collector::collect(&counter)
            }
            Err(_) => Vec::new(),
        }
    }
}

/// `wisp_upstream_responses_total{status_class}`, with its six handles.
#[derive(Debug, Clone)]
pub struct UpstreamResponses {
    /// `1xx` … `5xx`, then `error`.
    classes: [IntCounter; 6],
}

impl UpstreamResponses {
    const LABELS: [&'static str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "error"];

    fn new(vec: &IntCounterVec) -> UpstreamResponses {
        UpstreamResponses {
            classes: Self::LABELS.map(|label| vec.with_label_values(&[label])),
        }
    }

    /// Counts a response from the upstream with `status`.
    pub fn status(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.classes[class].inc();
    }

    /// Counts a request the upstream did not answer (wisp's 502/504).
    pub fn error(&self) {
        self.classes[5].inc();
    }
}

/// Request latency buckets: 50 µs … 10 s.
const DURATION_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

impl Metrics {
    /// Creates and registers every metric in a fresh registry.
    ///
    /// # Errors
    /// Only if two metrics share a name, which is a programming error caught by tests.
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "wisp_requests_total",
                "Requests by mode (proxy or decision), decision, reason and issuer \
                 (a configured issuer's name, or none).",
            ),
            &["mode", "decision", "reason", "issuer"],
        )?;
        let (duration, [authn, authz, upstream, total]) = stages::StageCollector::new(
            "wisp_request_duration_seconds",
            "Time spent per request stage.",
            ["authn", "authz", "upstream", "total"],
        )?;
        let durations = StageTimers {
            authn,
            authz,
            upstream,
            total,
        };
        let token_cache_hits =
            IntCounter::new("wisp_token_cache_hits_total", "Verified-token cache hits.")?;
        let token_cache_misses = IntCounter::new(
            "wisp_token_cache_misses_total",
            "Verified-token cache misses (full verification).",
        )?;
        let token_cache_evictions = IntCounter::new(
            "wisp_token_cache_evictions_total",
            "Verified-token cache entries evicted to stay within max_bytes.",
        )?;
        let token_cache_entries = IntGauge::new(
            "wisp_token_cache_entries",
            "Tokens in the verified-token cache.",
        )?;
        let token_cache_bytes = IntGauge::new(
            "wisp_token_cache_bytes",
            "Approximate bytes held by the verified-token cache.",
        )?;
        let jwks_refresh = IntCounterVec::new(
            Opts::new(
                "wisp_jwks_refresh_total",
                "JWKS fetches by issuer and result.",
            ),
            &["issuer", "result"],
        )?;
        let jwks_keys = IntGaugeVec::new(
            Opts::new("wisp_jwks_keys", "Usable keys currently loaded per issuer."),
            &["issuer"],
        )?;
        let jwks_last_success = IntGaugeVec::new(
            Opts::new(
                "wisp_jwks_last_success_timestamp_seconds",
                "Unix time of the last successful JWKS fetch per issuer.",
            ),
            &["issuer"],
        )?;
        let policy_reload = IntCounterVec::new(
            Opts::new("wisp_policy_reload_total", "Policy loads by result."),
            &["result"],
        )?;
        let policies = IntGauge::new("wisp_policies", "Cedar policies currently loaded.")?;
        let dry_run_decisions = IntCounterVec::new(
            Opts::new(
                "wisp_dry_run_decisions_total",
                "Decisions taken in dry-run mode (the request was forwarded regardless).",
            ),
            &["decision"],
        )?;
        let shadow_decisions = IntCounterVec::new(
            Opts::new(
                "wisp_shadow_decisions_total",
                "Requests a @shadow policy applied to, by the decision the request would have had with that policy enforced.",
            ),
            &["policy", "decision"],
        )?;
        let tls_cert_expiry = IntGaugeVec::new(
            Opts::new(
                "wisp_tls_cert_expiry_timestamp_seconds",
                "Unix time at which the loaded TLS certificate expires (server leaf; earliest client CA).",
            ),
            &["cert"],
        )?;
        let build_info = IntGaugeVec::new(
            Opts::new(
                "wisp_build_info",
                "Build information; the value is always 1.",
            ),
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);

        registry.register(Box::new(requests.clone()))?;
        let requests = RequestCounters::new(requests);
        registry.register(Box::new(duration))?;
        registry.register(Box::new(token_cache_hits.clone()))?;
        registry.register(Box::new(token_cache_misses.clone()))?;
        registry.register(Box::new(token_cache_evictions.clone()))?;
        registry.register(Box::new(token_cache_entries.clone()))?;
        registry.register(Box::new(token_cache_bytes.clone()))?;
        registry.register(Box::new(jwks_refresh.clone()))?;
        registry.register(Box::new(jwks_keys.clone()))?;
        registry.register(Box::new(jwks_last_success.clone()))?;
        registry.register(Box::new(policy_reload.clone()))?;
        registry.register(Box::new(policies.clone()))?;
        registry.register(Box::new(dry_run_decisions.clone()))?;
        registry.register(Box::new(shadow_decisions.clone()))?;
        let tls_client_cert_rejections = IntCounterVec::new(
            Opts::new(
                "wisp_tls_client_cert_rejections_total",
                "Client certificates refused, by reason (chain verification or X.509-SVID rule).",
            ),
            &["reason"],
        )?;
        // Series that exist from the start, so rates and alerts see 0.
        for reason in crate::tls::rotate::CHAIN_REJECTION_REASONS
            .iter()
            .chain(crate::authn::svid::SvidError::REASONS)
        {
            tls_client_cert_rejections.with_label_values(&[reason]);
        }
        for decision in ["allow", "deny"] {
            dry_run_decisions.with_label_values(&[decision]);
        }
        registry.register(Box::new(tls_cert_expiry.clone()))?;
        registry.register(Box::new(tls_client_cert_rejections.clone()))?;
        registry.register(Box::new(build_info))?;
        let jwks_ready = IntGaugeVec::new(
            Opts::new(
                "wisp_jwks_ready",
                "1 while the issuer has usable keys (its tokens can be verified), else 0.",
            ),
            &["issuer"],
        )?;
        let config_reload = IntCounterVec::new(
            Opts::new(
                "wisp_config_reload_total",
                "Config reloads (SIGHUP or a changed file) by result.",
            ),
            &["result"],
        )?;
        let config_last_reload_success = IntGauge::new(
            "wisp_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful config load (start or reload).",
        )?;
        config_last_reload_success.set(crate::authn::unix_now());
        let upstream_responses = IntCounterVec::new(
            Opts::new(
                "wisp_upstream_responses_total",
                "Responses from the upstream by status class; error: none came (wisp answered 502/504).",
            ),
            &["status_class"],
        )?;
        let draining = IntGauge::new(
            "wisp_draining",
            "1 once a shutdown signal arrived (/readyz answers 503).",
        )?;
        let in_flight = IntGauge::new("wisp_in_flight_requests", "Requests being handled now.")?;
        let decision_cache_entries = IntGauge::new(
            "wisp_decision_cache_entries",
            "Decisions in the decision cache.",
        )?;
        let decision_cache_bytes = IntGauge::new(
            "wisp_decision_cache_bytes",
            "Approximate bytes held by the decision cache.",
        )?;
        let downstream_connections = IntGauge::new(
            "wisp_downstream_connections",
            "Client connections to the proxy listener open now.",
        )?;
        let downstream_connections_refused = IntCounter::new(
            "wisp_downstream_connections_refused_total",
            "Client connections closed at once because limits.max_connections were open.",
        )?;
        for result in ["success", "failure"] {
            config_reload.with_label_values(&[result]);
            policy_reload.with_label_values(&[result]);
        }
        registry.register(Box::new(jwks_ready.clone()))?;
        registry.register(Box::new(config_reload.clone()))?;
        registry.register(Box::new(config_last_reload_success.clone()))?;
        registry.register(Box::new(upstream_responses.clone()))?;
        registry.register(Box::new(draining.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(decision_cache_entries.clone()))?;
        registry.register(Box::new(decision_cache_bytes.clone()))?;
        registry.register(Box::new(DecisionCacheEvictions::new()?))?;
        registry.register(Box::new(downstream_connections.clone()))?;
        registry.register(Box::new(downstream_connections_refused.clone()))?;
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        let upstream_responses = UpstreamResponses::new(&upstream_responses);

        Ok(Metrics {
            registry,
            requests,
            durations,
            token_cache_hits,
            token_cache_misses,
            token_cache_evictions,
            token_cache_entries,
            token_cache_bytes,
            jwks_refresh,
            jwks_keys,
            jwks_last_success,
            policy_reload,
            policies,
            dry_run_decisions,
            shadow_decisions,
            tls_cert_expiry,
            tls_client_cert_rejections,
            jwks_ready,
            config_reload,
            config_last_reload_success,
            upstream_responses,
            draining,
            in_flight,
            decision_cache_entries,
            decision_cache_bytes,
            downstream_connections,
            downstream_connections_refused,
        })
    }

    /// Drops the series of an issuer no longer configured.
    pub fn forget_issuer(&self, issuer: &str) {
        self.requests.forget_issuer(issuer);
        for vec in [&self.jwks_keys, &self.jwks_last_success, &self.jwks_ready] {
            let _ = vec.remove_label_values(&[issuer]);
        }
        for result in ["success", "failure"] {
            let _ = self.jwks_refresh.remove_label_values(&[issuer, result]);
        }
    }

    /// Renders the registry in the Prometheus text exposition format.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 * 1024);
        // Encoding into a Vec cannot fail on I/O; an error would mean a
        // malformed metric family, which registration already rules out.
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(%error, "failed to encode metrics");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_every_metric_once() {
        let metrics = Metrics::new().unwrap();
        metrics.requests.inc(Mode::Proxy, "allow", "policy", None);
        metrics
            .requests
            .inc(Mode::Decision, "deny", "something_new", Some("demo"));
        assert_eq!(metrics.requests.get("allow", "policy"), 1);
        assert_eq!(metrics.requests.get("deny", "something_new"), 1);
        assert_eq!(metrics.requests.get("deny", "token_expired"), 0);
        metrics.jwks_keys.with_label_values(&["demo"]).set(1);
        let text = String::from_utf8(metrics.render()).unwrap();
        for name in [
            "wisp_requests_total",
            "wisp_token_cache_hits_total",
            "wisp_policies",
            "wisp_build_info",
            "wisp_jwks_keys",
            "wisp_config_reload_total{result=\"failure\"} 0",
            "wisp_upstream_responses_total{status_class=\"error\"} 0",
            "process_resident_memory_bytes",
            "wisp_decision_cache_evictions_total",
            "wisp_decision_cache_bytes 0",
            "wisp_downstream_connections 0",
            "wisp_downstream_connections_refused_total 0",
            "process_open_fds",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
    }
}
