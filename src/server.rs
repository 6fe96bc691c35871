//! `wisp serve`: config meets I/O. Builds the live state (policies, issuers,
//! metrics), then runs pingora with three services: the proxy, the admin
//! listener and a background service for JWKS refresh and policy watching.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use async_trait::async_trait;
use pingora::apps::http_app::HttpServer;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;

use crate::admin::AdminApp;
use crate::authn::authenticator::Authenticator;
use crate::authz::reload::PolicyStore;
use crate::authz::Diagnostic;
use crate::config::Config;
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
    let _ = rustls::crypto::ring::default_provider().install_default();
    crate::authn::crypto::install();
}

/// The live state shared by the proxy, the admin listener and background work.
pub struct Runtime {
    /// The validated config.
    pub config: Arc<Config>,
    /// Metrics.
    pub metrics: Metrics,
    /// Authentication stage.
    pub authn: Arc<Authenticator>,
    /// Live policies.
    pub policies: Arc<PolicyStore>,
}

impl Runtime {
    /// Builds the live state; loads and validates policies.
    ///
    /// # Errors
    /// [`StartError`] when policies are invalid or setup fails.
    pub fn build(config: Config) -> Result<Runtime, StartError> {
        install_crypto();
        let metrics = Metrics::new().map_err(|e| StartError::Setup(e.to_string()))?;
        let policies = PolicyStore::load(
            &config.policies.schema,
            &config.policies.dir,
            metrics.clone(),
        )
        .map_err(StartError::Policies)?;
        let http =
            crate::authn::jwks::http_client().map_err(|e| StartError::Setup(e.to_string()))?;
        let authn = Authenticator::new(&config, http, metrics.clone())
            .map_err(|e| StartError::Setup(e.to_string()))?;
        Ok(Runtime {
            config: Arc::new(config),
            metrics,
            authn: Arc::new(authn),
            policies: Arc::new(policies),
        })
    }
}

/// Background work: one refresh loop per issuer, the policy and TLS file
/// watchers, and the token cache's sweep of expired entries.
struct Background {
    authn: Arc<Authenticator>,
    policies: Arc<PolicyStore>,
    watch_policies: bool,
    tls: Option<Arc<crate::tls::TlsMaterial>>,
}

#[async_trait]
impl BackgroundService for Background {
    async fn start(&self, shutdown: ShutdownWatch) {
        let mut tasks = tokio::task::JoinSet::new();
        for issuer in self.authn.issuers() {
            let issuer = issuer.clone();
            let shutdown = shutdown.clone();
            tasks.spawn(async move { issuer.run(shutdown).await });
        }
        if self.watch_policies {
            let policies = self.policies.clone();
            let shutdown = shutdown.clone();
            tasks.spawn(async move { policies.watch(shutdown).await });
        }
        if let Some(tls) = self.tls.clone() {
            let shutdown = shutdown.clone();
            tasks.spawn(async move { tls.watch(shutdown).await });
        }
        if let Some(cache) = self.authn.cache().cloned() {
            let shutdown = shutdown.clone();
            tasks.spawn(async move { cache.sweep(shutdown).await });
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

/// Runs the proxy until SIGTERM/SIGINT.
///
/// # Errors
/// [`StartError`] before anything is served.
pub fn serve(config: Config) -> Result<(), StartError> {
    check_bindable("listen", config.listen)?;
    if let Some(admin) = &config.admin {
        check_bindable("admin.listen", admin.listen)?;
    }
    let upstream = crate::upstream::peer(&config.upstream).map_err(StartError::Upstream)?;
    let runtime = Runtime::build(config)?;
    let config = runtime.config.clone();

    let server_conf = ServerConf {
        threads: config.threads,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(config.shutdown_grace.as_secs().max(1)),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, server_conf);
    server.bootstrap();

    let proxy = WispProxy::new(
        config.clone(),
        runtime.authn.clone(),
        runtime.policies.clone(),
        runtime.metrics.clone(),
        upstream,
    );
    let mut server_options = pingora::apps::HttpServerOptions::default();
    // Plaintext HTTP/2 (prior knowledge) for gRPC clients; HTTP/1.1 otherwise.
    server_options.h2c = true;
    let mut proxy_service = pingora::proxy::ProxyServiceBuilder::new(&server.configuration, proxy)
        .name("wisp proxy")
        .server_options(server_options)
        .build();
    let tls = match &config.tls {
        Some(tls) => Some(crate::tls::TlsMaterial::load(
            tls,
            &config.trust_domains,
            runtime.metrics.clone(),
        )?),
        None => None,
    };
    match &tls {
        Some(material) => proxy_service.add_tls_with_settings(
            &config.listen.to_string(),
            None,
            material.settings(),
        ),
        None => proxy_service.add_tcp(&config.listen.to_string()),
    }
    server.add_service(proxy_service);

    if let Some(admin) = &config.admin {
        let app = AdminApp::new(
            runtime.metrics.clone(),
            runtime.authn.clone(),
            runtime.policies.clone(),
        );
        let mut admin_service = Service::new("wisp admin".to_string(), HttpServer::new_app(app));
        admin_service.add_tcp(&admin.listen.to_string());
        server.add_service(admin_service);
    }

    server.add_service(background_service(
        "wisp background",
        Background {
            authn: runtime.authn.clone(),
            policies: runtime.policies.clone(),
            watch_policies: config.policies.watch,
            tls,
        },
    ));

    tracing::info!(listen = %config.listen, admin = ?config.admin.as_ref().map(|a| a.listen), "wisp started");
    server.run(RunArgs::default());
    Ok(())
}
