//! A request target and a Host value (split at the first newline) through
//! the pipeline's normalization; a normalized path normalizes to itself.
#![no_main]

#[path = "../targets/repo.rs"]
#[allow(dead_code)]
mod repo;
#[path = "../targets/target.rs"]
mod target;

libfuzzer_sys::fuzz_target!(|data: &[u8]| target::run(data));
