//! [`RawConfig`] → [`Config`]: defaults, cross-field rules and file checks.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::decision::{build_decision_service, check_principals_trusted, check_proxy_wanted};
use super::issuer::build_issuers;
use super::problem::{element, Problem, Problems};
use super::raw::{
    RawAdmin, RawAuthn, RawConfig, RawDecisionLog, RawHeaders, RawLimits, RawLog, RawLogFormat,
    RawPolicies, RawPolicyMode, RawRequire, RawRoutes, RawUpstream,
};
use super::tls::{
    build_tls, build_trust_domains, build_upstream_tls, check_require, check_trust_domains_needed,
    scope_spiffe_issuers,
};
use super::units::{format_duration, format_size};
use super::{
    AdminConfig, AuthnConfig, Config, DecisionLog, HeadersConfig, IdentityHeaderNames,
    IssuerConfig, LimitsConfig, LogConfig, LogFormat, PolicyConfig, PolicyMode, RequireCredentials,
    RoutePattern, RoutesConfig, UpstreamConfig,
};

const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8080);
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(20);
const DEFAULT_DRAIN_DELAY: Duration = Duration::from_secs(5);
/// How long a changed watched file must stay unchanged before it is loaded.
const DEFAULT_SETTLE: Duration = Duration::from_secs(5);
const MAX_SETTLE: Duration = Duration::from_secs(5 * 60);
const DEFAULT_MAX_TOKEN_BYTES: u64 = 8192;
const MAX_MAX_TOKEN_BYTES: u64 = 1 << 20;
const DEFAULT_TOKEN_CACHE_BYTES: u64 = 64 << 20;
const MAX_THREADS: usize = 256;
const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_MAX_CONNECTIONS: u64 = 10_000;
/// A bound on `limits.max_connections` (each connection holds a file
/// descriptor; beyond this the process's own limit decides anyway).
const MAX_MAX_CONNECTIONS: u64 = 1_000_000;
const DEFAULT_POLICY_DIR: &str = "policies";
const SCHEMA_FILE_NAME: &str = "wisp.cedarschema";

/// Header names that carry protocol meaning or credentials, or the request
/// id wisp forwards: an identity header must never replace one of them.
const PROTECTED_HEADERS: [&str; 13] = [
    "authorization",
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "cookie",
    "proxy-authorization",
    "keep-alive",
    "proxy-connection",
    "x-request-id",
];

