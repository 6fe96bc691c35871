//! Configuration: YAML → validated [`Config`].
//!
//! Raw serde structs (`raw::*`, `deny_unknown_fields`) are converted once, with
//! `TryFrom`, into the validated types below; nothing downstream re-checks.
//! Relative paths are resolved against the directory of the config file.
//!
//! Two kinds of error, both naming the key path and `line:column`:
//! - while parsing ([`ConfigError::Parse`]): YAML syntax, unknown keys (with
//!   a "did you mean" when one is close), wrong types (in plain words), and
//!   scalars with their own syntax (durations, sizes, addresses, algorithms,
//!   enum values). Parsing stops at the first;
//! - while converting ([`ConfigError::Invalid`]): missing required keys,
//!   cross-field rules, and files that must exist. Conversion goes on, so
//!   [`Config::load_all`] reports every one of them ([`ConfigErrors`]); the
//!   position is that of the key in the text (`locate`), or of its nearest
//!   written parent for a missing key.
//!
//! Submodules: `raw` (the YAML shape), `scalar` and `units` (values with a
//! syntax of their own: durations, sizes, addresses, algorithms), `build`,
//! `issuer` and `tls` (the conversion), `problem` (key paths), `locate`
//! (key path → line:column), `messages` (parser errors in plain words).

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;

mod algorithm;
pub use algorithm::{Algorithm, UnsupportedAlgorithm};
mod build;
mod decision;
mod issuer;
pub use issuer::check_fetch_url;
mod locate;
pub use locate::{KeyPositions, Position};
mod messages;
mod problem;
mod raw;
mod scalar;
mod tls;
mod units;

#[cfg(test)]
mod tests;

/// A fully validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was loaded from (for messages).
    pub source: PathBuf,
    /// Proxy listener address (unused in decision-service-only mode).
    pub listen: SocketAddr,
    /// TLS on the proxy listener (`None`: plaintext HTTP/1.1 and h2c).
    pub tls: Option<TlsConfig>,
    /// The one upstream service; `None` in decision-service-only mode (no
    /// proxy listener then, see [`Config::serves_proxy`]).
    pub upstream: Option<UpstreamConfig>,
    /// The decision service (README, "wisp behind another proxy").
    pub decision_service: Option<DecisionServiceConfig>,
    /// Admin listener (`/metrics`, `/healthz`, `/readyz`); `None` disables it.
    pub admin: Option<AdminConfig>,
    /// Token issuers, matched by the token's `iss`. Names and `issuer` URLs are unique.
    pub issuers: Vec<IssuerConfig>,
    /// Accepted SPIFFE trust domains for client certificates and JWT-SVIDs;
    /// non-empty when client certificates are accepted or a `spiffe-jwt`
    /// issuer is configured.
    pub trust_domains: Vec<String>,
    /// Authentication settings.
    pub authn: AuthnConfig,
    /// Cedar schema and policies.
    pub policies: PolicyConfig,
    /// Routes forwarded without authentication.
    pub routes: RoutesConfig,
    /// Headers sent upstream.
    pub headers: HeadersConfig,
    /// Logging.
    pub log: LogConfig,
    /// Per-connection limits on the proxy listener (restart to change).
    pub limits: LimitsConfig,
    /// Proxy worker threads, 1–256 (default: number of CPUs, at most 256).
    pub threads: usize,
    /// After the drain delay, how long requests in flight get to finish
    /// before the process exits (open WebSockets are closed then).
    pub shutdown_grace: Duration,
    /// After SIGTERM/SIGINT: how long wisp keeps accepting while `/readyz`
    /// answers 503, so load balancers stop sending before the listener closes.
    pub drain_delay: Duration,
}

/// The decision service's listener (`decision_service:`): Envoy ext_authz
/// (gRPC and HTTP) and forward-auth on one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionServiceConfig {
    /// Where it listens (default `127.0.0.1:9191`).
    pub listen: SocketAddr,
    /// mTLS towards the calling proxies (`None`: plaintext).
    pub tls: Option<DecisionTlsConfig>,
}

