//! `decision_service:` → [`DecisionServiceConfig`], and the rules tying it to
//! the proxy listener (`listen`, `tls`, `upstream`).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;

use super::build::existing_file;
use super::problem::Problem;
use super::raw::{RawDecisionService, RawDecisionTls};
use super::{DecisionServiceConfig, DecisionTlsConfig, RequireCredentials};

/// Loopback only unless said otherwise: only trusted proxies may call it.
const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9191);

/// Converts `decision_service:`; problem keys are relative to it.
pub(super) fn build_decision_service(
    raw: RawDecisionService,
    base_dir: &Path,
) -> Result<DecisionServiceConfig, Problem> {
    let listen = raw.listen.map_or(DEFAULT_LISTEN, |a| a.0 .0);
    let tls = raw
        .tls
        .map(|tls| build_decision_tls(tls, base_dir))
        .transpose()
        .map_err(|p| p.under("tls"))?;
    Ok(DecisionServiceConfig { listen, tls })
}

fn build_decision_tls(raw: RawDecisionTls, base_dir: &Path) -> Result<DecisionTlsConfig, Problem> {
    let file = |key: &'static str, value: Option<String>, what: &str| {
        let value = value.ok_or_else(|| Problem::at(key, format!("required: {what}")))?;
        existing_file(base_dir.join(value)).map_err(|m| Problem::at(key, m))
    };
    Ok(DecisionTlsConfig {
        cert: file("cert", raw.cert, "the server certificate chain (PEM)")?,
        key: file("key", raw.key, "the server private key (PEM)")?,
        client_ca: file(
            "client_ca",
            raw.client_ca,
            "the CA bundle (PEM) the calling proxy's client certificate must chain to",
        )?,
    })
}

/// In decision-service-only mode, `authn.require: mtls | both` needs
/// `trust_domains`: without them every principal the calling proxy reports
/// is ignored, and every request refused.
///
/// Returns the problem with its full key path.
pub(super) fn check_principals_trusted(
    require: RequireCredentials,
    trust_domains: &[String],
) -> Result<(), Problem> {
    let value = match require {
        RequireCredentials::Mtls => "mtls",
        RequireCredentials::Both => "both",
        RequireCredentials::Any | RequireCredentials::Jwt => return Ok(()),
    };
    if trust_domains.is_empty() {
        return Err(Problem::at(
            "trust_domains",
            format!(
                "required by `authn.require: {value}` in decision-service-only mode: the calling \
                 proxy's mTLS principals are accepted only from these SPIFFE trust domains"
            ),
        ));
    }
    Ok(())
}

/// Whether the proxy listener runs: with an `upstream`. Without one, the
/// config must be decision-service-only, and then the proxy listener's keys
/// (`listen`, `tls`) would configure nothing, so they are refused.
///
/// Returns the problem with its full key path.
pub(super) fn check_proxy_wanted(
    has_upstream: bool,
    has_decision_service: bool,
    has_listen: bool,
    has_tls: bool,
) -> Result<(), Problem> {
    if has_upstream {
        return Ok(());
    }
    if !has_decision_service {
        return Err(Problem::at(
            "upstream.address",
            "required: the service's host:port (or configure `decision_service:` alone \
             for a decision-service-only wisp)",
        ));
    }
    let key = match (has_listen, has_tls) {
        (true, _) => "listen",
        (false, true) => "tls",
        (false, false) => return Ok(()),
    };
    Err(Problem::at(
        "upstream.address",
        format!(
            "required: `{key}` configures the proxy listener, which forwards to an upstream; \
             remove `{key}` for a decision-service-only wisp (its listener is \
             `decision_service.listen`)"
        ),
    ))
}
