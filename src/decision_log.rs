//! The decision log (README, "Admin endpoints and metrics"): one line per
//! request decided, with the same field names as the metric labels. In
//! `log.format: json` a line is one JSON object with real arrays (`policies`,
//! `errors`), written whole to stderr like every other log line; in `text` it
//! goes through `tracing`.
//!
//! The client only ever gets a generic reason; the technical `detail` is here,
//! never truncated. A token that failed verification is logged with the
//! `iss` and `kid` it claims, marked unverified.

use std::io::Write as _;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::authz::ShadowResult;
use crate::config::LogFormat;

/// One decision log line.
#[derive(Debug, Serialize)]
pub struct DecisionRecord<'a> {
    /// The request id (also sent upstream as `x-request-id`).
    pub request_id: &'a str,
    /// The front end: `proxy` or `decision` (the decision service).
    pub mode: &'a str,
    /// `allow`, `deny` or `public`.
    pub decision: &'a str,
    /// The stable reason (`policy`, `token_expired`, …).
    pub reason: &'a str,
    /// The full technical description, when there is more to say than the reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<&'a str>,
    /// The HTTP status answered (0: none was written).
    pub status: u16,
    /// The method.
    pub method: &'a str,
    /// The normalized path (as decided and forwarded).
    pub path: &'a str,
    /// The normalized host.
    pub host: &'a str,
    /// The client's address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<IpAddr>,
    /// The configured issuer name: of the verified token, or (401) the one
    /// whose `iss` the unverified token claims.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<&'a str>,
    /// The `iss` an unverified token claims (401 lines).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unverified_iss: Option<&'a str>,
    /// The `kid` an unverified token's header names (401 lines).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unverified_kid: Option<&'a str>,
    /// The principal's uid, when authenticated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<&'a str>,
    /// Determining policy ids.
    pub policies: &'a [String],
    /// Policy evaluation errors (`policy id: message`).
    pub errors: &'a [String],
    /// What each applying `@shadow` policy would have decided.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub shadow: &'a [ShadowResult],
    /// From the request's arrival to the log line.
    pub duration_ms: f64,
}

/// Writes `record` in `format`.
pub fn emit(format: LogFormat, record: &DecisionRecord<'_>) {
    match format {
        LogFormat::Json => {
            let mut line = Vec::with_capacity(512);
            let now = SystemTime::now();
            let timestamp = rfc3339(now);
            let envelope = Envelope {
                timestamp: &timestamp,
                time: &timestamp,
                level: "INFO",
                target: "wisp::decision",
                message: "decision",
                record,
            };
            if serde_json::to_writer(&mut line, &envelope).is_err() {
                return;
            }
            line.push(b'\n');
            // One write of the whole line, as tracing's writer does: lines
            // never interleave. Nothing useful can be done if stderr is gone.
            let _ = std::io::stderr().lock().write_all(&line);
        }
        LogFormat::Text => tracing::info!(
            target: "wisp::decision",
            request_id = record.request_id,
            mode = record.mode,
            decision = record.decision,
            reason = record.reason,
            detail = record.detail,
            status = record.status,
            method = record.method,
            path = record.path,
            host = record.host,
            source_ip = record.source_ip.map(tracing::field::display),
            issuer = record.issuer,
            unverified_iss = record.unverified_iss,
            unverified_kid = record.unverified_kid,
            principal = record.principal,
            policies = %record.policies.join(","),
            errors = %record.errors.join("; "),
            shadow = %shadow_text(record.shadow),
            duration_ms = record.duration_ms,
            "decision"
        ),
    }
}

/// `policy=decision` per shadow result, comma-separated (text format).
fn shadow_text(shadow: &[ShadowResult]) -> String {
    shadow
        .iter()
        .map(|result| format!("{}={}", result.policy, result.decision.as_str()))
        .collect::<Vec<_>>()
        .join(",")
}

/// What a front end saw of one request, beside the pipeline's verdict.
#[derive(Debug)]
pub struct Seen<'a> {
    /// The front end.
    pub mode: crate::metrics::Mode,
    /// The request id.
    pub request_id: &'a str,
    /// The method.
    pub method: &'a str,
    /// The path as received (logged when the target was refused).
    pub raw_path: &'a str,
    /// The client's address.
    pub source_ip: Option<IpAddr>,
    /// The HTTP status answered (or that the calling proxy is told to answer).
    pub status: u16,
    /// The transport's own refusal or failure, which wins over the verdict's detail.
    pub transport_detail: Option<&'a str>,
    /// From the request's arrival until now.
    pub elapsed: std::time::Duration,
}

