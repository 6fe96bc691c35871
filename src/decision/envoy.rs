//! The few `envoy.service.auth.v3` messages the ext_authz `Check` call
//! needs, written by hand with their field numbers from Envoy's protos
//! (`envoy/service/auth/v3/{external_auth,attribute_context}.proto`,
//! `envoy/config/core/v3/{address,base}.proto`, `envoy/type/v3/http_status.proto`,
//! `google/rpc/status.proto`): no protoc, no generated crate. Fields wisp does
//! not read are left out; protobuf decoding skips them.

use std::collections::HashMap;

/// The gRPC method path.
pub const CHECK_PATH: &str = "/envoy.service.auth.v3.Authorization/Check";

/// `CheckRequest { AttributeContext attributes = 1; }`
#[derive(Clone, PartialEq, prost::Message)]
pub struct CheckRequest {
    /// What Envoy knows of the request being checked.
    #[prost(message, optional, tag = "1")]
    pub attributes: Option<AttributeContext>,
}

/// `AttributeContext { Peer source = 1; Peer destination = 2; Request request = 4; … }`
#[derive(Clone, PartialEq, prost::Message)]
pub struct AttributeContext {
    /// The downstream client.
    #[prost(message, optional, tag = "1")]
    pub source: Option<Peer>,
    /// The listener that received the request.
    #[prost(message, optional, tag = "2")]
    pub destination: Option<Peer>,
    /// The request.
    #[prost(message, optional, tag = "4")]
    pub request: Option<AttributeRequest>,
}

/// `AttributeContext.Peer { Address address = 1; string service = 2; string principal = 4; … }`
#[derive(Clone, PartialEq, prost::Message)]
pub struct Peer {
    /// The peer's address.
    #[prost(message, optional, tag = "1")]
    pub address: Option<Address>,
    /// The peer's service name.
    #[prost(string, tag = "2")]
    pub service: String,
    /// The identity Envoy authenticated (the client certificate's URI SAN
    /// when Envoy terminated mTLS).
    #[prost(string, tag = "4")]
    pub principal: String,
}

/// `config.core.v3.Address { oneof address { SocketAddress socket_address = 1; … } }`
#[derive(Clone, PartialEq, prost::Message)]
pub struct Address {
    /// The socket address (the other `oneof` members, pipes and internal
    /// addresses, carry no IP).
    #[prost(message, optional, tag = "1")]
    pub socket_address: Option<SocketAddress>,
}

/// `config.core.v3.SocketAddress { string address = 2; uint32 port_value = 3; … }`
#[derive(Clone, PartialEq, prost::Message)]
pub struct SocketAddress {
    /// The IP address, as text.
    #[prost(string, tag = "2")]
    pub address: String,
    /// The port.
    #[prost(uint32, tag = "3")]
    pub port_value: u32,
}

/// `AttributeContext.Request { Timestamp time = 1; HttpRequest http = 2; }`
#[derive(Clone, PartialEq, prost::Message)]
pub struct AttributeRequest {
    /// The HTTP request.
    #[prost(message, optional, tag = "2")]
    pub http: Option<HttpRequest>,
}

/// `AttributeContext.HttpRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HttpRequest {
    /// The request id (`x-request-id`).
    #[prost(string, tag = "1")]
    pub id: String,
    /// The method.
    #[prost(string, tag = "2")]
    pub method: String,
    /// Headers, names lowercased; repeated headers joined with `,`.
    #[prost(map = "string, string", tag = "3")]
    pub headers: HashMap<String, String>,
    /// The request target as received: path and query, not decoded.
    #[prost(string, tag = "4")]
    pub path: String,
    /// `:authority` / `Host`.
    #[prost(string, tag = "5")]
    pub host: String,
    /// `http` or `https`.
    #[prost(string, tag = "6")]
    pub scheme: String,
    /// The protocol (`HTTP/1.1`, `HTTP/2`).
    #[prost(string, tag = "10")]
    pub protocol: String,
    /// The headers with repeats kept, instead of `headers`, when Envoy's
    /// `encode_raw_headers` is set.
    #[prost(message, optional, tag = "13")]
    pub header_map: Option<HeaderMap>,
}

