//! A claim set (JSON) through every preset's mapping and checks, into a
//! Cedar principal validated against the shipped schema, and into the
//! upstream headers (`headers.claims` included): every header value must
//! reach the upstream byte for byte.
#![no_main]

#[path = "../targets/repo.rs"]
#[allow(dead_code)]
mod repo;
#[path = "../targets/claims_principal.rs"]
mod target;

libfuzzer_sys::fuzz_target!(|data: &[u8]| target::run(data));
