//! Development tools: a local OIDC issuer and an echo upstream, used by
//! `wisp dev-issuer`, `wisp demo` and the integration tests.
