//! Reading PEM files (and SPIFFE bundles) into rustls material, and noticing when they change.
//!
//! Everything here is synchronous and small: certificates, keys and bundles
//! are a few kilobytes, read at startup and when a poll sees a change.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;

use super::bundle::BundleProblem;
use super::TlsError;

/// Larger files are refused: no certificate chain, key or trust bundle comes
/// near this, and it bounds what a wrong path (a log file, a device) costs.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// What identifies one version of a file. tbot and spire-agent replace files by
/// atomic rename (a new inode); editors and `cp` rewrite in place (new size or
/// mtime). Any difference means "re-read".
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FileStamp {
    device: u64,
    inode: u64,
    len: u64,
    modified: Option<SystemTime>,
}

impl FileStamp {
    /// Stats `path` (following symlinks, so a Kubernetes `..data` swap counts).
    pub(super) fn of(path: &Path) -> Result<FileStamp, TlsError> {
        let meta = std::fs::metadata(path).map_err(|source| TlsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        #[cfg(unix)]
        let (device, inode) = {
            use std::os::unix::fs::MetadataExt;
            (meta.dev(), meta.ino())
        };
        #[cfg(not(unix))]
        let (device, inode) = (0, 0);
        Ok(FileStamp {
            device,
            inode,
            len: meta.len(),
            modified: meta.modified().ok(),
        })
    }
}

/// The server's certificate chain with its key, checked to match.
pub(super) struct ServerKey {
    pub(super) key: Arc<CertifiedKey>,
    /// The leaf's notAfter, Unix seconds.
    pub(super) not_after: i64,
}

/// A client certificate verifier for one version of a trust domain's bundle.
pub(super) struct TrustBundle {
    pub(super) verifier: Arc<dyn ClientCertVerifier>,
    /// The earliest notAfter among the bundle's CAs, Unix seconds.
    pub(super) earliest_not_after: i64,
    /// How many CAs the bundle holds.
    pub(super) len: usize,
    /// How many JWT-SVID keys a SPIFFE-format bundle holds.
    pub(super) jwt_keys: usize,
}

/// Loads the server chain (`cert`) and its private key (`key`).
pub(super) fn load_server_key(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<ServerKey, TlsError> {
    let chain = read_certificates(cert)?;
    // Every certificate must parse; the first one is the leaf.
    let mut leaf_not_after = None;
    for (index, der) in chain.iter().enumerate() {
        let expiry = not_after(cert, index, der)?;
        leaf_not_after.get_or_insert(expiry);
    }
    let Some(not_after) = leaf_not_after else {
        return Err(TlsError::NoCertificate {
            path: cert.to_path_buf(),
        });
    };
    let key_der = {
        let bytes = read(key)?;
        rustls_pemfile::private_key(&mut bytes.as_slice())
            .map_err(|error| TlsError::Pem {
                path: key.to_path_buf(),
                reason: error.to_string(),
            })?
            .ok_or_else(|| TlsError::NoPrivateKey {
                path: key.to_path_buf(),
            })?
    };
    let signing_key = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|error| TlsError::InvalidKey {
            path: key.to_path_buf(),
            reason: error.to_string(),
        })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        // `Unknown`: the key type cannot report its public key; rustls itself
        // accepts that (CertifiedKey::from_der), and so do we.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(_)) => {
            return Err(TlsError::KeyMismatch {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
            })
        }
        Err(error) => {
            return Err(TlsError::InvalidCertificate {
                path: cert.to_path_buf(),
                index: 0,
                reason: error.to_string(),
            })
        }
    }
    Ok(ServerKey {
        key: Arc::new(certified),
        not_after,
    })
}

/// Loads a trust domain's bundle (PEM CAs or the SPIFFE bundle format, see
/// `bundle`) into a WebPKI client verifier. Whether a client certificate is
/// mandatory is answered by the rotating verifier, not by this one.
pub(super) fn load_trust_bundle(
    path: &Path,
    provider: &Arc<CryptoProvider>,
) -> Result<TrustBundle, TlsError> {
    let contents = super::bundle::parse(&read(path)?).map_err(|problem| match problem {
        BundleProblem::NoCertificate => TlsError::NoCertificate {
            path: path.to_path_buf(),
        },
        BundleProblem::Malformed(reason) => TlsError::InvalidBundle {
            path: path.to_path_buf(),
            reason,
        },
    })?;
    let cas = contents.x509_authorities;
    let mut roots = RootCertStore::empty();
    let mut earliest_not_after = i64::MAX;
    for (index, der) in cas.iter().enumerate() {
        earliest_not_after = earliest_not_after.min(not_after(path, index, der)?);
        roots
            .add(der.clone())
            .map_err(|error| TlsError::InvalidCertificate {
                path: path.to_path_buf(),
                index,
                reason: error.to_string(),
            })?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|error| TlsError::InvalidBundle {
            path: path.to_path_buf(),
            reason: error.to_string(),
        })?;
    Ok(TrustBundle {
        verifier,
        earliest_not_after,
        len: cas.len(),
        jwt_keys: contents.jwt_authorities,
    })
}

/// Every `CERTIFICATE` section of a PEM file; at least one.
fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let certificates = rustls_pemfile::certs(&mut bytes.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::Pem {
            path: path.to_path_buf(),
            reason: error.to_string(),
        })?;
    if certificates.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certificates)
}

/// A certificate's notAfter in Unix seconds; fails on anything that is not
/// X.509 DER (x509-parser reports, never panics).
fn not_after(path: &Path, index: usize, der: &CertificateDer<'_>) -> Result<i64, TlsError> {
    match x509_parser::parse_x509_certificate(der.as_ref()) {
        Ok((_, certificate)) => Ok(certificate.validity().not_after.timestamp()),
        Err(error) => Err(TlsError::InvalidCertificate {
            path: path.to_path_buf(),
            index,
            reason: error.to_string(),
        }),
    }
}

/// The whole file, refusing anything over [`MAX_FILE_BYTES`].
fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    let read_error = |source| TlsError::Read {
        path: PathBuf::from(path),
        source,
    };
    let file = File::open(path).map_err(read_error)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(TlsError::TooLarge {
            path: path.to_path_buf(),
            limit: MAX_FILE_BYTES,
        });
    }
    Ok(bytes)
}