/// `config.core.v3.HeaderMap { repeated HeaderValue headers = 1; }`
#[derive(Clone, PartialEq, prost::Message)]
pub struct HeaderMap {
    /// The headers, in order.
    #[prost(message, repeated, tag = "1")]
    pub headers: Vec<HeaderValue>,
}

/// `config.core.v3.HeaderValue { string key = 1; string value = 2; bytes raw_value = 3; }`
#[derive(Clone, PartialEq, prost::Message)]
pub struct HeaderValue {
    /// The name.
    #[prost(string, tag = "1")]
    pub key: String,
    /// The value (UTF-8).
    #[prost(string, tag = "2")]
    pub value: String,
    /// The value as bytes (with `encode_raw_headers`).
    #[prost(bytes = "vec", tag = "3")]
    pub raw_value: Vec<u8>,
}

/// `config.core.v3.HeaderValueOption { HeaderValue header = 1; BoolValue append = 2; … }`
#[derive(Clone, PartialEq, prost::Message)]
pub struct HeaderValueOption {
    /// The header.
    #[prost(message, optional, tag = "1")]
    pub header: Option<HeaderValue>,
    /// `false`: replace any value of that name (ext_authz's documented
    /// way to overwrite; `append_action` is left at its default).
    #[prost(message, optional, tag = "2")]
    pub append: Option<BoolValue>,
}

/// `google.protobuf.BoolValue { bool value = 1; }`
#[derive(Clone, PartialEq, prost::Message)]
pub struct BoolValue {
    /// The value.
    #[prost(bool, tag = "1")]
    pub value: bool,
}

/// `CheckResponse { google.rpc.Status status = 1; oneof http_response {
/// DeniedHttpResponse denied_response = 2; OkHttpResponse ok_response = 3; } }`
#[derive(Clone, PartialEq, prost::Message)]
pub struct CheckResponse {
    /// OK to allow; any other code denies.
    #[prost(message, optional, tag = "1")]
    pub status: Option<RpcStatus>,
    /// What Envoy answers or forwards.
    #[prost(oneof = "HttpResponse", tags = "2, 3")]
    pub http_response: Option<HttpResponse>,
}

/// `CheckResponse.http_response`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum HttpResponse {
    /// Refused: Envoy answers with this.
    #[prost(message, tag = "2")]
    DeniedResponse(DeniedHttpResponse),
    /// Allowed: Envoy forwards with these header changes.
    #[prost(message, tag = "3")]
    OkResponse(OkHttpResponse),
}

/// `DeniedHttpResponse { HttpStatus status = 1; repeated HeaderValueOption headers = 2; string body = 3; }`
#[derive(Clone, PartialEq, prost::Message)]
pub struct DeniedHttpResponse {
    /// The HTTP status.
    #[prost(message, optional, tag = "1")]
    pub status: Option<HttpStatus>,
    /// Response headers.
    #[prost(message, repeated, tag = "2")]
    pub headers: Vec<HeaderValueOption>,
    /// Response body.
    #[prost(string, tag = "3")]
    pub body: String,
}

/// `OkHttpResponse { repeated HeaderValueOption headers = 2; repeated string headers_to_remove = 5; … }`
#[derive(Clone, PartialEq, prost::Message)]
pub struct OkHttpResponse {
    /// Headers set on the request forwarded upstream.
    #[prost(message, repeated, tag = "2")]
    pub headers: Vec<HeaderValueOption>,
    /// Headers removed from the request forwarded upstream.
    #[prost(string, repeated, tag = "5")]
    pub headers_to_remove: Vec<String>,
}

/// `type.v3.HttpStatus { StatusCode code = 1; }` (the enum's numbers are the HTTP statuses).
#[derive(Clone, PartialEq, prost::Message)]
pub struct HttpStatus {
    /// The HTTP status.
    #[prost(int32, tag = "1")]
    pub code: i32,
}

