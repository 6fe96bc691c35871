//! `issuers:` → [`IssuerConfig`]s.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::build::existing_file;
use super::problem::{element, Problem, Problems};
use super::raw::{Parsed, RawIssuer, RawJwks, RawPreset, Size};
use super::tls::ca_bundle;
use super::units::{format_duration, format_size};
use super::{
    Algorithm, ClaimMapping, IssuerConfig, JwksFetch, JwksSource, Preset, DEFAULT_JWKS_MAX_BYTES,
    MAX_JWKS_MAX_BYTES,
};

const DEFAULT_REFRESH: Duration = Duration::from_secs(5 * 60);
const DEFAULT_MAX_STALE: Duration = Duration::from_secs(60 * 60);
const DEFAULT_REFETCH_MIN_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
const MAX_LEEWAY: Duration = Duration::from_secs(5 * 60);
const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);
const ONE_SECOND: Duration = Duration::from_secs(1);

/// Principal attributes wisp sets itself; a `claims:` mapping must not
/// overwrite them. `spiffe_id` and `trust_domain` are reserved too: they must
/// come from a verified SVID, never from an arbitrary token claim.
const RESERVED_ATTRIBUTES: [&str; 5] = ["sub", "iss", "authn", "spiffe_id", "trust_domain"];

/// The JWT-SVID spec's algorithms (SPIFFE JWT-SVID §3: RS, ES and PS at
/// 256/384/512 bits); EdDSA is not among them.
const JWT_SVID_ALGORITHMS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::ES512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];
/// Cedar keywords that cannot follow a `.` in a policy.
const CEDAR_KEYWORDS: [&str; 10] = [
    "true", "false", "if", "then", "else", "in", "is", "like", "has", "__cedar",
];

/// Converts the `issuers:` list; names and `issuer` values must be unique.
/// Every issuer is converted, so all their problems are reported at once.
pub(super) fn build_issuers(
    raw: Vec<RawIssuer>,
    base_dir: &Path,
) -> Result<Vec<IssuerConfig>, Problems> {
    let mut problems = Problems::default();
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut issuers: HashMap<String, usize> = HashMap::new();
    let mut built = Vec::with_capacity(raw.len());
    for (index, raw_issuer) in raw.into_iter().enumerate() {
        let key = element("issuers", index);
        let Some(issuer) =
            problems.take(build_issuer(raw_issuer, base_dir).map_err(|p| p.under(&key)))
        else {
            continue;
        };
        if let Some(first) = names.insert(issuer.name.to_string(), index) {
            problems.push(Problem::at(
                format!("{key}.name"),
                format!(
                    "duplicate issuer name `{}` (also issuers[{first}])",
                    issuer.name
                ),
            ));
        }
        if let Some(first) = issuers.insert(issuer.issuer.clone(), index) {
            problems.push(Problem::at(
                format!("{key}.issuer"),
                format!(
                    "duplicate issuer `{}` (also issuers[{first}])",
                    issuer.issuer
                ),
            ));
        }
        built.push(issuer);
    }
    problems.finish(Some(built))
}

