//! Typed Prometheus metric handles, registered once at startup (DESIGN.md §5).
//!
//! Every handle the request path touches is resolved here, so a request never
//! formats a metric name or allocates a label set.

use std::sync::Arc;

use prometheus::{
    Encoder, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

mod stages;

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

/// `wisp_requests_total` with a handle resolved at startup for every
/// (decision, reason) wisp produces, so counting a request is a lookup in an
/// immutable map rather than a label hash under the registry's lock.
#[derive(Debug, Clone)]
pub struct RequestCounters {
    vec: IntCounterVec,
    known: Arc<crate::FastMap<(&'static str, &'static str), IntCounter>>,
}

impl RequestCounters {
    fn new(vec: IntCounterVec) -> RequestCounters {
        let mut pairs: Vec<(&'static str, &'static str)> = vec![
            ("allow", "policy"),
            ("allow", "dry_run"),
            ("public", "public_route"),
            ("deny", "policy"),
            ("deny", "policy_error"),
            ("deny", "bad_request"),
        ];
        for reasons in [
            crate::authn::AuthnError::REASONS,
            crate::authn::svid::SvidError::REASONS,
            crate::path::PathError::REASONS,
        ] {
            pairs.extend(reasons.iter().map(|reason| ("deny", *reason)));
        }
        let known = pairs
            .into_iter()
            .map(|pair| (pair, vec.with_label_values(&[pair.0, pair.1])))
            .collect();
        RequestCounters {
            vec,
            known: Arc::new(known),
        }
    }

    /// Counts one request.
    pub fn inc(&self, decision: &'static str, reason: &'static str) {
        match self.known.get(&(decision, reason)) {
            Some(counter) => counter.inc(),
            // A pair not listed above: still counted, just resolved now.
            None => self.vec.with_label_values(&[decision, reason]).inc(),
        }
    }

    /// The counter of one (decision, reason) pair.
    pub fn get(&self, decision: &str, reason: &str) -> u64 {
        self.vec.with_label_values(&[decision, reason]).get()
    }
}

/// All of wisp's metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// `wisp_requests_total{decision,reason}`.
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
    /// `wisp_tls_cert_expiry_timestamp_seconds{cert}`: `server` (the listener's
    /// leaf) and `client_ca` (the earliest CA in the client trust bundle).
    pub tls_cert_expiry: IntGaugeVec,
    /// `wisp_tls_client_cert_rejections_total{reason}`: client certificates
    /// refused at the handshake (chain) or after it (X.509-SVID rules).
    pub tls_client_cert_rejections: IntCounterVec,
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
            Opts::new("wisp_requests_total", "Requests by decision and reason."),
            &["decision", "reason"],
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
        let tls_client_cert_rejections = IntCounterVec::new(
            Opts::new(
                "wisp_tls_client_cert_rejections_total",
                "Client certificates refused, by reason (chain verification or X.509-SVID rule).",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(tls_cert_expiry.clone()))?;
        registry.register(Box::new(tls_client_cert_rejections.clone()))?;
        registry.register(Box::new(build_info))?;

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
            tls_cert_expiry,
            tls_client_cert_rejections,
        })
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
        metrics.requests.inc("allow", "policy");
        metrics.requests.inc("deny", "something_new");
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
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
    }
}
