//! A request target and a Host value (split at the first newline) through
//! the pipeline's normalization; a normalized path normalizes to itself,
//! and so does the normalized host.

use wisp::pipeline::{HostField, Target};

pub fn run(data: &[u8]) {
    let (target, host) = match data.iter().position(|b| *b == b'\n') {
        Some(at) => (&data[..at], std::str::from_utf8(&data[at + 1..]).ok()),
        None => (data, None),
    };
    if let Ok(parsed) = Target::parse(target, host.map(HostField::Raw)) {
        let again = wisp::path::normalize(&parsed.path).expect("a normalized path normalizes");
        assert_eq!(again.path, parsed.path, "normalization is idempotent");
        assert!(parsed.path.starts_with('/'));
        assert!(!parsed.path.contains("/../") && !parsed.path.contains("//"));
        if !parsed.host.is_empty() {
            let host = wisp::host::normalize(parsed.host.as_bytes())
                .expect("a normalized host normalizes");
            assert_eq!(host.name(), parsed.host, "host normalization is idempotent");
            assert_eq!(host.port(), None, "the decided host has no port");
            assert!(!parsed.host.bytes().any(|b| b.is_ascii_uppercase()
                || b.is_ascii_whitespace()
                || b.is_ascii_control()
                || matches!(b, b',' | b'/' | b'%' | b'@')));
        }
    }
}