/// `decision_service.tls`: the listener speaks TLS and requires a client
/// certificate chaining to `client_ca` (the calling proxy's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionTlsConfig {
    /// Server certificate chain (PEM), read at start.
    pub cert: PathBuf,
    /// Server private key (PEM), read at start.
    pub key: PathBuf,
    /// CA bundle (PEM) the calling proxy's client certificate must chain to.
    pub client_ca: PathBuf,
}

impl DecisionServiceConfig {
    /// Whether anyone beyond this host may call it without a client
    /// certificate: a non-loopback address without `tls` (warned about by
    /// `wisp check` and at start).
    pub fn exposed(&self) -> bool {
        self.tls.is_none() && !self.listen.ip().is_loopback()
    }
}

/// The upstream service.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// `host:port` (hostname or IP); validated to have a port.
    pub address: String,
    /// Speak TLS to the upstream (`None`: plaintext).
    pub tls: Option<UpstreamTlsConfig>,
    /// Speak HTTP/2 to the upstream.
    pub http2: bool,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Timeout waiting for upstream response bytes (→ 504).
    pub read_timeout: Duration,
}

/// TLS towards the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTlsConfig {
    /// CA bundle (PEM) the upstream's certificate must chain to; `None`: the system roots.
    pub ca: Option<PathBuf>,
    /// SNI and the name the certificate must carry; `None`: the host of `upstream.address`.
    pub server_name: Option<String>,
    /// Client certificate chain and key (PEM) for upstream mTLS.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// Whether the TLS listener asks for client certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// A client certificate that verifies against its trust domain's bundle is
    /// required for the handshake.
    Required,
    /// A client certificate is verified when presented; clients without one may use a token.
    Optional,
    /// Client certificates are not requested.
    None,
}

/// The TLS listener (README, "mTLS and SPIFFE").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// Server certificate chain (PEM), re-read when it changes.
    pub cert: PathBuf,
    /// Server private key (PEM), re-read when it changes.
    pub key: PathBuf,
    /// One bundle per trust domain for client certificates (`tls.trust_bundles`,
    /// or `tls.client_ca` for the single configured trust domain): a client
    /// certificate chains only to the roots of the trust domain its SPIFFE ID
    /// names. Sorted by domain; one entry per `trust_domains` entry unless
    /// `client_auth` is `none`, then empty. Re-read when they change.
    pub trust_bundles: Vec<TrustBundleFile>,
    /// Client certificate policy.
    pub client_auth: ClientAuth,
    /// How often the files are checked for changes.
    pub reload_interval: Duration,
}

/// A trust domain's bundle file: PEM CA certificates, or the SPIFFE bundle
/// JSON format (told apart by content when read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustBundleFile {
    /// The trust domain (one of `trust_domains`).
    pub trust_domain: String,
    /// The bundle file.
    pub path: PathBuf,
}

/// The admin listener.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Where `/metrics`, `/healthz`, `/readyz` are served.
    pub listen: SocketAddr,
}

/// Issuer kinds: each is a default claim mapping plus that kind's checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Preset {
    /// No mapping beyond `sub`/`iss`; `tags` only via `claims:`.
    Generic,
    /// tsiam (workload identity for Tailscale nodes).
    Tsiam,
    /// Kubernetes service-account tokens (projected and legacy).
    Kubernetes,
    /// GitHub Actions OIDC.
    GithubActions,
    /// Fly.io (oidc.fly.io).
    Fly,
    /// SPIFFE JWT-SVIDs (SPIRE, Teleport tbot): RS/ES/PS algorithms only, and
    /// at least one of `trust_domains` configured.
    SpiffeJwt,
    /// Microsoft Entra ID (Azure) managed-identity and workload-identity
    /// access tokens, v1.0 and v2.0.
    Azure,
    /// Google-signed ID tokens of service accounts (GCP metadata server).
    Gcp,
}

