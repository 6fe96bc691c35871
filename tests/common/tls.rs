//! Test PKI and TLS clients. [`Ca`] issues a server certificate for
//! `localhost`/127.0.0.1, X509-SVIDs (`spiffe://…` URI SAN, EKU clientAuth)
//! and the broken variants the SVID rules must reject ([`BrokenSvid`]).
//! [`TlsClient`] speaks HTTP/1.1 or HTTP/2 (ALPN) over rustls/ring with an
//! optional client certificate, and tells a refused handshake apart from an
//! HTTP answer.

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::h2::{build_request, request_over, H2Response, EXCHANGE_TIMEOUT};
use super::{parse_response, Response};

/// The trust domain the test SVIDs belong to.
pub const TRUST_DOMAIN: &str = "example.org";

/// A test certificate authority (ECDSA P-256), self-signed.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// An end-entity certificate and its private key.
#[derive(Clone)]
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl Ca {
    /// A new root CA named `common_name`.
    pub fn new(common_name: &str) -> Ca {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        Ca {
            issuer: CertifiedIssuer::self_signed(params, key).expect("CA certificate"),
        }
    }

    /// The CA certificate (PEM), i.e. a one-root trust bundle.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// The CA certificate (DER).
    pub fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// Signs a leaf with these parameters and a fresh key.
    pub fn issue(&self, params: CertificateParams) -> Leaf {
        let key = KeyPair::generate().expect("leaf key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("leaf certificate");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
            key_der: key.serialize_der(),
        }
    }

    /// A server certificate for `localhost` and 127.0.0.1 (EKU serverAuth).
    pub fn server_cert(&self) -> Leaf {
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .expect("server SANs");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params)
    }

    /// A valid X509-SVID for `spiffe_id`: one URI SAN, not a CA, EKU clientAuth.
    pub fn svid(&self, spiffe_id: &str) -> Leaf {
        self.issue(svid_params(&[spiffe_id]))
    }

    /// A client certificate that breaks one X509-SVID rule (see [`BrokenSvid`]).
    pub fn broken_svid(&self, kind: BrokenSvid) -> Leaf {
        let id = "spiffe://example.org/ns/prod/sa/orders";
        match kind {
            BrokenSvid::TwoUriSans => {
                self.issue(svid_params(&[id, "spiffe://example.org/ns/prod/sa/other"]))
            }
            BrokenSvid::NoUriSan => self.issue(svid_params(&[])),
            BrokenSvid::DnsOnlySan => {
                let mut params = svid_params(&[]);
                params.subject_alt_names = vec![SanType::DnsName(
                    "orders.example.org".try_into().expect("DNS name"),
                )];
                self.issue(params)
            }
            BrokenSvid::CaLeaf => {
                let mut params = svid_params(&[id]);
                params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
                params.key_usages.push(KeyUsagePurpose::KeyCertSign);
                self.issue(params)
            }
            BrokenSvid::ServerAuthOnly => {
                let mut params = svid_params(&[id]);
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
                self.issue(params)
            }
            BrokenSvid::Expired => {
                let mut params = svid_params(&[id]);
                params.not_before = rcgen::date_time_ymd(2020, 1, 1);
                params.not_after = rcgen::date_time_ymd(2021, 1, 1);
                self.issue(params)
            }
            BrokenSvid::UntrustedCa => Ca::new("untrusted test CA").svid(id),
            BrokenSvid::ForeignTrustDomain => self.svid("spiffe://other.org/ns/prod/sa/orders"),
        }
    }
}

fn svid_params(uris: &[&str]) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "test workload");
    params.subject_alt_names = uris
        .iter()
        .map(|uri| SanType::URI((*uri).try_into().expect("URI SAN")))
        .collect();
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params
}

/// Ways a client certificate can break the X509-SVID rules (or trust).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokenSvid {
    /// Two `spiffe://` URI SANs.
    TwoUriSans,
    /// No subject alternative names at all.
    NoUriSan,
    /// A DNS SAN and no URI SAN.
    DnsOnlySan,
    /// A valid URI SAN, but `CA:TRUE`.
    CaLeaf,
    /// EKU serverAuth only (no clientAuth).
    ServerAuthOnly,
    /// Valid 2020-01-01 to 2021-01-01.
    Expired,
    /// Well-formed, signed by a CA not in the bundle.
    UntrustedCa,
    /// Well-formed, from the trusted CA, for `spiffe://other.org/…`.
    ForeignTrustDomain,
}

