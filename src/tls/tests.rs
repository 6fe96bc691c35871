//! Real TLS handshakes in memory (`tokio::io::duplex`) against certificates
//! generated at test time.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, CertifiedIssuer, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

// ---------------------------------------------------------------- fixtures

type Ymd = (i32, u8, u8);

/// A test certificate authority.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    not_after: Ymd,
}

/// A leaf certificate with its key.
struct Leaf {
    pem: String,
    der: CertificateDer<'static>,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str, not_after: Ymd) -> Ca {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = date_time_ymd(2020, 1, 1);
        params.not_after = date_time_ymd(not_after.0, not_after.1, not_after.2);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca { issuer, not_after }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    fn server(&self, not_after: Ymd) -> Leaf {
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.not_before = date_time_ymd(2020, 1, 1);
        params.not_after = date_time_ymd(not_after.0, not_after.1, not_after.2);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params)
    }

    fn svid(&self, spiffe_id: &str) -> Leaf {
        self.svid_valid_until(spiffe_id, (2035, 1, 1))
    }

    fn svid_valid_until(&self, spiffe_id: &str, not_after: Ymd) -> Leaf {
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![SanType::URI(spiffe_id.try_into().unwrap())];
        params.not_before = date_time_ymd(2019, 1, 1);
        params.not_after = date_time_ymd(not_after.0, not_after.1, not_after.2);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }

    fn sign(&self, params: CertificateParams) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let certificate = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            pem: certificate.pem(),
            der: certificate.der().clone(),
            key,
        }
    }
}

impl Leaf {
    fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivatePkcs8KeyDer::from(self.key.serialize_der()).into()
    }
}

fn unix(ymd: Ymd) -> i64 {
    date_time_ymd(ymd.0, ymd.1, ymd.2).unix_timestamp()
}

/// Writes `contents` to `path` the way tbot and spire-agent do: a temporary
/// file in the same directory, then an atomic rename over the old one.
fn replace(path: &Path, contents: &str) {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, contents).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

/// A directory holding `svid.pem`, `svid_key.pem` and `bundle.pem`.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new(server: &Leaf, bundle: &str) -> Files {
        let files = Files {
            dir: tempfile::tempdir().unwrap(),
        };
        replace(&files.cert(), &server.pem);
        replace(&files.key(), &server.key.serialize_pem());
        replace(&files.bundle(), bundle);
        files
    }

    fn cert(&self) -> PathBuf {
        self.dir.path().join("svid.pem")
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("svid_key.pem")
    }

    fn bundle(&self) -> PathBuf {
        self.dir.path().join("bundle.pem")
    }

    fn config(&self, client_auth: ClientAuth) -> TlsConfig {
        TlsConfig {
            cert: self.cert(),
            key: self.key(),
            trust_bundles: vec![TrustBundleFile {
                trust_domain: "example.org".to_owned(),
                path: self.bundle(),
            }],
            client_auth,
            reload_interval: Duration::from_millis(20),
        }
    }
}

fn trust_domains() -> Vec<String> {
    vec!["example.org".to_owned()]
}

fn load(files: &Files, client_auth: ClientAuth) -> (Arc<TlsMaterial>, Metrics) {
    let metrics = Metrics::new().unwrap();
    let material = TlsMaterial::load(
        &files.config(client_auth),
        &trust_domains(),
        metrics.clone(),
    )
    .unwrap();
    (material, metrics)
}

// --------------------------------------------------------------- handshakes

