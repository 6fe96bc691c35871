//! Extracting the one bearer credential from `Authorization` headers (untrusted input).
//!
//! Exactly one credential per request (README, "What the upstream receives, and
//! what clients get back"): a second header, or anything after the token in the
//! one header, is refused rather than picking one, so that wisp and the
//! upstream can never disagree on who is calling. Grammar (RFC 6750 §2.1):
//! `Bearer 1*SP token68`, scheme case-insensitive.

use super::AuthnError;

/// Returns the bearer token from the request's `Authorization` header values:
/// `Ok(None)` when there is no such header.
///
/// # Errors
/// - [`AuthnError::MultipleCredentials`] for several headers, or anything after
///   the token (a comma, another credential);
/// - [`AuthnError::UnsupportedScheme`] for a scheme other than `Bearer`;
/// - [`AuthnError::Malformed`] for an empty token, a character outside token68,
///   non-UTF-8 bytes or control characters.
pub fn bearer_token<'a>(values: &[&'a [u8]]) -> Result<Option<&'a str>, AuthnError> {
    let value = match values {
        [] => return Ok(None),
        [value] => *value,
        _ => return Err(AuthnError::MultipleCredentials),
    };
    match canonical_bearer(value) {
        Some(token) => Ok(Some(token)),
        None => parse(value),
    }
}

/// The full grammar, with a precise error for whatever is wrong.
fn parse(value: &[u8]) -> Result<Option<&str>, AuthnError> {
    let value = std::str::from_utf8(value)
        .map_err(|_| malformed("Authorization header is not UTF-8"))?
        // Optional whitespace around a field value is not part of it (RFC 9110 §5.5).
        .trim_matches([' ', '\t']);
    if value.bytes().any(|b| b.is_ascii_control()) {
        return Err(malformed(
            "Authorization header contains a control character",
        ));
    }

    let scheme_end = value.find([' ', ',']).unwrap_or(value.len());
    let (scheme, rest) = value.split_at(scheme_end);
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthnError::UnsupportedScheme);
    }
    if rest.starts_with(',') {
        return Err(AuthnError::MultipleCredentials);
    }
    let token_and_rest = rest.trim_start_matches(' ');
    let token_end = token68_len(token_and_rest);
    let (token, after) = token_and_rest.split_at(token_end);
    if token.is_empty() {
        return Err(match after.chars().next() {
            None => malformed("empty bearer token"),
            Some(',') => AuthnError::MultipleCredentials,
            Some(_) => malformed("bearer token has a character outside token68"),
        });
    }
    match after.chars().next() {
        None => Ok(Some(token)),
        Some(' ' | '\t' | ',') => Err(AuthnError::MultipleCredentials),
        Some(_) => Err(malformed("bearer token has a character outside token68")),
    }
}

/// The common case, `Bearer <token68>` with one space and nothing around,
/// checked in one branch-free pass that the compiler vectorizes (a workload
/// token is a kilobyte read on every request). `None` sends the value to
/// the full parser above, which accepts the same tokens and also explains
/// what is wrong with the rest.
fn canonical_bearer(value: &[u8]) -> Option<&str> {
    const PREFIX: &[u8] = b"bearer ";
    if value.len() <= PREFIX.len() || !value[..PREFIX.len()].eq_ignore_ascii_case(PREFIX) {
        return None;
    }
    let token = &value[PREFIX.len()..];
    let body_len = token.len() - token.iter().rev().take_while(|&&b| b == b'=').count();
    let body = &token[..body_len];
    let all_token68 = body.iter().fold(true, |ok, &b| ok & is_token68(b));
    if body.is_empty() || !all_token68 {
        return None;
    }
    // token68 characters and `=` are ASCII, so this never fails.
    std::str::from_utf8(token).ok()
}

/// Length of the leading `token68` (`1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`),
/// or 0 when `s` does not start with one.
fn token68_len(s: &str) -> usize {
    let bytes = s.as_bytes();
    let body = bytes.iter().take_while(|&&b| is_token68(b)).count();
    if body == 0 {
        return 0;
    }
    let padding = bytes.iter().skip(body).take_while(|&&b| b == b'=').count();
    body + padding
}

/// A token68 character before any `=` padding (RFC 9110 §11.2), without
/// short-circuiting so that a scan over many bytes vectorizes.
fn is_token68(b: u8) -> bool {
    b.is_ascii_lowercase()
        | b.is_ascii_uppercase()
        | b.is_ascii_digit()
        | (b == b'-')
        | (b == b'.')
        | (b == b'_')
        | (b == b'~')
        | (b == b'+')
        | (b == b'/')
}

