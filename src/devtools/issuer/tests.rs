use std::net::SocketAddr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::signature::{self, UnparsedPublicKey};
use serde_json::{json, Value};

use super::*;
use crate::devtools::test_client::{get, send};

const RSA_2048_PKCS8: &[u8] = include_bytes!("../testdata/rsa-2048.pk8");

fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

async fn start() -> DevIssuer {
    DevIssuer::start(any_port(), DevIssuerOptions::default())
        .await
        .unwrap()
}

fn decode(segment: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(segment).unwrap()
}

fn segment_json(segment: &str) -> Value {
    serde_json::from_slice(&decode(segment)).unwrap()
}

fn published_kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| key["kid"].as_str().unwrap().to_owned())
        .collect()
}

fn jwk<'a>(jwks: &'a Value, kid: &str) -> &'a Value {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|key| key["kid"] == kid)
        .unwrap()
}

/// Verifies `token` against the published `jwk` with ring, independently of
/// how the issuer signed it.
fn verify_with_jwk(token: &str, jwk: &Value) -> bool {
    let (signing_input, signature) = token.rsplit_once('.').unwrap();
    let signature = decode(signature);
    let field = |name: &str| decode(jwk[name].as_str().unwrap());
    let message = signing_input.as_bytes();
    match (jwk["kty"].as_str().unwrap(), jwk["alg"].as_str().unwrap()) {
        ("EC", "ES512") => {
            use p521::ecdsa::signature::Verifier as _;
            let point = [vec![0x04], field("x"), field("y")].concat();
            let key = p521::ecdsa::VerifyingKey::from_sec1_bytes(&point).unwrap();
            p521::ecdsa::Signature::from_slice(&signature)
                .is_ok_and(|signature| key.verify(message, &signature).is_ok())
        }
        ("EC", alg) => {
            let algorithm: &dyn signature::VerificationAlgorithm = if alg == "ES384" {
                &signature::ECDSA_P384_SHA384_FIXED
            } else {
                &signature::ECDSA_P256_SHA256_FIXED
            };
            let point = [vec![0x04], field("x"), field("y")].concat();
            UnparsedPublicKey::new(algorithm, point)
                .verify(message, &signature)
                .is_ok()
        }
        ("OKP", _) => UnparsedPublicKey::new(&signature::ED25519, field("x"))
            .verify(message, &signature)
            .is_ok(),
        ("RSA", alg) => {
            let params: &signature::RsaParameters = match alg {
                "RS256" => &signature::RSA_PKCS1_2048_8192_SHA256,
                "PS256" => &signature::RSA_PSS_2048_8192_SHA256,
                other => panic!("unexpected {other}"),
            };
            signature::RsaPublicKeyComponents {
                n: field("n"),
                e: field("e"),
            }
            .verify(params, message, &signature)
            .is_ok()
        }
        other => panic!("unexpected key type {other:?}"),
    }
}

#[tokio::test]
async fn discovery_document_names_the_issuer_and_points_to_the_jwks() {
    let issuer = start().await;
    let reply = get(issuer.addr(), "/.well-known/openid-configuration").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let doc = reply.json();
    assert_eq!(doc["issuer"], format!("http://{}", issuer.addr()));
    assert_eq!(doc["issuer"], issuer.issuer_url());
    assert_eq!(
        doc["jwks_uri"],
        format!("http://{}/jwks.json", issuer.addr())
    );
    assert_eq!(
        doc["id_token_signing_alg_values_supported"],
        json!(["ES256"])
    );
}

#[tokio::test]
async fn issuer_option_overrides_the_published_and_minted_issuer() {
    let options = DevIssuerOptions {
        issuer: Some("http://issuer.test/".to_owned()),
        ..DevIssuerOptions::default()
    };
    let issuer = DevIssuer::start(any_port(), options).await.unwrap();
    let doc = get(issuer.addr(), "/.well-known/openid-configuration")
        .await
        .json();
    assert_eq!(doc["issuer"], "http://issuer.test");
    // The endpoints are where the issuer listens, not on the `iss` host.
    assert_eq!(
        doc["jwks_uri"],
        format!("http://{}/jwks.json", issuer.addr())
    );
    assert_eq!(
        doc["token_endpoint"],
        format!("http://{}/token", issuer.addr())
    );
    assert_eq!(
        issuer.jwks_url(),
        format!("http://{}/jwks.json", issuer.addr())
    );
    let token = issuer.mint(json!({})).unwrap();
    assert_eq!(
        segment_json(token.split('.').nth(1).unwrap())["iss"],
        "http://issuer.test"
    );
}