/// Converts one issuer; problem keys are relative to the issuer.
fn build_issuer(raw: RawIssuer, base_dir: &Path) -> Result<IssuerConfig, Problems> {
    let mut problems = Problems::default();
    let name = problems.take(
        raw.name
            .ok_or_else(|| "required".to_owned())
            .and_then(|name| check_name(&name).map(|()| name))
            .map_err(|m| Problem::at("name", m)),
    );
    let issuer = problems.take(
        raw.issuer
            .ok_or_else(|| "required".to_owned())
            .and_then(|issuer| check_issuer(&issuer).map(|()| issuer))
            .map_err(|m| Problem::at("issuer", m)),
    );
    let preset = match raw.preset.unwrap_or(RawPreset::Generic) {
        RawPreset::Generic => Preset::Generic,
        RawPreset::Tsiam => Preset::Tsiam,
        RawPreset::Kubernetes => Preset::Kubernetes,
        RawPreset::GithubActions => Preset::GithubActions,
        RawPreset::Fly => Preset::Fly,
        RawPreset::SpiffeJwt => Preset::SpiffeJwt,
        RawPreset::Azure => Preset::Azure,
        RawPreset::Gcp => Preset::Gcp,
    };
    let jwks = match raw.jwks {
        Some(raw_jwks) => problems
            .take(build_jwks(raw_jwks, issuer.as_deref(), base_dir).map_err(|p| p.under("jwks"))),
        None => {
            problems.push(Problem::at(
                "jwks",
                "required: one of `discovery: true`, `uri` or `file`",
            ));
            None
        }
    };
    let audiences = problems.take(build_audiences(raw.audiences).map_err(|p| p.under("audiences")));
    let algorithms = match raw.algorithms {
        Some(algorithms) => {
            problems.take(build_algorithms(algorithms, preset).map_err(|p| p.under("algorithms")))
        }
        None => {
            problems.push(Problem::at(
                "algorithms",
                "required: a non-empty list such as [ES256, RS256]",
            ));
            None
        }
    };
    let leeway = raw.leeway.map_or(DEFAULT_LEEWAY, |d| d.0);
    if leeway > MAX_LEEWAY {
        problems.push(Problem::at(
            "leeway",
            format!("must be at most {}", format_duration(MAX_LEEWAY)),
        ));
    }
    let max_lifetime = raw.max_lifetime.map_or(DEFAULT_MAX_LIFETIME, |d| d.0);
    if max_lifetime < ONE_SECOND {
        problems.push(Problem::at("max_lifetime", "must be at least 1s"));
    }
    let claims = problems.take(build_claims(raw.claims).map_err(|p| p.under("claims")));
    if let Some(jwks) = &jwks {
        if matches!(jwks.source, JwksSource::SpiffeBundle { .. }) && preset != Preset::SpiffeJwt {
            problems.push(Problem::at(
                "jwks.spiffe_bundle",
                "only for `preset: spiffe-jwt` (a SPIFFE bundle's keys sign JWT-SVIDs)",
            ));
        }
    }
    if raw.trust_domain.is_some() && preset != Preset::SpiffeJwt {
        problems.push(Problem::at(
            "trust_domain",
            "only for `preset: spiffe-jwt` (it scopes the JWT-SVIDs' `sub` to one trust domain)",
        ));
    }
    let (Some(name), Some(issuer), Some(jwks), Some(audiences), Some(algorithms), Some(claims)) =
        (name, issuer, jwks, audiences, algorithms, claims)
    else {
        return Err(problems);
    };
    problems.finish(Some(IssuerConfig {
        name: name.into(),
        issuer,
        preset,
        jwks: jwks.source,
        jwks_fetch: jwks.fetch,
        refresh: jwks.refresh,
        max_stale: jwks.max_stale,
        refetch_min_interval: jwks.refetch_min_interval,
        audiences,
        algorithms,
        leeway,
        max_lifetime,
        // Checked against `trust_domains` (and defaulted) by `scope_spiffe_issuers`.
        trust_domain: raw.trust_domain,
        claims,
    }))
}

fn check_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "invalid name `{name}`: use letters, digits, `_`, `.` and `-` (it appears in metrics and logs)"
        ))
    }
}

fn check_issuer(issuer: &str) -> Result<(), String> {
    if issuer.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if issuer.contains('#') {
        return Err(format!("`{issuer}` must not contain `#`"));
    }
    if issuer.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{issuer:?} must not contain spaces or control characters"
        ));
    }
    Ok(())
}

/// The `jwks:` section, converted.
struct Jwks {
    source: JwksSource,
    fetch: JwksFetch,
    refresh: Duration,
    max_stale: Duration,
    refetch_min_interval: Duration,
}

