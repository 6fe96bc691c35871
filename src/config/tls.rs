//! `tls:` and `upstream.tls:` → [`TlsConfig`], [`UpstreamTlsConfig`]; the
//! SPIFFE trust domains, and the rules tying them to `authn.require` and to
//! `spiffe-jwt` issuers.
//!
//! Only the files' existence is checked here: their contents are read (and
//! re-read on rotation) by the TLS module, which must cope with a file
//! changing after load anyway.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use rustls::RootCertStore;

use super::build::existing_file;
use super::issuer::at_least_one_second;
use super::problem::{element, Problem, Problems};
use super::raw::{RawClientAuth, RawTls, RawUpstreamTls};
use super::{
    CaBundle, ClientAuth, IssuerConfig, JwksSource, Preset, RequireCredentials, TlsConfig,
    TrustBundleFile, UpstreamTlsConfig,
};

/// spire-agent and tbot rotate SVIDs every few minutes to hours; 30s keeps a
/// missed file event from serving a stale certificate for long.
const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(30);

/// The SPIFFE-ID spec's limit on a trust domain name.
const MAX_TRUST_DOMAIN_BYTES: usize = 255;

/// Converts the `tls:` section; problem keys are relative to it.
/// `trust_domains` are the validated `trust_domains:`; every bundle belongs
/// to one of them.
pub(super) fn build_tls(
    raw: RawTls,
    trust_domains: &[String],
    base_dir: &Path,
) -> Result<TlsConfig, Problems> {
    let mut problems = Problems::default();
    let file = |key: &'static str, value: Option<String>, what: &str| {
        let value = value.ok_or_else(|| Problem::at(key, format!("required: {what}")))?;
        existing_file(base_dir.join(value)).map_err(|m| Problem::at(key, m))
    };
    let cert = problems.take(file("cert", raw.cert, "the server certificate chain (PEM)"));
    let key = problems.take(file("key", raw.key, "the server private key (PEM)"));
    let client_auth = match raw.client_auth.unwrap_or(RawClientAuth::Optional) {
        RawClientAuth::Required => ClientAuth::Required,
        RawClientAuth::Optional => ClientAuth::Optional,
        RawClientAuth::None => ClientAuth::None,
    };
    let trust_bundles = problems.take(build_trust_bundles(
        client_auth,
        raw.client_ca,
        raw.trust_bundles,
        trust_domains,
        base_dir,
    ));
    let reload_interval = problems.take(
        at_least_one_second(raw.reload_interval, DEFAULT_RELOAD_INTERVAL)
            .map_err(|m| Problem::at("reload_interval", m)),
    );
    let (Some(cert), Some(key), Some(trust_bundles), Some(reload_interval)) =
        (cert, key, trust_bundles, reload_interval)
    else {
        return Err(problems);
    };
    problems.finish(Some(TlsConfig {
        cert,
        key,
        trust_bundles,
        client_auth,
        reload_interval,
    }))
}