/// Where an issuer's keys come from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum JwksSource {
    /// `{issuer}/.well-known/openid-configuration` → `jwks_uri`.
    Discovery,
    /// An explicit JWKS URL (http or https).
    Uri(String),
    /// A static JWKS file (re-read on refresh).
    File(PathBuf),
    /// The `jwt-svid` keys of a trust domain's SPIFFE bundle: the file of
    /// `tls.trust_bundles.<trust_domain>` (SPIFFE JSON format), re-read on
    /// refresh like `File` (`jwks: { spiffe_bundle: <trust domain> }`,
    /// `spiffe-jwt` issuers only; the issuer is scoped to that domain).
    SpiffeBundle {
        /// The trust domain whose bundle holds the keys.
        trust_domain: String,
        /// Its bundle file.
        path: PathBuf,
    },
}

/// The default `jwks.max_bytes`: room for thousands of keys.
pub const DEFAULT_JWKS_MAX_BYTES: usize = 1 << 20;
/// The largest `jwks.max_bytes` accepted.
pub const MAX_JWKS_MAX_BYTES: usize = 16 << 20;

/// How an issuer's discovery and JWKS documents are fetched and bounded
/// (`jwks.ca`, `jwks.bearer_token_file`, `jwks.max_bytes`); `ca` and
/// `bearer_token_file` are unset for a `file` source. The first two are for
/// in-cluster issuers such as the Kubernetes API server.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JwksFetch {
    /// Trust only these roots for this issuer's fetches (`None`: the system roots).
    pub ca: Option<CaBundle>,
    /// Its trimmed contents are sent as `Authorization: Bearer …` on this
    /// issuer's fetches; re-read at every fetch, so a rotated token is used
    /// at once. Existed when the config loaded.
    pub bearer_token_file: Option<PathBuf>,
    /// The largest discovery or JWKS document (or JWKS file) accepted, in bytes.
    pub max_bytes: usize,
}

impl Default for JwksFetch {
    fn default() -> Self {
        JwksFetch {
            ca: None,
            bearer_token_file: None,
            max_bytes: DEFAULT_JWKS_MAX_BYTES,
        }
    }
}

/// A PEM bundle of CA certificates, read and checked when the config loads:
/// at least one certificate, each usable as a trust anchor. Its `Hash`
/// covers the certificates, so a changed bundle changes the issuer's rules.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CaBundle {
    /// The file (for messages).
    pub path: PathBuf,
    /// The certificates (DER), in file order; never empty.
    pub certificates: Vec<CertificateDer<'static>>,
}

impl fmt::Debug for CaBundle {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("CaBundle")
            .field("path", &self.path)
            .field("certificates", &self.certificates.len())
            .finish()
    }
}

/// One token issuer. `Hash` covers every rule a token is verified under: the
/// token cache uses it so a changed issuer never serves tokens verified
/// under the old rules.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IssuerConfig {
    /// Short name used in metrics, logs and `/readyz` (shared with every
    /// identity it verifies).
    pub name: Arc<str>,
    /// The exact `iss` value tokens must carry.
    pub issuer: String,
    /// The issuer kind.
    pub preset: Preset,
    /// Where keys come from.
    pub jwks: JwksSource,
    /// The trust roots and credential for fetching them (http sources only).
    pub jwks_fetch: JwksFetch,
    /// Background refresh interval.
    pub refresh: Duration,
    /// Keep the last good keys this long when refreshes fail.
    pub max_stale: Duration,
    /// Minimum interval between unknown-`kid` refetches.
    pub refetch_min_interval: Duration,
    /// Accepted audiences (non-empty).
    pub audiences: Vec<String>,
    /// Allowed algorithms (non-empty, asymmetric only).
    pub algorithms: Vec<Algorithm>,
    /// Clock-skew leeway for `exp`/`nbf`/`iat`.
    pub leeway: Duration,
    /// Longest accepted token lifetime.
    pub max_lifetime: Duration,
    /// `spiffe-jwt` only: the trust domain every token's `sub` must be in
    /// (`issuers[].trust_domain`, defaulting to the only `trust_domains`
    /// entry); `None` for other presets.
    pub trust_domain: Option<String>,
    /// Extra principal attributes: (Cedar attribute name, JSON Pointer into the claims).
    pub claims: Vec<ClaimMapping>,
}

