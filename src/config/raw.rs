//! The config file as written: serde structs that mirror the YAML, nothing more.
//!
//! Every struct denies unknown keys. Required keys are `Option`s so that a
//! missing one is reported by the conversion with its full key path. Scalar
//! values with a syntax of their own (durations, sizes, addresses, algorithms)
//! are parsed here, so their errors carry the parser's line and column.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde::de::{self, Deserializer, IgnoredAny, Visitor};
use serde::Deserialize;

use super::units::{parse_duration, parse_size};

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub listen: Option<Parsed<ListenAddr>>,
    #[serde(default)]
    pub tls: Present,
    pub upstream: Option<RawUpstream>,
    pub admin: Option<RawAdmin>,
    #[serde(default)]
    pub issuers: Vec<RawIssuer>,
    #[serde(default)]
    pub trust_domains: Vec<String>,
    #[serde(default)]
    pub authn: RawAuthn,
    #[serde(default)]
    pub policies: RawPolicies,
    #[serde(default)]
    pub routes: RawRoutes,
    #[serde(default)]
    pub headers: RawHeaders,
    #[serde(default)]
    pub log: RawLog,
    pub threads: Option<u64>,
    pub shutdown_grace: Option<Parsed<Duration>>,
}

/// `upstream:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstream {
    pub address: Option<Parsed<HostPort>>,
    #[serde(default)]
    pub tls: bool,
    #[serde(default)]
    pub http2: bool,
    pub connect_timeout: Option<Parsed<Duration>>,
    pub read_timeout: Option<Parsed<Duration>>,
}

/// `admin:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub listen: Option<Parsed<ListenAddr>>,
}

/// One entry of `issuers:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIssuer {
    pub name: Option<String>,
    pub issuer: Option<String>,
    pub preset: Option<RawPreset>,
    pub jwks: Option<RawJwks>,
    pub audiences: Option<Vec<String>>,
    pub algorithms: Option<Vec<Parsed<Algorithm>>>,
    pub leeway: Option<Parsed<Duration>>,
    pub max_lifetime: Option<Parsed<Duration>>,
    /// Attribute → JSON Pointer; a `BTreeMap` keeps them sorted by attribute.
    #[serde(default)]
    pub claims: BTreeMap<String, String>,
}

/// `preset:` values, including those this version refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) enum RawPreset {
    Generic,
    Tsiam,
    Kubernetes,
    GithubActions,
    Fly,
    SpiffeJwt,
}

/// `issuers[i].jwks:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJwks {
    #[serde(default)]
    pub discovery: bool,
    pub uri: Option<String>,
    pub file: Option<String>,
    pub refresh: Option<Parsed<Duration>>,
    pub max_stale: Option<Parsed<Duration>>,
    pub refetch_min_interval: Option<Parsed<Duration>>,
}

/// `authn:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuthn {
    pub require: Option<RawRequire>,
    pub max_token_bytes: Option<Parsed<Size>>,
    #[serde(default)]
    pub token_cache: RawTokenCache,
}

/// `authn.require:` values, including those this version refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawRequire {
    Any,
    Jwt,
    Mtls,
    Both,
}

/// `authn.token_cache:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTokenCache {
    pub max_bytes: Option<Parsed<Size>>,
}

/// `policies:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicies {
    pub dir: Option<String>,
    pub schema: Option<String>,
    pub mode: Option<RawPolicyMode>,
    pub watch: Option<bool>,
}

/// `policies.mode:` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) enum RawPolicyMode {
    Enforce,
    DryRun,
}

/// `routes:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoutes {
    #[serde(default)]
    pub public: Vec<String>,
}

/// `headers:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHeaders {
    #[serde(default)]
    pub forward_token: bool,
    #[serde(default)]
    pub identity: RawIdentityHeaders,
}

/// `headers.identity:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIdentityHeaders {
    pub subject: Option<String>,
    pub issuer: Option<String>,
    pub tags: Option<String>,
    pub spiffe_id: Option<String>,
}

/// `log:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    pub format: Option<RawLogFormat>,
    pub decisions: Option<RawDecisionLog>,
}

/// `log.format:` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawLogFormat {
    Json,
    Text,
}

/// `log.decisions:` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawDecisionLog {
    Deny,
    All,
    None,
}

/// Records that a key was written, whatever its value (even empty), so a
/// section this version cannot honour is refused rather than ignored.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Present(pub bool);

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(deserializer)?;
        Ok(Present(true))
    }
}

/// A scalar parsed from its text form with [`FromText`]; errors carry the
/// parser's location because they are raised while deserializing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Parsed<T>(pub T);

