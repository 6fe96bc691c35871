//! `tls:` and `upstream.tls:` → [`TlsConfig`], [`UpstreamTlsConfig`]; the
//! SPIFFE trust domains, and the rules tying them to `authn.require` and to
//! `spiffe-jwt` issuers.
//!
//! Only the files' existence is checked here: their contents are read (and
//! re-read on rotation) by the TLS module, which must cope with a file
//! changing after load anyway.

use std::path::Path;
use std::time::Duration;

use rustls::RootCertStore;

use super::build::existing_file;
use super::issuer::at_least_one_second;
use super::problem::{element, Problem, Problems};
use super::raw::{RawClientAuth, RawTls, RawUpstreamTls};
use super::{
    CaBundle, ClientAuth, IssuerConfig, Preset, RequireCredentials, TlsConfig, UpstreamTlsConfig,
};

/// spire-agent and tbot rotate SVIDs every few minutes to hours; 30s keeps a
/// missed file event from serving a stale certificate for long.
const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(30);

/// The SPIFFE-ID spec's limit on a trust domain name.
const MAX_TRUST_DOMAIN_BYTES: usize = 255;

/// Converts the `tls:` section; problem keys are relative to it.
pub(super) fn build_tls(raw: RawTls, base_dir: &Path) -> Result<TlsConfig, Problems> {
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
    let client_ca = match (client_auth, raw.client_ca) {
        (ClientAuth::None, None) => Some(None),
        (ClientAuth::None, Some(_)) => {
            // An unused trust bundle would suggest client certificates are checked.
            problems.push(Problem::at(
                "client_ca",
                "unused with `client_auth: none` (client certificates are not requested); \
                 remove it, or set `client_auth: required` or `optional`",
            ));
            None
        }
        (_, client_ca) => problems
            .take(file(
                "client_ca",
                client_ca,
                "the trust bundle (PEM) client certificates must chain to, \
                 unless `client_auth: none`",
            ))
            .map(Some),
    };
    let reload_interval = problems.take(
        at_least_one_second(raw.reload_interval, DEFAULT_RELOAD_INTERVAL)
            .map_err(|m| Problem::at("reload_interval", m)),
    );
    let (Some(cert), Some(key), Some(client_ca), Some(reload_interval)) =
        (cert, key, client_ca, reload_interval)
    else {
        return Err(problems);
    };
    problems.finish(Some(TlsConfig {
        cert,
        key,
        client_ca,
        client_auth,
        reload_interval,
    }))
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