/// One `claims:` entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClaimMapping {
    /// Cedar attribute name (a valid Cedar identifier).
    pub attribute: String,
    /// RFC 6901 JSON Pointer, validated syntax (e.g. `/italypaleale.me~1tsiam/name`).
    pub pointer: String,
}

/// Which credentials a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequireCredentials {
    /// A token or a client certificate.
    Any,
    /// A bearer token.
    Jwt,
    /// A client certificate (needs `tls.client_auth` other than `none`).
    Mtls,
    /// Both (needs `tls.client_auth` other than `none`).
    Both,
}

/// Per-connection limits on the proxy listener (`limits:`), enforced at the
/// accept layer ([`crate::limits`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitsConfig {
    /// How long a client has to send a whole request header: from the
    /// connection's start (after the TLS handshake), or from the first byte
    /// of a later request on a kept-alive connection.
    pub header_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request
    /// (whole seconds, at least 1s; HTTP/2: without any open stream).
    pub idle_timeout: Duration,
    /// Client connections open at once; more are closed at once.
    pub max_connections: usize,
}

/// Authentication settings.
#[derive(Debug, Clone)]
pub struct AuthnConfig {
    /// Which credentials a request needs.
    pub require: RequireCredentials,
    /// Tokens larger than this are rejected before any parsing.
    pub max_token_bytes: usize,
    /// Verified-token cache bound in bytes (0 disables the cache).
    pub token_cache_max_bytes: u64,
}

/// Enforce or only observe decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyMode {
    /// Deny what policy denies.
    Enforce,
    /// Log and count the decision, always forward.
    DryRun,
}

/// Cedar schema and policy files.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// Directory whose `*.cedar` files form the policy set.
    pub dir: PathBuf,
    /// The Cedar schema file.
    pub schema: PathBuf,
    /// Enforce or dry-run.
    pub mode: PolicyMode,
    /// Reload on change (a broken update is rejected and the old set kept).
    pub watch: bool,
    /// How long a changed file (config, schema, policy) must stay unchanged
    /// before it is loaded, so a file written in steps is never loaded
    /// half-way. SIGHUP does not wait.
    pub settle: Duration,
}

/// A public route: an exact path, or a prefix when written ending in `/*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoutePattern {
    /// Matches exactly this normalized path.
    Exact(String),
    /// Matches this prefix (which ends in `/`), and the prefix without its final `/`.
    Prefix(String),
}

/// Route settings.
#[derive(Debug, Clone, Default)]
pub struct RoutesConfig {
    /// Routes forwarded without authn/authz.
    pub public: Vec<RoutePattern>,
}

/// Header names sent upstream (lowercase, valid HTTP header names).
#[derive(Debug, Clone)]
pub struct IdentityHeaderNames {
    /// Verified `sub`.
    pub subject: String,
    /// Verified `iss`.
    pub issuer: String,
    /// Tags, comma-separated.
    pub tags: String,
    /// SPIFFE ID of an mTLS caller.
    pub spiffe_id: String,
    /// `headers.claims`: (header name, principal attribute) pairs, sorted by
    /// header name; client copies are stripped like the headers above.
    pub claims: Vec<(String, String)>,
}

/// Upstream header settings.
#[derive(Debug, Clone)]
pub struct HeadersConfig {
    /// Forward the client's `Authorization` header upstream.
    pub forward_token: bool,
    /// Identity header names.
    pub identity: IdentityHeaderNames,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable text.
    Text,
}

/// Which decisions are logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionLog {
    /// Only denials (401/403/503).
    Deny,
    /// Every decision.
    All,
    /// None.
    None,
}

/// Logging settings.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Output format.
    pub format: LogFormat,
    /// Which decisions are logged.
    pub decisions: DecisionLog,
}

