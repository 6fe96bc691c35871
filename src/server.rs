//! `wisp serve`: config meets I/O. Builds the live state (policies, issuers,
//! metrics), then runs pingora with three services: the proxy, the admin
//! listener and a background service (JWKS refresh, reloads, TLS files,
//! the drained exit).

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use async_trait::async_trait;
use pingora::apps::http_app::HttpServer;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;

use crate::admin::AdminApp;
use crate::authz::Diagnostic;
use crate::config::{Config, LogFormat};
use crate::decision::{DecisionListener, DecisionService};
use crate::lifecycle::{DrainingSignal, Lifecycle};
use crate::limits::{ConnectionLimiter, Connections};
use crate::live::{ReloadError, Reloader};
use crate::metrics::Metrics;
use crate::proxy::WispProxy;

/// Why `wisp serve` could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The schema or a policy is invalid.
    #[error("invalid policies:\n{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Policies(Vec<Diagnostic>),
    /// The upstream address does not resolve or its TLS files are unusable.
    #[error("{0}")]
    Upstream(crate::upstream::UpstreamError),
    /// The TLS listener's certificate, key or trust bundle is unusable.
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsError),
    /// A listen address cannot be bound.
    #[error("{key} {address}: {source}")]
    Bind {
        /// Config key.
        key: &'static str,
        /// Address.
        address: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// Anything else during setup.
    #[error("{0}")]
    Setup(String),
}

/// Installs the process-wide crypto providers: ring for rustls (as pingora
/// does) and for jsonwebtoken. Idempotent.
pub fn install_crypto() {
    // Err means a provider is already installed (pingora's ring one): fine.
    let _ = crate::tls::ring_provider().install_default();
    crate::authn::crypto::install();
}

/// Background work: the reloader (issuers' refresh loops, SIGHUP, the file
/// watcher, the token cache's sweep), the TLS file watcher, and the early
/// exit once a drained process has nothing in flight.
struct Background {
    reloader: Arc<Reloader>,
    tls: Option<Arc<crate::tls::TlsMaterial>>,
    lifecycle: Arc<Lifecycle>,
}

#[async_trait]
impl BackgroundService for Background {
    async fn start(&self, shutdown: ShutdownWatch) {
        let mut tasks = tokio::task::JoinSet::new();
        {
            let reloader = self.reloader.clone();
            let shutdown = shutdown.clone();
            tasks.spawn(async move { reloader.run(shutdown).await });
        }
        if let Some(tls) = self.tls.clone() {
            let shutdown = shutdown.clone();
            tasks.spawn(async move { tls.watch(shutdown).await });
        }
        {
            let lifecycle = self.lifecycle.clone();
            let shutdown = shutdown.clone();
            tasks.spawn(async move { lifecycle.exit_when_idle(shutdown).await });
        }
        while tasks.join_next().await.is_some() {}
    }
}

fn check_bindable(key: &'static str, address: SocketAddr) -> Result<(), StartError> {
    TcpListener::bind(address)
        .map(drop)
        .map_err(|source| StartError::Bind {
            key,
            address,
            source,
        })
}