/// Converts the parsed file; `source` is the config file (its directory
/// anchors relative paths). Every section is converted, so that all the
/// problems of the file are reported at once; rules across sections are
/// checked only when the sections they read converted.
pub(super) fn build(raw: RawConfig, source: &Path) -> Result<Config, Problems> {
    let base_dir = source.parent().unwrap_or(Path::new(""));
    let mut problems = Problems::default();
    problems.take(check_proxy_wanted(
        raw.upstream.is_some(),
        raw.decision_service.is_some(),
        raw.listen.is_some(),
        raw.tls.is_some(),
    ));
    let listen = raw.listen.map_or(DEFAULT_LISTEN, |a| a.0 .0);
    let upstream = match raw.upstream {
        Some(upstream) => problems
            .take(build_upstream(upstream, base_dir).map_err(|p| p.under("upstream")))
            .map(Some),
        None => Some(None),
    };
    let decision_service = match raw.decision_service {
        Some(service) => problems
            .take(
                build_decision_service(service, base_dir).map_err(|p| p.under("decision_service")),
            )
            .map(Some),
        None => Some(None),
    };
    let decision_listen = decision_service
        .as_ref()
        .and_then(|d| d.as_ref())
        .map(|d| d.listen);
    if matches!(upstream, Some(Some(_))) && decision_listen == Some(listen) {
        problems.push(Problem::at(
            "decision_service.listen",
            format!("{listen} is also the proxy's `listen`"),
        ));
    }
    let trust_domains =
        problems.take(build_trust_domains(raw.trust_domains).map_err(|p| p.under("trust_domains")));
    // Bundles are checked against the trust domains: skipped when those are invalid.
    let tls = match (raw.tls, &trust_domains) {
        (None, _) => Some(None),
        (Some(tls), Some(trust_domains)) => problems.take(
            build_tls(tls, trust_domains, base_dir)
                .map(Some)
                .map_err(|p| p.under("tls")),
        ),
        (Some(_), None) => None,
    };
    let admin = problems.take(
        raw.admin
            .map(|admin| build_admin(admin, listen, decision_listen))
            .transpose()
            .map_err(|p| p.under("admin")),
    );
    let mut issuers = problems.take(build_issuers(raw.issuers, base_dir));
    if let (Some(trust_domains), Some(tls), Some(issuers)) = (&trust_domains, &tls, &mut issuers) {
        problems.take(check_trust_domains_needed(
            trust_domains,
            tls.as_ref(),
            issuers,
        ));
        problems.take(scope_spiffe_issuers(issuers, trust_domains, tls.as_ref()));
    }
    let authn = problems.take(AuthnConfig::try_from(raw.authn).map_err(|p| p.under("authn")));
    if let (Some(authn), Some(tls), Some(upstream), Some(trust_domains)) =
        (&authn, &tls, &upstream, &trust_domains)
    {
        if upstream.is_some() {
            problems.take(check_require(authn.require, tls.as_ref()));
        } else {
            // Decision-service-only: certificate callers arrive as the calling
            // proxy's `attributes.source.principal`, accepted only from these.
            problems.take(check_principals_trusted(authn.require, trust_domains));
        }
    }
    let policies =
        problems.take(build_policies(raw.policies, base_dir).map_err(|p| p.under("policies")));
    let routes = problems.take(RoutesConfig::try_from(raw.routes).map_err(|p| p.under("routes")));
    let headers =
        problems.take(HeadersConfig::try_from(raw.headers).map_err(|p| p.under("headers")));
    if let (Some(headers), Some(issuers)) = (&headers, &issuers) {
        problems.take(check_claim_headers(&headers.identity.claims, issuers));
    }
    let limits = problems.take(build_limits(raw.limits).map_err(|p| p.under("limits")));
    let threads = problems.take(build_threads(raw.threads).map_err(|m| Problem::at("threads", m)));
    let (
        Some(upstream),
        Some(decision_service),
        Some(tls),
        Some(admin),
        Some(issuers),
        Some(trust_domains),
        Some(authn),
        Some(policies),
        Some(routes),
        Some(headers),
        Some(limits),
        Some(threads),
    ) = (
        upstream,
        decision_service,
        tls,
        admin,
        issuers,
        trust_domains,
        authn,
        policies,
        routes,
        headers,
        limits,
        threads,
    )
    else {
        return Err(problems);
    };
    problems.finish(Some(Config {
        source: source.to_path_buf(),
        listen,
        tls,
        upstream,
        decision_service,
        admin,
        issuers,
        trust_domains,
        authn,
        policies,
        routes,
        headers,
        log: LogConfig::from(raw.log),
        limits,
        threads,
        shutdown_grace: raw.shutdown_grace.map_or(DEFAULT_SHUTDOWN_GRACE, |d| d.0),
        drain_delay: raw.drain_delay.map_or(DEFAULT_DRAIN_DELAY, |d| d.0),
    }))
}

/// Converts `upstream:`; problem keys are relative to it.
fn build_upstream(raw: RawUpstream, base_dir: &Path) -> Result<UpstreamConfig, Problems> {
    let mut problems = Problems::default();
    let address = problems.take(
        raw.address
            .ok_or_else(|| Problem::at("address", "required: the service's host:port")),
    );
    let tls = problems.take(
        raw.tls
            .map(|tls| build_upstream_tls(tls, base_dir))
            .transpose()
            .map_err(|p| p.under("tls")),
    );
    let connect_timeout = problems.take(
        positive(raw.connect_timeout.map_or(DEFAULT_CONNECT_TIMEOUT, |d| d.0))
            .map_err(|m| Problem::at("connect_timeout", m)),
    );
    let read_timeout = problems.take(
        positive(raw.read_timeout.map_or(DEFAULT_READ_TIMEOUT, |d| d.0))
            .map_err(|m| Problem::at("read_timeout", m)),
    );
    let (Some(address), Some(tls), Some(connect_timeout), Some(read_timeout)) =
        (address, tls, connect_timeout, read_timeout)
    else {
        return Err(problems);
    };
    problems.finish(Some(UpstreamConfig {
        address: address.0 .0,
        tls,
        http2: raw.http2,
        connect_timeout,
        read_timeout,
    }))
}

