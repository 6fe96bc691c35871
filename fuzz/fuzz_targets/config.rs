//! A config file (YAML) through the parser and every validation rule.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // Relative paths resolve against the repository's config/ directory.
    let path = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../config/fuzz.yaml"));
    let _ = wisp::config::Config::from_yaml(text, path);
});