#[tokio::test]
async fn jwks_publishes_the_signer_as_an_es256_key_that_verifies_minted_tokens() {
    let issuer = start().await;
    let reply = get(issuer.addr(), "/jwks.json").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let jwks = reply.json();
    let kid = issuer.signer().unwrap();
    let key = jwk(&jwks, &kid);
    assert_eq!(
        (&key["kty"], &key["crv"], &key["alg"], &key["use"]),
        (
            &json!("EC"),
            &json!("P-256"),
            &json!("ES256"),
            &json!("sig")
        )
    );
    assert_eq!(decode(key["x"].as_str().unwrap()).len(), 32);

    let token = issuer.mint(json!({"sub": "acme:frontend:web-1"})).unwrap();
    assert!(verify_with_jwk(&token, key));
    let header = segment_json(token.split('.').next().unwrap());
    assert_eq!(header, json!({"alg": "ES256", "typ": "JWT", "kid": kid}));
}

#[tokio::test]
async fn minted_tokens_get_default_claims_unless_given() {
    let issuer = start().await;
    let token = issuer.mint(json!({"sub": "s"})).unwrap();
    let claims = segment_json(token.split('.').nth(1).unwrap());
    assert_eq!(claims["iss"], issuer.issuer_url());
    assert_eq!(claims["aud"], "wisp-demo");
    let (iat, exp) = (
        claims["iat"].as_u64().unwrap(),
        claims["exp"].as_u64().unwrap(),
    );
    assert_eq!(exp - iat, 600);

    let given = json!({"sub": "s", "iss": "other", "aud": ["a", "b"], "iat": 5, "exp": 7});
    let token = issuer.mint(given.clone()).unwrap();
    assert_eq!(segment_json(token.split('.').nth(1).unwrap()), given);
}

#[tokio::test]
async fn token_endpoint_answers_a_newline_terminated_token_as_plain_text() {
    let issuer = start().await;
    let reply = send(
        issuer.addr(),
        "POST",
        "/token",
        &[],
        r#"{"sub":"acme:frontend:web-1"}"#,
    )
    .await;
    assert_eq!(reply.status, 200);
    assert!(reply
        .header("content-type")
        .unwrap()
        .starts_with("text/plain"));
    let token = reply.body.strip_suffix('\n').unwrap();
    assert_eq!(token.split('.').count(), 3);
    let jwks: Value = serde_json::from_str(&issuer.jwks_json()).unwrap();
    assert!(verify_with_jwk(
        token,
        jwk(&jwks, &issuer.signer().unwrap())
    ));
    assert_eq!(
        segment_json(token.split('.').nth(1).unwrap())["sub"],
        "acme:frontend:web-1"
    );
    assert_eq!(issuer.token_requests(), 1);
}

