//! The parser's errors in plain words: a "did you mean" for a misspelt key
//! or value, and "must be a list" rather than "expected sequence start".
//! Anything not recognised keeps the parser's own message.

use serde_saphyr::Error;

use super::locate::KeyPositions;

/// A better message for `error` at `key` (the key path) of `text`, if any.
pub(super) fn plain(error: &Error, key: &str, text: &str) -> Option<String> {
    match error {
        Error::SerdeUnknownField {
            field, expected, ..
        } => closest(field, expected)
            .map(|close| format!("unknown field `{field}`, did you mean `{close}`?")),
        Error::SerdeUnknownVariant {
            variant, expected, ..
        } => closest(variant, expected).map(|close| {
            format!(
                "unknown variant `{variant}`, did you mean `{close}`? (expected one of {})",
                expected.join(", ")
            )
        }),
        Error::Unexpected {
            expected: "sequence start",
            ..
        } => Some(must_be_a_list(key, text)),
        Error::Unexpected {
            expected: "mapping start",
            ..
        } => Some("must be a section of `key: value` entries, not a single value".to_owned()),
        Error::Unexpected {
            expected: "string scalar" | "scalar",
            ..
        } => Some("must be a single value, not a list or a section".to_owned()),
        Error::InvalidScalar { ty, .. } => {
            let expected = match *ty {
                "boolean" | "bool" => "true or false".to_owned(),
                ty => expected_in_words(ty).filter(|words| words == "a whole number")?,
            };
            Some(match KeyPositions::of(text).scalar(key) {
                Some(value) => format!("must be {expected}, not {value:?}"),
                None => format!("must be {expected}"),
            })
        }
        Error::SerdeInvalidType {
            unexpected,
            expected,
            ..
        } => {
            if expected == "a sequence" {
                return Some(must_be_a_list(key, text));
            }
            let expected = expected_in_words(expected)?;
            Some(format!(
                "must be {expected}, not {}",
                unexpected_in_words(unexpected)
            ))
        }
        _ => None,
    }
}

/// `audiences: orders` → "must be a list, e.g. [orders]".
fn must_be_a_list(key: &str, text: &str) -> String {
    match KeyPositions::of(text).scalar(key) {
        Some(value) if !value.is_empty() => format!("must be a list, e.g. [{value}]"),
        _ => "must be a list, e.g. [a, b] or `- a` lines".to_owned(),
    }
}

/// What serde expected, in plain words (`None`: keep the parser's message).
fn expected_in_words(expected: &str) -> Option<String> {
    let words = match expected {
        "a boolean" => "true or false",
        "u8" | "u16" | "u32" | "u64" | "usize" | "i8" | "i16" | "i32" | "i64" | "isize" => {
            "a whole number"
        }
        "a string" | "a borrowed string" => "a single value (text)",
        "a map" => "a section of `key: value` entries",
        other if other.starts_with("struct ") => "a section of `key: value` entries",
        other if other.starts_with("a ") || other.starts_with("an ") => other,
        _ => return None,
    };
    Some(words.to_owned())
}

/// What was written instead, in plain words.
fn unexpected_in_words(unexpected: &str) -> String {
    match unexpected {
        "sequence" => "a list".to_owned(),
        "map" => "a section".to_owned(),
        "unit value" => "an empty value".to_owned(),
        other => match other.split_once(' ') {
            // `string "x"`, `integer `5``, `boolean `true``, `floating point `1.5``
            Some(("string" | "integer" | "boolean" | "floating", value)) => value
                .trim_start_matches("point ")
                .trim_matches('`')
                .to_owned(),
            _ => other.to_owned(),
        },
    }
}

/// The candidate closest to `written` by edit distance, when close enough
/// to be a likely typo: at most one edit per three characters (at least one).
pub(super) fn closest<'a>(written: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let limit = (written.chars().count() / 3).max(1);
    candidates
        .iter()
        .map(|candidate| (edit_distance(written, candidate), *candidate))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance (insertions, deletions, substitutions), in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = Vec::with_capacity(b.len() + 1);
        current.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_single_character_edits() {
        assert_eq!(edit_distance("adress", "address"), 1);
        assert_eq!(edit_distance("listne", "listen"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }

    #[test]
    fn suggests_only_a_close_candidate() {
        let fields = ["address", "tls", "http2", "connect_timeout", "read_timeout"];
        assert_eq!(closest("adress", &fields), Some("address"));
        assert_eq!(closest("read_timout", &fields), Some("read_timeout"));
        assert_eq!(closest("timeout", &fields), None);
        assert_eq!(closest("x", &["y", "tls"]), Some("y"));
    }

    #[test]
    fn type_names_become_plain_words() {
        assert_eq!(
            expected_in_words("a boolean").as_deref(),
            Some("true or false")
        );
        assert_eq!(expected_in_words("u64").as_deref(), Some("a whole number"));
        assert_eq!(
            expected_in_words("struct RawUpstream").as_deref(),
            Some("a section of `key: value` entries")
        );
        assert_eq!(expected_in_words("enum RawPreset"), None);
        assert_eq!(unexpected_in_words("string \"yes\""), "\"yes\"");
        assert_eq!(unexpected_in_words("integer `5`"), "5");
        assert_eq!(unexpected_in_words("sequence"), "a list");
    }
}
