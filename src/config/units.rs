//! Durations (`30s`, `1h30m`) and sizes (`8KiB`, `64MiB`) as written in the config.

use std::time::Duration;

/// Duration units, largest first; the order a combination must follow.
const DURATION_UNITS: [(&str, u64); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// How to write a duration, appended to every duration error.
pub(crate) const DURATION_SYNTAX: &str =
    "write a number with a unit: ms, s, m, h or d, combined largest first (e.g. 500ms, 30s, 5m, 1h30m, 2d)";

/// How to write a size, appended to every size error.
pub(crate) const SIZE_SYNTAX: &str =
    "write integer bytes or a number with a 1024-based unit: B, KiB, MiB, GiB (e.g. 8192, 8KiB, 64MiB)";

/// Parses a duration such as `500ms`, `30s`, `5m`, `1h`, `2d` or a combination
/// written largest unit first, each unit at most once (`1h30m`, `1m30s500ms`).
///
/// Plain numbers are rejected: `30` could mean seconds or milliseconds.
///
/// # Errors
/// A message naming what is wrong and showing the syntax.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = |why: &str| format!("invalid duration `{text}`: {why}; {DURATION_SYNTAX}");
    if text.is_empty() {
        return Err(bad("empty"));
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("a plain number is ambiguous"));
    }
    let mut rest = text;
    let mut total_ms: u64 = 0;
    // Index into DURATION_UNITS of the next unit allowed: enforces "largest first, once".
    let mut next_unit = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad("expected a number"));
        }
        let (number, tail) = rest.split_at(digits);
        let unit_len = tail.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, tail) = tail.split_at(unit_len);
        if unit.is_empty() {
            return Err(bad("missing unit"));
        }
        let Some(offset) = DURATION_UNITS[next_unit..]
            .iter()
            .position(|(name, _)| *name == unit)
        else {
            return Err(if DURATION_UNITS.iter().any(|(name, _)| *name == unit) {
                bad("units must appear largest first, each at most once")
            } else {
                bad(&format!("unknown unit `{unit}`"))
            });
        };
        let index = next_unit + offset;
        let value: u64 = number.parse().map_err(|_| bad("number too large"))?;
        total_ms = value
            .checked_mul(DURATION_UNITS[index].1)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(|| bad("too large"))?;
        next_unit = index + 1;
        rest = tail;
    }
    Ok(Duration::from_millis(total_ms))
}

/// Formats a duration the way [`parse_duration`] reads it, largest units first
/// (`1h30m`, `0s`). Sub-millisecond parts are dropped.
pub(crate) fn format_duration(duration: Duration) -> String {
    let mut ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    if ms == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (unit, unit_ms) in DURATION_UNITS {
        let count = ms / unit_ms;
        if count > 0 {
            out.push_str(&format!("{count}{unit}"));
            ms %= unit_ms;
        }
    }
    out
}

/// Parses a size: integer bytes (`8192`) or a number with a 1024-based unit
/// (`512B`, `8KiB`, `64MiB`, `1GiB`).
///
/// The 1000-based spellings `KB`, `MB`, `GB` are rejected rather than
/// guessed: readers disagree on whether they mean 1000 or 1024.
///
/// # Errors
/// A message naming what is wrong and showing the syntax.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let bad = |why: &str| format!("invalid size `{text}`: {why}; {SIZE_SYNTAX}");
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(bad("expected a number"));
    }
    let (number, unit) = text.split_at(digits);
    let multiplier: u64 = match unit {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "k" | "K" | "kB" | "KB" | "M" | "MB" | "G" | "GB" => {
            return Err(bad(
                "1000-based units are ambiguous, use KiB, MiB or GiB (1024-based)",
            ))
        }
        other => return Err(bad(&format!("unknown unit `{other}`"))),
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|value| value.checked_mul(multiplier))
        .ok_or_else(|| bad("too large"))
}

/// Formats a size for messages: the largest exact 1024-based unit (`64MiB`), else bytes.
pub(crate) fn format_size(bytes: u64) -> String {
    for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if bytes != 0 && bytes % (1 << shift) == 0 {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    format!("{bytes}B")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_each_unit_and_combinations() {
        let cases = [
            ("500ms", 500),
            ("30s", 30_000),
            ("5m", 300_000),
            ("1h", 3_600_000),
            ("2d", 172_800_000),
            ("1h30m", 5_400_000),
            ("1m30s500ms", 90_500),
            ("0s", 0),
        ];
        for (text, ms) in cases {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(ms)),
                "{text}"
            );
        }
    }

    #[test]
    fn rejects_plain_numbers_and_shows_the_syntax() {
        let error = parse_duration("30").unwrap_err();
        assert!(error.contains("ambiguous"), "{error}");
        assert!(error.contains("1h30m"), "{error}");
    }

    #[test]
    fn rejects_malformed_durations() {
        for text in [
            "",
            "s",
            "5",
            "5x",
            "1.5h",
            "-1s",
            "30m1h",
            "1h1h",
            "1h 30m",
            "5S",
            "99999999999999999999d",
            "213503982334601d",
        ] {
            assert!(parse_duration(text).is_err(), "{text:?} was accepted");
        }
    }

    #[test]
    fn reads_sizes_in_bytes_and_binary_units() {
        let cases = [
            ("0", 0),
            ("8192", 8192),
            ("512B", 512),
            ("8KiB", 8192),
            ("64MiB", 64 << 20),
            ("1GiB", 1 << 30),
        ];
        for (text, bytes) in cases {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn rejects_decimal_and_unknown_size_units() {
        for text in [
            "",
            "MiB",
            "64MB",
            "8KB",
            "1GB",
            "1.5MiB",
            "-1",
            "8 KiB",
            "8kib",
            "99999999999GiB",
        ] {
            assert!(parse_size(text).is_err(), "{text:?} was accepted");
        }
    }

    #[test]
    fn formats_sizes_in_the_largest_exact_unit() {
        assert_eq!(format_size(64 << 20), "64MiB");
        assert_eq!(format_size(1025), "1025B");
        assert_eq!(format_size(0), "0B");
    }

    proptest! {
        #[test]
        fn formatted_durations_parse_back_to_the_same_value(ms in 0u64..=(u64::MAX / 1000)) {
            let duration = Duration::from_millis(ms);
            let text = format_duration(duration);
            prop_assert_eq!(parse_duration(&text), Ok(duration), "{}", text);
        }

        #[test]
        fn duration_parsing_never_panics(text in "\\PC{0,24}") {
            let _ = parse_duration(&text);
            let _ = parse_size(&text);
        }
    }
}
