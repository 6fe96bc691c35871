//! The one upstream: resolved once at start into a pingora [`HttpPeer`],
//! optionally over TLS (verified against a CA bundle or the system roots, with
//! SNI, and an optional client certificate for upstream mTLS).

use std::net::ToSocketAddrs;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use pingora::upstreams::peer::HttpPeer;
use pingora::utils::tls::CertKey;
use pingora::utils::tls::WrappedX509;

use crate::config::UpstreamConfig;

/// Why the upstream cannot be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// The address does not resolve.
    #[error("upstream.address {address}: {message}")]
    Address {
        /// The configured address.
        address: String,
        /// What went wrong.
        message: String,
    },
    /// A TLS file is unreadable or holds no usable certificate/key.
    #[error("{key} {path}: {message}")]
    TlsFile {
        /// The config key.
        key: &'static str,
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
}

/// The host part of `host:port` (brackets of an IPv6 literal removed).
fn host_of(address: &str) -> &str {
    let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// Builds the upstream peer.
///
/// # Errors
/// [`UpstreamError`] when the address does not resolve or a TLS file is unusable.
pub fn peer(config: &UpstreamConfig) -> Result<HttpPeer, UpstreamError> {
    let address = &config.address;
    let address_error = |message: String| UpstreamError::Address {
        address: address.clone(),
        message,
    };
    let resolved = address
        .to_socket_addrs()
        .map_err(|e| address_error(e.to_string()))?
        .next()
        .ok_or_else(|| address_error("resolves to no address".into()))?;
    let tls = config.tls.as_ref();
    // Pingora skips certificate verification when SNI is empty, so it never is:
    // the configured server name, else the address's host (a name or an IP).
    let sni = tls
        .and_then(|t| t.server_name.clone())
        .unwrap_or_else(|| host_of(address).to_string());
    let mut peer = HttpPeer::new(resolved, tls.is_some(), sni);
    peer.options.connection_timeout = Some(config.connect_timeout);
    peer.options.read_timeout = Some(config.read_timeout);
    peer.options.idle_timeout = Some(Duration::from_secs(60));
    if config.http2 {
        // h2c with prior knowledge in plaintext; ALPN h2 over TLS.
        peer.options.set_http_version(2, 2);
    }
    if let Some(tls) = tls {
        peer.options.verify_cert = true;
        peer.options.verify_hostname = true;
        if let Some(ca) = &tls.ca {
            peer.options.ca = Some(load_ca(ca)?.into());
        }
        if let Some((cert, key)) = &tls.client_cert {
            peer.client_cert_key = Some(Arc::new(load_cert_key(cert, key)?));
        }
    }
    Ok(peer)
}

fn tls_file_error(key: &'static str, path: &Path, message: impl ToString) -> UpstreamError {
    UpstreamError::TlsFile {
        key,
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

/// Reads PEM certificates, checking each parses as X.509 (pingora's wrapper
/// panics on bad DER, so nothing unparsed reaches it).
fn read_certificates(key: &'static str, path: &Path) -> Result<Vec<Vec<u8>>, UpstreamError> {
    let pem = std::fs::read(path).map_err(|e| tls_file_error(key, path, e))?;
    let mut certificates = Vec::new();
    for item in rustls_pemfile::certs(&mut pem.as_slice()) {
        let der = item.map_err(|e| tls_file_error(key, path, format!("invalid PEM: {e}")))?;
        x509_parser::parse_x509_certificate(der.as_ref())
            .map_err(|e| tls_file_error(key, path, format!("invalid certificate: {e}")))?;
        certificates.push(der.as_ref().to_vec());
    }
    if certificates.is_empty() {
        return Err(tls_file_error(key, path, "no certificate found"));
    }
    Ok(certificates)
}

fn load_ca(path: &Path) -> Result<Vec<WrappedX509>, UpstreamError> {
    Ok(read_certificates("upstream.tls.ca", path)?
        .into_iter()
        .map(|der| WrappedX509::new(der, pingora::utils::tls::parse_x509))
        .collect())
}

fn load_cert_key(cert: &Path, key: &Path) -> Result<CertKey, UpstreamError> {
    let certificates = read_certificates("upstream.tls.cert", cert)?;
    let pem = std::fs::read(key).map_err(|e| tls_file_error("upstream.tls.key", key, e))?;
    let private_key = rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| tls_file_error("upstream.tls.key", key, format!("invalid PEM: {e}")))?
        .ok_or_else(|| tls_file_error("upstream.tls.key", key, "no private key found"))?;
    Ok(CertKey::new(
        certificates,
        private_key.secret_der().to_vec(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_of_strips_port_and_brackets() {
        assert_eq!(host_of("orders.internal:8443"), "orders.internal");
        assert_eq!(host_of("127.0.0.1:80"), "127.0.0.1");
        assert_eq!(host_of("[::1]:8443"), "::1");
    }

    #[test]
    fn unusable_ca_files_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        for path in [&empty, &garbage, &dir.path().join("missing.pem")] {
            let error = load_ca(path).unwrap_err().to_string();
            assert!(error.contains("upstream.tls.ca"), "{error}");
        }
    }
}