impl BrokenSvid {
    /// Every kind, for case matrices.
    pub const ALL: [BrokenSvid; 8] = [
        BrokenSvid::TwoUriSans,
        BrokenSvid::NoUriSan,
        BrokenSvid::DnsOnlySan,
        BrokenSvid::CaLeaf,
        BrokenSvid::ServerAuthOnly,
        BrokenSvid::Expired,
        BrokenSvid::UntrustedCa,
        BrokenSvid::ForeignTrustDomain,
    ];
}

impl Leaf {
    /// Writes `<name>.pem` and `<name>_key.pem` into `dir`; returns both paths.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{name}.pem"));
        let key = dir.join(format!("{name}_key.pem"));
        std::fs::write(&cert, &self.cert_pem).expect("write certificate");
        std::fs::write(&key, &self.key_pem).expect("write key");
        (cert, key)
    }

    /// The private key (PKCS#8 DER).
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }

    /// RFC 8705 `x5t#S256`: base64url (no padding) of the certificate's SHA-256.
    pub fn x5t_s256(&self) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, &self.der);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
    }
}

/// Replaces `path` the way spire-agent and tbot do: write a sibling, then rename.
pub fn replace_file(path: &Path, contents: &str) {
    let staging = path.with_extension("staging");
    std::fs::write(&staging, contents).expect("write staging file");
    std::fs::rename(&staging, path).expect("rename over");
}

/// Several CA certificates in one PEM file (a multi-root trust bundle).
pub fn bundle(cas: &[&Ca]) -> String {
    cas.iter().map(|ca| ca.pem()).collect()
}

/// A CA, a server certificate for wisp, and a temp dir holding them as files.
pub struct Pki {
    pub ca: Ca,
    pub server: Leaf,
    pub dir: tempfile::TempDir,
    pub ca_path: PathBuf,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

impl Pki {
    /// Generates the CA and server certificate and writes them out.
    pub fn new() -> Pki {
        let ca = Ca::new("example.org test CA");
        let server = ca.server_cert();
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_path = dir.path().join("bundle.pem");
        std::fs::write(&ca_path, ca.pem()).expect("write bundle");
        let (cert_path, key_path) = server.write(dir.path(), "server");
        Pki {
            ca,
            server,
            dir,
            ca_path,
            cert_path,
            key_path,
        }
    }

    /// Top-level YAML for a TLS listener with this `client_auth`
    /// (`required` | `optional` | `none`), trusting [`TRUST_DOMAIN`]. With
    /// `none` the bundle is left out (wisp rejects an unused `client_ca`).
    pub fn listener_yaml(&self, client_auth: &str) -> String {
        let client_ca = if client_auth == "none" {
            String::new()
        } else {
            format!("client_ca: {}, ", self.ca_path.display())
        };
        format!(
            "tls: {{ cert: {}, key: {}, {client_ca}client_auth: {client_auth} }}\ntrust_domains: [{TRUST_DOMAIN}]",
            self.cert_path.display(),
            self.key_path.display(),
        )
    }

    /// A client that trusts this CA and presents no certificate.
    pub fn client(&self) -> TlsClient {
        TlsClient::new(&self.ca)
    }
}

impl Default for Pki {
    fn default() -> Self {
        Pki::new()
    }
}

/// Why a TLS exchange produced no HTTP response.
#[derive(Debug)]
pub enum TlsError {
    /// The TLS layer refused: a handshake error or alert (with TLS 1.3 a
    /// refused client certificate surfaces on the first read), or the server
    /// closed the connection before sending any response byte.
    Rejected(String),
    /// Anything else (connect failure, timeout, HTTP-level breakage).
    Io(std::io::Error),
}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsError::Rejected(why) => write!(f, "TLS rejected: {why}"),
            TlsError::Io(e) => write!(f, "I/O: {e}"),
        }
    }
}

/// Whether `error` (or anything in its source chain) is a rustls error or a
/// connection cut that only a refusing TLS peer would cause.
fn is_tls_refusal(error: &(dyn StdError + 'static)) -> bool {
    let mut current = Some(error);
    // Bounded: source chains are short; 16 is far beyond any real one.
    for _ in 0..16 {
        let Some(e) = current else { return false };
        if e.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
            ) {
                return true;
            }
            if let Some(inner) = io.get_ref() {
                current = Some(inner);
                continue;
            }
        }
        current = e.source();
    }
    false
}

