//! A JWKS document into verification keys (every algorithm allowed).
#![no_main]

#[path = "../targets/repo.rs"]
#[allow(dead_code)]
mod repo;
#[path = "../targets/jwks.rs"]
mod target;

libfuzzer_sys::fuzz_target!(|data: &[u8]| target::run(data));
