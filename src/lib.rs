//! wisp — workload identity sidecar proxy. (Overview written by the main session.)

pub mod authn;
pub mod authz;
pub mod config;
pub mod devtools;
pub mod headers;
pub mod identity;
pub mod path;