/// `google.rpc.Status { int32 code = 1; string message = 2; … }`
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    /// The gRPC code (0 OK, 7 PERMISSION_DENIED, 16 UNAUTHENTICATED, …).
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// For people.
    #[prost(string, tag = "2")]
    pub message: String,
}

impl HeaderValueOption {
    /// `name: value`, replacing any earlier value.
    pub fn overwrite(name: &str, value: &str) -> HeaderValueOption {
        HeaderValueOption {
            header: Some(HeaderValue {
                key: name.to_owned(),
                value: value.to_owned(),
                raw_value: Vec::new(),
            }),
            append: Some(BoolValue { value: false }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// A protobuf field key: (tag << 3) | wire type (2: length-delimited, 0: varint).
    fn key(tag: u8, wire: u8) -> u8 {
        (tag << 3) | wire
    }

    fn field(tag: u8, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![key(tag, 2), u8::try_from(bytes.len()).unwrap()];
        out.extend_from_slice(bytes);
        out
    }

    #[test]
    fn decodes_a_hand_encoded_check_request_with_envoys_field_numbers() {
        // source.address.socket_address.address = "10.1.2.3", source.principal
        let socket = field(2, b"10.1.2.3");
        let address = field(1, &socket);
        let mut source = field(1, &address);
        source.extend(field(4, b"spiffe://example.org/web"));
        // request.http: method = 2, headers map entry = 3, path = 4, host = 5
        let mut entry = field(1, b"authorization");
        entry.extend(field(2, b"Bearer x"));
        let mut http = field(2, b"GET");
        http.extend(field(3, &entry));
        http.extend(field(4, b"/api/orders?x=1"));
        http.extend(field(5, b"orders.internal"));
        // An unknown field (tag 11, body) is skipped.
        http.extend(field(11, b"ignored"));
        let request = field(2, &http);
        let mut attributes = field(1, &source);
        attributes.extend(field(4, &request));
        let bytes = field(1, &attributes);

        let decoded = CheckRequest::decode(bytes.as_slice()).unwrap();
        let attributes = decoded.attributes.unwrap();
        let source = attributes.source.unwrap();
        assert_eq!(source.principal, "spiffe://example.org/web");
        assert_eq!(
            source.address.unwrap().socket_address.unwrap().address,
            "10.1.2.3"
        );
        let http = attributes.request.unwrap().http.unwrap();
        assert_eq!(
            (http.method.as_str(), http.path.as_str(), http.host.as_str()),
            ("GET", "/api/orders?x=1", "orders.internal")
        );
        assert_eq!(http.headers["authorization"], "Bearer x");
    }

    #[test]
    fn encodes_an_ok_response_with_envoys_field_numbers() {
        let response = CheckResponse {
            status: Some(RpcStatus {
                code: 0,
                message: String::new(),
            }),
            http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
                headers: vec![HeaderValueOption::overwrite("x-a", "b")],
                headers_to_remove: vec!["x-c".into()],
            })),
        };
        let bytes = response.encode_to_vec();
        // status (1) is an empty message; ok_response is field 3.
        let mut header = field(1, b"x-a");
        header.extend(field(2, b"b"));
        let mut option = field(1, &header);
        option.extend(field(2, &[])); // append = BoolValue { false }: empty
        let mut ok = field(2, &option);
        ok.extend(field(5, b"x-c"));
        let mut want = field(1, &[]);
        want.extend(field(3, &ok));
        assert_eq!(bytes, want);

        let denied = CheckResponse {
            status: Some(RpcStatus {
                code: 7,
                message: "forbidden".into(),
            }),
            http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
                status: Some(HttpStatus { code: 403 }),
                headers: Vec::new(),
                body: "{}".into(),
            })),
        };
        let bytes = denied.encode_to_vec();
        let mut status = vec![key(1, 0), 7];
        status.extend(field(2, b"forbidden"));
        let mut body = field(1, &[key(1, 0), 0x93, 0x03]); // 403 as a varint
        body.extend(field(3, b"{}"));
        let mut want = field(1, &status);
        want.extend(field(2, &body));
        assert_eq!(bytes, want);
    }
}