/// `tls.client_ca` or `tls.trust_bundles` → one bundle file per trust domain.
///
/// A client certificate is verified only against the roots of the trust
/// domain its SPIFFE ID names, so every root must be tied to one domain:
/// `client_ca` is accepted only with a single trust domain (it is that
/// domain's bundle); with several, each needs its own `trust_bundles` entry.
/// With no trust domain at all the list is left empty, and
/// `check_trust_domains_needed` reports the missing `trust_domains`.
fn build_trust_bundles(
    client_auth: ClientAuth,
    client_ca: Option<String>,
    trust_bundles: Option<BTreeMap<String, String>>,
    trust_domains: &[String],
    base_dir: &Path,
) -> Result<Vec<TrustBundleFile>, Problem> {
    let file = |key: String, value: String| {
        existing_file(base_dir.join(value)).map_err(|m| Problem::at(key, m))
    };
    match (client_auth, client_ca, trust_bundles) {
        (ClientAuth::None, None, None) => Ok(Vec::new()),
        (ClientAuth::None, client_ca, _) => {
            let key = if client_ca.is_some() {
                "client_ca"
            } else {
                "trust_bundles"
            };
            // An unused trust bundle would suggest client certificates are checked.
            Err(Problem::at(
                key,
                "unused with `client_auth: none` (client certificates are not requested); \
                 remove it, or set `client_auth: required` or `optional`",
            ))
        }
        (_, Some(_), Some(_)) => Err(Problem::at(
            "trust_bundles",
            "`client_ca` and `trust_bundles` cannot be used together: give every trust domain \
             its bundle in `trust_bundles` and remove `client_ca`",
        )),
        (_, None, None) => Err(Problem::at(
            "client_ca",
            "required: the trust bundle client certificates must chain to, unless \
             `client_auth: none`; with several trust domains, one bundle per domain in \
             `trust_bundles` instead",
        )),
        (_, Some(client_ca), None) => match trust_domains {
            [] => Ok(Vec::new()),
            [domain] => Ok(vec![TrustBundleFile {
                trust_domain: domain.clone(),
                path: file("client_ca".to_owned(), client_ca)?,
            }]),
            several => Err(Problem::at(
                "client_ca",
                format!(
                    "with {} trust domains a single `client_ca` would let any domain's CA vouch \
                     for another domain's SPIFFE IDs; give each domain its own roots in \
                     `trust_bundles: {{ <domain>: <file> }}` (e.g. `trust_bundles: {{ {}: {} }}`)",
                    several.len(),
                    several[0],
                    client_ca
                ),
            )),
        },
        (_, None, Some(bundles)) => {
            if bundles.is_empty() {
                return Err(Problem::at(
                    "trust_bundles",
                    "must name at least one trust domain's bundle",
                ));
            }
            let mut built = Vec::with_capacity(bundles.len());
            for (domain, path) in bundles {
                let key = format!("trust_bundles.{domain}");
                if !trust_domains.contains(&domain) {
                    return Err(Problem::at(
                        key,
                        format!(
                            "`{domain}` is not one of `trust_domains`: add it there, or remove \
                             its bundle"
                        ),
                    ));
                }
                built.push(TrustBundleFile {
                    trust_domain: domain,
                    path: file(key, path)?,
                });
            }
            if let Some(missing) = trust_domains
                .iter()
                .find(|domain| !built.iter().any(|b| &b.trust_domain == *domain))
            {
                return Err(Problem::at(
                    "trust_bundles",
                    format!(
                        "no bundle for trust domain `{missing}`: every entry of `trust_domains` \
                         needs one, as client certificates of a domain chain only to its own roots"
                    ),
                ));
            }
            Ok(built)
        }
    }
}

/// Converts `upstream.tls` written as a section (`true` is an empty one);
/// problem keys are relative to it.
pub(super) fn build_upstream_tls(
    raw: RawUpstreamTls,
    base_dir: &Path,
) -> Result<UpstreamTlsConfig, Problems> {
    let mut problems = Problems::default();
    let file = |key: &'static str, value: String| {
        existing_file(base_dir.join(value)).map_err(|m| Problem::at(key, m))
    };
    let ca = problems.take(raw.ca.map(|ca| file("ca", ca)).transpose());
    let client_cert = match (raw.cert, raw.key) {
        (Some(cert), Some(key)) => {
            let cert = problems.take(file("cert", cert));
            let key = problems.take(file("key", key));
            cert.zip(key).map(Some)
        }
        (None, None) => Some(None),
        (Some(_), None) => {
            problems.push(Problem::at(
                "key",
                "required with `cert`: the client certificate's private key (PEM)",
            ));
            None
        }
        (None, Some(_)) => {
            problems.push(Problem::at(
                "cert",
                "required with `key`: the client certificate chain (PEM)",
            ));
            None
        }
    };
    let (Some(ca), Some(client_cert)) = (ca, client_cert) else {
        return Err(problems);
    };
    problems.finish(Some(UpstreamTlsConfig {
        ca,
        server_name: raw.server_name.map(|name| name.0 .0),
        client_cert,
    }))
}

