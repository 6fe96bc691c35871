//! A request target and a Host value (split at the first newline) through
//! the pipeline's normalization; a normalized path normalizes to itself.

use wisp::pipeline::Target;

pub fn run(data: &[u8]) {
    let (target, host) = match data.iter().position(|b| *b == b'\n') {
        Some(at) => (&data[..at], std::str::from_utf8(&data[at + 1..]).ok()),
        None => (data, None),
    };
    if let Ok(parsed) = Target::parse(target, host) {
        let again = wisp::path::normalize(&parsed.path).expect("a normalized path normalizes");
        assert_eq!(again.path, parsed.path, "normalization is idempotent");
        assert!(parsed.path.starts_with('/'));
        assert!(!parsed.path.contains("/../") && !parsed.path.contains("//"));
    }
}