fn malformed(detail: &str) -> AuthnError {
    AuthnError::Malformed(detail.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn one(value: &str) -> Result<Option<&str>, AuthnError> {
        bearer_token(&[value.as_bytes()])
    }

    /// The full parser alone, without the fast path.
    fn full_parse<'a>(values: &[&'a [u8]]) -> Result<Option<&'a str>, AuthnError> {
        match values {
            [value] => parse(value),
            _ => bearer_token(values),
        }
    }

    #[test]
    fn no_authorization_header_is_no_token() {
        assert_eq!(bearer_token(&[]), Ok(None));
    }

    #[test]
    fn accepts_bearer_in_any_case_with_one_or_more_spaces() {
        for value in [
            "Bearer abc.def.ghi",
            "bearer abc.def.ghi",
            "BEARER   abc.def.ghi",
            " Bearer abc.def.ghi \t",
        ] {
            assert_eq!(one(value), Ok(Some("abc.def.ghi")), "value {value:?}");
        }
    }

    #[test]
    fn accepts_every_token68_character_and_trailing_padding() {
        assert_eq!(one("Bearer aZ09-._~+/=="), Ok(Some("aZ09-._~+/==")));
    }

    #[test]
    fn rejects_two_authorization_headers() {
        let values: [&[u8]; 2] = [b"Bearer a", b"Bearer b"];
        assert_eq!(bearer_token(&values), Err(AuthnError::MultipleCredentials));
    }

    #[test]
    fn rejects_anything_after_the_token_as_another_credential() {
        for value in [
            "Bearer a, Bearer b",
            "Bearer a,b",
            "Bearer a b",
            "Bearer a  Basic xyz",
            "Bearer, Bearer a",
            "Bearer ,a",
        ] {
            assert_eq!(
                one(value),
                Err(AuthnError::MultipleCredentials),
                "value {value:?}"
            );
        }
    }

    #[test]
    fn rejects_other_schemes() {
        for value in [
            "Basic dXNlcjpwYXNz",
            "Digest x",
            "Bearerx abc",
            "Token abc",
            "abc.def.ghi",
            "Basic",
        ] {
            assert_eq!(
                one(value),
                Err(AuthnError::UnsupportedScheme),
                "value {value:?}"
            );
        }
    }

    #[test]
    fn rejects_bearer_without_a_token_as_malformed() {
        for value in [
            "Bearer",
            "Bearer ",
            "bearer    ",
            "Bearer =",
            "Bearer a=b",
            "Bearer a\"b",
            "Bearer é",
        ] {
            assert!(
                matches!(one(value), Err(AuthnError::Malformed(_))),
                "value {value:?}"
            );
        }
    }

    #[test]
    fn rejects_non_utf8_and_control_characters_as_malformed() {
        let values: [&[u8]; 1] = [b"Bearer a\xffb"];
        assert!(matches!(
            bearer_token(&values),
            Err(AuthnError::Malformed(_))
        ));
        for value in ["Bearer a\0b", "Bearer a\rb", "Bearer\ta", "Bearer a\u{7f}"] {
            assert!(
                matches!(one(value), Err(AuthnError::Malformed(_))),
                "value {value:?}"
            );
        }
    }

    #[test]
    fn token68_is_rfc_9110s_character_set() {
        for byte in 0..=u8::MAX {
            let expected = byte.is_ascii_alphanumeric() || b"-._~+/".contains(&byte);
            assert_eq!(is_token68(byte), expected, "byte {byte:#04x}");
        }
    }

    #[test]
    fn the_canonical_form_takes_the_fast_path_and_the_rest_the_full_parser() {
        assert_eq!(
            canonical_bearer(b"Bearer a.b-c_d~e+f/g=="),
            Some("a.b-c_d~e+f/g==")
        );
        assert_eq!(canonical_bearer(b"bEARER x"), Some("x"));
        for other in [
            &b"Bearer "[..],
            b"Bearer ==",
            b"Bearer  two-spaces",
            b"Bearer a b",
            b"Bearer a=b",
            b"Bearer a,",
            b" Bearer a",
            b"Bearer a ",
            b"Bearerx a",
            b"Basic abc",
        ] {
            assert_eq!(canonical_bearer(other), None, "{other:?}");
        }
    }

    proptest! {
        #[test]
        fn never_panics(values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..3)) {
            let slices: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
            let _ = bearer_token(&slices);
        }

        /// The fast path is a shortcut, never a second grammar: whatever it
        /// accepts, the full parser accepts as the same token.
        #[test]
        fn the_fast_path_agrees_with_the_full_parser(
            scheme in "(?i:bearer)|(?i:bearer)|Basic|bearer\\t|",
            sep in " | |  |\\t|",
            token in "[aZ9=, \\t._~+/-]{0,10}|[\\x00-\\x7f]{0,8}",
        ) {
            let value = format!("{scheme}{sep}{token}");
            let values = [value.as_bytes()];
            if let Some(fast) = canonical_bearer(value.as_bytes()) {
                prop_assert_eq!(full_parse(&values), Ok(Some(fast)));
            }
            // And the fast path takes every canonical token it can.
            if let Ok(Some(token)) = full_parse(&values) {
                if value == format!("Bearer {token}") {
                    prop_assert_eq!(canonical_bearer(value.as_bytes()), Some(token));
                }
            }
        }

        #[test]
        fn never_panics_on_bearer_prefixed_values(rest in ".{0,40}") {
            let value = format!("Bearer {rest}");
            if let Ok(Some(token)) = one(&value) {
                prop_assert!(token68_len(token) == token.len());
            }
        }
    }
}