/// A configuration problem, naming the key path (e.g. `issuers[0].jwks.refresh`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// YAML syntax error or unknown/mistyped key.
    ///
    /// Displayed as `file:line:column: key.path: what` when the position is known.
    #[error("{path}{}{message}", if message.starts_with(|c: char| c.is_ascii_digit()) { ":" } else { ": " })]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message: `line:column: key.path: what`, the position
        /// and key where known.
        message: String,
    },
    /// A value failed validation.
    ///
    /// Displayed as `file:line:column: key.path: what`, the position being
    /// where the key is written (or its nearest written parent, for a
    /// missing key); `file: key.path: what` when the key is not in the text.
    #[error("{path}{}: {key}: {message}", position.map(|p| format!(":{}:{}", p.line, p.column)).unwrap_or_default())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Where the key is written.
        position: Option<Position>,
        /// The key path, e.g. `issuers[0].leeway`.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// Every problem found in one config file (never empty), in file order:
/// the first YAML syntax or type error stops parsing, but once the file
/// parsed every conversion problem is reported.
#[derive(Debug)]
pub struct ConfigErrors(Vec<ConfigError>);

impl ConfigErrors {
    /// The problems, in file order.
    pub fn errors(&self) -> &[ConfigError] {
        &self.0
    }

    /// The first problem (what [`Config::load`] reports).
    pub fn into_first(self) -> ConfigError {
        // Invariant: built only from a non-empty list (see `from_yaml_all`).
        self.0
            .into_iter()
            .next()
            .expect("ConfigErrors is never empty")
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                writeln!(formatter)?;
            }
            write!(formatter, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl Config {
    /// Whether the proxy listener runs (an upstream is configured).
    pub fn serves_proxy(&self) -> bool {
        self.upstream.is_some()
    }

    /// What this config runs, for people: `proxy`, `decision service`, or
    /// `proxy + decision service`.
    pub fn mode(&self) -> &'static str {
        match (self.serves_proxy(), self.decision_service.is_some()) {
            (true, true) => "proxy + decision service",
            (false, true) => "decision service",
            _ => "proxy",
        }
    }

    /// Settings that load but deserve a warning (printed by `wisp check`,
    /// logged at start).
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if let Some(service) = self.decision_service.as_ref().filter(|s| s.exposed()) {
            warnings.push(format!(
                "decision_service.listen: {} is not a loopback address and there is no \
                 `decision_service.tls`: anyone who can reach it can ask for decisions and \
                 assert an mTLS principal; restrict it (network policy) or add \
                 `tls: {{ cert, key, client_ca }}`",
                service.listen
            ));
        }
        warnings
    }

    /// Reads and validates a config file.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file, position and key path of the first
    /// problem (see [`Config::load_all`] for all of them).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_all(path).map_err(ConfigErrors::into_first)
    }

    /// Reads and validates a config file, reporting every problem found.
    ///
    /// # Errors
    /// [`ConfigErrors`]: the unreadable file, the first YAML syntax or type
    /// error, or every conversion problem (missing keys, bad values, files
    /// that must exist …), in file order.
    pub fn load_all(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|source| {
            ConfigErrors(vec![ConfigError::Io {
                path: path.to_path_buf(),
                source,
            }])
        })?;
        Config::from_yaml_all(&text, path)
    }

    /// Parses and validates YAML text; `path` is used for messages and to
    /// resolve relative paths (against its directory).
    ///
    /// # Errors
    /// [`ConfigError`] naming the key path of the first problem.
    pub fn from_yaml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        Config::from_yaml_all(text, path).map_err(ConfigErrors::into_first)
    }

    /// [`Config::from_yaml`], reporting every problem found.
    ///
    /// # Errors
    /// As [`Config::load_all`].
    pub fn from_yaml_all(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
        let raw = parse(text).map_err(|message| {
            ConfigErrors(vec![ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            }])
        })?;
        build::build(raw, path).map_err(|problems| {
            let positions = KeyPositions::of(text);
            let mut errors: Vec<(Option<Position>, ConfigError)> = problems
                .into_vec()
                .into_iter()
                .map(|problem| {
                    // A key with no written ancestor (a missing top-level
                    // key) is a problem of the file as a whole: its start.
                    let position = Some(
                        positions
                            .find(&problem.key)
                            .unwrap_or(Position { line: 1, column: 1 }),
                    );
                    let error = ConfigError::Invalid {
                        path: path.to_path_buf(),
                        position,
                        key: one_line(&problem.key),
                        message: one_line(&problem.message),
                    };
                    (position, error)
                })
                .collect();
            // File order; keys not written in the file (none expected) last.
            errors.sort_by_key(|(position, _)| {
                position.map_or((usize::MAX, usize::MAX), |p| (p.line, p.column))
            });
            if errors.is_empty() {
                // `build` fails only with a problem; keep the list non-empty regardless.
                errors.push((
                    None,
                    ConfigError::Invalid {
                        path: path.to_path_buf(),
                        position: None,
                        key: String::new(),
                        message: "invalid configuration".to_owned(),
                    },
                ));
            }
            ConfigErrors(errors.into_iter().map(|(_, error)| error).collect())
        })
    }
}

