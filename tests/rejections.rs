//! Every token rejection README lists ("What the upstream receives, and what
//! clients get back"), through the real proxy: status, `reason` in the JSON
//! body, and the RFC 6750 challenge.

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::*;
use serde_json::json;

fn b64(value: &str) -> String {
    URL_SAFE_NO_PAD.encode(value)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn deployment() -> (DevIssuer, EchoServer, Wisp) {
    let (issuer, echo, wisp) = deploy(
        "    max_lifetime: 1h\n    leeway: 5s\n",
        &[(
            "all.cedar",
            "@id(\"all\") permit (principal, action, resource);",
        )],
        "authn: { max_token_bytes: 4096 }",
    )
    .await;
    (issuer, echo, wisp)
}

fn assert_rejected(response: &Response, status: u16, reason: &str, case: &str) {
    assert_eq!(response.status, status, "{case}: {}", response.body);
    assert_eq!(
        response.json()["reason"],
        reason,
        "{case}: {}",
        response.body
    );
    if status == 401 {
        assert_eq!(response.json()["error"], "unauthenticated", "{case}");
        let challenge = response.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.starts_with("Bearer"),
            "{case}: challenge {challenge:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rejects_malformed_and_dangerous_tokens_with_reasons() {
    let (issuer, echo, wisp) = deployment().await;
    let kid = issuer.kid();
    let valid = issuer.token(json!({"sub": "acme:a:b"}));
    let parts: Vec<&str> = valid.split('.').collect();
    let claims =
        json!({"sub": "acme:a:b", "iss": issuer.issuer_url(), "aud": "orders", "exp": now() + 300});
    let signed = |header: serde_json::Value| issuer.raw(&kid, header, claims.clone());
    let unsigned =
        |header: &str, payload: &str| format!("{}.{}.{}", b64(header), b64(payload), parts[2]);

    let cases: Vec<(&str, String, &str)> = vec![
        ("alg none", unsigned(r#"{"alg":"none"}"#, &claims.to_string()), "algorithm_not_allowed"),
        ("alg NONE", unsigned(r#"{"alg":"NONE"}"#, &claims.to_string()), "algorithm_not_allowed"),
        ("alg nOnE", unsigned(r#"{"alg":"nOnE"}"#, &claims.to_string()), "algorithm_not_allowed"),
        ("alg none, empty signature", format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64(&claims.to_string())), "algorithm_not_allowed"),
        ("alg HS256", unsigned(r#"{"alg":"HS256","typ":"JWT"}"#, &claims.to_string()), "algorithm_not_allowed"),
        ("alg RS1", unsigned(r#"{"alg":"RS1"}"#, &claims.to_string()), "algorithm_not_allowed"),
        ("header jwk", signed(json!({"alg":"ES256","kid":kid,"jwk":{"kty":"EC"}})), "header_key_not_allowed"),
        ("header jku", signed(json!({"alg":"ES256","kid":kid,"jku":"http://127.0.0.1:1/jwks"})), "header_key_not_allowed"),
        ("header x5u", signed(json!({"alg":"ES256","kid":kid,"x5u":"http://127.0.0.1:1/cert"})), "header_key_not_allowed"),
        ("header x5c", signed(json!({"alg":"ES256","kid":kid,"x5c":["MIIB"]})), "header_key_not_allowed"),
        ("unknown crit", signed(json!({"alg":"ES256","kid":kid,"crit":["exp"],"exp":1})), "unsupported_crit"),
        ("two segments", format!("{}.{}", parts[0], parts[1]), "malformed_token"),
        ("four segments", format!("{valid}.{}", parts[2]), "malformed_token"),
        ("padding", format!("{}=.{}.{}", parts[0], parts[1], parts[2]), "malformed_token"),
        ("non-base64url character", format!("{}.{}+.{}", parts[0], parts[1], parts[2]), "malformed_token"),
        ("payload not JSON", unsigned(r#"{"alg":"ES256"}"#, "not json"), "malformed_token"),
        ("payload an array", unsigned(r#"{"alg":"ES256"}"#, "[1,2]"), "malformed_token"),
        ("payload a string", unsigned(r#"{"alg":"ES256"}"#, r#""x""#), "malformed_token"),
        ("repeated payload key", unsigned(r#"{"alg":"ES256"}"#, r#"{"sub":"a","sub":"b"}"#), "malformed_token"),
        ("repeated header key", unsigned(r#"{"alg":"ES256","alg":"ES256"}"#, &claims.to_string()), "malformed_token"),
        ("tampered payload", format!("{}.{}.{}", parts[0], b64(&json!({"sub":"acme:admin:x","iss":issuer.issuer_url(),"aud":"orders","exp":now()+300}).to_string()), parts[2]), "bad_signature"),
        ("unknown kid", issuer.raw(&kid, json!({"alg":"ES256","kid":"no-such-key"}), claims.clone()), "unknown_key"),
        ("too large", issuer.token(json!({"sub": "acme:a:b", "pad": "x".repeat(5000)})), "token_too_large"),
    ];
    for (case, token, reason) in &cases {
        let response = wisp.get_with_token("/api", token).await;
        assert_rejected(&response, 401, reason, case);
    }
    assert_eq!(
        echo.requests(),
        0,
        "no rejected request may reach the upstream"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rejects_tokens_whose_claims_fail_the_issuer_rules() {
    let (issuer, echo, wisp) = deployment().await;
    let t = now();
    let cases: Vec<(&str, serde_json::Value, &str)> = vec![
        (
            "expired",
            json!({"sub":"a","exp": t - 60, "iat": t - 120}),
            "token_expired",
        ),
        (
            "exp a string",
            json!({"sub":"a","exp": (t + 60).to_string()}),
            "invalid_claim",
        ),
        ("exp null", json!({"sub":"a","exp": null}), "invalid_claim"),
        (
            "not yet valid",
            json!({"sub":"a","nbf": t + 600}),
            "token_not_yet_valid",
        ),
        (
            "issued in the future",
            json!({"sub":"a","iat": t + 600, "exp": t + 900}),
            "token_issued_in_future",
        ),
        (
            "lifetime over max_lifetime",
            json!({"sub":"a","iat": t, "exp": t + 7200}),
            "token_lifetime_too_long",
        ),
        (
            "wrong audience",
            json!({"sub":"a","aud":"payments"}),
            "bad_audience",
        ),
        (
            "audience array without ours",
            json!({"sub":"a","aud":["payments","billing"]}),
            "bad_audience",
        ),
        (
            "unknown issuer",
            json!({"sub":"a","iss":"https://evil.example"}),
            "unknown_issuer",
        ),
        ("sub missing", json!({"client": "a"}), "invalid_claim"),
        ("sub not a string", json!({"sub": 42}), "invalid_claim"),
    ];
    for (case, claims, reason) in &cases {
        let token = issuer.token(claims.clone());
        let response = wisp.get_with_token("/api", &token).await;
        assert_rejected(&response, 401, reason, case);
    }
    // An audience array naming us is accepted.
    let token = issuer.token(json!({"sub":"a","aud":["payments","orders"]}));
    assert_eq!(wisp.get_with_token("/api", &token).await.status, 200);
    assert_eq!(echo.requests(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn rejects_missing_duplicate_and_foreign_credentials() {
    let (issuer, echo, wisp) = deployment().await;
    let token = issuer.token(json!({"sub": "acme:a:b"}));
    let bearer = format!("Bearer {token}");

    let none = wisp.request("GET", "/api", &[]).await;
    assert_rejected(&none, 401, "missing_token", "no token");
    assert_eq!(
        none.header("www-authenticate"),
        Some(r#"Bearer realm="wisp""#)
    );

    let two_headers = wisp
        .request(
            "GET",
            "/api",
            &[("authorization", &bearer), ("Authorization", &bearer)],
        )
        .await;
    assert_rejected(&two_headers, 401, "multiple_credentials", "two headers");

    let two_tokens = format!("Bearer {token} {token}");
    let response = wisp
        .request("GET", "/api", &[("authorization", &two_tokens)])
        .await;
    assert_rejected(
        &response,
        401,
        "multiple_credentials",
        "two tokens in one header",
    );

    let basic = wisp
        .request("GET", "/api", &[("authorization", "Basic dXNlcjpwYXNz")])
        .await;
    assert_rejected(&basic, 401, "unsupported_scheme", "basic");

    let lower = format!("bearer {token}");
    let response = wisp
        .request("GET", "/api", &[("authorization", &lower)])
        .await;
    assert_eq!(
        response.status, 200,
        "scheme is case-insensitive: {}",
        response.body
    );

    let query = format!("/api?access_token={token}");
    let response = wisp.request("GET", &query, &[]).await;
    assert_rejected(
        &response,
        401,
        "missing_token",
        "token in the query is never read",
    );
    let response = wisp
        .request(
            "GET",
            "/api",
            &[("cookie", &format!("access_token={token}"))],
        )
        .await;
    assert_rejected(
        &response,
        401,
        "missing_token",
        "token in a cookie is never read",
    );
    assert_eq!(echo.requests(), 1);
}