/// `path` if it is an existing file; the message says how relative paths
/// are resolved.
pub(super) fn existing_file(path: PathBuf) -> Result<PathBuf, String> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "`{}` does not exist or is not a file \
             (relative paths are resolved against the config file's directory)",
            path.display()
        ))
    }
}

fn positive(duration: Duration) -> Result<Duration, String> {
    if duration.is_zero() {
        Err("must be longer than 0s".to_owned())
    } else {
        Ok(duration)
    }
}

fn build_admin(
    raw: RawAdmin,
    proxy_listen: SocketAddr,
    decision_listen: Option<SocketAddr>,
) -> Result<AdminConfig, Problem> {
    let listen = raw
        .listen
        .ok_or_else(|| {
            Problem::at(
                "listen",
                "required: e.g. 127.0.0.1:9901 (omit `admin:` to disable)",
            )
        })?
        .0
         .0;
    if listen == proxy_listen {
        return Err(Problem::at(
            "listen",
            format!("{listen} is also the proxy's `listen`"),
        ));
    }
    if decision_listen == Some(listen) {
        return Err(Problem::at(
            "listen",
            format!("{listen} is also `decision_service.listen`"),
        ));
    }
    Ok(AdminConfig { listen })
}

impl TryFrom<RawAuthn> for AuthnConfig {
    type Error = Problem;

    fn try_from(raw: RawAuthn) -> Result<Self, Problem> {
        let require = match raw.require.unwrap_or(RawRequire::Any) {
            RawRequire::Any => RequireCredentials::Any,
            RawRequire::Jwt => RequireCredentials::Jwt,
            RawRequire::Mtls => RequireCredentials::Mtls,
            RawRequire::Both => RequireCredentials::Both,
        };
        let max_token_bytes = raw
            .max_token_bytes
            .map_or(DEFAULT_MAX_TOKEN_BYTES, |s| s.0 .0);
        if !(1..=MAX_MAX_TOKEN_BYTES).contains(&max_token_bytes) {
            return Err(Problem::at(
                "max_token_bytes",
                format!(
                    "must be between 1B and {}",
                    format_size(MAX_MAX_TOKEN_BYTES)
                ),
            ));
        }
        let max_token_bytes = usize::try_from(max_token_bytes)
            .map_err(|_| Problem::at("max_token_bytes", "too large for this platform"))?;
        Ok(AuthnConfig {
            require,
            max_token_bytes,
            token_cache_max_bytes: raw
                .token_cache
                .max_bytes
                .map_or(DEFAULT_TOKEN_CACHE_BYTES, |s| s.0 .0),
        })
    }
}

fn build_policies(raw: RawPolicies, base_dir: &Path) -> Result<PolicyConfig, Problems> {
    let mut problems = Problems::default();
    let dir = base_dir.join(raw.dir.as_deref().unwrap_or(DEFAULT_POLICY_DIR));
    let dir_exists = dir.is_dir();
    if !dir_exists {
        problems.push(Problem::at(
            "dir",
            format!(
                "`{}` is not a directory (relative paths are resolved against the config file's directory)",
                dir.display()
            ),
        ));
    }
    let schema = match raw.schema {
        Some(schema) => problems
            .take(existing_file(base_dir.join(schema)).map_err(|m| Problem::at("schema", m))),
        // The default lives in the directory: already reported when it is missing.
        None if !dir_exists => None,
        None => problems
            .take(existing_file(dir.join(SCHEMA_FILE_NAME)).map_err(|m| Problem::at("schema", m))),
    };
    let mode = match raw.mode.unwrap_or(RawPolicyMode::Enforce) {
        RawPolicyMode::Enforce => PolicyMode::Enforce,
        RawPolicyMode::DryRun => PolicyMode::DryRun,
    };
    let settle = raw.settle.map_or(DEFAULT_SETTLE, |d| d.0);
    if settle > MAX_SETTLE {
        problems.push(Problem::at(
            "settle",
            format!(
                "at most {}: changes would wait too long",
                format_duration(MAX_SETTLE)
            ),
        ));
    }
    problems.finish(schema.map(|schema| PolicyConfig {
        dir,
        schema,
        mode,
        watch: raw.watch.unwrap_or(true),
        settle,
    }))
}

impl TryFrom<RawRoutes> for RoutesConfig {
    type Error = Problems;