/// Counts one request and writes its decision log line (when
/// `log.decisions` asks for it): the one place every front end reports
/// through. Without a verdict, the transport refused the request before the
/// pipeline ran (`deny`/`bad_request`).
pub fn record(
    config: &crate::config::Config,
    metrics: &crate::metrics::Metrics,
    verdict: Option<&crate::pipeline::Verdict>,
    seen: &Seen<'_>,
) {
    use crate::config::DecisionLog;
    let elapsed = seen.elapsed.as_secs_f64();
    metrics.durations.total.observe(elapsed);
    let (decision, reason) = match verdict {
        Some(verdict) => (verdict.outcome.decision(), verdict.outcome.reason()),
        None => ("deny", "bad_request"),
    };
    let issuer = verdict.and_then(|v| v.issuer.as_deref());
    metrics.requests.inc(seen.mode, decision, reason, issuer);
    let policy_decision = verdict.and_then(|v| v.decision.as_ref());
    // A shadow policy that would change the decision is what its author
    // staged it to find out: logged under `deny` too.
    let shadow_changes =
        policy_decision.is_some_and(|d| d.shadow.iter().any(|shadow| shadow.decision != d.effect));
    let log = match config.log.decisions {
        DecisionLog::All => decision != "public" || seen.status >= 400,
        DecisionLog::Deny => decision == "deny" || reason == "dry_run" || shadow_changes,
        DecisionLog::None => false,
    };
    if !log {
        return;
    }
    let target = verdict.and_then(|v| v.target.as_ref());
    let (policies, errors, shadow) = policy_decision.map_or((&[][..], &[][..], &[][..]), |d| {
        (&d.policy_ids[..], &d.errors[..], &d.shadow[..])
    });
    let claimed = verdict.map(|v| &v.claimed);
    emit(
        config.log.format,
        &DecisionRecord {
            request_id: seen.request_id,
            mode: seen.mode.label(),
            decision,
            reason,
            detail: seen
                .transport_detail
                .or(verdict.and_then(|v| v.detail.as_deref())),
            status: seen.status,
            method: seen.method,
            path: target.map_or(seen.raw_path, |t| t.path.as_str()),
            host: target.map_or("", |t| t.host.as_str()),
            source_ip: seen.source_ip,
            issuer,
            unverified_iss: claimed.and_then(|c| c.0.as_deref()),
            unverified_kid: claimed.and_then(|c| c.1.as_deref()),
            principal: verdict
                .and_then(|v| v.caller.as_ref())
                .map(|c| c.identity().uid()),
            policies,
            errors,
            shadow,
            duration_ms: elapsed * 1000.0,
        },
    );
}

/// The fields every JSON log line of wisp starts with, then the record's.
#[derive(Serialize)]
struct Envelope<'a> {
    /// The key tracing's JSON lines use, so every line shares it.
    timestamp: &'a str,
    /// The decision log's documented name for it (README, "Logs").
    time: &'a str,
    level: &'a str,
    target: &'a str,
    message: &'a str,
    #[serde(flatten)]
    record: &'a DecisionRecord<'a>,
}

/// `2026-12-06T00:11:05.215Z` (UTC, milliseconds).
fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_millis()
    )
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`, for non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        for (secs, want) in [
            (0, "1970-01-01T00:00:00.000Z"),
            (951_782_400, "2000-02-29T00:00:00.000Z"),
            (1_796_083_865, "2026-12-01T00:11:05.000Z"),
            (4_107_542_399, "2100-02-28T23:59:59.000Z"),
        ] {
            let time = UNIX_EPOCH + Duration::from_secs(secs);
            assert_eq!(rfc3339(time), want, "{secs}");
        }
        let time = UNIX_EPOCH + Duration::from_millis(1_500);
        assert_eq!(rfc3339(time), "1970-01-01T00:00:01.500Z");
    }

    #[test]
    fn json_lines_carry_arrays_and_skip_absent_fields() {
        let policies = vec!["a".to_owned(), "b".to_owned()];
        let record = DecisionRecord {
            request_id: "r1",
            mode: "proxy",
            decision: "deny",
            reason: "token_expired",
            detail: Some("token expired"),
            status: 401,
            method: "GET",
            path: "/x",
            host: "h",
            source_ip: Some("127.0.0.1".parse().unwrap()),
            issuer: Some("k8s"),
            unverified_iss: Some("https://k8s"),
            unverified_kid: None,
            principal: None,
            policies: &policies,
            errors: &[],
            shadow: &[],
            duration_ms: 1.5,
        };
        let envelope = Envelope {
            timestamp: "t",
            time: "t",
            level: "INFO",
            target: "wisp::decision",
            message: "decision",
            record: &record,
        };
        let json: serde_json::Value = serde_json::to_value(&envelope).unwrap();
        assert_eq!(json["policies"], serde_json::json!(["a", "b"]));
        assert_eq!(json["errors"], serde_json::json!([]));
        assert_eq!(json["source_ip"], "127.0.0.1");
        assert!(json.get("principal").is_none());
        assert!(json.get("unverified_kid").is_none());
        assert_eq!(json["time"], "t");
    }
}
