//! The config file as written: serde structs that mirror the YAML, nothing more.
//!
//! Every struct denies unknown keys. Required keys are `Option`s so that a
//! missing one is reported by the conversion with its full key path. Scalar
//! values with a syntax of their own are [`Parsed`] (module `scalar`) while
//! deserializing, so their errors carry the parser's line and column.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

pub(super) use super::scalar::{HostPort, ListenAddr, Parsed, ServerNameText, Size};
use super::Algorithm;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub listen: Option<Parsed<ListenAddr>>,
    /// `None`: the key is absent (plaintext); see [`tls_section`].
    #[serde(default, deserialize_with = "tls_section")]
    pub tls: Option<RawTls>,
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
    #[serde(default)]
    pub limits: RawLimits,
    pub threads: Option<u64>,
    pub shutdown_grace: Option<Parsed<Duration>>,
    pub drain_delay: Option<Parsed<Duration>>,
    pub decision_service: Option<RawDecisionService>,
}

/// `decision_service:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDecisionService {
    pub listen: Option<Parsed<ListenAddr>>,
    pub tls: Option<RawDecisionTls>,
}

/// `decision_service.tls:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDecisionTls {
    pub cert: Option<String>,
    pub key: Option<String>,
    pub client_ca: Option<String>,
}

/// `upstream:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstream {
    pub address: Option<Parsed<HostPort>>,
    /// `None`: absent or `false`; see [`upstream_tls_section`].
    #[serde(default, deserialize_with = "upstream_tls_section")]
    pub tls: Option<RawUpstreamTls>,
    #[serde(default)]
    pub http2: bool,
    pub connect_timeout: Option<Parsed<Duration>>,
    pub read_timeout: Option<Parsed<Duration>>,
}

/// `tls:` (the listener).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub cert: Option<String>,
    pub key: Option<String>,
    pub client_ca: Option<String>,
    /// Trust domain → bundle file; a `BTreeMap` keeps them sorted by domain.
    pub trust_bundles: Option<BTreeMap<String, String>>,
    pub client_auth: Option<RawClientAuth>,
    pub reload_interval: Option<Parsed<Duration>>,
}

/// `tls.client_auth:` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawClientAuth {
    Required,
    Optional,
    None,
}

/// `upstream.tls:` written as a section (`true` reads as an empty one).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstreamTls {
    pub ca: Option<String>,
    pub server_name: Option<Parsed<ServerNameText>>,
    pub cert: Option<String>,
    pub key: Option<String>,
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
    pub trust_domain: Option<String>,
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
    Azure,
    Gcp,
}

/// `issuers[i].jwks:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJwks {
    #[serde(default)]
    pub discovery: bool,
    pub uri: Option<String>,
    pub file: Option<String>,
    pub spiffe_bundle: Option<String>,
    pub ca: Option<String>,
    pub bearer_token_file: Option<String>,
    pub refresh: Option<Parsed<Duration>>,
    pub max_stale: Option<Parsed<Duration>>,
    pub refetch_min_interval: Option<Parsed<Duration>>,
    pub max_bytes: Option<Parsed<Size>>,
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
    pub settle: Option<Parsed<Duration>>,
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
    /// Header name → principal attribute.
    #[serde(default)]
    pub claims: BTreeMap<String, String>,
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

/// `limits:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub header_timeout: Option<Parsed<Duration>>,
    pub idle_timeout: Option<Parsed<Duration>>,
    pub max_connections: Option<u64>,
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

/// `tls:` must be a section. An empty `tls:` or `tls: false` is refused
/// rather than read as "no TLS": a listener meant to be TLS must never come up
/// in plaintext because of a typo or a half-edited file.
fn tls_section<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<RawTls>, D::Error> {
    deserializer.deserialize_any(SectionVisitor {
        expecting: "a section with `cert` and `key`",
        scalar: |scalar| {
            Err(match scalar {
                Scalar::Bool(true) => {
                    "`tls: true` is not enough: write a section with `cert` and `key` \
                     (and `client_ca` or `trust_bundles` unless `client_auth: none`)"
                }
                Scalar::Bool(false) | Scalar::Null => {
                    "an empty `tls:` or `tls: false` is refused so that a TLS listener never \
                     starts in plaintext by mistake; to serve plaintext, remove the `tls:` section"
                }
            }
            .to_owned())
        },
    })
}

/// `upstream.tls:` is `false` (plaintext), `true` (system roots, SNI from the
/// address), or a section; an empty value is refused as ambiguous.
fn upstream_tls_section<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<RawUpstreamTls>, D::Error> {
    deserializer.deserialize_any(SectionVisitor {
        expecting: "true, false or a section with `ca`, `server_name`, `cert`, `key`",
        scalar: |scalar| match scalar {
            Scalar::Bool(true) => Ok(Some(RawUpstreamTls::default())),
            Scalar::Bool(false) => Ok(None),
            Scalar::Null => Err("empty value: write `true`, `false` or a section with \
                                 `ca`, `server_name`, `cert` and `key`"
                .to_owned()),
        },
    })
}

/// A scalar written where a section may go.
enum Scalar {
    /// `key:` with nothing (or `~`, `null`).
    Null,
    /// `true` or `false`.
    Bool(bool),
}

/// Reads a section (a map, into `T`) or a [`Scalar`] decided by `scalar`.
/// The map goes through the caller's `MapAccess`, so key paths and unknown-key
/// errors inside the section are reported as for any other section.
struct SectionVisitor<T> {
    expecting: &'static str,
    scalar: fn(Scalar) -> Result<Option<T>, String>,
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for SectionVisitor<T> {
    type Value = Option<T>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.expecting)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        T::deserialize(de::value::MapAccessDeserializer::new(map)).map(Some)
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Self::Value, E> {
        (self.scalar)(Scalar::Bool(value)).map_err(E::custom)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        (self.scalar)(Scalar::Null).map_err(E::custom)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        self.visit_unit()
    }
}