/// Larger files are refused before parsing; real configs are a few KiB.
const MAX_CONFIG_BYTES: usize = 1 << 20;

/// YAML → [`raw::RawConfig`]. The message reads `line:column: key.path: what`
/// (the position and key where known).
fn parse(text: &str) -> Result<raw::RawConfig, String> {
    if text.trim().is_empty() {
        // An empty document is an empty config (every key defaulted or missing).
        return Ok(raw::RawConfig::default());
    }
    parse_yaml(text)
}

/// YAML → `T` with the config file's rules (input budget, strict booleans,
/// the key path in messages): also for the other YAML files wisp reads
/// (policy tests). The message reads `line:column: key.path: what`.
///
/// # Errors
/// The parser's message, with the position and key path where known.
pub fn parse_yaml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    if text.len() > MAX_CONFIG_BYTES {
        return Err(format!("larger than {MAX_CONFIG_BYTES} bytes"));
    }
    let mut options = serde_saphyr::Options::default();
    options.with_snippet = false;
    // `yes`/`on` as booleans is a YAML 1.1 trap (`watch: no` vs `name: no`).
    options.strict_booleans = true;
    let mut key_path = String::new();
    let result = serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        serde_path_to_error::deserialize(de).map_err(|error| {
            key_path = error.path().to_string();
            error.into_inner()
        })
    });
    result.map_err(|error| parse_message(&error, &key_path, text))
}

/// Formats a parser error as `line:column: key.path: message`, the message
/// in plain words where `messages` knows better ones than the parser's.
fn parse_message(error: &serde_saphyr::Error, key_path: &str, text: &str) -> String {
    use serde_saphyr::MessageFormatter;
    let error = error.without_snippet();
    let parser_message = serde_saphyr::UserMessageFormatter.format_message(error);
    let key = reported_key_path(key_path, &parser_message);
    let message = messages::plain(error, &key, text).unwrap_or_else(|| parser_message.into_owned());
    let mut out = String::new();
    if let Some(location) = error.location() {
        out.push_str(&format!("{}:{}: ", location.line(), location.column()));
    }
    if !key.is_empty() {
        out.push_str(&key);
        out.push_str(": ");
    }
    out.push_str(&message);
    one_line(&out)
}

/// Escapes control characters: keys and values from the file end up in
/// messages, which must stay on one line and free of terminal escapes.
fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

/// serde's key path (for an unknown key it ends with that key), with the
/// root (`.`) shown as nothing and a duplicated key named rather than `?`.
fn reported_key_path(key_path: &str, message: &str) -> String {
    let key_path = if key_path == "." { "" } else { key_path };
    let duplicate = message
        .split_once("duplicate mapping key `")
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(name, _)| name);
    match (key_path.strip_suffix('?'), duplicate) {
        (Some(parent), Some(name)) => format!("{parent}{name}"),
        _ => key_path.to_owned(),
    }
}