/// The same resolver and verifier `settings()` hands pingora, in a plain
/// rustls server (no SVID callback).
fn server_config(material: &TlsMaterial) -> Arc<ServerConfig> {
    let builder = ServerConfig::builder_with_provider(material.provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
        .unwrap();
    let builder = match &material.client {
        Some(verifier) => builder.with_client_cert_verifier(verifier.clone()),
        None => builder.with_no_client_auth(),
    };
    Arc::new(builder.with_cert_resolver(material.server.clone()))
}

/// A client trusting `server_cas`, presenting `client` if given.
fn client_config(server_cas: &[&Ca], client: Option<&Leaf>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for ca in server_cas {
        roots.add(ca.der()).unwrap();
    }
    let builder = ClientConfig::builder_with_provider(Arc::new(super::ring_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match client {
        Some(leaf) => builder
            .with_client_auth_cert(vec![leaf.der.clone()], leaf.key_der())
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

/// What a successful handshake looked like.
#[derive(Debug)]
struct Handshake {
    /// The server leaf the client received.
    server_leaf: CertificateDer<'static>,
}

/// Connects a client to `server`; both sides must succeed (in TLS 1.3 a
/// rejected client certificate is seen first by the server).
async fn handshake(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
) -> Result<Handshake, String> {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let acceptor = tokio_rustls::TlsAcceptor::from(server);
    let connector = tokio_rustls::TlsConnector::from(client);
    let name = ServerName::try_from("localhost").unwrap();
    let server_side = async {
        let mut stream = acceptor.accept(server_io).await?;
        stream.write_all(b"ok").await?;
        stream.flush().await?;
        Ok::<_, std::io::Error>(stream)
    };
    let client_side = async {
        let mut stream = connector.connect(name, client_io).await?;
        let mut reply = [0u8; 2];
        stream.read_exact(&mut reply).await?;
        Ok::<_, std::io::Error>(stream)
    };
    let (server_result, client_result) = tokio::join!(server_side, client_side);
    server_result.map_err(|error| format!("server: {error}"))?;
    let stream = client_result.map_err(|error| format!("client: {error}"))?;
    let connection = stream.get_ref().1;
    Ok(Handshake {
        server_leaf: connection.peer_certificates().unwrap()[0].clone(),
    })
}

// -------------------------------------------------------------- client_auth

#[tokio::test]
async fn required_client_auth_refuses_a_client_without_certificate() {
    let ca = Ca::new("ca", (2040, 1, 1));
    let files = Files::new(&ca.server((2035, 1, 1)), &ca.pem());
    let (material, _) = load(&files, ClientAuth::Required);

    let result = handshake(server_config(&material), client_config(&[&ca], None)).await;

    assert!(result.is_err(), "{result:?}");
}

#[tokio::test]
async fn required_client_auth_accepts_a_client_certificate_from_the_bundle() {
    let ca = Ca::new("ca", (2040, 1, 1));
    let server = ca.server((2035, 1, 1));
    let files = Files::new(&server, &ca.pem());
    let (material, _) = load(&files, ClientAuth::Required);
    let client = ca.svid("spiffe://example.org/client");

    let handshake = handshake(
        server_config(&material),
        client_config(&[&ca], Some(&client)),
    )
    .await
    .unwrap();

    assert_eq!(handshake.server_leaf, server.der);
}

#[tokio::test]
async fn required_client_auth_refuses_a_client_certificate_from_an_untrusted_ca() {
    let ca = Ca::new("ca", (2040, 1, 1));
    let stranger = Ca::new("stranger", (2040, 1, 1));
    let files = Files::new(&ca.server((2035, 1, 1)), &ca.pem());
    let (material, _) = load(&files, ClientAuth::Required);
    let client = stranger.svid("spiffe://example.org/client");

    let result = handshake(
        server_config(&material),
        client_config(&[&ca], Some(&client)),
    )
    .await;

    assert!(result.is_err(), "{result:?}");
}

#[tokio::test]
async fn required_client_auth_refuses_an_expired_client_certificate() {
    let ca = Ca::new("ca", (2040, 1, 1));
    let files = Files::new(&ca.server((2035, 1, 1)), &ca.pem());
    let (material, _) = load(&files, ClientAuth::Required);
    let client = ca.svid_valid_until("spiffe://example.org/client", (2020, 1, 1));

    let result = handshake(
        server_config(&material),
        client_config(&[&ca], Some(&client)),
    )
    .await;

    assert!(result.unwrap_err().contains("server"));
}

#[tokio::test]
async fn optional_client_auth_accepts_a_client_without_certificate() {
    let ca = Ca::new("ca", (2040, 1, 1));
    let files = Files::new(&ca.server((2035, 1, 1)), &ca.pem());
    let (material, _) = load(&files, ClientAuth::Optional);

    let result = handshake(server_config(&material), client_config(&[&ca], None)).await;

    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn optional_client_auth_still_refuses_a_client_certificate_from_an_untrusted_ca() {
    let ca = Ca::new("ca", (2040, 1, 1));
    let stranger = Ca::new("stranger", (2040, 1, 1));
    let files = Files::new(&ca.server((2035, 1, 1)), &ca.pem());
    let (material, _) = load(&files, ClientAuth::Optional);
    let client = stranger.svid("spiffe://example.org/client");

    let result = handshake(
        server_config(&material),
        client_config(&[&ca], Some(&client)),
    )
    .await;

    assert!(result.is_err(), "{result:?}");
}

#[tokio::test]
async fn a_bundle_with_several_cas_trusts_each_and_reports_the_earliest_expiry() {
    let first = Ca::new("first", (2040, 1, 1));
    let second = Ca::new("second", (2038, 6, 1));
    let bundle = format!(
        "{}\n# comment between sections\n{}",
        first.pem(),
        second.pem()
    );
    let files = Files::new(&first.server((2035, 1, 1)), &bundle);
    let (material, metrics) = load(&files, ClientAuth::Required);

    for ca in [&first, &second] {
        let client = ca.svid("spiffe://example.org/client");
        let result = handshake(
            server_config(&material),
            client_config(&[&first], Some(&client)),
        )
        .await;
        assert!(result.is_ok(), "{result:?}");
    }
    let gauge = metrics.tls_cert_expiry.with_label_values(&["client_ca"]);
    assert_eq!(gauge.get(), unix(second.not_after));
    let domain = metrics
        .tls_cert_expiry
        .with_label_values(&["client_ca:example.org"]);
    assert_eq!(domain.get(), unix(second.not_after));
}

#[tokio::test]
async fn client_auth_none_asks_for_no_certificate_and_reads_no_bundle() {
    let ca = Ca::new("ca", (2040, 1, 1));
    let files = Files::new(&ca.server((2035, 1, 1)), &ca.pem());
    std::fs::remove_file(files.bundle()).unwrap();
    let mut config = files.config(ClientAuth::None);
    config.trust_bundles.clear();
    let metrics = Metrics::new().unwrap();
    let material = TlsMaterial::load(&config, &trust_domains(), metrics.clone()).unwrap();

    let result = handshake(server_config(&material), client_config(&[&ca], None)).await;

    assert!(result.is_ok(), "{result:?}");
    assert!(material.client.is_none());
    let text = String::from_utf8(metrics.render()).unwrap();
    assert!(!text.contains("client_ca"), "{text}");
}

// ---------------------------------------------------------------- rotation

#[tokio::test]
async fn rotation_serves_the_new_certificate_and_trusts_only_the_new_bundle() {
    let ca_a = Ca::new("ca-a", (2040, 1, 1));
    let ca_b = Ca::new("ca-b", (2041, 1, 1));
    let server_a = ca_a.server((2035, 1, 1));
    let server_b = ca_b.server((2036, 2, 2));
    let client_a = ca_a.svid("spiffe://example.org/client");
    let client_b = ca_b.svid("spiffe://example.org/client");
    let files = Files::new(&server_a, &ca_a.pem());
    let (material, metrics) = load(&files, ClientAuth::Required);
    let config = server_config(&material);
    let server_gauge = metrics.tls_cert_expiry.with_label_values(&["server"]);
    let ca_gauge = metrics.tls_cert_expiry.with_label_values(&["client_ca"]);

    let before = handshake(
        config.clone(),
        client_config(&[&ca_a, &ca_b], Some(&client_a)),
    )
    .await
    .unwrap();
    assert_eq!(before.server_leaf, server_a.der);
    assert_eq!(server_gauge.get(), unix((2035, 1, 1)));
    assert!(!material.reload().unwrap(), "nothing changed yet");

    replace(&files.key(), &server_b.key.serialize_pem());
    replace(&files.cert(), &server_b.pem);
    replace(&files.bundle(), &ca_b.pem());
    assert!(material.reload().unwrap());

    let after = handshake(
        config.clone(),
        client_config(&[&ca_a, &ca_b], Some(&client_b)),
    )
    .await
    .unwrap();
    assert_eq!(after.server_leaf, server_b.der);
    let old_client = handshake(config, client_config(&[&ca_a, &ca_b], Some(&client_a))).await;
    assert!(old_client.is_err(), "{old_client:?}");
    assert_eq!(server_gauge.get(), unix((2036, 2, 2)));
    assert_eq!(ca_gauge.get(), unix(ca_b.not_after));
    assert!(!material.reload().unwrap());
}

#[tokio::test]
async fn a_broken_certificate_file_is_refused_and_the_old_material_keeps_serving() {
    let ca = Ca::new("ca", (2040, 1, 1));
    let server = ca.server((2035, 1, 1));
    let files = Files::new(&server, &ca.pem());
    let (material, metrics) = load(&files, ClientAuth::Optional);

    let truncated = &server.pem[..server.pem.len() / 2];
    replace(&files.cert(), truncated);
    let error = material.reload().unwrap_err();

    assert!(error.to_string().contains("svid.pem"), "{error}");
    let handshake = handshake(server_config(&material), client_config(&[&ca], None))
        .await
        .unwrap();
    assert_eq!(handshake.server_leaf, server.der);
    let gauge = metrics.tls_cert_expiry.with_label_values(&["server"]);
    assert_eq!(gauge.get(), unix((2035, 1, 1)));
}

#[tokio::test]
async fn a_half_rotated_key_pair_keeps_the_old_pair_until_the_key_arrives() {
    let ca = Ca::new("ca", (2040, 1, 1));
    let old = ca.server((2035, 1, 1));
    let new = ca.server((2036, 1, 1));
    let files = Files::new(&old, &ca.pem());
    let (material, _) = load(&files, ClientAuth::Optional);

    replace(&files.cert(), &new.pem);
    assert!(matches!(
        material.reload(),
        Err(TlsError::KeyMismatch { .. })
    ));
    assert_eq!(material.server.current().cert[0], old.der);

    replace(&files.key(), &new.key.serialize_pem());
    assert!(material.reload().unwrap());
    assert_eq!(material.server.current().cert[0], new.der);
}

#[tokio::test]
async fn an_empty_new_bundle_is_refused_and_the_old_bundle_kept() {
    let ca = Ca::new("ca", (2040, 1, 1));
    let files = Files::new(&ca.server((2035, 1, 1)), &ca.pem());
    let (material, _) = load(&files, ClientAuth::Required);

    replace(&files.bundle(), "");
    assert!(matches!(
        material.reload(),
        Err(TlsError::NoCertificate { path }) if path == files.bundle()
    ));

    let client = ca.svid("spiffe://example.org/client");
    let result = handshake(
        server_config(&material),
        client_config(&[&ca], Some(&client)),
    )
    .await;
    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn watch_picks_up_a_rotation_and_stops_on_shutdown() {
    let ca = Ca::new("ca", (2040, 1, 1));
    let old = ca.server((2035, 1, 1));
    let new = ca.server((2036, 1, 1));
    let files = Files::new(&old, &ca.pem());
    let (material, _) = load(&files, ClientAuth::Optional);
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let watcher = tokio::spawn({
        let material = material.clone();
        async move { material.watch(shutdown).await }
    });

    replace(&files.key(), &new.key.serialize_pem());
    replace(&files.cert(), &new.pem);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while material.server.current().cert[0] != new.der {
        assert!(tokio::time::Instant::now() < deadline, "rotation not seen");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), watcher)
        .await
        .unwrap()
        .unwrap();
}

// ----------------------------------------------------------- loading errors

#[test]
fn loading_a_missing_certificate_file_names_the_file() {
    let ca = Ca::new("ca", (2040, 1, 1));
    let files = Files::new(&ca.server((2035, 1, 1)), &ca.pem());
    std::fs::remove_file(files.cert()).unwrap();

    let error = TlsMaterial::load(
        &files.config(ClientAuth::Required),
        &trust_domains(),
        Metrics::new().unwrap(),
    )
    .unwrap_err();

    assert!(matches!(&error, TlsError::Read { path, .. } if *path == files.cert()));
    assert!(error.to_string().contains("svid.pem"), "{error}");
}

#[test]
fn loading_a_bundle_without_certificates_names_the_bundle() {
    let ca = Ca::new("ca", (2040, 1, 1));
    let files = Files::new(&ca.server((2035, 1, 1)), "# no CAs here\n");

    let error = TlsMaterial::load(
        &files.config(ClientAuth::Optional),
        &trust_domains(),
        Metrics::new().unwrap(),
    )
    .unwrap_err();

    assert!(matches!(&error, TlsError::NoCertificate { path } if *path == files.bundle()));
    assert!(error.to_string().contains("bundle.pem"), "{error}");
}

#[test]
fn loading_a_key_that_does_not_match_the_certificate_names_both_files() {
    let ca = Ca::new("ca", (2040, 1, 1));
    let files = Files::new(&ca.server((2035, 1, 1)), &ca.pem());
    replace(&files.key(), &KeyPair::generate().unwrap().serialize_pem());

    let error = TlsMaterial::load(
        &files.config(ClientAuth::Required),
        &trust_domains(),
        Metrics::new().unwrap(),
    )
    .unwrap_err();

    assert!(matches!(error, TlsError::KeyMismatch { .. }), "{error}");
    let message = error.to_string();
    assert!(
        message.contains("svid_key.pem") && message.contains("svid.pem"),
        "{message}"
    );
}

#[test]
fn loading_a_key_file_without_a_key_is_an_error() {
    let ca = Ca::new("ca", (2040, 1, 1));
    let server = ca.server((2035, 1, 1));
    let files = Files::new(&server, &ca.pem());
    replace(&files.key(), &server.pem);

    let error = TlsMaterial::load(
        &files.config(ClientAuth::Required),
        &trust_domains(),
        Metrics::new().unwrap(),
    )
    .unwrap_err();

    assert!(matches!(&error, TlsError::NoPrivateKey { path } if *path == files.key()));
}

#[test]
fn loading_a_certificate_section_with_garbage_inside_is_an_error() {
    let ca = Ca::new("ca", (2040, 1, 1));
    let files = Files::new(&ca.server((2035, 1, 1)), &ca.pem());
    replace(
        &files.cert(),
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    );

    let error = TlsMaterial::load(
        &files.config(ClientAuth::Required),
        &trust_domains(),
        Metrics::new().unwrap(),
    )
    .unwrap_err();

    assert!(
        matches!(&error, TlsError::InvalidCertificate { path, index: 0, .. } if *path == files.cert()),
        "{error}"
    );
}

#[test]
fn asking_for_client_certificates_without_a_bundle_is_an_error() {
    let ca = Ca::new("ca", (2040, 1, 1));
    let files = Files::new(&ca.server((2035, 1, 1)), &ca.pem());
    let mut config = files.config(ClientAuth::Required);
    config.trust_bundles.clear();

    let error = TlsMaterial::load(&config, &trust_domains(), Metrics::new().unwrap()).unwrap_err();

    assert!(matches!(error, TlsError::MissingClientCa));
}

#[test]
fn loading_sets_the_server_expiry_gauge() {
    let ca = Ca::new("ca", (2040, 1, 1));
    let files = Files::new(&ca.server((2035, 3, 4)), &ca.pem());
    let (_, metrics) = load(&files, ClientAuth::Required);

    let text = String::from_utf8(metrics.render()).unwrap();

    let expected = format!(
        "wisp_tls_cert_expiry_timestamp_seconds{{cert=\"server\"}} {}",
        unix((2035, 3, 4))
    );
    assert!(text.contains(&expected), "{text}");
}

// ------------------------------------------- pingora listener and callback

/// Runs pingora's acceptor built from `settings()` against a client.
async fn pingora_handshake(
    material: &Arc<TlsMaterial>,
    client: Arc<ClientConfig>,
) -> (
    Option<Arc<pingora::protocols::tls::SslDigest>>,
    Option<Vec<u8>>,
) {
    let acceptor = material.settings().build();
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let connector = tokio_rustls::TlsConnector::from(client);
    let name = ServerName::try_from("localhost").unwrap();
    let (server, client) = tokio::join!(
        acceptor.tls_handshake(server_io),
        connector.connect(name, client_io)
    );
    let alpn = client
        .ok()
        .and_then(|stream| stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec));
    let digest = server.ok().and_then(|stream| stream.ssl_digest());
    (digest, alpn)
}

#[tokio::test]
async fn the_pingora_listener_negotiates_h2_and_records_no_peer_without_a_client_certificate() {
    let ca = Ca::new("ca", (2040, 1, 1));
    let files = Files::new(&ca.server((2035, 1, 1)), &ca.pem());
    let (material, _) = load(&files, ClientAuth::Optional);

    let (digest, alpn) = pingora_handshake(&material, client_config(&[&ca], None)).await;

    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    let digest = digest.expect("handshake succeeded");
    assert!(peer_certificate_in(&digest).is_none());
}

#[tokio::test]
async fn the_pingora_listener_records_the_spiffe_id_of_a_valid_client_svid() {
    let ca = Ca::new("ca", (2040, 1, 1));
    let files = Files::new(&ca.server((2035, 1, 1)), &ca.pem());
    let (material, _) = load(&files, ClientAuth::Required);
    let client = ca.svid("spiffe://example.org/ns/prod/sa/orders");

    let (digest, _) = pingora_handshake(&material, client_config(&[&ca], Some(&client))).await;

    let peer = peer_certificate_in(&digest.expect("handshake succeeded")).expect("a peer");
    let identity = peer.identity().expect("a valid SVID");
    assert_eq!(
        identity.spiffe_id.as_str(),
        "spiffe://example.org/ns/prod/sa/orders"
    );
}

#[tokio::test]
async fn the_pingora_listener_records_why_a_verified_certificate_is_not_an_svid() {
    let ca = Ca::new("ca", (2040, 1, 1));
    let files = Files::new(&ca.server((2035, 1, 1)), &ca.pem());
    let (material, _) = load(&files, ClientAuth::Required);
    // Chain-valid, but without the keyUsage an X.509-SVID must assert.
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![SanType::URI(
        "spiffe://example.org/client".try_into().unwrap(),
    )];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client = ca.sign(params);

    let (digest, _) = pingora_handshake(&material, client_config(&[&ca], Some(&client))).await;

    let peer = peer_certificate_in(&digest.expect("handshake succeeded")).expect("a peer");
    assert!(matches!(*peer, PeerCertificate::Invalid(_)), "{peer:?}");
}

// ------------------------------------------------ trust bundles per domain

/// Two trust domains, each with its own CA and bundle file.
struct Federation {
    ca_a: Ca,
    ca_b: Ca,
    files: Files,
    material: Arc<TlsMaterial>,
    metrics: Metrics,
}

impl Federation {
    /// `a.test` trusts `ca_a` (PEM bundle), `b.test` trusts `ca_b` (SPIFFE JSON).
    fn new() -> Federation {
        let ca_a = Ca::new("ca-a", (2040, 1, 1));
        let ca_b = Ca::new("ca-b", (2039, 1, 1));
        let files = Files::new(&ca_a.server((2035, 1, 1)), &ca_a.pem());
        std::fs::write(files.bundle_b(), spiffe_bundle(&[&ca_b])).unwrap();
        let mut config = files.config(ClientAuth::Required);
        config.trust_bundles = vec![
            TrustBundleFile {
                trust_domain: "a.test".to_owned(),
                path: files.bundle(),
            },
            TrustBundleFile {
                trust_domain: "b.test".to_owned(),
                path: files.bundle_b(),
            },
        ];
        let metrics = Metrics::new().unwrap();
        let domains = ["a.test".to_owned(), "b.test".to_owned()];
        let material = TlsMaterial::load(&config, &domains, metrics.clone()).unwrap();
        Federation {
            ca_a,
            ca_b,
            files,
            material,
            metrics,
        }
    }

    async fn accepts(&self, client: &Leaf) -> bool {
        let result = handshake(
            server_config(&self.material),
            client_config(&[&self.ca_a], Some(client)),
        )
        .await;
        result.is_ok()
    }

    fn rejections(&self, reason: &str) -> u64 {
        self.metrics
            .tls_client_cert_rejections
            .with_label_values(&[reason])
            .get()
    }
}

impl Files {
    fn bundle_b(&self) -> PathBuf {
        self.dir.path().join("bundle_b.json")
    }
}

/// A SPIFFE bundle (JSON) holding `cas` as `x509-svid` keys, plus a
/// `jwt-svid` key.
fn spiffe_bundle(cas: &[&Ca]) -> String {
    use base64::Engine;
    let keys: Vec<serde_json::Value> = cas
        .iter()
        .map(|ca| {
            serde_json::json!({
                "use": "x509-svid", "kty": "EC", "crv": "P-256",
                "x5c": [base64::engine::general_purpose::STANDARD.encode(ca.der())],
            })
        })
        .chain([serde_json::json!({"use": "jwt-svid", "kty": "EC", "kid": "jwt-1", "crv": "P-256", "x": "AA", "y": "AA"})])
        .collect();
    serde_json::json!({"spiffe_sequence": 1, "spiffe_refresh_hint": 300, "keys": keys}).to_string()
}

#[tokio::test]
async fn a_client_certificate_chains_only_to_the_roots_of_its_own_trust_domain() {
    let federation = Federation::new();
    let (ca_a, ca_b) = (&federation.ca_a, &federation.ca_b);

    assert!(federation.accepts(&ca_a.svid("spiffe://a.test/ns/x")).await);
    assert!(federation.accepts(&ca_b.svid("spiffe://b.test/ns/y")).await);
    // B's CA vouching for an A workload, and A's for a B workload: refused.
    assert!(!federation.accepts(&ca_b.svid("spiffe://a.test/ns/x")).await);
    assert!(!federation.accepts(&ca_a.svid("spiffe://b.test/ns/y")).await);
    assert_eq!(federation.rejections("untrusted_issuer"), 2);
}

#[tokio::test]
async fn a_leaf_without_a_spiffe_id_or_of_an_unknown_domain_is_refused_before_its_chain() {
    let federation = Federation::new();
    let ca_a = &federation.ca_a;
    let mut dns_only = CertificateParams::new(vec!["a.test".to_owned()]).unwrap();
    dns_only.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    dns_only.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];

    assert!(!federation.accepts(&ca_a.sign(dns_only)).await);
    assert!(!federation.accepts(&ca_a.svid("spiffe://c.test/ns/x")).await);
    assert_eq!(federation.rejections("svid_no_uri_san"), 1);
    assert_eq!(federation.rejections("svid_untrusted_domain"), 1);
}

#[tokio::test]
async fn each_trust_domain_reports_its_own_bundle_expiry() {
    let federation = Federation::new();
    let gauge = |label: &str| {
        federation
            .metrics
            .tls_cert_expiry
            .with_label_values(&[label])
            .get()
    };
    assert_eq!(gauge("client_ca:a.test"), unix((2040, 1, 1)));
    assert_eq!(gauge("client_ca:b.test"), unix((2039, 1, 1)));
    assert_eq!(gauge("client_ca"), unix((2039, 1, 1)));
}

#[tokio::test]
async fn rotating_one_domains_bundle_keeps_the_other_domain_working() {
    let federation = Federation::new();
    let ca_b2 = Ca::new("ca-b2", (2041, 1, 1));
    let a_client = federation.ca_a.svid("spiffe://a.test/ns/x");
    let old_b_client = federation.ca_b.svid("spiffe://b.test/ns/y");
    let new_b_client = ca_b2.svid("spiffe://b.test/ns/y");

    replace(&federation.files.bundle_b(), &ca_b2.pem());
    assert!(federation.material.reload().unwrap());
    assert!(federation.accepts(&new_b_client).await);
    assert!(!federation.accepts(&old_b_client).await);
    assert!(federation.accepts(&a_client).await, "domain A untouched");

    // A broken update of B's bundle keeps B's current roots, and A's.
    replace(&federation.files.bundle_b(), "{ not json");
    assert!(matches!(
        federation.material.reload(),
        Err(TlsError::InvalidBundle { .. })
    ));
    assert!(federation.accepts(&new_b_client).await);
    assert!(federation.accepts(&a_client).await);
    let gauge = federation
        .metrics
        .tls_cert_expiry
        .with_label_values(&["client_ca:b.test"]);
    assert_eq!(gauge.get(), unix((2041, 1, 1)));
}