#[tokio::test]
async fn token_endpoint_rejects_bad_json_and_non_object_bodies_with_400() {
    let issuer = start().await;
    for body in ["{not json", "[1,2]", "\"sub\"", ""] {
        let reply = send(issuer.addr(), "POST", "/token", &[], body).await;
        assert_eq!(reply.status, 400, "body {body:?}");
        assert!(reply.json()["message"]
            .as_str()
            .unwrap()
            .contains("JSON object"));
    }
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_404() {
    let issuer = start().await;
    for (method, path) in [
        ("GET", "/"),
        ("GET", "/token"),
        ("POST", "/jwks.json"),
        ("GET", "/jwks"),
    ] {
        assert_eq!(
            send(issuer.addr(), method, path, &[], "").await.status,
            404,
            "{method} {path}"
        );
    }
}

#[tokio::test]
async fn rotate_publishes_both_keys_and_signs_with_the_new_one() {
    let issuer = start().await;
    let old = issuer.signer().unwrap();
    let new = issuer.rotate().unwrap();
    assert_ne!(old, new);
    let jwks = get(issuer.addr(), "/jwks.json").await.json();
    assert_eq!(published_kids(&jwks), vec![old.clone(), new.clone()]);
    let token = issuer.mint(json!({})).unwrap();
    assert_eq!(
        segment_json(token.split('.').next().unwrap())["kid"],
        new.as_str()
    );
    assert!(verify_with_jwk(&token, jwk(&jwks, &new)));
    assert!(!verify_with_jwk(&token, jwk(&jwks, &old)));
}

#[tokio::test]
async fn remove_key_stops_publishing_it_and_removing_the_signer_stops_minting() {
    let issuer = start().await;
    let old = issuer.signer().unwrap();
    let new = issuer.rotate().unwrap();
    assert!(issuer.remove_key(&old));
    assert!(!issuer.remove_key(&old));
    let jwks = get(issuer.addr(), "/jwks.json").await.json();
    assert_eq!(published_kids(&jwks), vec![new.clone()]);

    assert!(issuer.remove_key(&new));
    assert_eq!(issuer.mint(json!({})), Err(DevIssuerError::NoSigner));
    assert_eq!(
        get(issuer.addr(), "/jwks.json").await.json(),
        json!({"keys": []})
    );
}

#[tokio::test]
async fn ed25519_es384_and_rsa_keys_are_published_and_sign_verifiable_tokens() {
    let issuer = start().await;
    let ed = issuer.add_ed25519_key().unwrap();
    let es384 = issuer.add_key(Algorithm::Es384).unwrap();
    let rs = issuer
        .add_rsa_key(RSA_2048_PKCS8, Algorithm::Rs256)
        .unwrap();
    let ps = issuer
        .add_rsa_key(RSA_2048_PKCS8, "PS256".parse().unwrap())
        .unwrap();
    let jwks = get(issuer.addr(), "/jwks.json").await.json();
    assert_eq!(jwk(&jwks, &ed)["kty"], "OKP");
    assert_eq!(jwk(&jwks, &ed)["crv"], "Ed25519");
    assert_eq!(jwk(&jwks, &es384)["crv"], "P-384");
    assert_eq!(jwk(&jwks, &rs)["e"], "AQAB");
    assert_eq!(decode(jwk(&jwks, &rs)["n"].as_str().unwrap()).len(), 256);
    for kid in [&ed, &es384, &rs, &ps] {
        issuer.set_signer(kid).unwrap();
        let token = issuer.mint(json!({"sub": "s"})).unwrap();
        assert!(verify_with_jwk(&token, jwk(&jwks, kid)), "kid {kid}");
        assert_eq!(
            segment_json(token.split('.').next().unwrap())["alg"],
            jwk(&jwks, kid)["alg"]
        );
    }
    let doc = get(issuer.addr(), "/.well-known/openid-configuration")
        .await
        .json();
    assert_eq!(
        doc["id_token_signing_alg_values_supported"],
        json!(["ES256", "EdDSA", "ES384", "RS256", "PS256"])
    );
}

#[tokio::test]
async fn key_misuse_is_an_error_not_a_panic() {
    let issuer = start().await;
    assert!(matches!(
        issuer.add_key(Algorithm::Rs256),
        Err(DevIssuerError::Key(_))
    ));
    assert!(matches!(
        issuer.add_rsa_key(RSA_2048_PKCS8, Algorithm::Es256),
        Err(DevIssuerError::Key(_))
    ));
    assert!(matches!(
        issuer.add_rsa_key(b"junk", Algorithm::Rs256),
        Err(DevIssuerError::Key(_))
    ));
    assert_eq!(
        issuer.set_signer("nope"),
        Err(DevIssuerError::UnknownKey("nope".to_owned()))
    );
    assert_eq!(
        issuer.mint(json!([1])),
        Err(DevIssuerError::ClaimsNotObject)
    );
    assert!("HS256".parse::<Algorithm>().is_err());
}

#[tokio::test]
async fn sign_raw_signs_the_header_and_claims_exactly_as_given() {
    let issuer = start().await;
    let kid = issuer.signer().unwrap();
    let header = json!({"alg": "none", "jku": "http://evil.test/jwks", "crit": ["x"]});
    let token = issuer
        .sign_raw(&kid, header.clone(), json!("not an object"))
        .unwrap();
    let mut parts = token.split('.');
    assert_eq!(segment_json(parts.next().unwrap()), header);
    assert_eq!(segment_json(parts.next().unwrap()), json!("not an object"));
    let jwks: Value = serde_json::from_str(&issuer.jwks_json()).unwrap();
    assert!(verify_with_jwk(&token, jwk(&jwks, &kid)));

    let token = issuer
        .sign_raw_json(
            &kid,
            r#"{"alg":"ES256","alg":"none"}"#,
            r#"{"sub":"a","sub":"b"}"#,
        )
        .unwrap();
    let payload = decode(token.split('.').nth(1).unwrap());
    assert_eq!(payload, br#"{"sub":"a","sub":"b"}"#);
    assert!(verify_with_jwk(&token, jwk(&jwks, &kid)));

    let signature = issuer.signature(&kid, b"a=.b").unwrap();
    assert!(verify_with_jwk(
        &format!("a=.b.{signature}"),
        jwk(&jwks, &kid)
    ));
    assert!(matches!(
        issuer.sign_raw("nope", json!({}), json!({})),
        Err(DevIssuerError::UnknownKey(_))
    ));
}

#[tokio::test]
async fn counters_count_jwks_discovery_and_token_requests() {
    let issuer = start().await;
    for _ in 0..3 {
        get(issuer.addr(), "/jwks.json").await;
    }
    get(issuer.addr(), "/.well-known/openid-configuration").await;
    get(issuer.addr(), "/nothing").await;
    issuer.set_jwks_status(Some(500));
    get(issuer.addr(), "/jwks.json").await;
    assert_eq!(issuer.jwks_requests(), 4);
    assert_eq!(issuer.discovery_requests(), 1);
    assert_eq!(issuer.token_requests(), 0);
}

#[tokio::test]
async fn jwks_and_discovery_answer_the_simulated_status_until_cleared() {
    let issuer = start().await;
    issuer.set_jwks_status(Some(503));
    issuer.set_discovery_status(Some(500));
    assert_eq!(get(issuer.addr(), "/jwks.json").await.status, 503);
    assert_eq!(
        get(issuer.addr(), "/.well-known/openid-configuration")
            .await
            .status,
        500
    );
    issuer.set_jwks_status(None);
    issuer.set_discovery_status(None);
    assert_eq!(get(issuer.addr(), "/jwks.json").await.status, 200);
    assert_eq!(
        get(issuer.addr(), "/.well-known/openid-configuration")
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn jwks_delay_holds_the_answer_back() {
    let issuer = start().await;
    issuer.set_jwks_delay(Some(Duration::from_millis(200)));
    let started = std::time::Instant::now();
    assert_eq!(get(issuer.addr(), "/jwks.json").await.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn clones_control_the_same_issuer() {
    let issuer = start().await;
    let clone = issuer.clone();
    let kid = clone.rotate().unwrap();
    assert_eq!(issuer.signer(), Some(kid));
    drop(clone);
    assert_eq!(get(issuer.addr(), "/jwks.json").await.status, 200);
}

#[tokio::test]
async fn after_shutdown_connections_are_refused_and_keep_alive_ones_are_closed() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, BufReader};

    let issuer = start().await;
    let addr = issuer.addr();
    let mut open = BufReader::new(tokio::net::TcpStream::connect(addr).await.unwrap());
    let request = crate::devtools::test_client::request("GET", "/jwks.json", &[], "");
    open.get_mut().write_all(&request).await.unwrap();
    assert_eq!(
        crate::devtools::test_client::read_reply(&mut open)
            .await
            .status,
        200
    );

    issuer.shutdown().await;
    let refused = tokio::net::TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
    let mut rest = Vec::new();
    let read = open.read_to_end(&mut rest).await;
    assert!(
        read.is_err() || rest.is_empty(),
        "kept-alive connection still served"
    );
    issuer.shutdown().await;
}

#[tokio::test]
async fn dropping_the_last_handle_stops_serving() {
    let issuer = start().await;
    let addr = issuer.addr();
    drop(issuer);
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("still accepting connections after the last handle was dropped");
}

#[tokio::test]
async fn banner_warns_loudly_and_names_the_endpoints() {
    let issuer = start().await;
    let banner = issuer.banner();
    assert!(banner.contains("DEVELOPMENT AND DEMOS ONLY"));
    assert!(banner.contains(&format!("{}/jwks.json", issuer.issuer_url())));
    assert!(banner.contains("alg        ES256"));
    assert!(!banner.contains("FIXED"));
    assert!(banner.lines().count() >= 5);
}

#[tokio::test]
async fn a_wildcard_listen_publishes_loopback_endpoints() {
    let issuer = DevIssuer::start(
        SocketAddr::from(([0, 0, 0, 0], 0)),
        DevIssuerOptions::default(),
    )
    .await
    .unwrap();
    let port = issuer.addr().port();
    assert_eq!(
        issuer.jwks_url(),
        format!("http://127.0.0.1:{port}/jwks.json")
    );
}

#[tokio::test]
async fn the_alg_option_picks_the_signer_and_rsa_uses_the_fixed_key_loudly() {
    for alg in ["ES256", "ES384", "ES512", "EdDSA", "RS256", "PS256"] {
        let options = DevIssuerOptions {
            alg: alg.parse().unwrap(),
            ..DevIssuerOptions::default()
        };
        let issuer = DevIssuer::start(any_port(), options).await.unwrap();
        let jwks = get(issuer.addr(), "/jwks.json").await.json();
        let kid = issuer.signer().unwrap();
        assert_eq!(published_kids(&jwks), std::slice::from_ref(&kid), "{alg}");
        assert_eq!(jwk(&jwks, &kid)["alg"], alg);
        let token = send(
            issuer.addr(),
            "POST",
            "/token",
            &[],
            r#"{"sub":"system:serviceaccount:shop:web"}"#,
        )
        .await;
        let token = token.body.trim_end();
        assert_eq!(segment_json(token.split('.').next().unwrap())["alg"], alg);
        assert!(verify_with_jwk(token, jwk(&jwks, &kid)), "{alg}");
        let doc = get(issuer.addr(), "/.well-known/openid-configuration")
            .await
            .json();
        assert_eq!(doc["id_token_signing_alg_values_supported"], json!([alg]));
        let banner = issuer.banner();
        assert!(banner.contains(&format!("alg        {alg}")), "{banner}");
        assert_eq!(
            banner.contains("FIXED development key"),
            alg.starts_with(['R', 'P'])
        );
    }
    let es512 = jwk_crv("ES512").await;
    assert_eq!(es512, "P-521");
}

async fn jwk_crv(alg: &str) -> String {
    let options = DevIssuerOptions {
        alg: alg.parse().unwrap(),
        ..DevIssuerOptions::default()
    };
    let issuer = DevIssuer::start(any_port(), options).await.unwrap();
    let jwks = get(issuer.addr(), "/jwks.json").await.json();
    let key = &jwks["keys"][0];
    assert_eq!(decode(key["x"].as_str().unwrap()).len(), 66);
    key["crv"].as_str().unwrap().to_owned()
}

/// The `configure` lines of a banner, unindented: a YAML `issuers:` block.
fn configure_block(banner: &str) -> String {
    let start = banner
        .find("configure  ")
        .expect("banner has a configure block");
    banner[start..]
        .lines()
        .map(|line| line.get(11..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn the_banner_prints_an_issuer_block_that_wisp_loads_and_that_reaches_the_keys() {
    for (issuer_url, discovery) in [(None, true), (Some("https://tokens.example.com"), false)] {
        let options = DevIssuerOptions {
            issuer: issuer_url.map(str::to_owned),
            alg: "RS256".parse().unwrap(),
            ..DevIssuerOptions::default()
        };
        let issuer = DevIssuer::start(any_port(), options).await.unwrap();
        let block = configure_block(&issuer.banner());
        assert_eq!(block.contains("discovery: true"), discovery, "{block}");
        if !discovery {
            // Discovery would go to the unreachable `iss`; the served JWKS is named.
            assert!(
                block.contains(&format!("uri: \"{}\"", issuer.jwks_url())),
                "{block}"
            );
        }
        assert!(block.contains("algorithms: [RS256]"), "{block}");
        assert!(block.contains("audiences: [wisp-demo]"), "{block}");
        let config =
            format!("listen: 127.0.0.1:0\nupstream: {{ address: 127.0.0.1:1 }}\n{block}\n");
        let config = crate::config::Config::from_yaml(&config, std::path::Path::new("dev.yaml"))
            .unwrap_or_else(|e| panic!("{e}\n{config}"));
        assert_eq!(config.issuers[0].issuer, issuer.issuer_url());
    }
}