/// Runs the proxy until SIGTERM/SIGINT (then drains, see [`crate::lifecycle`]);
/// SIGHUP reloads. `set_log_format` switches the log format when a reload
/// changes `log.format`.
///
/// # Errors
/// [`StartError`] before anything is served.
pub fn serve(
    config: Config,
    set_log_format: Box<dyn Fn(LogFormat) + Send + Sync>,
) -> Result<(), StartError> {
    if config.serves_proxy() {
        check_bindable("listen", config.listen)?;
    }
    if let Some(service) = &config.decision_service {
        check_bindable("decision_service.listen", service.listen)?;
    }
    if let Some(admin) = &config.admin {
        check_bindable("admin.listen", admin.listen)?;
    }
    install_crypto();
    let metrics = Metrics::new().map_err(|e| StartError::Setup(e.to_string()))?;
    let http = crate::authn::jwks::http_client().map_err(|e| StartError::Setup(e.to_string()))?;
    let reloader = Reloader::start(config, metrics.clone(), http, set_log_format).map_err(
        |error| match error {
            ReloadError::Policies(diagnostics) => StartError::Policies(diagnostics),
            ReloadError::Upstream(error) => StartError::Upstream(error),
            other => StartError::Setup(other.to_string()),
        },
    )?;
    let reloader = Arc::new(reloader);
    let state = reloader.state().clone();
    let config = state.load().config.clone();
    let lifecycle = Lifecycle::new(metrics.draining.clone());

    let server_conf = ServerConf {
        threads: config.threads,
        // pingora sleeps this long after it stops accepting, whatever is in
        // flight; `Lifecycle::exit_when_idle` ends the process sooner.
        grace_period_seconds: Some(ceil_secs(config.shutdown_grace)),
        // Then the runtimes drop what is left (open WebSockets).
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, server_conf);
    server.bootstrap();

    let tls = match (&config.tls, config.serves_proxy()) {
        (Some(tls), true) => Some(crate::tls::TlsMaterial::load(
            tls,
            &config.trust_domains,
            metrics.clone(),
        )?),
        _ => None,
    };
    if config.serves_proxy() {
        let proxy = WispProxy::new(state.clone(), lifecycle.clone(), metrics.clone());
        let mut server_options = pingora::apps::HttpServerOptions::default();
        // Plaintext HTTP/2 (prior knowledge) for gRPC clients; HTTP/1.1 otherwise.
        server_options.h2c = true;
        server_options.h2_idle_timeout = Some(config.limits.idle_timeout);
        let mut http_proxy = pingora::proxy::http_proxy(&server.configuration, proxy);
        http_proxy.server_options = Some(server_options);
        // `limits:` are enforced around pingora's HTTP app (see `crate::limits`).
        let connections = Connections::new(
            config.limits.max_connections,
            metrics.downstream_connections.clone(),
            metrics.downstream_connections_refused.clone(),
        );
        let app = ConnectionLimiter::new(http_proxy, &config.limits, connections);
        let mut proxy_service = Service::new("wisp proxy".to_string(), app);
        match &tls {
            Some(material) => proxy_service.add_tls_with_settings(
                &config.listen.to_string(),
                None,
                material.settings(),
            ),
            None => proxy_service.add_tcp(&config.listen.to_string()),
        }
        server.add_service(proxy_service);
    }

    if let Some(decision) = &config.decision_service {
        let service = DecisionService::new(state.clone(), metrics.clone(), lifecycle.clone());
        let decision_tls = decision
            .tls
            .as_ref()
            .map(crate::tls::decision_server_config)
            .transpose()?;
        server.add_service(background_service(
            "wisp decision service",
            DecisionListener::new(service, decision.listen, decision_tls),
        ));
    }
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }

    if let Some(admin) = &config.admin {
        let app = AdminApp::new(metrics.clone(), state.clone(), lifecycle.clone());
        let mut admin_service = Service::new("wisp admin".to_string(), HttpServer::new_app(app));
        admin_service.add_tcp(&admin.listen.to_string());
        server.add_service(admin_service);
    }

    server.add_service(background_service(
        "wisp background",
        Background {
            reloader,
            tls,
            lifecycle: lifecycle.clone(),
        },
    ));

    tracing::info!(
        mode = config.mode(),
        listen = %config.listen,
        decision_service = ?config.decision_service.as_ref().map(|d| d.listen),
        admin = ?config.admin.as_ref().map(|a| a.listen),
        "wisp started"
    );
    let drain_state = state.clone();
    server.run(RunArgs {
        shutdown_signal: Box::new(DrainingSignal {
            lifecycle,
            drain_delay: Box::new(move || drain_state.load().config.drain_delay),
        }),
    });
    Ok(())
}

/// Whole seconds, rounded up (pingora counts its grace in seconds).
fn ceil_secs(duration: std::time::Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}
