//! Development tools: a local OIDC issuer and an echo upstream, used by
//! `wisp dev-issuer`, `wisp demo` and the integration tests.
//!
//! Both are real HTTP/1.1 servers on real sockets, started on a tokio task
//! and controlled through a cheaply cloneable handle:
//!
//! - [`issuer::DevIssuer`] serves OIDC discovery, a JWKS and `POST /token`,
//!   and lets a test rotate, add and remove keys, craft arbitrary tokens,
//!   count fetches and simulate outages.
//! - [`echo::EchoServer`] answers every request with a JSON description of
//!   what it received (method, path, query, every header), so a test can
//!   assert exactly what reached the upstream.
//!
//! Neither is meant for production: the issuer hands out tokens to anyone
//! who asks.

pub mod echo;
pub mod issuer;
pub mod jws;
mod server;

#[cfg(test)]
mod test_client;

pub use jws::Algorithm;