    fn try_from(raw: RawRoutes) -> Result<Self, Problems> {
        let mut problems = Problems::default();
        let public = raw
            .public
            .iter()
            .enumerate()
            .filter_map(|(index, pattern)| {
                problems.take(
                    parse_route(pattern).map_err(|m| Problem::at(element("public", index), m)),
                )
            })
            .collect();
        problems.finish(Some(RoutesConfig { public }))
    }
}

/// A route pattern must look like a normalized path, or it could never match.
fn parse_route(pattern: &str) -> Result<RoutePattern, String> {
    let bad = |why: &str| {
        format!(
            "invalid route `{pattern}`: {why}; write a normalized path (/healthz) or a prefix ending in /* (/docs/*)"
        )
    };
    let (path, prefix) = match pattern.strip_suffix("/*") {
        Some(stem) => (&pattern[..=stem.len()], true),
        None => (pattern, false),
    };
    if !path.starts_with('/') {
        return Err(bad("must start with `/`"));
    }
    if let Some(c) = path
        .chars()
        .find(|c| matches!(c, '*' | '%' | '\\' | '?' | '#') || !c.is_ascii_graphic())
    {
        return Err(bad(&format!("character {c:?} is not allowed")));
    }
    if path.contains("//") {
        return Err(bad("empty segment `//`"));
    }
    if path
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        return Err(bad("`.` and `..` segments are not allowed"));
    }
    Ok(if prefix {
        RoutePattern::Prefix(path.to_owned())
    } else {
        RoutePattern::Exact(path.to_owned())
    })
}

impl TryFrom<RawHeaders> for HeadersConfig {
    type Error = Problems;

    fn try_from(raw: RawHeaders) -> Result<Self, Problems> {
        let names = raw.identity;
        let mut problems = Problems::default();
        let mut accepted: Vec<(&str, String)> = Vec::with_capacity(4);
        let mut accept = |key: &'static str, value: Option<String>, default: &str| {
            let name = check_header_name(value.as_deref().unwrap_or(default))
                .map_err(|m| Problem::at(format!("identity.{key}"), m));
            let name = problems.take(name)?;
            // Upstreams that fold `_` into `-` would see `x_a` and `x-a` as one header.
            if let Some((other, _)) = accepted.iter().find(|(_, n)| same_header(n, &name)) {
                problems.push(Problem::at(
                    format!("identity.{key}"),
                    format!("`{name}` is also identity.{other}"),
                ));
                return None;
            }
            accepted.push((key, name.clone()));
            Some(name)
        };
        let subject = accept("subject", names.subject, "x-wisp-subject");
        let issuer = accept("issuer", names.issuer, "x-wisp-issuer");
        let tags = accept("tags", names.tags, "x-wisp-tags");
        let spiffe_id = accept("spiffe_id", names.spiffe_id, "x-wisp-spiffe-id");
        let mut claims = Vec::with_capacity(raw.claims.len());
        for (header, attribute) in raw.claims {
            let key = format!("claims.{header}");
            let Some(name) =
                problems.take(check_header_name(&header).map_err(|m| Problem::at(&key, m)))
            else {
                continue;
            };
            if let Some((other, _)) = accepted.iter().find(|(_, n)| same_header(n, &name)) {
                problems.push(Problem::at(
                    key,
                    format!("`{name}` is also identity.{other}"),
                ));
                continue;
            }
            if let Some((other, _)) = claims
                .iter()
                .find(|(n, _): &&(String, String)| same_header(n, &name))
            {
                problems.push(Problem::at(
                    key,
                    format!(
                        "`{name}` and `{other}` are one header to upstreams that fold `_` into `-`"
                    ),
                ));
                continue;
            }
            if attribute.trim().is_empty() {
                problems.push(Problem::at(
                    key,
                    "needs a principal attribute, e.g. namespace",
                ));
                continue;
            }
            claims.push((name, attribute));
        }
        claims.sort();
        let (Some(subject), Some(issuer), Some(tags), Some(spiffe_id)) =
            (subject, issuer, tags, spiffe_id)
        else {
            return Err(problems);
        };
        problems.finish(Some(HeadersConfig {
            forward_token: raw.forward_token,
            identity: IdentityHeaderNames {
                subject,
                issuer,
                tags,
                spiffe_id,
                claims,
            },
        }))
    }
}