fn classify(error: std::io::Error) -> TlsError {
    if is_tls_refusal(&error) {
        TlsError::Rejected(error.to_string())
    } else {
        TlsError::Io(error)
    }
}

/// A TLS client trusting one CA, with an optional client certificate.
#[derive(Clone)]
pub struct TlsClient {
    roots: Vec<CertificateDer<'static>>,
    identity: Option<Leaf>,
    server_name: String,
    /// Shared TLS session store: connections of this client (and its clones)
    /// resume earlier sessions.
    sessions: Option<Arc<dyn rustls::client::ClientSessionStore>>,
}

impl TlsClient {
    /// Trusts `ca`; presents no certificate; SNI `localhost`.
    pub fn new(ca: &Ca) -> TlsClient {
        TlsClient {
            roots: vec![ca.der()],
            identity: None,
            server_name: "localhost".to_string(),
            sessions: None,
        }
    }

    /// Presents `leaf` as the client certificate.
    pub fn with_cert(mut self, leaf: &Leaf) -> TlsClient {
        self.identity = Some(leaf.clone());
        self
    }

    /// Resumes TLS sessions across this client's connections (rustls'
    /// in-memory session store, shared).
    pub fn resuming_sessions(mut self) -> TlsClient {
        self.sessions = Some(Arc::new(rustls::client::ClientSessionMemoryCache::new(32)));
        self
    }

    /// Also trusts `ca` for the server certificate.
    pub fn with_root(mut self, ca: &Ca) -> TlsClient {
        self.roots.push(ca.der());
        self
    }

    /// Uses `name` for SNI and server certificate verification.
    pub fn with_server_name(mut self, name: &str) -> TlsClient {
        self.server_name = name.to_string();
        self
    }

    fn config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for root in &self.roots {
            roots.add(root.clone()).expect("test root");
        }
        let provider = Arc::new(wisp::tls::ring_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots);
        let mut config = match &self.identity {
            Some(leaf) => builder
                .with_client_auth_cert(vec![leaf.der.clone()], leaf.key())
                .expect("client certificate"),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        if let Some(sessions) = &self.sessions {
            config.resumption = rustls::client::Resumption::store(sessions.clone());
        }
        Arc::new(config)
    }

    /// Connects and completes the client side of the handshake, offering `alpn`.
    ///
    /// # Errors
    /// [`TlsError::Io`] when TCP connect fails; [`TlsError::Rejected`] when the handshake does.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        alpn: &[&[u8]],
    ) -> Result<TlsStream<TcpStream>, TlsError> {
        let tcp = tokio::time::timeout(EXCHANGE_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| TlsError::Io(std::io::Error::other("connect timeout")))?
            .map_err(TlsError::Io)?;
        let name = ServerName::try_from(self.server_name.clone()).expect("server name");
        let handshake = TlsConnector::from(self.config(alpn)).connect(name, tcp);
        tokio::time::timeout(EXCHANGE_TIMEOUT, handshake)
            .await
            .map_err(|_| TlsError::Io(std::io::Error::other("handshake timeout")))?
            .map_err(|e| TlsError::Rejected(e.to_string()))
    }

    /// One HTTP/1.1 request (`Connection: close`, ALPN `http/1.1`).
    ///
    /// # Errors
    /// See [`TlsError`].
    pub async fn request(
        &self,
        addr: SocketAddr,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
    ) -> Result<Response, TlsError> {
        let mut stream = self.connect(addr, &[b"http/1.1"]).await?;
        let mut head = format!("{method} {target} HTTP/1.1\r\n");
        if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
            head.push_str(&format!("Host: {}:{}\r\n", self.server_name, addr.port()));
        }
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("Connection: close\r\n\r\n");
        stream.write_all(head.as_bytes()).await.map_err(classify)?;
        let mut raw = Vec::new();
        let read = tokio::time::timeout(EXCHANGE_TIMEOUT, stream.read_to_end(&mut raw)).await;
        match read {
            Err(_) => return Err(TlsError::Io(std::io::Error::other("read timeout"))),
            // A peer that closes without close_notify after a full response is fine.
            Ok(Err(e)) if !raw.is_empty() && e.kind() == std::io::ErrorKind::UnexpectedEof => {}
            Ok(Err(e)) => return Err(classify(e)),
            Ok(Ok(_)) => {}
        }
        if raw.is_empty() {
            return Err(TlsError::Rejected(
                "closed before any response byte".to_string(),
            ));
        }
        parse_response(&raw).map_err(TlsError::Io)
    }

    /// `GET` with a bearer token over HTTP/1.1.
    ///
    /// # Errors
    /// See [`TlsError`].
    pub async fn get_with_token(
        &self,
        addr: SocketAddr,
        target: &str,
        token: &str,
    ) -> Result<Response, TlsError> {
        let auth = format!("Bearer {token}");
        self.request(addr, "GET", target, &[("authorization", &auth)])
            .await
    }

    /// One HTTP/2 request, offering only ALPN `h2`.
    ///
    /// # Errors
    /// See [`TlsError`]; [`TlsError::Io`] when the server did not select `h2`.
    pub async fn h2_request(
        &self,
        addr: SocketAddr,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<H2Response, TlsError> {
        let stream = self.connect(addr, &[b"h2"]).await?;
        let alpn = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        if alpn.as_deref() != Some(b"h2") {
            return Err(TlsError::Io(std::io::Error::other(format!(
                "server did not select ALPN h2 (got {:?})",
                alpn.map(|p| String::from_utf8_lossy(&p).into_owned())
            ))));
        }
        let authority = format!("{}:{}", self.server_name, addr.port());
        let request = build_request(&authority, method, target, headers, body);
        request_over(stream, request).await.map_err(classify)
    }

    /// Whether the TLS layer refuses this client (no HTTP answer at all).
    /// Sends `GET /` so that a TLS 1.3 post-handshake refusal is observed.
    pub async fn handshake_rejected(&self, addr: SocketAddr) -> bool {
        matches!(
            self.request(addr, "GET", "/", &[]).await,
            Err(TlsError::Rejected(_))
        )
    }
}

