//! The mTLS listener and SPIFFE identities end to end: X.509-SVID client
//! certificates (allow/deny by SPIFFE ID, `client_auth` modes, every broken
//! certificate kind), JWT-SVIDs, RFC 8705 certificate-bound tokens,
//! certificate rotation without restart, and upstream TLS.
//! Certificates are generated at test time (rcgen).

mod common;

use common::tls::{BrokenSvid, Pki, TlsClient, TlsError, TlsUpstream};
use common::*;
use serde_json::json;

const PROD_WORKLOADS: &str = r#"
@id("prod-workloads")
permit (principal, action, resource)
when {
  principal.authn == "mtls" &&
  principal has spiffe_id && principal.spiffe_id like "spiffe://example.org/ns/prod/*" &&
  principal has trust_domain && principal.trust_domain == "example.org"
};
"#;

const ANYONE_AUTHENTICATED: &str = r#"
@id("anyone-authenticated")
permit (principal, action, resource);
"#;

async fn mtls_deployment(client_auth: &str, policy: &str) -> (Pki, DevIssuer, EchoServer, Wisp) {
    let pki = Pki::new();
    let (issuer, echo, wisp) = deploy(
        "",
        &[("mtls.cedar", policy)],
        &pki.listener_yaml(client_auth),
    )
    .await;
    (pki, issuer, echo, wisp)
}

