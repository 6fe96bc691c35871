//! Request-target normalization before policy (README, "What the upstream
//! receives, and what clients get back"). Untrusted input.
//!
//! Policy and upstream must see the same path, and two spellings of one path
//! must not reach policy as two different strings. So the target is brought to
//! one canonical form, and anything whose meaning differs between servers
//! (encoded `/` or `\`, NUL, broken escapes) is rejected rather than guessed at:
//!
//! 1. drop the `#fragment`, split the query off at the first `?` (kept as is);
//! 2. percent-decode unreserved characters (`A-Za-z0-9-._~`), keep every other
//!    escape with uppercase hex, and percent-encode bytes that may not appear
//!    literally in a path (non-ASCII, space, `"`, `<`, …);
//! 3. merge empty segments (`//`) and resolve `.`/`..` (RFC 3986 §5.2.4,
//!    clamped at the root), keeping a trailing slash.

/// A normalized request target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizedTarget {
    /// The normalized path (starts with `/`).
    pub path: String,
    /// The query string without `?`, unchanged, if any.
    pub query: Option<String>,
}

/// Why a path was rejected (400). Every variant is an ambiguous target that
/// servers could read differently, so none is "repaired".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// The path does not start with `/` (empty, `*`, absolute-form, relative).
    #[error("path does not start with '/'")]
    NotAbsolute,
    /// `%2F`: an encoded `/` would be one segment to us and two to many servers.
    #[error("path contains an encoded '/' (%2F)")]
    EncodedSlash,
    /// `%5C`: an encoded `\`, read as a separator by some servers.
    #[error("path contains an encoded '\\' (%5C)")]
    EncodedBackslash,
    /// `%00`: an encoded NUL truncates paths in C-based servers.
    #[error("path contains an encoded NUL (%00)")]
    EncodedNul,
    /// A `%` not followed by two hex digits (`%zz`, a truncated `%4`).
    #[error("path contains an invalid percent-escape")]
    InvalidEscape,
    /// A literal `\`, read as a separator by some servers.
    #[error("path contains '\\'")]
    Backslash,
    /// A literal control character (NUL, CR, LF, TAB, DEL, …) anywhere in the target.
    #[error("request target contains a control character")]
    ControlCharacter,
}

impl PathError {
    /// Every value [`PathError::reason`] returns.
    pub const REASONS: &'static [&'static str] = &[
        "path_not_absolute",
        "path_encoded_slash",
        "path_encoded_backslash",
        "path_encoded_nul",
        "path_invalid_escape",
        "path_backslash",
        "path_control_character",
    ];

    /// The stable, machine-readable reason for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            PathError::NotAbsolute => "path_not_absolute",
            PathError::EncodedSlash => "path_encoded_slash",
            PathError::EncodedBackslash => "path_encoded_backslash",
            PathError::EncodedNul => "path_encoded_nul",
            PathError::InvalidEscape => "path_invalid_escape",
            PathError::Backslash => "path_backslash",
            PathError::ControlCharacter => "path_control_character",
        }
    }
}

/// Normalizes a raw request target (`/a/b?x=1`): see the module documentation
/// for the rules. The output is a fixed point: normalizing it again yields it.
///
/// # Errors
/// [`PathError`] for ambiguous targets: not starting with `/`, encoded `/`,
/// `\` or NUL, invalid escapes, a literal `\`, or control characters.
///
/// # Examples
/// ```
/// use wisp::path::{normalize, PathError};
///
/// let target = normalize("/a/%2e%2e//%61dmin?x=%2F#frag").unwrap();
/// assert_eq!(target.path, "/admin");
/// assert_eq!(target.query.as_deref(), Some("x=%2F"));
/// assert_eq!(normalize("/admin%2Fx"), Err(PathError::EncodedSlash));
/// ```
pub fn normalize(target: &str) -> Result<NormalizedTarget, PathError> {
    // A fragment is never sent by clients; if one is, it ends path and query alike.
    let target = target.split_once('#').map_or(target, |(before, _)| before);
    if target.bytes().any(|b| b.is_ascii_control()) {
        return Err(PathError::ControlCharacter);
    }
    let (raw_path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query.to_owned())),
        None => (target, None),
    };
    if !raw_path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let canonical = canonicalize_escapes(raw_path)?;
    Ok(NormalizedTarget {
        path: remove_dot_segments(&canonical),
        query,
    })
}