/// A TLS upstream answering every request (HTTP/1.1 or HTTP/2 by ALPN) with
/// JSON `{"alpn", "method", "path", "headers": [[n, v], …], "client_cert_sha256"}`.
/// Useful for checking the TLS clients here and for upstream-TLS tests.
pub struct TlsUpstream {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl TlsUpstream {
    /// Serves `server` on 127.0.0.1:0; with `client_ca`, requires a client
    /// certificate chaining to it (rustls' WebPKI verifier).
    pub async fn start(server: &Leaf, client_ca: Option<&Ca>) -> TlsUpstream {
        let provider = Arc::new(wisp::tls::ring_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("protocol versions");
        let builder = match client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                roots.add(ca.der()).expect("client CA");
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .expect("client verifier");
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(vec![server.der.clone()], server.key())
            .expect("server certificate");
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind TLS upstream");
        let addr = listener.local_addr().expect("TLS upstream addr");
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(stream) = acceptor.accept(tcp).await {
                        serve_tls_connection(stream).await;
                    }
                });
            }
        });
        TlsUpstream { addr, task }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for TlsUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_tls_connection(stream: tokio_rustls::server::TlsStream<TcpStream>) {
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let session = &stream.get_ref().1;
    let alpn = session
        .alpn_protocol()
        .map(|p| String::from_utf8_lossy(p).into_owned());
    let client_cert = session
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|leaf| {
            let digest = ring::digest::digest(&ring::digest::SHA256, leaf);
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
        });
    let h2 = alpn.as_deref() == Some("h2");
    let service =
        hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
            let headers: Vec<serde_json::Value> = request
                .headers()
                .iter()
                .map(|(n, v)| {
                    serde_json::json!([n.as_str(), String::from_utf8_lossy(v.as_bytes())])
                })
                .collect();
            let body = serde_json::json!({
                "alpn": alpn,
                "method": request.method().as_str(),
                "path": request.uri().path(),
                "headers": headers,
                "client_cert_sha256": client_cert,
            });
            std::future::ready(Ok::<_, std::convert::Infallible>(
                http::Response::builder()
                    .header("content-type", "application/json")
                    .body(http_body_util::Full::new(Bytes::from(body.to_string())))
                    .expect("response"),
            ))
        });
    let io = TokioIo::new(stream);
    let _ = if h2 {
        hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(io, service)
            .await
    } else {
        hyper::server::conn::http1::Builder::new()
            .serve_connection(io, service)
            .await
    };
}