/// A value with a text syntax of its own.
pub(super) trait FromText: Sized {
    /// What the value is, for "expected …" messages.
    const EXPECTING: &'static str;
    /// Parses the scalar's text.
    fn from_text(text: &str) -> Result<Self, String>;
}

impl<'de, T: FromText> Deserialize<'de> for Parsed<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(TextVisitor(PhantomData))
    }
}

/// Accepts any scalar as text (YAML scalars are untyped until read), so `30`
/// reaches the duration parser and gets its "ambiguous" message.
struct TextVisitor<T>(PhantomData<T>);

impl<T: FromText> Visitor<'_> for TextVisitor<T> {
    type Value = Parsed<T>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(T::EXPECTING)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        T::from_text(text).map(Parsed).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Self::Value, E> {
        self.visit_str(&value.to_string())
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Self::Value, E> {
        self.visit_str(&value.to_string())
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Self::Value, E> {
        self.visit_str(&value.to_string())
    }
}

impl FromText for Duration {
    const EXPECTING: &'static str = "a duration such as 30s, 5m or 1h30m";

    fn from_text(text: &str) -> Result<Self, String> {
        parse_duration(text)
    }
}

/// A size in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Size(pub u64);

impl FromText for Size {
    const EXPECTING: &'static str = "a size such as 8192, 8KiB or 64MiB";

    fn from_text(text: &str) -> Result<Self, String> {
        parse_size(text).map(Size)
    }
}

/// A listener address: an IP and a port (`0.0.0.0:8080`, `[::1]:9901`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ListenAddr(pub SocketAddr);

impl FromText for ListenAddr {
    const EXPECTING: &'static str = "an IP address and port such as 0.0.0.0:8080";

    fn from_text(text: &str) -> Result<Self, String> {
        SocketAddr::from_str(text).map(ListenAddr).map_err(|_| {
            format!(
                "invalid listen address `{text}`: expected IP:port such as 0.0.0.0:8080 \
                 or [::1]:8080 (hostnames are not accepted here)"
            )
        })
    }
}

/// An upstream address: a hostname or IP and a port (`127.0.0.1:8081`,
/// `orders.svc:80`, `[::1]:8081`), kept as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct HostPort(pub String);

impl FromText for HostPort {
    const EXPECTING: &'static str = "host:port such as 127.0.0.1:8081";

    fn from_text(text: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!(
                "invalid address `{text}`: {why}; expected host:port such as \
                 127.0.0.1:8081, localhost:8081 or [::1]:8081"
            )
        };
        let (host, port) = text.rsplit_once(':').ok_or_else(|| bad("missing port"))?;
        match port.parse::<u16>() {
            Ok(0) => return Err(bad("port 0")),
            Ok(_) => {}
            Err(_) => return Err(bad("port must be a number from 1 to 65535")),
        }
        let host_ok = if let Some(inner) = host.strip_prefix('[') {
            inner
                .strip_suffix(']')
                .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok())
        } else {
            host.parse::<std::net::Ipv4Addr>().is_ok() || is_hostname(host)
        };
        if host_ok {
            Ok(HostPort(text.to_owned()))
        } else {
            Err(bad("not a hostname or IP address (IPv6 goes in brackets)"))
        }
    }
}

/// DNS hostname syntax: dot-separated labels of letters, digits and inner
/// hyphens, 1–63 bytes each; a trailing dot is allowed.
fn is_hostname(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

impl FromText for Algorithm {
    const EXPECTING: &'static str = "a JWS algorithm name such as ES256";

    fn from_text(text: &str) -> Result<Self, String> {
        let algorithm = match text {
            "RS256" => Algorithm::RS256,
            "RS384" => Algorithm::RS384,
            "RS512" => Algorithm::RS512,
            "PS256" => Algorithm::PS256,
            "PS384" => Algorithm::PS384,
            "PS512" => Algorithm::PS512,
            "ES256" => Algorithm::ES256,
            "ES384" => Algorithm::ES384,
            "EdDSA" => Algorithm::EdDSA,
            _ => {
                let why = if text.eq_ignore_ascii_case("none") {
                    "unsigned tokens are never accepted"
                } else if text.to_ascii_uppercase().starts_with("HS") {
                    "HMAC needs a shared secret and is never accepted"
                } else {
                    "unknown or unsupported"
                };
                return Err(format!(
                    "algorithm `{text}` is not allowed ({why}); allowed: {}",
                    ALLOWED_ALGORITHMS.join(", ")
                ));
            }
        };
        Ok(algorithm)
    }
}

/// The asymmetric JWS algorithms an issuer may pin, as written in the config.
pub(super) const ALLOWED_ALGORITHMS: [&str; 9] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];
