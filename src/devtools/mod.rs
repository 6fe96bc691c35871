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
//!
//! For benchmarks and profiling harnesses: [`complete`] drives a future as
//! a request task does, and [`raw::RawVerifier`] is ring alone on a token's
//! signature, the bound the cold path is compared with.

pub mod echo;
pub mod issuer;
pub mod jws;
pub mod raw;
mod server;

#[cfg(test)]
mod test_client;

pub use jws::Algorithm;

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

/// Runs `future` to completion as the proxy's request task does: polled in
/// place, without entering a runtime for it (the authenticator awaits
/// nothing once an issuer's keys are loaded). One that does wait is handed
/// to `runtime`. Call it with the runtime entered (`Runtime::enter`), so
/// that what the future starts (a key refetch's timeout) finds it.
pub fn complete<F: Future>(runtime: &tokio::runtime::Runtime, future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => runtime.block_on(future),
    }
}