/// Checks each trust domain name (SPIFFE-ID spec: lowercase letters, digits,
/// `.`, `_` and `-`, at most 255 bytes) and that none repeats.
pub(super) fn build_trust_domains(raw: Vec<String>) -> Result<Vec<String>, Problems> {
    let mut problems = Problems::default();
    for (index, domain) in raw.iter().enumerate() {
        let valid_characters = !domain.is_empty()
            && domain.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
            });
        let problem = if !valid_characters {
            format!(
                "invalid trust domain `{domain}`: use lowercase letters, digits, `.`, `_` \
                 and `-`, without `spiffe://` (e.g. example.org)"
            )
        } else if domain.len() > MAX_TRUST_DOMAIN_BYTES {
            format!("trust domain longer than {MAX_TRUST_DOMAIN_BYTES} bytes")
        } else if raw[..index].contains(domain) {
            format!("duplicate trust domain `{domain}`")
        } else {
            continue;
        };
        problems.push(Problem::at(element("", index), problem));
    }
    problems.finish(Some(raw))
}

/// Whether the listener asks for client certificates at all.
fn accepts_client_certificates(tls: Option<&TlsConfig>) -> bool {
    tls.is_some_and(|tls| tls.client_auth != ClientAuth::None)
}

/// `authn.require: mtls | both` needs client certificates.
///
/// Returns the problem with its full key path.
pub(super) fn check_require(
    require: RequireCredentials,
    tls: Option<&TlsConfig>,
) -> Result<(), Problem> {
    let value = match require {
        RequireCredentials::Mtls => "mtls",
        RequireCredentials::Both => "both",
        RequireCredentials::Any | RequireCredentials::Jwt => return Ok(()),
    };
    if accepts_client_certificates(tls) {
        return Ok(());
    }
    let why = if tls.is_some() {
        "but `tls.client_auth` is `none`; set it to `required` or `optional`"
    } else {
        "but there is no `tls:` section; add one with `client_auth: required` or `optional`"
    };
    Err(Problem::at(
        "authn.require",
        format!("`{value}` needs client certificates, {why}"),
    ))
}

/// Client certificates and JWT-SVIDs name a SPIFFE trust domain, which must
/// be listed: with none configured every such caller would be refused.
///
/// Returns the problem with its full key path.
pub(super) fn check_trust_domains_needed(
    trust_domains: &[String],
    tls: Option<&TlsConfig>,
    issuers: &[IssuerConfig],
) -> Result<(), Problem> {
    if !trust_domains.is_empty() {
        return Ok(());
    }
    if accepts_client_certificates(tls) {
        return Err(Problem::at(
            "trust_domains",
            "required when `tls.client_auth` is `required` or `optional`: client certificates \
             are accepted only from these SPIFFE trust domains (e.g. [example.org])",
        ));
    }
    if let Some(index) = issuers.iter().position(|i| i.preset == Preset::SpiffeJwt) {
        return Err(Problem::at(
            "trust_domains",
            format!(
                "required by issuers[{index}] (preset spiffe-jwt): a JWT-SVID's `sub` must be \
                 in one of these SPIFFE trust domains (e.g. [example.org])"
            ),
        ));
    }
    Ok(())
}