#[tokio::test(flavor = "multi_thread")]
async fn mtls_allows_and_denies_by_spiffe_id_prefix() {
    let (pki, _issuer, echo, wisp) = mtls_deployment("required", PROD_WORKLOADS).await;
    let prod = pki.ca.svid("spiffe://example.org/ns/prod/sa/orders");
    let staging = pki.ca.svid("spiffe://example.org/ns/staging/sa/orders");

    let allowed = pki
        .client()
        .with_cert(&prod)
        .request(
            wisp.listen,
            "GET",
            "/api/orders",
            &[("x-wisp-spiffe-id", "spiffe://example.org/ns/prod/sa/forged")],
        )
        .await
        .unwrap_or_else(|e| panic!("mTLS request: {e}\n{}", wisp.log()));
    assert_eq!(allowed.status, 200, "{}", allowed.body);
    assert_eq!(
        allowed.upstream_header("x-wisp-spiffe-id"),
        ["spiffe://example.org/ns/prod/sa/orders"],
        "verified identity only; the client-sent copy is stripped"
    );
    assert_eq!(
        allowed.upstream_header("x-wisp-subject"),
        ["spiffe://example.org/ns/prod/sa/orders"]
    );

    let denied = pki
        .client()
        .with_cert(&staging)
        .request(wisp.listen, "GET", "/api/orders", &[])
        .await
        .expect("mTLS request");
    assert_eq!(denied.status, 403, "{}", denied.body);
    assert_eq!(echo.requests(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn client_auth_required_rejects_a_client_without_a_certificate_at_the_handshake() {
    let (pki, issuer, echo, wisp) = mtls_deployment("required", ANYONE_AUTHENTICATED).await;
    assert!(pki.client().handshake_rejected(wisp.listen).await);

    // A bearer token does not stand in for the certificate.
    let token = issuer.token(json!({"sub": "acme:frontend:web-1"}));
    let outcome = pki.client().get_with_token(wisp.listen, "/", &token).await;
    assert!(matches!(outcome, Err(TlsError::Rejected(_))), "{outcome:?}");
    assert_eq!(echo.requests(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn client_auth_optional_lets_a_bearer_only_client_through() {
    let (pki, issuer, echo, wisp) = mtls_deployment("optional", ANYONE_AUTHENTICATED).await;
    let client = pki.client();
    assert!(!client.handshake_rejected(wisp.listen).await);

    let token = issuer.token(json!({"sub": "acme:frontend:web-1"}));
    let allowed = client
        .get_with_token(wisp.listen, "/api/orders", &token)
        .await
        .unwrap_or_else(|e| panic!("TLS request: {e}\n{}", wisp.log()));
    assert_eq!(allowed.status, 200, "{}", allowed.body);
    assert_eq!(
        allowed.upstream_header("x-wisp-subject"),
        ["acme:frontend:web-1"]
    );
    assert!(allowed.upstream_header("x-wisp-spiffe-id").is_empty());

    let anonymous = client
        .request(wisp.listen, "GET", "/api/orders", &[])
        .await
        .expect("TLS request");
    assert_eq!(anonymous.status, 401);
    assert_eq!(echo.requests(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_broken_client_certificate_is_rejected() {
    let (pki, _issuer, echo, wisp) = mtls_deployment("required", ANYONE_AUTHENTICATED).await;
    let good = pki.ca.svid("spiffe://example.org/ns/prod/sa/orders");
    let control = pki
        .client()
        .with_cert(&good)
        .request(wisp.listen, "GET", "/", &[])
        .await
        .unwrap_or_else(|e| panic!("valid SVID: {e}\n{}", wisp.log()));
    assert_eq!(control.status, 200, "a valid SVID passes: {}", control.body);

    for kind in BrokenSvid::ALL {
        let client = pki.client().with_cert(&pki.ca.broken_svid(kind));
        match client.request(wisp.listen, "GET", "/", &[]).await {
            Err(TlsError::Rejected(_)) => {}
            Ok(response) => {
                // Chain-valid but not an acceptable X.509-SVID: a 401 naming the rule.
                assert_eq!(response.status, 401, "{kind:?}: {}", response.body);
                let reason = response.json()["reason"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                assert!(reason.starts_with("svid_"), "{kind:?}: reason {reason}");
                assert!(
                    !matches!(kind, BrokenSvid::UntrustedCa | BrokenSvid::Expired),
                    "{kind:?} must fail the handshake"
                );
            }
            Err(TlsError::Io(e)) => panic!("{kind:?}: {e}"),
        }
    }
    assert_eq!(
        echo.requests(),
        1,
        "only the valid SVID reached the upstream"
    );
    let metrics = wisp.metrics().await;
    let rejected = |reason: &str| {
        metric_value(
            &metrics,
            &format!(r#"wisp_tls_client_cert_rejections_total{{reason="{reason}"}}"#),
        )
    };
    assert!(rejected("untrusted_issuer") >= 1.0, "{metrics}");
    assert!(rejected("expired") >= 1.0, "{metrics}");
    assert!(rejected("svid_multiple_uri_sans") >= 1.0, "{metrics}");
    assert!(rejected("svid_untrusted_domain") >= 1.0, "{metrics}");
}

// ------------------------------------------------------- RFC 8705 binding ---

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_bound_token_is_accepted_only_with_its_certificate() {
    let (pki, issuer, echo, wisp) = mtls_deployment("optional", ANYONE_AUTHENTICATED).await;
    let bound_cert = pki.ca.svid("spiffe://example.org/ns/prod/sa/orders");
    let other_cert = pki.ca.svid("spiffe://example.org/ns/prod/sa/billing");
    let token = issuer.token(json!({
        "sub": "acme:orders:1",
        "cnf": {"x5t#S256": bound_cert.x5t_s256()}
    }));

    let with_its_cert = pki
        .client()
        .with_cert(&bound_cert)
        .get_with_token(wisp.listen, "/api/orders", &token)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", wisp.log()));
    assert_eq!(with_its_cert.status, 200, "{}", with_its_cert.body);
    assert_eq!(
        with_its_cert.upstream_header("x-wisp-subject"),
        ["acme:orders:1"]
    );
    assert_eq!(
        with_its_cert.upstream_header("x-wisp-spiffe-id"),
        ["spiffe://example.org/ns/prod/sa/orders"]
    );

    let with_another_cert = pki
        .client()
        .with_cert(&other_cert)
        .get_with_token(wisp.listen, "/api/orders", &token)
        .await
        .expect("response");
    assert_eq!(with_another_cert.status, 401, "{}", with_another_cert.body);
    assert_eq!(
        with_another_cert.json()["reason"],
        "token_certificate_mismatch"
    );

    let without_cert = pki
        .client()
        .get_with_token(wisp.listen, "/api/orders", &token)
        .await
        .expect("response");
    assert_eq!(without_cert.status, 401, "{}", without_cert.body);
    assert_eq!(without_cert.json()["reason"], "client_certificate_required");

    // An unbound token works with or without a certificate.
    let plain = issuer.token(json!({"sub": "acme:orders:2"}));
    let response = pki
        .client()
        .get_with_token(wisp.listen, "/", &plain)
        .await
        .expect("response");
    assert_eq!(response.status, 200);
    assert_eq!(echo.requests(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn token_and_certificate_together_make_a_jwt_plus_mtls_principal() {
    let policy = r#"@id("both") permit (principal, action, resource)
        when { principal.authn == "jwt+mtls" && principal has spiffe_id
               && principal.spiffe_id == "spiffe://example.org/ns/prod/sa/orders"
               && principal.sub == "acme:orders:1" };"#;
    let pki = Pki::new();
    let issuer = start_issuer().await;
    let echo = start_echo().await;
    let wisp = WispBuilder::new(echo.addr())
        .issuer(issuer_yaml("dev", &issuer, ""))
        .policy("both.cedar", policy)
        .extra(&pki.listener_yaml("optional"))
        .extra("authn: { require: both }")
        .start()
        .await;
    wisp.wait_ready().await;
    let cert = pki.ca.svid("spiffe://example.org/ns/prod/sa/orders");
    let token = issuer.token(json!({"sub": "acme:orders:1"}));
    let both = pki
        .client()
        .with_cert(&cert)
        .get_with_token(wisp.listen, "/", &token)
        .await
        .expect("response");
    assert_eq!(both.status, 200, "{}", both.body);

    let cert_only = pki
        .client()
        .with_cert(&cert)
        .request(wisp.listen, "GET", "/", &[])
        .await
        .expect("response");
    assert_eq!(cert_only.status, 401);
    assert_eq!(cert_only.json()["reason"], "missing_token");
    let token_only = pki
        .client()
        .get_with_token(wisp.listen, "/", &token)
        .await
        .expect("response");
    assert_eq!(token_only.status, 401);
    assert_eq!(token_only.json()["reason"], "client_certificate_required");
}

// ------------------------------------------------------------- JWT-SVIDs ---

#[tokio::test(flavor = "multi_thread")]
async fn jwt_svids_follow_the_jwt_svid_rules() {
    let issuer = start_issuer().await;
    let echo = start_echo().await;
    let svid_issuer = format!(
        "  - name: spire\n    issuer: {}\n    preset: spiffe-jwt\n    jwks: {{ discovery: true }}\n    audiences: [orders]\n    algorithms: [ES256]\n",
        issuer.issuer_url()
    );
    let policy = r#"@id("prod") permit (principal, action, resource)
        when { principal has spiffe_id && principal.spiffe_id like "spiffe://example.org/ns/prod/*"
               && principal has trust_domain && principal.trust_domain == "example.org" };"#;
    let wisp = WispBuilder::new(echo.addr())
        .issuer(svid_issuer)
        .policy("prod.cedar", policy)
        .extra("trust_domains: [example.org]")
        .start()
        .await;
    wisp.wait_ready().await;

    let prod = issuer.token(json!({"sub": "spiffe://example.org/ns/prod/sa/web"}));
    let response = wisp.get_with_token("/", &prod).await;
    assert_eq!(response.status, 200, "{}", response.body);
    let staging = issuer.token(json!({"sub": "spiffe://example.org/ns/staging/sa/web"}));
    assert_eq!(wisp.get_with_token("/", &staging).await.status, 403);

    let kid = issuer.kid();
    let ed_kid = issuer.add_ed25519_key().expect("ed25519 key");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let full = |sub: &str| json!({"sub": sub, "iss": issuer.issuer_url(), "aud": "orders", "exp": now + 300, "iat": now});
    let cases: Vec<(&str, String, &str)> = vec![
        ("sub not a SPIFFE ID", issuer.token(json!({"sub": "acme:web:1"})), "invalid_claim"),
        ("foreign trust domain", issuer.token(json!({"sub": "spiffe://evil.org/ns/prod/sa/web"})), "invalid_claim"),
        ("no aud", issuer.raw(&kid, json!({"alg": "ES256", "kid": kid}), json!({"sub": "spiffe://example.org/ns/prod/sa/web", "iss": issuer.issuer_url(), "exp": now + 300, "iat": now})), "bad_audience"),
        ("EdDSA, even though it verifies", issuer.raw(&ed_kid, json!({"alg": "EdDSA", "kid": ed_kid}), full("spiffe://example.org/ns/prod/sa/web")), "algorithm_not_allowed"),
        ("HS256", {
            let t = issuer.raw(&kid, json!({"alg": "ES256", "kid": kid}), full("spiffe://example.org/ns/prod/sa/web"));
            let parts: Vec<&str> = t.split('.').collect();
            use base64::Engine;
            let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","kid":"x"}"#);
            format!("{header}.{}.{}", parts[1], parts[2])
        }, "algorithm_not_allowed"),
        ("typ not JWT/JOSE", issuer.raw(&kid, json!({"alg": "ES256", "kid": kid, "typ": "at+jwt"}), full("spiffe://example.org/ns/prod/sa/web")), "invalid_claim"),
    ];
    for (case, token, reason) in &cases {
        let response = wisp.get_with_token("/", token).await;
        assert_eq!(response.status, 401, "{case}: {}", response.body);
        assert_eq!(response.json()["reason"], *reason, "{case}");
    }
    let jose = issuer.raw(
        &kid,
        json!({"alg": "ES256", "kid": kid, "typ": "JOSE"}),
        full("spiffe://example.org/ns/prod/sa/web"),
    );
    assert_eq!(wisp.get_with_token("/", &jose).await.status, 200);
    assert_eq!(echo.requests(), 2);
}

// -------------------------------------------------------------- rotation ---

/// Anyone authenticated is allowed; the TLS files are re-read every second.
async fn reloading_deployment(client_auth: &str) -> (Pki, DevIssuer, EchoServer, Wisp) {
    let pki = Pki::new();
    let issuer = start_issuer().await;
    let echo = start_echo().await;
    let listener = pki.listener_yaml(client_auth).replace(
        &format!("client_auth: {client_auth} }}"),
        &format!("client_auth: {client_auth}, reload_interval: 1s }}"),
    );
    let wisp = WispBuilder::new(echo.addr())
        .issuer(issuer_yaml("dev", &issuer, ""))
        .policy("all.cedar", ANYONE_AUTHENTICATED)
        .extra(&listener)
        .start()
        .await;
    wisp.wait_ready().await;
    (pki, issuer, echo, wisp)
}

#[tokio::test(flavor = "multi_thread")]
async fn rotating_certificates_and_bundle_needs_no_restart_and_fails_no_request() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;

    let (pki, _issuer, _echo, wisp) = reloading_deployment("required").await;

    let new_ca = common::tls::Ca::new("rotated CA");
    let old_client_cert = pki.ca.svid("spiffe://example.org/ns/prod/sa/steady");
    // The running client trusts both server CAs and keeps its old certificate.
    let steady = pki.client().with_root(&new_ca).with_cert(&old_client_cert);
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let runner = {
        let (stop, ok, failed, listen) = (stop.clone(), ok.clone(), failed.clone(), wisp.listen);
        tokio::spawn(async move {
            let mut errors = Vec::new();
            for _ in 0..2000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match steady.request(listen, "GET", "/", &[]).await {
                    Ok(response) if response.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    other => {
                        errors.push(format!("{other:?}"));
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
            errors
        })
    };
    let served_by = |client: common::tls::TlsClient| async move {
        let stream = client
            .connect(wisp.listen, &[b"http/1.1"])
            .await
            .expect("handshake");
        let (_, connection) = stream.get_ref();
        let chain = connection.peer_certificates().expect("server chain");
        chain[0].as_ref().to_vec()
    };
    let before = served_by(pki.client().with_root(&new_ca).with_cert(&old_client_cert)).await;
    assert_eq!(before, pki.server.der.as_ref());

    // Rotate: a server certificate from the new CA; the bundle trusts both CAs.
    let new_server = new_ca.server_cert();
    common::tls::replace_file(&pki.cert_path, &new_server.cert_pem);
    common::tls::replace_file(&pki.key_path, &new_server.key_pem);
    common::tls::replace_file(&pki.ca_path, &common::tls::bundle(&[&pki.ca, &new_ca]));

    let new_client_cert = new_ca.svid("spiffe://example.org/ns/prod/sa/new");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let now_serving =
            served_by(pki.client().with_root(&new_ca).with_cert(&old_client_cert)).await;
        if now_serving == new_server.der.as_ref() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "rotation not picked up:\n{}",
            wisp.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let from_new_ca = TlsClient::new(&new_ca)
        .with_cert(&new_client_cert)
        .request(wisp.listen, "GET", "/", &[])
        .await
        .unwrap_or_else(|e| panic!("client of the new CA: {e}\n{}", wisp.log()));
    assert_eq!(from_new_ca.status, 200, "{}", from_new_ca.body);
    assert_eq!(
        from_new_ca.upstream_header("x-wisp-spiffe-id"),
        ["spiffe://example.org/ns/prod/sa/new"]
    );

    stop.store(true, Ordering::Relaxed);
    let errors = runner.await.expect("runner");
    assert!(
        ok.load(Ordering::Relaxed) > 0,
        "the running client sent requests"
    );
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "failed requests during rotation: {errors:?}"
    );
    let metrics = wisp.metrics().await;
    let expiry = metric_value(
        &metrics,
        r#"wisp_tls_cert_expiry_timestamp_seconds{cert="server"}"#,
    );
    assert!(expiry > 1.7e9, "{metrics}");
}

// ----------------------------------------------------------- upstream TLS ---

#[tokio::test(flavor = "multi_thread")]
async fn upstream_tls_verifies_the_upstream_and_presents_a_client_certificate() {
    let pki = Pki::new();
    let upstream_client_ca = common::tls::Ca::new("upstream client CA");
    let wisp_client_cert = upstream_client_ca.svid("spiffe://example.org/ns/prod/sa/wisp");
    let (cert_path, key_path) = wisp_client_cert.write(pki.dir.path(), "wisp-client");
    let upstream = TlsUpstream::start(&pki.server, Some(&upstream_client_ca)).await;
    let issuer = start_issuer().await;
    let tls = format!(
        "tls: {{ ca: {}, server_name: localhost, cert: {}, key: {} }}, ",
        pki.ca_path.display(),
        cert_path.display(),
        key_path.display()
    );
    let wisp = WispBuilder::new(upstream.addr())
        .issuer(issuer_yaml("dev", &issuer, ""))
        .policy("all.cedar", ANYONE_AUTHENTICATED)
        .start_edited(|config| config.replacen("upstream: { ", &format!("upstream: {{ {tls}"), 1))
        .await;
    wisp.wait_ready().await;
    let token = issuer.token(json!({"sub": "acme:a:b"}));
    let response = wisp.get_with_token("/api", &token).await;
    assert_eq!(response.status, 200, "{}\n{}", response.body, wisp.log());
    let body = response.json();
    assert_eq!(body["path"], "/api");
    assert_eq!(
        body["client_cert_sha256"].as_str(),
        Some(wisp_client_cert.x5t_s256().as_str()),
        "the upstream saw wisp's client certificate"
    );
    let subject = body["headers"]
        .as_array()
        .and_then(|h| h.iter().find(|p| p[0] == "x-wisp-subject"))
        .map(|p| p[1].clone());
    assert_eq!(subject, Some(json!("acme:a:b")));

    // An upstream whose certificate does not chain to the configured CA: 502.
    let stranger = common::tls::Ca::new("stranger").server_cert();
    let impostor = TlsUpstream::start(&stranger, None).await;
    let wisp = WispBuilder::new(impostor.addr())
        .issuer(issuer_yaml("dev", &issuer, ""))
        .policy("all.cedar", ANYONE_AUTHENTICATED)
        .start_edited(|config| {
            config.replacen(
                "upstream: { ",
                &format!(
                    "upstream: {{ tls: {{ ca: {}, server_name: localhost }}, ",
                    pki.ca_path.display()
                ),
                1,
            )
        })
        .await;
    wisp.wait_ready().await;
    let response = wisp.get_with_token("/api", &token).await;
    assert_eq!(response.status, 502, "{}", response.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_resumed_after_its_root_left_the_bundle_is_refused() {
    let (pki, _issuer, echo, wisp) = reloading_deployment("optional").await;
    let old_cert = pki.ca.svid("spiffe://example.org/ns/prod/sa/old");
    let resuming = pki.client().with_cert(&old_cert).resuming_sessions();
    let first = resuming
        .request(wisp.listen, "GET", "/", &[])
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", wisp.log()));
    assert_eq!(first.status, 200, "{}", first.body);

    // The bundle now trusts only a new root.
    let new_ca = common::tls::Ca::new("new root");
    common::tls::replace_file(&pki.ca_path, &new_ca.pem());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        // A fresh (non-resuming) client of the old root is refused once the reload landed.
        let fresh = pki
            .client()
            .with_cert(&old_cert)
            .request(wisp.listen, "GET", "/", &[])
            .await;
        if matches!(&fresh, Err(TlsError::Rejected(_))) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "bundle not reloaded: {fresh:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let forwarded_before = echo.requests();
    // A client holding a session from before the rotation is refused too: by
    // rustls on a full handshake, or by wisp's per-connection re-check of the
    // chain against the current bundle should the session be resumed.
    match resuming.request(wisp.listen, "GET", "/", &[]).await {
        Err(TlsError::Rejected(_)) => {}
        Ok(response) => {
            assert_eq!(response.status, 401, "{}", response.body);
            assert_eq!(response.json()["reason"], "client_certificate_untrusted");
        }
        Err(other) => panic!("{other}"),
    }
    assert_eq!(
        echo.requests(),
        forwarded_before,
        "nothing forwarded for the resumed session"
    );
}

// ------------------------------------------- trust bundles per trust domain

/// The partner trust domain federated with [`common::tls::TRUST_DOMAIN`].
const PARTNER: &str = "partner.test";

/// Two trust domains, each with its own CA: example.org's bundle is PEM (the
/// [`Pki`] CA), partner.test's is a SPIFFE bundle (JSON). Anyone authenticated
/// is allowed; the bundles are re-read every second.
struct Federation {
    pki: Pki,
    partner_ca: common::tls::Ca,
    partner_bundle: std::path::PathBuf,
    echo: EchoServer,
    wisp: Wisp,
}

/// A SPIFFE bundle (JSON) with `cas` as `x509-svid` keys and one `jwt-svid` key.
fn spiffe_bundle(cas: &[&common::tls::Ca]) -> String {
    use base64::Engine;
    let mut keys: Vec<serde_json::Value> = cas
        .iter()
        .map(|ca| {
            json!({"use": "x509-svid", "kty": "EC", "crv": "P-256",
                   "x5c": [base64::engine::general_purpose::STANDARD.encode(ca.der())]})
        })
        .collect();
    keys.push(json!({"use": "jwt-svid", "kty": "EC", "kid": "jwt-1", "crv": "P-256", "x": "AA", "y": "AA"}));
    json!({"spiffe_sequence": 1, "spiffe_refresh_hint": 300, "keys": keys}).to_string()
}

async fn federation() -> Federation {
    let pki = Pki::new();
    let partner_ca = common::tls::Ca::new("partner.test test CA");
    let partner_bundle = pki.dir.path().join("partner.json");
    std::fs::write(&partner_bundle, spiffe_bundle(&[&partner_ca])).expect("write bundle");
    let issuer = start_issuer().await;
    let echo = start_echo().await;
    let listener = format!(
        "tls: {{ cert: {}, key: {}, client_auth: required, reload_interval: 1s, \
         trust_bundles: {{ {}: {}, {PARTNER}: {} }} }}\ntrust_domains: [{}, {PARTNER}]",
        pki.cert_path.display(),
        pki.key_path.display(),
        common::tls::TRUST_DOMAIN,
        pki.ca_path.display(),
        partner_bundle.display(),
        common::tls::TRUST_DOMAIN,
    );
    let wisp = WispBuilder::new(echo.addr())
        .issuer(issuer_yaml("dev", &issuer, ""))
        .policy("all.cedar", ANYONE_AUTHENTICATED)
        .extra(&listener)
        .start()
        .await;
    wisp.wait_ready().await;
    Federation {
        pki,
        partner_ca,
        partner_bundle,
        echo,
        wisp,
    }
}

impl Federation {
    /// The SPIFFE ID wisp forwarded for a client presenting `cert`, or why
    /// there was none.
    async fn forwarded_id(&self, cert: &common::tls::Leaf) -> Result<String, String> {
        let response = self
            .pki
            .client()
            .with_cert(cert)
            .request(self.wisp.listen, "GET", "/", &[])
            .await
            .map_err(|e| e.to_string())?;
        if response.status != 200 {
            return Err(format!("{}: {}", response.status, response.body));
        }
        let ids = response.upstream_header("x-wisp-spiffe-id");
        ids.first()
            .cloned()
            .ok_or_else(|| format!("no SPIFFE ID forwarded: {}", response.body))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_certificate_is_trusted_only_by_its_own_trust_domains_roots() {
    let federation = federation().await;
    let (home_ca, partner_ca) = (&federation.pki.ca, &federation.partner_ca);
    let home_id = "spiffe://example.org/ns/x/sa/web";
    let partner_id = "spiffe://partner.test/ns/y/sa/api";

    assert_eq!(
        federation.forwarded_id(&home_ca.svid(home_id)).await,
        Ok(home_id.to_owned()),
        "{}",
        federation.wisp.log()
    );
    assert_eq!(
        federation.forwarded_id(&partner_ca.svid(partner_id)).await,
        Ok(partner_id.to_owned())
    );
    // The partner's CA signing an example.org identity (and the other way
    // round) is refused at the handshake.
    for forged in [partner_ca.svid(home_id), home_ca.svid(partner_id)] {
        let client = federation.pki.client().with_cert(&forged);
        assert!(client.handshake_rejected(federation.wisp.listen).await);
    }
    assert_eq!(federation.echo.requests(), 2);

    let metrics = federation.wisp.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            r#"wisp_tls_client_cert_rejections_total{reason="untrusted_issuer"}"#
        ),
        2.0,
        "{metrics}"
    );
    for cert in [
        "client_ca",
        "client_ca:example.org",
        "client_ca:partner.test",
    ] {
        let series = format!(r#"wisp_tls_cert_expiry_timestamp_seconds{{cert="{cert}"}}"#);
        assert!(
            metric_value(&metrics, &series) > 1.7e9,
            "{series}\n{metrics}"
        );
    }
    promtool_check_metrics(&metrics);
}

#[tokio::test(flavor = "multi_thread")]
async fn rotating_one_trust_domains_bundle_keeps_the_other_domain_working() {
    let federation = federation().await;
    let home = federation.pki.ca.svid("spiffe://example.org/ns/x/sa/web");
    let new_partner_ca = common::tls::Ca::new("partner.test rotated CA");
    let old_partner = federation
        .partner_ca
        .svid("spiffe://partner.test/ns/y/sa/api");
    let new_partner = new_partner_ca.svid("spiffe://partner.test/ns/y/sa/api");

    // The partner's bundle now trusts only its new CA (written as PEM this time).
    common::tls::replace_file(&federation.partner_bundle, &new_partner_ca.pem());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while federation.forwarded_id(&new_partner).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "partner bundle not reloaded:\n{}",
            federation.wisp.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let client = federation.pki.client().with_cert(&old_partner);
    assert!(client.handshake_rejected(federation.wisp.listen).await);
    assert!(federation.forwarded_id(&home).await.is_ok());

    // A broken partner bundle is refused; both domains keep their roots.
    common::tls::replace_file(&federation.partner_bundle, "{ not a bundle");
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert!(federation.forwarded_id(&new_partner).await.is_ok());
    assert!(federation.forwarded_id(&home).await.is_ok());
    assert!(
        federation.wisp.log().contains("partner.json"),
        "the failed reload is logged with its file"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_jwt_svid_of_another_trust_domain_than_its_issuers_is_refused() {
    let issuer = start_issuer().await;
    let echo = start_echo().await;
    let svid_issuer = format!(
        "  - name: spire\n    issuer: {}\n    preset: spiffe-jwt\n    trust_domain: example.org\n    jwks: {{ discovery: true }}\n    audiences: [orders]\n    algorithms: [ES256]\n",
        issuer.issuer_url()
    );
    let wisp = WispBuilder::new(echo.addr())
        .issuer(svid_issuer)
        .policy("all.cedar", ANYONE_AUTHENTICATED)
        .extra(&format!("trust_domains: [example.org, {PARTNER}]"))
        .start()
        .await;
    wisp.wait_ready().await;

    let own = issuer.token(json!({"sub": "spiffe://example.org/ns/prod/sa/web"}));
    let response = wisp.get_with_token("/", &own).await;
    assert_eq!(response.status, 200, "{}", response.body);

    let foreign = issuer.token(json!({"sub": "spiffe://partner.test/ns/prod/sa/web"}));
    let response = wisp.get_with_token("/", &foreign).await;
    assert_eq!(response.status, 401, "{}", response.body);
    assert_eq!(response.json()["reason"], "invalid_claim");
    assert!(
        wisp.log()
            .contains("trust domain `partner.test` is not issuer `spire`'s"),
        "the decision log says why:\n{}",
        wisp.log()
    );
    assert_eq!(echo.requests(), 1);
}

/// `promtool check metrics` on a scrape.
fn promtool_check_metrics(text: &str) {
    use std::io::Write;
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool must be installed (Debian package `prometheus`), see README");
    promtool
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write metrics");
    let output = promtool.wait_with_output().expect("promtool");
    assert!(
        output.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spiffe_jwt_issuer_can_take_its_keys_from_its_trust_domains_bundle() {
    let pki = Pki::new();
    let partner_ca = common::tls::Ca::new("partner.test test CA");
    let issuer = start_issuer().await;
    // The partner's SPIFFE bundle: its CA, and the issuer's signing keys as
    // `jwt-svid` keys (as `spire-server bundle show -format spiffe` writes it).
    let mut bundle: serde_json::Value =
        serde_json::from_str(&spiffe_bundle(&[&partner_ca])).expect("bundle");
    let issuer_keys: serde_json::Value =
        serde_json::from_str(&issuer.jwks_json()).expect("issuer JWKS");
    let keys = bundle["keys"].as_array_mut().expect("keys");
    keys.retain(|key| key["use"] == "x509-svid");
    for key in issuer_keys["keys"].as_array().expect("issuer keys") {
        let mut key = key.clone();
        key["use"] = json!("jwt-svid");
        keys.push(key);
    }
    let partner_bundle = pki.dir.path().join("partner.json");
    std::fs::write(&partner_bundle, bundle.to_string()).expect("write bundle");
    let echo = start_echo().await;
    let svid_issuer = format!(
        "  - name: partner-spire\n    issuer: {}\n    preset: spiffe-jwt\n    jwks: {{ spiffe_bundle: {PARTNER} }}\n    audiences: [orders]\n    algorithms: [ES256]\n",
        issuer.issuer_url()
    );
    let listener = format!(
        "tls: {{ cert: {}, key: {}, client_auth: optional, \
         trust_bundles: {{ example.org: {}, {PARTNER}: {} }} }}\ntrust_domains: [example.org, {PARTNER}]",
        pki.cert_path.display(),
        pki.key_path.display(),
        pki.ca_path.display(),
        partner_bundle.display(),
    );
    let wisp = WispBuilder::new(echo.addr())
        .issuer(svid_issuer)
        .policy("all.cedar", ANYONE_AUTHENTICATED)
        .extra(&listener)
        .start()
        .await;
    wisp.wait_ready().await;

    let partner = issuer.token(json!({"sub": "spiffe://partner.test/ns/y/sa/api"}));
    let response = pki
        .client()
        .get_with_token(wisp.listen, "/", &partner)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", wisp.log()));
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(
        response.upstream_header("x-wisp-spiffe-id"),
        ["spiffe://partner.test/ns/y/sa/api"]
    );
    // The partner's keys do not speak for example.org.
    let forged = issuer.token(json!({"sub": "spiffe://example.org/ns/x/sa/web"}));
    let response = pki
        .client()
        .get_with_token(wisp.listen, "/", &forged)
        .await
        .expect("response");
    assert_eq!(response.status, 401, "{}", response.body);
    assert_eq!(response.json()["reason"], "invalid_claim");
    assert_eq!(echo.requests(), 1);
}
