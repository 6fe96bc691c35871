//! The admin listener: `/metrics`, `/healthz`, `/readyz`.

use std::sync::Arc;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::lifecycle::Lifecycle;
use crate::live::LiveState;
use crate::metrics::Metrics;

/// The admin HTTP app.
pub struct AdminApp {
    metrics: Metrics,
    state: Arc<LiveState>,
    lifecycle: Arc<Lifecycle>,
}

impl AdminApp {
    /// Builds the admin app over the live state.
    pub fn new(metrics: Metrics, state: Arc<LiveState>, lifecycle: Arc<Lifecycle>) -> AdminApp {
        AdminApp {
            metrics,
            state,
            lifecycle,
        }
    }

    /// `/readyz`: 200 once policies are loaded and every issuer has had usable
    /// keys, until a shutdown signal (README, "Admin endpoints and metrics").
    /// An issuer that loses its keys later shows in the detail, not in the
    /// status.
    pub fn readiness(&self) -> (bool, serde_json::Value) {
        let live = self.state.load();
        let issuers: Vec<_> = live.authn.issuers().iter().map(|i| i.status()).collect();
        let draining = self.lifecycle.is_draining();
        let ready = !draining && self.state.ready();
        let detail = serde_json::json!({
            "ready": ready,
            "draining": draining,
            "policies": {
                "loaded": true,
                "count": live.policies.authorizer.policy_count(),
                "shadow": live.policies.authorizer.shadow_count(),
                "generation": live.policies.generation,
            },
            "issuers": issuers,
        });
        (ready, detail)
    }

    fn metrics_text(&self) -> Vec<u8> {
        let live = self.state.load();
        if let Some(cache) = live.callers.cache() {
            let (entries, bytes) = cache.usage();
            self.metrics
                .token_cache_entries
                .set(i64::try_from(entries).unwrap_or(i64::MAX));
            self.metrics
                .token_cache_bytes
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
        let (entries, bytes) = live.policies.authorizer.decision_cache_usage();
        self.metrics
            .decision_cache_entries
            .set(i64::try_from(entries).unwrap_or(i64::MAX));
        self.metrics
            .decision_cache_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        self.metrics
            .in_flight
            .set(i64::try_from(self.lifecycle.in_flight()).unwrap_or(i64::MAX));
        for issuer in live.authn.issuers() {
            self.metrics
                .jwks_ready
                .with_label_values(&[&issuer.config().name])
                .set(i64::from(issuer.keys().is_some()));
        }
        self.metrics.render()
    }
}

fn response(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    if let Ok(value) = http::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(http::header::CONTENT_TYPE, value);
    }
    let length = response.body().len();
    response.headers_mut().insert(
        http::header::CONTENT_LENGTH,
        http::HeaderValue::from(length),
    );
    response
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path();
        match path {
            "/metrics" => response(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                self.metrics_text(),
            ),
            "/healthz" => response(
                StatusCode::OK,
                "application/json",
                br#"{"status":"ok"}"#.to_vec(),
            ),
            "/readyz" => {
                let (ready, detail) = self.readiness();
                let status = if ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                response(status, "application/json", detail.to_string().into_bytes())
            }
            _ => response(
                StatusCode::NOT_FOUND,
                "application/json",
                br#"{"error":"not_found"}"#.to_vec(),
            ),
        }
    }
}