/// Converts `jwks:`; `issuer` is `None` when it is itself invalid (then
/// discovery's URL is not checked: that problem is already reported).
fn build_jwks(raw: RawJwks, issuer: Option<&str>, base_dir: &Path) -> Result<Jwks, Problems> {
    let mut problems = Problems::default();
    let source = match (raw.discovery, raw.uri, raw.file, raw.spiffe_bundle) {
        (true, None, None, None) => {
            let checked = issuer.map_or(Ok(()), check_fetch_url).map_err(|why| {
                Problem::at(
                    "discovery",
                    format!(
                        "discovery fetches {{issuer}}/.well-known/openid-configuration, so `issuer` \
                         must be an http(s) URL: {why}; set `uri` or `file` instead"
                    ),
                )
            });
            problems.take(checked).map(|()| JwksSource::Discovery)
        }
        (false, Some(uri), None, None) => problems.take(
            check_fetch_url(&uri)
                .map(|()| JwksSource::Uri(uri))
                .map_err(|why| Problem::at("uri", why)),
        ),
        (false, None, Some(file), None) => problems.take(
            existing_file(base_dir.join(file))
                .map(JwksSource::File)
                .map_err(|m| Problem::at("file", m)),
        ),
        (false, None, None, Some(trust_domain)) => Some(JwksSource::SpiffeBundle {
            trust_domain,
            // Resolved against `tls.trust_bundles` by `scope_spiffe_issuers`.
            path: PathBuf::new(),
        }),
        _ => {
            problems.push(Problem::here(
                "set exactly one of `discovery: true`, `uri`, `file` or `spiffe_bundle`",
            ));
            None
        }
    };
    let file_source = matches!(
        source,
        Some(JwksSource::File(_) | JwksSource::SpiffeBundle { .. })
    );
    let fetch = problems.take(build_fetch(
        raw.ca,
        raw.bearer_token_file,
        file_source,
        base_dir,
    ));
    let max_bytes =
        problems.take(build_max_bytes(raw.max_bytes).map_err(|m| Problem::at("max_bytes", m)));
    let fetch = match (fetch, max_bytes) {
        (Some(mut fetch), Some(max_bytes)) => {
            fetch.max_bytes = max_bytes;
            Some(fetch)
        }
        _ => None,
    };
    let refresh = problems.take(
        at_least_one_second(raw.refresh, DEFAULT_REFRESH).map_err(|m| Problem::at("refresh", m)),
    );
    let max_stale = raw.max_stale.map_or(DEFAULT_MAX_STALE, |d| d.0);
    if let Some(refresh) = refresh.filter(|refresh| max_stale < *refresh) {
        problems.push(Problem::at(
            "max_stale",
            format!(
                "must be at least `refresh` ({}): keys would expire before the next refresh",
                format_duration(refresh)
            ),
        ));
    }
    let refetch_min_interval = problems.take(
        at_least_one_second(raw.refetch_min_interval, DEFAULT_REFETCH_MIN_INTERVAL)
            .map_err(|m| Problem::at("refetch_min_interval", m)),
    );
    let (Some(source), Some(fetch), Some(refresh), Some(refetch_min_interval)) =
        (source, fetch, refresh, refetch_min_interval)
    else {
        return Err(problems);
    };
    problems.finish(Some(Jwks {
        source,
        fetch,
        refresh,
        max_stale,
        refetch_min_interval,
    }))
}

/// `jwks.max_bytes`: 1KiB to 16MiB, default 1MiB.
fn build_max_bytes(value: Option<Parsed<Size>>) -> Result<usize, String> {
    let Some(Parsed(Size(bytes))) = value else {
        return Ok(DEFAULT_JWKS_MAX_BYTES);
    };
    let limit = u64::try_from(MAX_JWKS_MAX_BYTES).unwrap_or(u64::MAX);
    if !(1024..=limit).contains(&bytes) {
        return Err(format!(
            "must be between 1KiB and {}, got {}",
            format_size(limit),
            format_size(bytes)
        ));
    }
    usize::try_from(bytes).map_err(|_| "too large for this platform".to_owned())
}

/// `jwks.ca` and `jwks.bearer_token_file`: only for sources fetched over
/// http(s); the CA bundle is read and checked now, the token file only
/// checked to exist (its contents are read at every fetch, as they rotate).
fn build_fetch(
    ca: Option<String>,
    bearer_token_file: Option<String>,
    file_source: bool,
    base_dir: &Path,
) -> Result<JwksFetch, Problems> {
    let not_with_file = |key: &str| {
        Problem::at(
            key,
            "only valid with `discovery: true` or `uri`: a `file` source is read from disk, \
             not fetched",
        )
    };
    let mut problems = Problems::default();
    let ca = match ca {
        Some(_) if file_source => {
            problems.push(not_with_file("ca"));
            None
        }
        Some(ca) => problems.take(
            existing_file(base_dir.join(ca))
                .and_then(|path| ca_bundle(&path))
                .map(Some)
                .map_err(|m| Problem::at("ca", m)),
        ),
        None => Some(None),
    };
    let bearer_token_file = match bearer_token_file {
        Some(_) if file_source => {
            problems.push(not_with_file("bearer_token_file"));
            None
        }
        Some(file) => problems.take(
            existing_file(base_dir.join(file))
                .map(Some)
                .map_err(|m| Problem::at("bearer_token_file", m)),
        ),
        None => Some(None),
    };
    let (Some(ca), Some(bearer_token_file)) = (ca, bearer_token_file) else {
        return Err(problems);
    };
    problems.finish(Some(JwksFetch {
        ca,
        bearer_token_file,
        ..JwksFetch::default()
    }))
}

/// `value` (or `default` when absent), refused below one second.
pub(super) fn at_least_one_second(
    value: Option<Parsed<Duration>>,
    default: Duration,
) -> Result<Duration, String> {
    let value = value.map_or(default, |d| d.0);
    if value < ONE_SECOND {
        return Err(format!(
            "must be at least 1s, got {}",
            format_duration(value)
        ));
    }
    Ok(value)
}