/// Every `headers.claims` attribute must be one some caller can have: a
/// built-in attribute, a configured issuer's preset attribute or a
/// `claims:` mapping. Anything else would silently never be sent.
fn check_claim_headers(
    claims: &[(String, String)],
    issuers: &[IssuerConfig],
) -> Result<(), Problems> {
    use crate::authz::model::{BUILT_IN, SPIFFE};
    let mut known: Vec<&str> = BUILT_IN
        .iter()
        .chain(&SPIFFE)
        .map(|(name, _)| *name)
        .collect();
    for issuer in issuers {
        known.extend(
            crate::authn::presets::preset_attributes(issuer.preset)
                .iter()
                .map(|(name, _)| *name),
        );
        known.extend(issuer.claims.iter().map(|m| m.attribute.as_str()));
    }
    known.sort_unstable();
    known.dedup();
    let mut problems = Problems::default();
    for (header, attribute) in claims {
        if known.contains(&attribute.as_str()) {
            continue;
        }
        let hint = match super::messages::closest(attribute, &known) {
            Some(close) => format!("did you mean `{close}`?"),
            None => format!("callers have: {}", known.join(", ")),
        };
        problems.push(Problem::at(
            format!("headers.claims.{header}"),
            format!(
                "no configured issuer sets attribute `{attribute}` (add a `claims:` mapping to an issuer, or use a preset's attribute); {hint}"
            ),
        ));
    }
    problems.finish(Some(()))
}

/// Validates and lowercases one identity header name.
fn check_header_name(name: &str) -> Result<String, String> {
    let lower = name.to_ascii_lowercase();
    if http::HeaderName::from_bytes(lower.as_bytes()).is_err() {
        return Err(format!("`{name}` is not a valid HTTP header name"));
    }
    if let Some(protected) = PROTECTED_HEADERS.iter().find(|p| same_header(p, &lower)) {
        return Err(format!(
            "`{name}` would overwrite `{protected}`; choose another name (e.g. x-wisp-…)"
        ));
    }
    Ok(lower)
}

/// Equal ignoring case and `_`/`-` spelling.
fn same_header(a: &str, b: &str) -> bool {
    let fold = |c: u8| {
        if c == b'_' {
            b'-'
        } else {
            c.to_ascii_lowercase()
        }
    };
    a.len() == b.len() && a.bytes().map(fold).eq(b.bytes().map(fold))
}

impl From<RawLog> for LogConfig {
    fn from(raw: RawLog) -> Self {
        LogConfig {
            format: match raw.format.unwrap_or(RawLogFormat::Json) {
                RawLogFormat::Json => LogFormat::Json,
                RawLogFormat::Text => LogFormat::Text,
            },
            decisions: match raw.decisions.unwrap_or(RawDecisionLog::Deny) {
                RawDecisionLog::Deny => DecisionLog::Deny,
                RawDecisionLog::All => DecisionLog::All,
                RawDecisionLog::None => DecisionLog::None,
            },
        }
    }
}

/// Converts `limits:`; problem keys are relative to it.
fn build_limits(raw: RawLimits) -> Result<LimitsConfig, Problem> {
    let header_timeout = positive(raw.header_timeout.map_or(DEFAULT_HEADER_TIMEOUT, |d| d.0))
        .map_err(|m| Problem::at("header_timeout", m))?;
    let idle_timeout = raw.idle_timeout.map_or(DEFAULT_IDLE_TIMEOUT, |d| d.0);
    // pingora counts keep-alive in whole seconds.
    if idle_timeout < Duration::from_secs(1) || idle_timeout.subsec_nanos() != 0 {
        return Err(Problem::at(
            "idle_timeout",
            "must be whole seconds, at least 1s",
        ));
    }
    let max_connections = raw.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
    let max_connections = Some(max_connections)
        .filter(|n| (1..=MAX_MAX_CONNECTIONS).contains(n))
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| {
            Problem::at(
                "max_connections",
                format!("must be between 1 and {MAX_MAX_CONNECTIONS}"),
            )
        })?;
    Ok(LimitsConfig {
        header_timeout,
        idle_timeout,
        max_connections,
    })
}

fn build_threads(raw: Option<u64>) -> Result<usize, String> {
    let Some(threads) = raw else {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        return Ok(cpus.min(MAX_THREADS));
    };
    usize::try_from(threads)
        .ok()
        .filter(|n| (1..=MAX_THREADS).contains(n))
        .ok_or_else(|| format!("must be between 1 and {MAX_THREADS}"))
}
