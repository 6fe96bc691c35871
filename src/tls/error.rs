//! Why TLS material could not be loaded.

use std::path::PathBuf;

/// Why the TLS listener's certificate, key or trust bundle could not be
/// (re)loaded. Every variant names the file at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The file could not be inspected or read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is larger than any certificate, key or bundle should be.
    #[error("{}: larger than {limit} bytes; not a PEM certificate, key or bundle", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The size limit in bytes.
        limit: u64,
    },
    /// The file is not well-formed PEM (e.g. a section without its END line,
    /// as a partially written file has).
    #[error("{}: malformed PEM: {reason}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What the PEM parser reported.
        reason: String,
    },
    /// The file holds no `CERTIFICATE` section.
    #[error("{}: no certificate found", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// A certificate in the file is not valid X.509 DER, or cannot serve as a
    /// trust anchor.
    #[error("{}: certificate #{index} is invalid: {reason}", path.display())]
    InvalidCertificate {
        /// The file.
        path: PathBuf,
        /// Position of the certificate in the file, from 0.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The file holds no private key (PKCS#8, PKCS#1 or SEC1).
    #[error("{}: no private key found (expected PKCS#8, PKCS#1 or SEC1 PEM)", path.display())]
    NoPrivateKey {
        /// The file.
        path: PathBuf,
    },
    /// The private key is of an unsupported type or malformed.
    #[error("{}: unusable private key: {reason}", path.display())]
    InvalidKey {
        /// The file.
        path: PathBuf,
        /// What rustls reported.
        reason: String,
    },
    /// The private key does not belong to the leaf certificate (e.g. only one
    /// of the two files has been replaced yet).
    #[error("{}: private key does not match the certificate in {}", key.display(), cert.display())]
    KeyMismatch {
        /// The certificate chain file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// `client_auth` asks for client certificates but no trust bundle is configured.
    #[error(
        "tls.client_auth requires tls.trust_bundles (or, for a single trust domain, \
         tls.client_ca): the trust bundles for client certificates"
    )]
    MissingClientCa,
    /// The trust bundle could not be turned into a client certificate verifier.
    #[error("{}: unusable trust bundle: {reason}", path.display())]
    InvalidBundle {
        /// The bundle file.
        path: PathBuf,
        /// What rustls reported.
        reason: String,
    },
}
