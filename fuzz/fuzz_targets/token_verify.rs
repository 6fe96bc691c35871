//! A bearer token through the strict parser, then verification against a
//! fixed JWKS (ES256, `fixtures/jwks.json`), then the preset's identity.
#![no_main]

#[path = "../targets/repo.rs"]
#[allow(dead_code)]
mod repo;
#[path = "../targets/token_verify.rs"]
mod target;

libfuzzer_sys::fuzz_target!(|data: &[u8]| target::run(data));