/// Keys are fetched over https, or over plain http only from this machine.
///
/// # Errors
/// A message saying why the URL is not acceptable.
pub fn check_fetch_url(url: &str) -> Result<(), String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| format!("`{url}` is not an http(s) URL"))?;
    let host = uri.host().unwrap_or_default();
    if host.is_empty() {
        return Err(format!("`{url}` is not an http(s) URL with a host"));
    }
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if is_loopback(host) => Ok(()),
        Some("http") => Err(format!(
            "`{url}` must use https: plain http is allowed only to a loopback host \
             (127.0.0.0/8, [::1] or localhost)"
        )),
        _ => Err(format!("`{url}` is not an http(s) URL")),
    }
}

fn is_loopback(host: &str) -> bool {
    let unbracketed = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.eq_ignore_ascii_case("localhost")
        || unbracketed
            .parse::<Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
        || unbracketed
            .parse::<Ipv6Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn build_audiences(raw: Option<Vec<String>>) -> Result<Vec<String>, Problems> {
    let audiences = raw
        .ok_or_else(|| Problem::here("required: the audiences tokens must name, e.g. [orders]"))?;
    if audiences.is_empty() {
        return Err(Problem::here("must list at least one audience").into());
    }
    let mut problems = Problems::default();
    for (index, audience) in audiences.iter().enumerate() {
        if audience.is_empty() {
            problems.push(Problem::at(element("", index), "must not be empty"));
        } else if audiences[..index].contains(audience) {
            problems.push(Problem::at(
                element("", index),
                format!("duplicate audience `{audience}`"),
            ));
        }
    }
    problems.finish(Some(audiences))
}

fn build_algorithms(
    raw: Vec<Parsed<Algorithm>>,
    preset: Preset,
) -> Result<Vec<Algorithm>, Problems> {
    if raw.is_empty() {
        return Err(Problem::here("must list at least one algorithm, e.g. [ES256, RS256]").into());
    }
    let algorithms: Vec<_> = raw.into_iter().map(|a| a.0).collect();
    let mut problems = Problems::default();
    for (index, algorithm) in algorithms.iter().enumerate() {
        if algorithms[..index].contains(algorithm) {
            problems.push(Problem::at(
                element("", index),
                format!("duplicate algorithm {algorithm:?}"),
            ));
        } else if preset == Preset::SpiffeJwt && !JWT_SVID_ALGORITHMS.contains(algorithm) {
            problems.push(Problem::at(
                element("", index),
                format!(
                    "{algorithm:?} is not allowed for JWT-SVIDs (preset spiffe-jwt); \
                     allowed: RS256, RS384, RS512, ES256, ES384, ES512, PS256, PS384, PS512"
                ),
            ));
        }
    }
    problems.finish(Some(algorithms))
}

/// `claims:` is already sorted by attribute (a `BTreeMap`).
fn build_claims(
    raw: std::collections::BTreeMap<String, String>,
) -> Result<Vec<ClaimMapping>, Problems> {
    let mut problems = Problems::default();
    let claims = raw
        .into_iter()
        .filter_map(|(attribute, pointer)| {
            let checked = check_attribute(&attribute)
                .and_then(|()| check_json_pointer(&pointer))
                .map_err(|m| Problem::at(attribute.as_str(), m));
            problems
                .take(checked)
                .map(|()| ClaimMapping { attribute, pointer })
        })
        .collect();
    problems.finish(Some(claims))
}

fn check_attribute(attribute: &str) -> Result<(), String> {
    let mut bytes = attribute.bytes();
    let identifier = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !identifier {
        return Err(format!(
            "attribute name `{attribute}` is not a Cedar identifier ([A-Za-z_][A-Za-z0-9_]*)"
        ));
    }
    if RESERVED_ATTRIBUTES.contains(&attribute) {
        return Err(format!(
            "attribute `{attribute}` is set by wisp itself and cannot be mapped (reserved: {})",
            RESERVED_ATTRIBUTES.join(", ")
        ));
    }
    if CEDAR_KEYWORDS.contains(&attribute) {
        return Err(format!("attribute `{attribute}` is a Cedar keyword"));
    }
    Ok(())
}

/// RFC 6901 syntax: empty (the whole claims object) or `/`-prefixed
/// reference tokens in which `~` appears only as `~0` or `~1`.
fn check_json_pointer(pointer: &str) -> Result<(), String> {
    if !pointer.is_empty() && !pointer.starts_with('/') {
        return Err(format!(
            "`{pointer}` is not a JSON Pointer: it must start with `/` (e.g. /kubernetes.io/namespace)"
        ));
    }
    let mut chars = pointer.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err(format!(
                "`{pointer}` is not a JSON Pointer: `~` must be written `~0`, and a `/` inside a claim name `~1`"
            ));
        }
    }
    Ok(())
}
