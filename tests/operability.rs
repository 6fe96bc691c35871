//! What operators see: the decision log's fields (request id, detail, host,
//! source, the unverified issuer and kid of a refused token), the generic
//! description clients get instead, the issuer and upstream-status metrics,
//! and log lines that are all JSON in `log.format: json`.

mod common;

use common::*;
use serde_json::json;

const ALLOW_A: &str =
    r#"@id("a-only") permit (principal, action, resource) when { resource.path like "/a*" };"#;

/// The decision line of the request with this id.
async fn decision_of(wisp: &Wisp, request_id: &str) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        if let Some(line) = wisp
            .decisions()
            .into_iter()
            .find(|line| line["request_id"] == request_id)
        {
            return line;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no decision line for {request_id}:\n{}",
            wisp.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn request_ids_are_kept_when_sane_replaced_otherwise_and_sent_upstream() {
    let (issuer, _echo, wisp) = deploy("", &[("a.cedar", ALLOW_A)], "").await;
    let auth = format!("Bearer {}", issuer.token(json!({"sub": "acme:a:1"})));

    let kept = wisp
        .request(
            "GET",
            "/a",
            &[
                ("authorization", &auth),
                ("x-request-id", "trace-0af7651916cd"),
            ],
        )
        .await;
    assert_eq!(kept.status, 200);
    assert_eq!(kept.upstream_header("x-request-id"), ["trace-0af7651916cd"]);
    let line = decision_of(&wisp, "trace-0af7651916cd").await;
    assert_eq!(line["host"], "127.0.0.1", "normalized, without the port");
    assert_eq!(line["source_ip"], "127.0.0.1");
    assert_eq!(line["policies"], json!(["a-only"]));
    assert_eq!(line["issuer"], "dev");

    let replaced = wisp
        .request(
            "GET",
            "/a",
            &[
                ("authorization", &auth),
                ("x-request-id", "evil\"id with spaces"),
            ],
        )
        .await;
    let sent = replaced.upstream_header("x-request-id");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].len(), 32, "{sent:?}");
    assert!(sent[0].bytes().all(|b| b.is_ascii_hexdigit()));

    // Two ids (which one would the upstream log?) or none: one fresh id.
    for ids in [&[("x-request-id", "one"), ("x-request-id", "two")][..], &[]] {
        let mut headers = vec![("authorization", auth.as_str())];
        headers.extend_from_slice(ids);
        let answered = wisp.request("GET", "/a", &headers).await;
        let sent = answered.upstream_header("x-request-id");
        assert_eq!(sent.len(), 1, "{ids:?}: {sent:?}");
        assert_eq!(sent[0].len(), 32, "{ids:?}: {sent:?}");
        assert!(sent[0].bytes().all(|b| b.is_ascii_hexdigit()), "{sent:?}");
    }

    // wisp's own answers carry the id too, so a client can quote it.
    let refused = wisp
        .request(
            "GET",
            "/b",
            &[("authorization", &auth), ("x-request-id", "r-403")],
        )
        .await;
    assert_eq!(refused.status, 403);
    assert_eq!(refused.header("x-request-id"), Some("r-403"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_401_logs_the_detail_and_the_claimed_issuer_and_kid_while_the_client_gets_a_generic_reason(
) {
    let (issuer, _echo, wisp) = deploy("", &[("a.cedar", ALLOW_A)], "").await;
    // `sub` must be a non-empty string: a number is an invalid claim.
    let token = issuer.token(json!({"sub": 42}));
    let refused = wisp
        .request(
            "GET",
            "/a",
            &[
                ("authorization", &format!("Bearer {token}")),
                ("x-request-id", "r-401"),
            ],
        )
        .await;
    assert_eq!(refused.status, 401);
    let challenge = refused.header("www-authenticate").unwrap();
    assert!(
        challenge.ends_with(r#"error_description="invalid claim""#),
        "{challenge}"
    );
    let line = decision_of(&wisp, "r-401").await;
    assert_eq!(line["reason"], "invalid_claim");
    assert!(
        line["detail"]
            .as_str()
            .unwrap()
            .starts_with("invalid claim sub"),
        "{line}"
    );
    assert_eq!(line["issuer"], "dev");
    assert_eq!(line["unverified_iss"], issuer.issuer_url());
    assert_eq!(line["unverified_kid"], issuer.kid());
    assert!(line.get("principal").is_none(), "{line}");

    let metrics = wisp.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            r#"wisp_requests_total{decision="deny",issuer="dev",mode="proxy",reason="invalid_claim"}"#
        ),
        1.0,
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_statuses_and_failures_are_counted_by_class() {
    let all = "permit (principal, action, resource);";
    let (issuer, echo, wisp) = deploy("", &[("all.cedar", all)], "").await;
    let auth = format!("Bearer {}", issuer.token(json!({"sub": "acme:a:1"})));
    let auth = [("authorization", auth.as_str())];
    assert_eq!(wisp.request("GET", "/a", &auth).await.status, 200);
    assert_eq!(wisp.request("GET", "/status/503", &auth).await.status, 503);
    assert_eq!(wisp.request("GET", "/status/404", &auth).await.status, 404);
    echo.shutdown().await;
    assert_eq!(wisp.request("GET", "/a", &auth).await.status, 502);

    let metrics = wisp.metrics().await;
    for (class, count) in [("2xx", 1.0), ("4xx", 1.0), ("5xx", 1.0), ("error", 1.0)] {
        let series = format!(r#"wisp_upstream_responses_total{{status_class="{class}"}}"#);
        assert_eq!(
            metric_value(&metrics, &series),
            count,
            "{series}\n{metrics}"
        );
    }
    for family in [
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_cpu_seconds_total",
        "wisp_in_flight_requests",
        "wisp_draining",
    ] {
        assert!(metrics.contains(&format!("# TYPE {family} ")), "{family}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_log_line_is_json_without_colour_codes() {
    let (issuer, _echo, mut wisp) = deploy("", &[("a.cedar", ALLOW_A)], "drain_delay: 0s").await;
    let auth = format!("Bearer {}", issuer.token(json!({"sub": "acme:a:1"})));
    assert_eq!(
        wisp.request("GET", "/a", &[("authorization", &auth)])
            .await
            .status,
        200
    );
    assert_eq!(wisp.request("GET", "/b", &[]).await.status, 401);
    // Shutting down makes pingora log too.
    wisp.signal("TERM");
    wisp.wait_exit(std::time::Duration::from_secs(10))
        .await
        .expect("exits");
    let log = wisp.log();
    assert!(
        log.contains("pingora"),
        "pingora's lines are missing:\n{log}"
    );
    for line in log.lines() {
        assert!(!line.contains('\u{1b}'), "colour codes: {line:?}");
        let parsed: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
        assert!(parsed.get("timestamp").is_some(), "{line}");
    }
}
