//! JWKS lifecycle through the real proxy: rotation, the rate-limited refetch on
//! unknown `kid`, outages, an issuer that never loaded, key withdrawal.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

fn policy() -> &'static str {
    "@id(\"all\") permit (principal, action, resource);"
}

#[tokio::test(flavor = "multi_thread")]
async fn accepts_a_rotated_key_after_one_refetch() {
    let (issuer, _echo, wisp) = deploy("", &[("all.cedar", policy())], "").await;
    let before = issuer.jwks_requests();
    let old = issuer.token(json!({"sub": "acme:a:1"}));
    assert_eq!(wisp.get_with_token("/", &old).await.status, 200);

    issuer.rotate().unwrap();
    let new = issuer.token(json!({"sub": "acme:a:2"}));
    let response = wisp.get_with_token("/", &new).await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(
        issuer.jwks_requests(),
        before + 1,
        "exactly one refetch for the new kid"
    );
    // The old key is still published, so old tokens keep working.
    assert_eq!(wisp.get_with_token("/", &old).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_unknown_kids_causes_at_most_one_fetch_per_interval() {
    let (issuer, echo, wisp) = deploy("", &[("all.cedar", policy())], "").await;
    let before = issuer.jwks_requests();
    let kid = issuer.kid();
    let mut tasks = Vec::new();
    for i in 0..60 {
        let token = issuer.raw(
            &kid,
            json!({"alg": "ES256", "kid": format!("unknown-{i}")}),
            json!({"sub": "acme:a:b", "iss": issuer.issuer_url(), "aud": "orders",
                   "exp": 4_000_000_000i64, "iat": 3_999_999_000i64}),
        );
        let listen = wisp.listen;
        tasks.push(tokio::spawn(async move {
            let auth = format!("Bearer {token}");
            request(listen, "GET", "/", &[("authorization", &auth)])
                .await
                .unwrap()
        }));
    }
    for task in tasks {
        let response = task.await.unwrap();
        assert_eq!(response.status, 401);
        assert_eq!(response.json()["reason"], "unknown_key");
    }
    let fetches = issuer.jwks_requests() - before;
    assert_eq!(
        fetches, 1,
        "60 unknown kids within one interval must cost exactly one JWKS fetch"
    );
    assert_eq!(echo.requests(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outage_keeps_known_keys_and_a_never_loaded_issuer_answers_503_alone() {
    let up = start_issuer().await;
    let flaky = start_issuer().await;
    let echo = start_echo().await;
    let dead_port = free_port();
    let dead = format!(
        "  - name: dead\n    issuer: http://127.0.0.1:{dead_port}\n    jwks: {{ discovery: true }}\n    audiences: [orders]\n    algorithms: [ES256]\n"
    );
    let wisp = WispBuilder::new(echo.addr())
        .issuer(issuer_yaml("up", &up, ""))
        .issuer(issuer_yaml(
            "flaky",
            &flaky,
            "    jwks: { discovery: true, refresh: 1s, max_stale: 1h }\n",
        ))
        .issuer(dead)
        .policy("all.cedar", policy())
        .start()
        .await;

    // Wait for the two live issuers to load.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let ready = get(wisp.admin, "/readyz", &[]).await.unwrap();
        let detail = ready.json();
        let loaded = |i: usize| detail["issuers"][i]["ready"] == true;
        if loaded(0) && loaded(1) {
            assert_eq!(ready.status, 503, "not ready while `dead` has no keys");
            assert_eq!(detail["issuers"][2]["name"], "dead");
            assert_eq!(detail["issuers"][2]["ready"], false);
            assert!(detail["issuers"][2]["last_error"].is_string(), "{detail}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{detail}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The flaky issuer goes away; its known key keeps working through refresh failures.
    let token = flaky.token(json!({"sub": "acme:a:b"}));
    flaky.shutdown().await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let response = wisp.get_with_token("/", &token).await;
    assert_eq!(
        response.status, 200,
        "known keys survive an outage: {}",
        response.body
    );
    let metrics = wisp.metrics().await;
    assert!(
        metric_value(
            &metrics,
            r#"wisp_jwks_refresh_total{issuer="flaky",result="failure"}"#
        ) >= 1.0,
        "{metrics}"
    );

    // The issuer that never loaded answers 503; the others are unaffected.
    let dead_token = up.raw(
        &up.kid(),
        json!({"alg": "ES256", "kid": up.kid()}),
        json!({"sub": "acme:a:b", "iss": format!("http://127.0.0.1:{dead_port}"), "aud": "orders", "exp": 4_000_000_000i64, "iat": 3_999_999_000i64}),
    );
    let response = wisp.get_with_token("/", &dead_token).await;
    assert_eq!(response.status, 503, "{}", response.body);
    assert_eq!(response.json()["reason"], "issuer_unavailable");
    let ok = up.token(json!({"sub": "acme:a:b"}));
    assert_eq!(wisp.get_with_token("/", &ok).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_withdrawn_key_stops_cached_tokens_at_the_next_refresh() {
    let (issuer, _echo, wisp) = deploy(
        "    jwks: { discovery: true, refresh: 1s }\n",
        &[("all.cedar", policy())],
        "",
    )
    .await;
    let old_kid = issuer.kid();
    let token = issuer.token(json!({"sub": "acme:a:b"}));
    assert_eq!(wisp.get_with_token("/", &token).await.status, 200);
    assert_eq!(wisp.get_with_token("/", &token).await.status, 200, "cached");

    issuer.rotate().unwrap();
    issuer.remove_key(&old_kid);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let response = wisp.get_with_token("/", &token).await;
    assert_eq!(response.status, 401, "{}", response.body);
    assert_eq!(response.json()["reason"], "unknown_key");
}