/// Ties every `spiffe-jwt` issuer to one trust domain (`issuers[].trust_domain`):
/// a JWT-SVID's `sub` must be in it, so an issuer (and the keys it signs with)
/// can never speak for another trust domain. It must be one of
/// `trust_domains`; it defaults to the domain of `jwks.spiffe_bundle`, else
/// to the only trust domain; with several and neither, it is required.
///
/// Also resolves `jwks: { spiffe_bundle: <domain> }` to that domain's file in
/// `tls.trust_bundles`, which must be in the SPIFFE bundle (JSON) format.
///
/// Returns the problem with its full key path.
pub(super) fn scope_spiffe_issuers(
    issuers: &mut [IssuerConfig],
    trust_domains: &[String],
    tls: Option<&TlsConfig>,
) -> Result<(), Problem> {
    for (index, issuer) in issuers.iter_mut().enumerate() {
        if issuer.preset != Preset::SpiffeJwt {
            continue;
        }
        let at = |key: &str| format!("{}.{key}", element("issuers", index));
        if let JwksSource::SpiffeBundle { trust_domain, path } = &mut issuer.jwks {
            *path = spiffe_bundle_file(trust_domain, trust_domains, tls)
                .map_err(|m| Problem::at(at("jwks.spiffe_bundle"), m))?;
            match &issuer.trust_domain {
                None => issuer.trust_domain = Some(trust_domain.clone()),
                Some(scope) if scope != trust_domain => {
                    return Err(Problem::at(
                        at("trust_domain"),
                        format!(
                            "`{scope}` differs from `jwks.spiffe_bundle` (`{trust_domain}`): \
                             a trust domain's keys sign only its own JWT-SVIDs"
                        ),
                    ))
                }
                Some(_) => {}
            }
        }
        match (&issuer.trust_domain, trust_domains) {
            (Some(domain), _) if !trust_domains.contains(domain) => {
                return Err(Problem::at(
                    at("trust_domain"),
                    format!("`{domain}` is not one of `trust_domains`"),
                ))
            }
            (Some(_), _) => {}
            (None, [only]) => issuer.trust_domain = Some(only.clone()),
            // No trust domain at all is reported by `check_trust_domains_needed`.
            (None, []) => {}
            (None, several) => {
                return Err(Problem::at(
                    at("trust_domain"),
                    format!(
                        "required with several `trust_domains` ({}): the trust domain whose \
                         JWT-SVIDs this issuer signs; tokens whose `sub` is in another domain \
                         are refused",
                        several.join(", ")
                    ),
                ))
            }
        }
    }
    Ok(())
}

/// The bundle file of `trust_domain` for `jwks.spiffe_bundle`: configured in
/// `tls.trust_bundles` (or `tls.client_ca`), and in the SPIFFE JSON format,
/// since a PEM bundle holds no JWT keys. The file is read once here for its
/// format; its keys are read (and re-read) by the issuer's key refresh.
fn spiffe_bundle_file(
    trust_domain: &str,
    trust_domains: &[String],
    tls: Option<&TlsConfig>,
) -> Result<std::path::PathBuf, String> {
    if !trust_domains.iter().any(|d| d == trust_domain) {
        return Err(format!("`{trust_domain}` is not one of `trust_domains`"));
    }
    let file = tls
        .and_then(|tls| {
            tls.trust_bundles
                .iter()
                .find(|b| b.trust_domain == trust_domain)
        })
        .ok_or_else(|| {
            format!(
                "trust domain `{trust_domain}` has no bundle: add it to `tls.trust_bundles` \
                 (with `tls.client_auth` other than `none`), or use `jwks: {{ file: … }}`"
            )
        })?;
    let shown = file.path.display();
    let bytes = std::fs::read(&file.path).map_err(|error| format!("`{shown}`: {error}"))?;
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(format!(
            "`{shown}` (the bundle of `{trust_domain}`) is not in the SPIFFE bundle (JSON) \
             format, so it holds no JWT-SVID keys"
        ));
    }
    Ok(file.path.clone())
}

/// Reads a PEM bundle of CA certificates (`issuers[].jwks.ca`) and checks that
/// it holds at least one certificate and that each is usable as a trust
/// anchor, so that the HTTP client built from it later cannot fail on it.
/// Messages name the file.
pub(super) fn ca_bundle(path: &Path) -> Result<CaBundle, String> {
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|error| format!("`{shown}`: {error}"))?;
    let certificates = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| format!("`{shown}` is not a valid PEM file: {error}"))?;
    if certificates.is_empty() {
        return Err(format!(
            "`{shown}` holds no certificate: expected one or more PEM `CERTIFICATE` sections"
        ));
    }
    let mut roots = RootCertStore::empty();
    for (index, certificate) in certificates.iter().enumerate() {
        roots.add(certificate.clone()).map_err(|error| {
            format!(
                "`{shown}`: certificate {} is not usable as a CA: {error}",
                index + 1
            )
        })?;
    }
    Ok(CaBundle {
        path: path.to_path_buf(),
        certificates,
    })
}
