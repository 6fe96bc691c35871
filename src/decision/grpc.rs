//! Envoy ext_authz over gRPC: `envoy.service.auth.v3.Authorization/Check`.
//! A [`CheckRequest`]'s attributes become [`Facts`]; the [`Answer`] becomes
//! an `ok_response` (identity headers to set, client copies to remove, the
//! request id) or a `denied_response` (the proxy's status, JSON body and
//! challenge), with the matching gRPC code in `status`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::envoy::{
    CheckRequest, CheckResponse, DeniedHttpResponse, HeaderValueOption, HttpRequest, HttpResponse,
    HttpStatus, OkHttpResponse, RpcStatus,
};
use super::{Answer, DecisionService, Facts, REQUEST_ID};
use crate::responses::Rejection;

/// gRPC OK.
const OK: i32 = 0;

/// The `Check` method, served by `tonic::server::Grpc`.
#[derive(Clone)]
pub(super) struct Check(pub(super) Arc<DecisionService>);

impl tonic::server::UnaryService<CheckRequest> for Check {
    type Response = CheckResponse;
    type Future =
        Pin<Box<dyn Future<Output = Result<tonic::Response<CheckResponse>, tonic::Status>> + Send>>;

    fn call(&mut self, request: tonic::Request<CheckRequest>) -> Self::Future {
        let service = Arc::clone(&self.0);
        Box::pin(async move {
            let check = request.into_inner();
            Ok(tonic::Response::new(check_response(&service, &check).await))
        })
    }
}

/// Decides one `Check` call.
pub(super) async fn check_response(
    service: &DecisionService,
    check: &CheckRequest,
) -> CheckResponse {
    let attributes = check.attributes.as_ref();
    let source = attributes.and_then(|a| a.source.as_ref());
    let empty = HttpRequest::default();
    let http = attributes
        .and_then(|a| a.request.as_ref())
        .and_then(|r| r.http.as_ref())
        .unwrap_or(&empty);
    let headers = headers_of(http);
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    };
    let facts = Facts {
        method: &http.method,
        target: &http.path,
        host: Some(http.host.as_str())
            .filter(|h| !h.is_empty())
            .or_else(|| header(":authority"))
            .or_else(|| header("host")),
        authorization: headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("authorization"))
            .map(|(_, v)| v.as_bytes())
            .collect(),
        principal: source
            .map(|s| s.principal.as_str())
            .filter(|p| !p.is_empty()),
        source_ip: source
            .and_then(|s| s.address.as_ref())
            .and_then(|a| a.socket_address.as_ref())
            .and_then(|s| s.address.parse().ok()),
        request_id: Some(http.id.as_str())
            .filter(|id| !id.is_empty())
            .or_else(|| header(REQUEST_ID)),
        header_names: headers.iter().map(|(n, _)| *n).collect(),
    };
    to_check_response(service.decide(&facts).await)
}

/// The request's headers as (name, value) pairs: from `header_map` when
/// Envoy sends raw headers (repeats kept), else from the `headers` map
/// (repeats already joined with `,` by Envoy: a repeated `authorization`
/// then reads as one malformed credential and is refused).
fn headers_of(http: &HttpRequest) -> Vec<(&str, &str)> {
    match &http.header_map {
        Some(map) if !map.headers.is_empty() => map
            .headers
            .iter()
            .map(|h| {
                let value = if h.raw_value.is_empty() {
                    h.value.as_str()
                } else {
                    std::str::from_utf8(&h.raw_value).unwrap_or("")
                };
                (h.key.as_str(), value)
            })
            .collect(),
        _ => http
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect(),
    }
}

fn to_check_response(answer: Answer) -> CheckResponse {
    match Rejection::of(&answer.outcome) {
        None => {
            let mut headers: Vec<HeaderValueOption> = answer
                .set
                .iter()
                .map(|(name, value)| HeaderValueOption::overwrite(name, value))
                .collect();
            headers.push(HeaderValueOption::overwrite(REQUEST_ID, &answer.request_id));
            CheckResponse {
                status: Some(RpcStatus {
                    code: OK,
                    message: String::new(),
                }),
                http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
                    headers,
                    headers_to_remove: answer.remove,
                })),
            }
        }
        Some(rejection) => {
            let parts = rejection.parts();
            let mut headers = vec![
                HeaderValueOption::overwrite("content-type", "application/json"),
                HeaderValueOption::overwrite("cache-control", "no-store"),
                HeaderValueOption::overwrite(REQUEST_ID, &answer.request_id),
            ];
            if let Some(challenge) = &parts.challenge {
                headers.push(HeaderValueOption::overwrite("www-authenticate", challenge));
            }
            if parts.retry_after {
                headers.push(HeaderValueOption::overwrite("retry-after", "5"));
            }
            CheckResponse {
                status: Some(RpcStatus {
                    code: i32::from(parts.grpc_status),
                    message: parts.grpc_message,
                }),
                http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
                    status: Some(HttpStatus {
                        code: i32::from(parts.status),
                    }),
                    headers,
                    body: parts.body,
                })),
            }
        }
    }
}
