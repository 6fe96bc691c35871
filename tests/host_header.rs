//! Host validation and normalization through the real proxy: the bytes
//! reach wisp untouched (raw HTTP/1.1; hyper's HTTP/2 client for
//! `:authority`), policy decides on the normalized host, the upstream gets it.

mod common;

use common::*;
use serde_json::json;

const POLICIES: &str = r#"
@id("everyone")
permit (principal, action, resource);

@id("no-admin-host")
forbid (principal, action, resource) when { resource.host == "admin.example" };
"#;

async fn deployment() -> (DevIssuer, EchoServer, Wisp, String) {
    let (issuer, echo, wisp) = deploy("", &[("host.cedar", POLICIES)], "").await;
    let token = issuer.token(json!({"sub": "acme:frontend:web-1"}));
    (issuer, echo, wisp, token)
}

/// A GET of `/api` with a bearer token and these raw header lines.
fn raw(token: &str, lines: &[&str]) -> Vec<u8> {
    let mut text = format!("GET /api HTTP/1.1\r\nAuthorization: Bearer {token}\r\n");
    for line in lines {
        text.push_str(line);
        text.push_str("\r\n");
    }
    text.push_str("Connection: close\r\n\r\n");
    text.into_bytes()
}

#[tokio::test(flavor = "multi_thread")]
async fn ambiguous_missing_or_repeated_hosts_are_refused_and_spellings_of_a_forbidden_host_denied()
{
    let (_issuer, _echo, wisp, token) = deployment().await;
    let cases: &[(&[&str], u16, &str)] = &[
        (&["Host: admin.example."], 403, ""),
        (&["Host: ADMIN.Example:8080"], 403, ""),
        (&["Host: admin.example.:80"], 403, ""),
        (&["Host: %61dmin.example"], 403, ""),
        (&["Host: admin.example, other"], 400, "host_invalid"),
        (&["Host: other, admin.example"], 400, "host_invalid"),
        (&["Host: admin.example/x"], 400, "host_invalid"),
        (&["Host: admin.example:80:80"], 400, "host_invalid"),
        (&["Host: admin.example.."], 400, "host_invalid"),
        (&["Host: admin.example%2C"], 400, "host_invalid"),
        (&["Host: "], 400, "host_missing"),
        (&[], 400, "host_missing"),
        (
            &["Host: admin.example", "Host: other"],
            400,
            "host_multiple",
        ),
        (
            &["Host: other", "Host: admin.example"],
            400,
            "host_multiple",
        ),
    ];
    for (lines, status, reason) in cases {
        let response = raw_request(wisp.listen, &raw(&token, lines))
            .await
            .unwrap_or_else(|e| panic!("{lines:?}: {e}"));
        assert_eq!(response.status, *status, "{lines:?}: {}", response.body);
        // pingora 0.9.1 refuses a repeated Host itself (400, empty body)
        // before wisp sees the request; wisp's own check stays behind it.
        if *status == 400 && !(*reason == "host_multiple" && response.body.is_empty()) {
            assert_eq!(response.json()["reason"], *reason, "{lines:?}");
        }
    }
    let metrics = wisp.metrics().await;
    for reason in ["host_invalid", "host_missing"] {
        let series =
            format!("wisp_requests_total{{decision=\"deny\",issuer=\"none\",mode=\"proxy\",reason=\"{reason}\"}}");
        assert!(
            metric_value(&metrics, &series) >= 1.0,
            "{series}\n{metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_upstream_receives_the_normalized_host_with_its_port() {
    let (_issuer, _echo, wisp, token) = deployment().await;
    for (sent, forwarded) in [
        ("Orders.Example.:8080", "orders.example:8080"),
        ("orders.example", "orders.example"),
        ("[::1]:08080", "[::1]:8080"),
    ] {
        let line = format!("Host: {sent}");
        let response = raw_request(wisp.listen, &raw(&token, &[&line]))
            .await
            .unwrap();
        assert_eq!(response.status, 200, "{sent}: {}", response.body);
        assert_eq!(response.upstream_header("host"), [forwarded], "{sent}");
    }
    // An absolute-form target's authority is normalized too (pingora
    // refuses a Host that differs from it).
    let request = format!(
        "GET http://Admin.Example./api HTTP/1.1\r\nHost: Admin.Example.\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    let response = raw_request(wisp.listen, request.as_bytes()).await.unwrap();
    assert_eq!(response.status, 403, "{}", response.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http2_authority_is_normalized_before_policy() {
    let (_issuer, _echo, wisp, token) = deployment().await;
    let auth = format!("Bearer {token}");
    for (authority, status) in [
        ("admin.example.", 403),
        ("Admin.Example:443", 403),
        ("orders.example.", 200),
    ] {
        let stream = tokio::net::TcpStream::connect(wisp.listen).await.unwrap();
        let request = h2::build_request(authority, "GET", "/api", &[("authorization", &auth)], "");
        let response = h2::request_over(stream, request).await.unwrap();
        assert_eq!(response.status, status, "{authority}: {}", response.text());
        if status == 200 {
            let echoed: serde_json::Value = response.json();
            let hosts: Vec<&str> = echoed["headers"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|pair| pair[0] == "host")
                .filter_map(|pair| pair[1].as_str())
                .collect();
            assert_eq!(hosts, ["orders.example"], "{authority}");
        }
    }
}
