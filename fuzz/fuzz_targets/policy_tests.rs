//! A policy test file (`wisp test`) through its parser and validation.
#![no_main]

#[path = "../targets/repo.rs"]
#[allow(dead_code)]
mod repo;
#[path = "../targets/policy_tests.rs"]
mod target;

libfuzzer_sys::fuzz_target!(|data: &[u8]| target::run(data));
