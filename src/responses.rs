//! The responses wisp writes itself: rejections (400/401/403/503) and upstream
//! failures (502/504). HTTP clients get a small JSON body; gRPC clients
//! (`content-type: application/grpc…`) get a Trailers-Only gRPC response with
//! the matching `grpc-status`, as gRPC clients ignore HTTP status bodies.

use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::Session;

use crate::authn::AuthnError;
use crate::pipeline::Outcome;

/// Something wisp answers itself instead of forwarding.
#[derive(Debug)]
pub enum Rejection<'a> {
    /// 400: an ambiguous path (the reason from [`crate::path::PathError::reason`]).
    BadRequest(&'static str),
    /// 401 (or 503 when the issuer has no usable keys).
    Unauthenticated(&'a AuthnError),
    /// 403: policy denied.
    Forbidden,
    /// 502/504/500: the upstream failed; `error` is the body's `error` value.
    Upstream {
        /// HTTP status.
        status: u16,
        /// Stable error string.
        error: &'static str,
    },
}

/// gRPC status codes used here (grpc/doc/statuscodes.md).
mod grpc_code {
    pub const INVALID_ARGUMENT: u8 = 3;
    pub const DEADLINE_EXCEEDED: u8 = 4;
    pub const PERMISSION_DENIED: u8 = 7;
    pub const INTERNAL: u8 = 13;
    pub const UNAVAILABLE: u8 = 14;
    pub const UNAUTHENTICATED: u8 = 16;
}

/// What a rejection is answered with, over HTTP and over gRPC: also what the
/// decision service tells the calling proxy to answer.
#[derive(Debug)]
pub(crate) struct Parts {
    /// The HTTP status.
    pub(crate) status: u16,
    /// The JSON body.
    pub(crate) body: String,
    /// The `WWW-Authenticate` challenge (401).
    pub(crate) challenge: Option<String>,
    /// Whether to send `Retry-After: 5` (503).
    pub(crate) retry_after: bool,
    /// The gRPC status code.
    pub(crate) grpc_status: u8,
    /// The gRPC message (not percent-encoded).
    pub(crate) grpc_message: String,
}

impl<'a> Rejection<'a> {
    /// The rejection to answer for an outcome that is not forwarded.
    pub fn of(outcome: &'a Outcome) -> Option<Rejection<'a>> {
        match outcome {
            Outcome::Allow | Outcome::DryRunAllow | Outcome::Public => None,
            Outcome::Forbidden { .. } => Some(Rejection::Forbidden),
            Outcome::BadRequest(reason) => Some(Rejection::BadRequest(reason)),
            Outcome::Unauthenticated(error) => Some(Rejection::Unauthenticated(error)),
        }
    }
}

impl Rejection<'_> {
    /// Status, body, challenge and gRPC code of this rejection.
    pub(crate) fn parts(&self) -> Parts {
        match self {
            Rejection::BadRequest(reason) => Parts {
                status: 400,
                body: format!(r#"{{"error":"bad_request","reason":"{reason}"}}"#),
                challenge: None,
                retry_after: false,
                grpc_status: grpc_code::INVALID_ARGUMENT,
                grpc_message: format!("bad request: {reason}"),
            },
            Rejection::Unauthenticated(error) if error.status() == 503 => Parts {
                status: 503,
                body: format!(r#"{{"error":"unavailable","reason":"{}"}}"#, error.reason()),
                challenge: None,
                retry_after: true,
                grpc_status: grpc_code::UNAVAILABLE,
                grpc_message: format!("unavailable: {}", error.reason()),
            },
            Rejection::Unauthenticated(error) => Parts {
                status: 401,
                body: format!(
                    r#"{{"error":"unauthenticated","reason":"{}"}}"#,
                    error.reason()
                ),
                challenge: Some(challenge(error)),
                retry_after: false,
                grpc_status: grpc_code::UNAUTHENTICATED,
                grpc_message: format!("unauthenticated: {}", error.reason()),
            },
            Rejection::Forbidden => Parts {
                status: 403,
                body: r#"{"error":"forbidden"}"#.to_string(),
                challenge: None,
                retry_after: false,
                grpc_status: grpc_code::PERMISSION_DENIED,
                grpc_message: "forbidden".to_string(),
            },
            Rejection::Upstream { status, error } => Parts {
                status: *status,
                body: format!(r#"{{"error":"{error}"}}"#),
                challenge: None,
                retry_after: false,
                grpc_status: match status {
                    504 => grpc_code::DEADLINE_EXCEEDED,
                    502 => grpc_code::UNAVAILABLE,
                    _ => grpc_code::INTERNAL,
                },
                grpc_message: (*error).to_string(),
            },
        }
    }
}

/// The RFC 6750 challenge for a 401. Its `error_description` is generic:
/// the technical detail (which claim, which schema attribute, which key)
/// goes to the decision log only.
fn challenge(error: &AuthnError) -> String {
    match error {
        AuthnError::MissingCredentials => r#"Bearer realm="wisp""#.to_string(),
        AuthnError::MultipleCredentials | AuthnError::UnsupportedScheme => format!(
            r#"Bearer realm="wisp", error="invalid_request", error_description="{}""#,
            error.public_description()
        ),
        _ => format!(
            r#"Bearer realm="wisp", error="invalid_token", error_description="{}""#,
            error.public_description()
        ),
    }
}

/// `grpc-message` is percent-encoded (gRPC over HTTP/2 spec).
fn grpc_percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Whether the request is a gRPC call (`application/grpc`, `application/grpc+proto`, …).
pub fn is_grpc(request: &RequestHeader) -> bool {
    request
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            let value = value.trim().to_ascii_lowercase();
            value == "application/grpc"
                || value.starts_with("application/grpc+")
                || value.starts_with("application/grpc;")
        })
}

/// Writes the rejection (with the request's id, so a client can quote it)
/// and returns the HTTP status written (for logs and metrics).
pub async fn reject(session: &mut Session, rejection: Rejection<'_>, request_id: &str) -> u16 {
    let parts = rejection.parts();
    let grpc = is_grpc(session.req_header());
    let result = if grpc {
        write_grpc(session, &parts, request_id).await
    } else {
        write_json(session, &parts, request_id).await
    };
    if let Err(error) = result {
        tracing::debug!(%error, status = parts.status, "could not write response");
    }
    if grpc {
        200
    } else {
        parts.status
    }
}

/// [`reject`] on a connection that will not be reused (the proxy answers an
/// upstream failure or a broken request body and closes): the response says
/// `Connection: close`, so clients and pools do not send another request on
/// a connection about to be closed (pingora writes the `Connection` header
/// from the session's keep-alive state).
pub async fn reject_and_close(
    session: &mut Session,
    rejection: Rejection<'_>,
    request_id: &str,
) -> u16 {
    session.set_keepalive(None);
    reject(session, rejection, request_id).await
}

async fn write_json(session: &mut Session, parts: &Parts, request_id: &str) -> Result<()> {
    let body = Bytes::from(parts.body.clone());
    let mut header = ResponseHeader::build(parts.status, Some(6))?;
    header.insert_header("x-request-id", request_id)?;
    header.insert_header(http::header::CONTENT_TYPE, "application/json")?;
    header.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    header.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    if let Some(challenge) = &parts.challenge {
        header.insert_header(http::header::WWW_AUTHENTICATE, challenge.as_str())?;
    }
    if parts.retry_after {
        header.insert_header(http::header::RETRY_AFTER, "5")?;
    }
    session
        .write_response_header(Box::new(header), false)
        .await?;
    session.write_response_body(Some(body), true).await
}

/// A Trailers-Only response: HTTP 200 whose only header block carries `grpc-status`.
async fn write_grpc(session: &mut Session, parts: &Parts, request_id: &str) -> Result<()> {
    let mut header = ResponseHeader::build(200, Some(6))?;
    header.insert_header("x-request-id", request_id)?;
    header.insert_header(http::header::CONTENT_TYPE, "application/grpc")?;
    header.insert_header("grpc-status", parts.grpc_status.to_string())?;
    header.insert_header("grpc-message", grpc_percent_encode(&parts.grpc_message))?;
    if let Some(challenge) = &parts.challenge {
        header.insert_header(http::header::WWW_AUTHENTICATE, challenge.as_str())?;
    }
    if !session.is_http2() {
        // HTTP/1.1 has no trailers-only form: an empty body ends the response.
        header.insert_header(http::header::CONTENT_LENGTH, "0")?;
    }
    session.write_response_header(Box::new(header), true).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_carry_no_technical_detail() {
        let schema =
            AuthnError::SchemaMismatch("attribute pod_uid not declared in Workload".into());
        let claim = AuthnError::InvalidClaim {
            claim: "/kubernetes.io/pod".into(),
            detail: "expected a string".into(),
        };
        for error in [schema, claim] {
            let challenge = challenge(&error);
            assert!(!challenge.contains("pod"), "{challenge}");
            assert!(challenge.contains("error_description=\""), "{challenge}");
        }
    }

    #[test]
    fn grpc_messages_are_percent_encoded() {
        assert_eq!(
            grpc_percent_encode("bad: 100% ü\n"),
            "bad: 100%25 %C3%BC%0A"
        );
    }

    #[test]
    fn recognizes_grpc_content_types_only() {
        for (value, grpc) in [
            ("application/grpc", true),
            ("application/grpc+proto", true),
            ("Application/GRPC", true),
            ("application/grpc-web", false),
            ("application/json", false),
        ] {
            let mut request = RequestHeader::build("POST", b"/svc/Method", None).unwrap();
            request.insert_header("content-type", value).unwrap();
            assert_eq!(is_grpc(&request), grpc, "{value}");
        }
    }

    #[test]
    fn maps_rejections_to_grpc_codes() {
        let expired = AuthnError::Expired;
        let unavailable = AuthnError::IssuerUnavailable("k".into());
        let cases = [
            (Rejection::BadRequest("path_encoded_slash"), 400, 3),
            (Rejection::Unauthenticated(&expired), 401, 16),
            (Rejection::Unauthenticated(&unavailable), 503, 14),
            (Rejection::Forbidden, 403, 7),
            (
                Rejection::Upstream {
                    status: 504,
                    error: "upstream_timeout",
                },
                504,
                4,
            ),
            (
                Rejection::Upstream {
                    status: 502,
                    error: "bad_gateway",
                },
                502,
                14,
            ),
        ];
        for (rejection, status, grpc) in cases {
            let parts = rejection.parts();
            assert_eq!(
                (parts.status, parts.grpc_status),
                (status, grpc),
                "{rejection:?}"
            );
        }
    }
}