/// Step 2: one spelling per byte. Decodes unreserved escapes, uppercases the
/// hex of the others, encodes bytes not allowed literally in a path.
fn canonicalize_escapes(path: &str) -> Result<String, PathError> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        match byte {
            b'%' => {
                let decoded = match (bytes.get(i + 1), bytes.get(i + 2)) {
                    (Some(&hi), Some(&lo)) => hex_pair(hi, lo).ok_or(PathError::InvalidEscape)?,
                    _ => return Err(PathError::InvalidEscape),
                };
                match decoded {
                    b'/' => return Err(PathError::EncodedSlash),
                    b'\\' => return Err(PathError::EncodedBackslash),
                    0 => return Err(PathError::EncodedNul),
                    b if is_unreserved(b) => out.push(char::from(b)),
                    b => push_escape(&mut out, b),
                }
                i += 3;
            }
            b'\\' => return Err(PathError::Backslash),
            b if is_path_literal(b) => {
                out.push(char::from(b));
                i += 1;
            }
            b => {
                push_escape(&mut out, b);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// Step 3: merges `//`, resolves `.` and `..` (clamped at the root), keeps a
/// trailing slash. Expects a path starting with `/` whose dots are decoded.
fn remove_dot_segments(path: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    // The first item is the empty string before the leading `/`.
    for segment in path.split('/').skip(1) {
        trailing_slash = matches!(segment, "" | "." | "..");
        match segment {
            "" | "." => {}
            ".." => {
                kept.pop();
            }
            name => kept.push(name),
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &kept {
        out.push('/');
        out.push_str(segment);
    }
    if trailing_slash || kept.is_empty() {
        out.push('/');
    }
    out
}

/// RFC 3986 `unreserved`.
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// Bytes a path may hold literally: `pchar` without `%`, plus `/`.
fn is_path_literal(byte: u8) -> bool {
    is_unreserved(byte)
        || matches!(
            byte,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
                | b'/'
        )
}

fn hex_pair(hi: u8, lo: u8) -> Option<u8> {
    let digit = |b: u8| char::from(b).to_digit(16);
    // Both digits are < 16, so the value fits in a byte.
    u8::try_from(digit(hi)? * 16 + digit(lo)?).ok()
}

fn push_escape(out: &mut String, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(byte >> 4)]));
    out.push(char::from(HEX[usize::from(byte & 0x0f)]));
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn path(target: &str) -> Result<String, PathError> {
        normalize(target).map(|t| t.path)
    }

    #[test]
    fn normalizes_the_required_cases() {
        let cases = [
            ("/a/../admin", "/admin"),
            ("/a/%2e%2e/admin", "/admin"),
            ("//admin", "/admin"),
            ("/admin#x", "/admin"),
            ("/%61dmin", "/admin"),
            ("/a/./b/", "/a/b/"),
            ("/..", "/"),
        ];
        for (input, expected) in cases {
            assert_eq!(path(input).as_deref(), Ok(expected), "input {input:?}");
        }
    }

    #[test]
    fn resolves_dot_segments_and_merges_slashes() {
        let cases = [
            ("/", "/"),
            ("/a/b/c/./../../g", "/a/g"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/../../x", "/x"),
            ("/a//b///c", "/a/b/c"),
            ("/a//", "/a/"),
            ("/%2E%2E/%2e/x/", "/x/"),
            ("/a/.%2e/b", "/b"),
            ("/...", "/..."),
            ("/a/..b/c", "/a/..b/c"),
            ("/.hidden", "/.hidden"),
        ];
        for (input, expected) in cases {
            assert_eq!(path(input).as_deref(), Ok(expected), "input {input:?}");
        }
    }

    #[test]
    fn decodes_only_unreserved_escapes_and_uppercases_the_rest() {
        let cases = [
            ("/%7e%2D%5f%2E", "/~-_."),
            ("/a%20b", "/a%20b"),
            ("/a%3fb", "/a%3Fb"),
            ("/caf%c3%a9", "/caf%C3%A9"),
            ("/%25", "/%25"),
        ];
        for (input, expected) in cases {
            assert_eq!(path(input).as_deref(), Ok(expected), "input {input:?}");
        }
    }

    #[test]
    fn encodes_bytes_that_may_not_appear_literally() {
        assert_eq!(path("/café").as_deref(), Ok("/caf%C3%A9"));
        assert_eq!(path("/a b").as_deref(), Ok("/a%20b"));
        assert_eq!(path("/a\"<>").as_deref(), Ok("/a%22%3C%3E"));
        assert_eq!(
            path("/a:b@c!$&'()*+,;=").as_deref(),
            Ok("/a:b@c!$&'()*+,;=")
        );
    }

    #[test]
    fn keeps_the_query_unchanged_and_drops_the_fragment() {
        let target = normalize("/a/../b?x=%2F&y=..//#frag").unwrap();
        assert_eq!(target.path, "/b");
        assert_eq!(target.query.as_deref(), Some("x=%2F&y=..//"));
        assert_eq!(normalize("/a").unwrap().query, None);
        assert_eq!(normalize("/a?").unwrap().query.as_deref(), Some(""));
        assert_eq!(normalize("/a#b?c").unwrap().query, None);
    }

    #[test]
    fn rejects_ambiguous_targets() {
        let cases = [
            ("/admin%2F", PathError::EncodedSlash),
            ("/admin%2f..", PathError::EncodedSlash),
            ("/a%5Cb", PathError::EncodedBackslash),
            ("/a%5cb", PathError::EncodedBackslash),
            ("/a%00", PathError::EncodedNul),
            ("/a%zz", PathError::InvalidEscape),
            ("/a%4", PathError::InvalidEscape),
            ("/a%", PathError::InvalidEscape),
            ("/a%+1", PathError::InvalidEscape),
            ("/a\\b", PathError::Backslash),
            ("/a\0b", PathError::ControlCharacter),
            ("/a\r\nb", PathError::ControlCharacter),
            ("/a\tb", PathError::ControlCharacter),
            ("/a\u{7f}", PathError::ControlCharacter),
            ("/a?q=\n", PathError::ControlCharacter),
            ("", PathError::NotAbsolute),
            ("*", PathError::NotAbsolute),
            ("admin", PathError::NotAbsolute),
            ("http://example.com/admin", PathError::NotAbsolute),
            ("?a=1", PathError::NotAbsolute),
        ];
        for (input, expected) in cases {
            assert_eq!(path(input), Err(expected), "input {input:?}");
        }
    }

    /// RFC 3986 §5.2.4 remove_dot_segments, written out literally as the reference.
    fn rfc3986_remove_dot_segments(input: &str) -> String {
        let mut input = input.to_owned();
        let mut output = String::new();
        while !input.is_empty() {
            if let Some(rest) = input.strip_prefix("../") {
                input = rest.to_owned();
            } else if let Some(rest) = input.strip_prefix("./") {
                input = rest.to_owned();
            } else if input.starts_with("/./") {
                input.replace_range(..3, "/");
            } else if input == "/." {
                input = "/".to_owned();
            } else if input.starts_with("/../") || input == "/.." {
                let end = if input == "/.." { 3 } else { 4 };
                input.replace_range(..end, "/");
                let cut = output.rfind('/').unwrap_or(0);
                output.truncate(cut);
            } else if input == "." || input == ".." {
                input.clear();
            } else {
                let start = usize::from(input.starts_with('/'));
                let end = input[start..].find('/').map_or(input.len(), |i| i + start);
                output.push_str(&input[..end]);
                input.replace_range(..end, "");
            }
        }
        output
    }

    fn target_strategy() -> impl Strategy<Value = String> {
        proptest::string::string_regex(
            "(/|%2[eEfF]|%5[cC]|%[0-9a-fA-F]{0,2}|[a-z.?#\\\\]|\\.\\.|\u{0}|é){0,24}",
        )
        .expect("valid regex")
    }

    fn unreserved_path_strategy() -> impl Strategy<Value = String> {
        // Segments of unreserved characters, never empty, so the path holds no `//`.
        proptest::collection::vec(
            prop_oneof![
                Just(".".to_owned()),
                Just("..".to_owned()),
                "[A-Za-z0-9._~-]{1,4}"
            ],
            0..8,
        )
        .prop_flat_map(|segments| {
            let body = segments.iter().map(|s| format!("/{s}")).collect::<String>();
            prop_oneof![Just(body.clone()), Just(format!("{body}/"))]
        })
        .prop_map(|p| if p.is_empty() { "/".to_owned() } else { p })
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_input(input in ".{0,64}") {
            let _ = normalize(&input);
        }

        #[test]
        fn never_panics_on_escape_heavy_input(input in target_strategy()) {
            let _ = normalize(&input);
        }

        #[test]
        fn normalizing_twice_changes_nothing(input in target_strategy()) {
            if let Ok(once) = normalize(&input) {
                let again = match &once.query {
                    Some(q) => normalize(&format!("{}?{q}", once.path)),
                    None => normalize(&once.path),
                };
                prop_assert_eq!(again, Ok(once));
            }
        }

        #[test]
        fn output_holds_no_empty_or_dot_segments(input in target_strategy()) {
            if let Ok(NormalizedTarget { path, .. }) = normalize(&input) {
                prop_assert!(path.starts_with('/'));
                prop_assert!(!path.contains("//"), "{}", path);
                prop_assert!(!path.contains("/./"), "{}", path);
                prop_assert!(!path.contains("/../"), "{}", path);
                prop_assert!(!path.ends_with("/.") && !path.ends_with("/.."), "{}", path);
            }
        }

        #[test]
        fn unreserved_paths_match_rfc3986_dot_removal(input in unreserved_path_strategy()) {
            let expected = rfc3986_remove_dot_segments(&input);
            let expected = if expected.is_empty() { "/".to_owned() } else { expected };
            prop_assert_eq!(path(&input), Ok(expected));
        }
    }
}
