//! The HTTP side of key fetches: the clients (one shared, or one per issuer
//! with its own trust roots or credential) and the bearer token an issuer's
//! fetches may carry.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use reqwest::header::HeaderValue;
use tokio::io::AsyncReadExt;

use super::{FetchError, FETCH_TIMEOUT};
use crate::config::{CaBundle, IssuerConfig};

/// Most redirects followed for one fetch.
const MAX_REDIRECTS: usize = 3;
/// Largest bearer token file read (a Kubernetes service-account token is ~1 KiB).
const MAX_TOKEN_FILE_BYTES: u64 = 64 * 1024;

/// Why an issuer's HTTP client could not be built (at startup).
#[derive(Debug, thiserror::Error)]
#[error("issuer `{issuer}`: cannot build the HTTP client for its key fetches: {message}")]
pub struct HttpClientError {
    /// The issuer's name.
    pub issuer: String,
    /// What went wrong.
    pub message: String,
}

/// Builds the HTTP client shared by issuers without `jwks.ca` or
/// `jwks.bearer_token_file`: rustls (with the process's ring provider, see
/// `main`) and the system's root certificates. Redirects are followed only to
/// https URLs, so a redirect cannot downgrade a key fetch to plaintext.
///
/// # Errors
/// When the TLS configuration cannot be built.
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    builder(https_redirects()).build()
}

/// The client for `issuer`'s discovery and JWKS fetches: `shared` (from
/// [`http_client`]) unless the issuer sets `jwks.ca` or
/// `jwks.bearer_token_file`, which get a client of their own, built once:
/// - `ca`: only the bundle's roots are trusted (not the system's), through a
///   rustls config with the ring provider passed explicitly;
/// - `bearer_token_file`: redirects are followed only within the origin
///   (scheme, host and port) of the request, so the token never reaches
///   another host. (reqwest also drops `Authorization` on a cross-host
///   redirect; this does not rely on it.)
///
/// # Errors
/// [`HttpClientError`] when the client cannot be built; the CA bundle was
/// checked when the config loaded, so this is not expected.
pub fn http_client_for(
    issuer: &IssuerConfig,
    shared: &reqwest::Client,
) -> Result<reqwest::Client, HttpClientError> {
    let fetch = &issuer.jwks_fetch;
    if fetch.ca.is_none() && fetch.bearer_token_file.is_none() {
        return Ok(shared.clone());
    }
    let error = |message: String| HttpClientError {
        issuer: issuer.name.to_string(),
        message,
    };
    let redirects = if fetch.bearer_token_file.is_some() {
        same_origin_redirects()
    } else {
        https_redirects()
    };
    let mut builder = builder(redirects);
    if let Some(ca) = &fetch.ca {
        builder = builder.use_preconfigured_tls(tls_trusting_only(ca).map_err(error)?);
    }
    builder.build().map_err(|e| error(e.to_string()))
}

fn builder(redirects: reqwest::redirect::Policy) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(concat!("wisp/", env!("CARGO_PKG_VERSION")))
        .redirect(redirects)
        .connect_timeout(FETCH_TIMEOUT)
}

/// At most [`MAX_REDIRECTS`], each to an https URL.
fn https_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        if attempt.previous().len() >= MAX_REDIRECTS || attempt.url().scheme() != "https" {
            attempt.stop()
        } else {
            attempt.follow()
        }
    })
}

/// As [`https_redirects`], and only to the origin of the first request.
fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let same_origin = attempt
            .previous()
            .first()
            .is_some_and(|first| first.origin() == attempt.url().origin());
        if attempt.previous().len() >= MAX_REDIRECTS
            || attempt.url().scheme() != "https"
            || !same_origin
        {
            attempt.stop()
        } else {
            attempt.follow()
        }
    })
}

