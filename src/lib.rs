//! wisp — workload identity sidecar proxy.
//!
//! wisp sits in front of one service. For every request it proves who the
//! caller is, asks Cedar whether that caller may do this, and forwards allowed
//! requests with trustworthy identity headers:
//!
//! ```text
//! client ──▶ proxy::WispProxy::new_ctx        the live state, taken once (live::Live)
//!            proxy::WispProxy::request_filter
//!              1. path::normalize             ambiguous → 400
//!                 host::normalize_request     none, several or invalid → 400
//!              2. public route?               → forward as is
//!              3. authn::Authenticator        bearer JWT → Identity + principal (cached)   401 / 503
//!              4. authz::Authorizer           Cedar(principal, action, resource, context)  403
//!            upstream_request_filter
//!              5. headers::strip / inject     spoofed identity headers removed, verified added
//!            logging
//!              6. metrics + decision_log
//! ```
//!
//! Modules, one per stage:
//! - [`config`]: YAML → validated [`config::Config`].
//! - [`live`]: the state a request is decided under, swapped whole on
//!   reload (SIGHUP, file changes); [`lifecycle`]: draining on SIGTERM/SIGINT.
//! - [`authn`]: token parsing, keys, verification, presets, JWKS refresh, token cache.
//! - [`authz`]: Cedar schema/policies, principal entities, [`authz::Decision`]; the
//!   fast path (action slices, principal-guard index and native decisions, decision
//!   cache); policy loading; [`authz::model`]: the schema the configured issuers
//!   need and the config/schema/policy mismatches `wisp check` reports.
//! - [`path`], [`host`], [`headers`], [`request_id`]: request-target and
//!   host normalization, identity header hygiene, request ids.
//! - [`limits`]: per-connection limits at the accept layer (header deadline,
//!   idle keep-alive, connection cap).
//! - [`proxy`]: the thin `ProxyHttp` impl calling the stages above; [`responses`]:
//!   what wisp answers itself (JSON for HTTP clients, `grpc-status` for gRPC).
//! - [`admin`], [`metrics`], [`decision_log`]: `/metrics`, `/healthz`,
//!   `/readyz`; the decision log.
//! - [`decision`]: the decision service (wisp behind Envoy, nginx, Traefik,
//!   Caddy): ext_authz gRPC and forward-auth answers from the same pipeline.
//! - [`server`]: wiring everything into a pingora server.
//! - [`devtools`]: the development issuer and echo upstream (`wisp dev-issuer`,
//!   `wisp echo`, `wisp demo`, tests).
//!
//! docs/architecture.md explains the live state, reloads and the lifecycle.

pub mod admin;
pub mod authn;
pub mod authz;
pub mod config;
pub mod decision;
pub mod decision_log;
pub mod devtools;
pub mod headers;
pub mod host;
pub mod identity;
pub mod lifecycle;
pub mod limits;
pub mod live;
pub mod metrics;
pub mod offline;
pub mod path;
pub mod pipeline;
pub mod policy_tests;
pub mod proxy;
pub mod request_id;
pub mod responses;
pub mod server;
pub mod tls;
pub mod upstream;

/// A hash map for tables built at startup or load and looked up on every
/// request (issuers by `iss`, policy slices by method, the guard index by
/// `sub` prefix and tag, metric handles). Seeded foldhash, through
/// quick_cache (already a dependency), instead of std's SipHash, which was
/// a visible part of a request's cost. Keys come from the configuration and
/// the policies, so an attacker's input can only miss.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, quick_cache::DefaultHashBuilder>;

/// Whether `a` and `b` hold the same bytes, compared in a plain loop rather
/// than by libc's `memcmp`, for the short strings of the per-token path
/// (claim names, `like` prefixes, tags). Those were written moments before
/// they are compared, and glibc's AVX-512 `memcmp` reads them with masked
/// vector loads, which cannot take their bytes from the pending stores:
/// each such compare stalled for ~50 ns (perf on
/// `examples/profile_cold_path.rs`), and the cold path gained ~1% of its
/// rate without them (`profile_cold_path rs256 2000 30 compare`, A/B).
#[inline]
pub(crate) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// The unit tests run on the binary's allocator, so that in-process memory
/// measurements (`memory_per_cached_token`) match the server.
#[cfg(all(test, not(target_env = "msvc")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn same_bytes_is_equality(a in proptest::collection::vec(0u8..4, 0..40), b in proptest::collection::vec(0u8..4, 0..40)) {
            prop_assert_eq!(super::same_bytes(&a, &b), a == b);
            prop_assert!(super::same_bytes(&a, &a.clone()));
        }
    }
}
