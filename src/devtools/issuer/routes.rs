//! The development issuer's HTTP routes: discovery, JWKS, `POST /token`,
//! and the simulated failures tests switch on.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::{json, Value};

use super::{DevIssuerError, IssuerState, MAX_CLAIMS_BYTES};
use crate::devtools::server::{json_response, response, Handler};

impl IssuerState {
    fn discovery(&self) -> Value {
        let mut algs: Vec<&str> = Vec::new();
        for (_, key) in &self.keys().keys {
            let name = key.alg().name();
            if !algs.contains(&name) {
                algs.push(name);
            }
        }
        // `issuer` is the `iss` (maybe a host that does not reach us, like
        // a Kubernetes API server's); the endpoints are where we listen.
        let served = &self.served_url;
        json!({
            "issuer": self.issuer_url,
            "jwks_uri": format!("{served}/jwks.json"),
            "token_endpoint": format!("{served}/token"),
            "id_token_signing_alg_values_supported": algs,
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "claims_supported": ["iss", "sub", "aud", "iat", "exp"],
        })
    }

    async fn token(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        self.token_requests.fetch_add(1, Ordering::SeqCst);
        let body = match Limited::new(request.into_body(), MAX_CLAIMS_BYTES)
            .collect()
            .await
        {
            Ok(collected) => collected.to_bytes(),
            Err(error) => return bad_request(&format!("could not read the claims body: {error}")),
        };
        let claims: Value = match serde_json::from_slice(&body) {
            Ok(claims) => claims,
            Err(error) => {
                return bad_request(&format!(
                    "the body must be a JSON object of claims: {error}"
                ))
            }
        };
        match self.mint(claims) {
            Ok(token) => response(
                StatusCode::OK,
                "text/plain; charset=utf-8",
                format!("{token}\n"),
            ),
            Err(DevIssuerError::ClaimsNotObject) => {
                bad_request("the body must be a JSON object of claims")
            }
            Err(error) => json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &json!({"error": "mint_failed", "message": error.to_string()}),
            ),
        }
    }
}

impl Handler for IssuerState {
    async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        match (request.method(), request.uri().path()) {
            (&Method::GET, "/.well-known/openid-configuration") => {
                self.discovery_requests.fetch_add(1, Ordering::SeqCst);
                let status = self.faults().discovery_status;
                simulated_failure(status)
                    .unwrap_or_else(|| json_response(StatusCode::OK, &self.discovery()))
            }
            (&Method::GET, "/jwks.json") => {
                self.jwks_requests.fetch_add(1, Ordering::SeqCst);
                let faults = *self.faults();
                if let Some(delay) = faults.jwks_delay {
                    tokio::time::sleep(delay).await;
                }
                simulated_failure(faults.jwks_status)
                    .unwrap_or_else(|| json_response(StatusCode::OK, &self.jwks()))
            }
            (&Method::POST, "/token") => self.token(request).await,
            _ => json_response(StatusCode::NOT_FOUND, &json!({"error": "not_found"})),
        }
    }
}

fn simulated_failure(status: Option<u16>) -> Option<Response<Full<Bytes>>> {
    let status = StatusCode::from_u16(status?).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    Some(json_response(
        status,
        &json!({"error": "simulated_failure"}),
    ))
}

fn bad_request(message: &str) -> Response<Full<Bytes>> {
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({"error": "bad_request", "message": message}),
    )
}