/// A rustls client config trusting exactly `ca`'s certificates.
fn tls_trusting_only(ca: &CaBundle) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in &ca.certificates {
        roots
            .add(certificate.clone())
            .map_err(|e| format!("jwks.ca {}: {e}", ca.path.display()))?;
    }
    // The ring provider explicitly: never a process default that could differ.
    let provider = Arc::new(crate::tls::ring_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // reqwest is built for HTTP/1.1 only.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The `Authorization: Bearer …` value read from an issuer's
/// `bearer_token_file`. Its `Debug` output is redacted and the header value
/// is marked sensitive; the token never appears in logs, errors or `/readyz`.
pub(super) struct BearerToken(HeaderValue);

impl BearerToken {
    /// Reads the token file now (it rotates, so it is read at every fetch),
    /// trimming surrounding whitespace.
    ///
    /// # Errors
    /// [`FetchError::BearerToken`] when the file is unreadable, too large,
    /// empty, or not a valid header value; the message never quotes it.
    pub(super) async fn read(path: &Path) -> Result<BearerToken, FetchError> {
        let error = |message: String| FetchError::BearerToken {
            path: path.display().to_string(),
            message,
        };
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| error(e.to_string()))?;
        let mut contents = Vec::new();
        file.take(MAX_TOKEN_FILE_BYTES + 1)
            .read_to_end(&mut contents)
            .await
            .map_err(|e| error(e.to_string()))?;
        if contents.len() as u64 > MAX_TOKEN_FILE_BYTES {
            return Err(error(format!("larger than {MAX_TOKEN_FILE_BYTES} bytes")));
        }
        let token = contents.trim_ascii();
        if token.is_empty() {
            return Err(error("empty".to_owned()));
        }
        // Only visible ASCII: no spaces, line breaks or control characters inside.
        if !token.iter().all(u8::is_ascii_graphic) {
            return Err(error(
                "not a token: it holds spaces, control or non-ASCII characters".to_owned(),
            ));
        }
        let value = [b"Bearer ".as_slice(), token].concat();
        let mut header = HeaderValue::from_bytes(&value)
            .map_err(|_| error("not a valid header value".to_owned()))?;
        header.set_sensitive(true);
        Ok(BearerToken(header))
    }

    /// The `Authorization` header value (marked sensitive).
    pub(super) fn header_value(self) -> HeaderValue {
        self.0
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("BearerToken(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(contents: &[u8]) -> (tempfile::TempDir, Result<BearerToken, FetchError>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, contents).unwrap();
        let token = BearerToken::read(&path).await;
        (dir, token)
    }

    #[tokio::test]
    async fn a_token_is_trimmed_and_its_debug_output_redacted() {
        let (_dir, token) = read(b"  s3cr3t-t0ken.value\n").await;
        let token = token.unwrap();
        let debug = format!("{token:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
        assert_eq!(debug, "BearerToken(<redacted>)");
        let header = token.header_value();
        assert!(header.is_sensitive());
        assert!(!format!("{header:?}").contains("s3cr3t"));
        assert_eq!(header.as_bytes(), b"Bearer s3cr3t-t0ken.value");
    }

    #[tokio::test]
    async fn an_empty_or_unreadable_token_file_is_a_fetch_error_naming_the_file() {
        let (dir, token) = read(b" \n").await;
        let path = dir.path().join("token").display().to_string();
        assert_eq!(
            token.unwrap_err().to_string(),
            format!("bearer_token_file {path}: empty")
        );
        let missing = dir.path().join("missing");
        let error = BearerToken::read(&missing).await.unwrap_err().to_string();
        assert!(
            error.starts_with(&format!("bearer_token_file {}: ", missing.display())),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_token_with_inner_spaces_or_line_breaks_is_refused_without_quoting_it() {
        for contents in [
            &b"s3cr3t one"[..],
            b"s3cr3t\r\nX-Injected: 1",
            b"s3cr3t\xff",
        ] {
            let (_dir, token) = read(contents).await;
            let error = token.unwrap_err().to_string();
            assert!(error.contains("not a token"), "{error}");
            assert!(!error.contains("s3cr3t"), "{error}");
        }
    }

    #[tokio::test]
    async fn a_huge_token_file_is_refused() {
        let (_dir, token) = read(&vec![b'a'; 64 * 1024 + 1]).await;
        assert!(token.unwrap_err().to_string().contains("larger than"));
    }

    #[test]
    fn an_issuer_with_a_ca_and_a_token_file_gets_a_client_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&key).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.path().join("token"), "t").unwrap();
        let yaml = format!(
            "upstream: {{ address: 127.0.0.1:1 }}\n\
             issuers:\n  - name: k8s\n    issuer: https://k8s.example\n    \
             jwks: {{ discovery: true, ca: ca.pem, bearer_token_file: token }}\n    \
             audiences: [a]\n    algorithms: [RS256]\n\
             policies: {{ dir: {}/policies }}\n",
            env!("CARGO_MANIFEST_DIR")
        );
        let config =
            crate::config::Config::from_yaml(&yaml, &dir.path().join("wisp.yaml")).unwrap();
        crate::server::install_crypto();
        let shared = http_client().unwrap();
        http_client_for(&config.issuers[0], &shared).unwrap();
    }
}
