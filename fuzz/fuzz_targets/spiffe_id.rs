//! A SPIFFE ID: parsed, and a parsed one re-parses to itself.
#![no_main]

#[path = "../targets/repo.rs"]
#[allow(dead_code)]
mod repo;
#[path = "../targets/spiffe_id.rs"]
mod target;

libfuzzer_sys::fuzz_target!(|data: &[u8]| target::run(data));
