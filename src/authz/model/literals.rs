//! `Workload::"…"` literals in policies that no caller's uid can be: a
//! principal uid is `<iss>#<sub>` for token callers (iss a configured
//! issuer) and the SPIFFE ID of a configured trust domain for certificate
//! callers. Literals are found by a small scan of the policy text (outside
//! comments and strings), which also gives their position.

use std::path::Path;

use super::super::diagnostics::at_offset;
use super::super::Diagnostic;
use crate::config::{ClientAuth, Config, Preset};

/// Reports each `Workload::"…"` literal in `text` that no caller's uid can be.
pub(super) fn check(config: &Config, path: &Path, text: &str, found: &mut Vec<Diagnostic>) {
    let certificates = config
        .tls
        .as_ref()
        .is_some_and(|tls| tls.client_auth != ClientAuth::None);
    for (offset, id) in workload_literals(text) {
        if let Some(message) = unreachable_uid(config, certificates, &id) {
            found.push(at_offset(path, text, offset, message));
        }
    }
}

/// Why no caller can have the uid `id` (`None`: some caller can).
fn unreachable_uid(config: &Config, certificates: bool, id: &str) -> Option<String> {
    let from_issuer = config.issuers.iter().any(|issuer| {
        id.strip_prefix(issuer.issuer.as_str())
            .and_then(|rest| rest.strip_prefix('#'))
            .is_some_and(|sub| !sub.is_empty())
    });
    let spiffe = id.strip_prefix("spiffe://").map(|rest| {
        let trust_domain = rest.split('/').next().unwrap_or_default();
        (
            trust_domain,
            config.trust_domains.iter().any(|d| d == trust_domain),
        )
    });
    if from_issuer || (certificates && matches!(spiffe, Some((_, true)))) {
        return None;
    }
    let quoted = format!("{id:?}");
    let never = format!(
        "principal Workload::{quoted} never matches: a caller's uid is `<iss>#<sub>` for \
         tokens (iss one of the configured issuers) or its SPIFFE ID for certificate callers"
    );
    let hint = match spiffe {
        Some((trust_domain, true)) => format!(
            "no client certificates are accepted (tls.client_auth), so trust domain \
             `{trust_domain}` has no certificate callers; for JWT-SVIDs write \
             Workload::\"<issuer>#{id}\" or principal.sub == {quoted}"
        ),
        Some((trust_domain, false)) => format!(
            "trust domain `{trust_domain}` is not in trust_domains; add it, or for JWT-SVIDs \
             write principal.sub == {quoted}"
        ),
        None => {
            let sub = match id.split_once('#') {
                Some((_, sub)) if !sub.is_empty() => sub,
                _ => id,
            };
            match suggested_issuer(config, sub) {
                Some(issuer) => format!(
                    "did you mean Workload::{:?}, or principal.sub == {:?}?",
                    format!("{issuer}#{sub}"),
                    sub
                ),
                None => format!("did you mean principal.sub == {sub:?}?"),
            }
        }
    };
    Some(format!("{never}; {hint}"))
}

/// The issuer a bare `sub` most likely belongs to.
fn suggested_issuer<'a>(config: &'a Config, sub: &str) -> Option<&'a str> {
    let by_shape = if sub.starts_with("system:serviceaccount:") {
        Some(Preset::Kubernetes)
    } else if sub.starts_with("spiffe://") {
        Some(Preset::SpiffeJwt)
    } else if sub.starts_with("repo:") {
        Some(Preset::GithubActions)
    } else if !sub.is_empty() && sub.bytes().all(|b| b.is_ascii_digit()) {
        Some(Preset::Gcp)
    } else if sub.len() == 36 && sub.bytes().filter(|b| *b == b'-').count() == 4 {
        Some(Preset::Azure)
    } else {
        None
    };
    config
        .issuers
        .iter()
        .find(|issuer| Some(issuer.preset) == by_shape)
        .or_else(|| config.issuers.first())
        .map(|issuer| issuer.issuer.as_str())
}

/// Every `Workload::"…"` entity literal in a policy file, with the byte
/// offset of `Workload`, outside comments and strings. Namespaced types
/// (`Other::Workload`) are not wisp's principal and are skipped.
pub(super) fn workload_literals(text: &str) -> Vec<(usize, String)> {
    const TYPE: &str = "Workload";
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                i = text[i..].find('\n').map_or(bytes.len(), |n| i + n);
            }
            b'"' => i = string_end(bytes, i + 1),
            b if b.is_ascii_alphabetic() || b == b'_' => {
                let start = i;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                let namespaced = text[..start].trim_end().ends_with("::");
                if &text[start..i] != TYPE || namespaced {
                    continue;
                }
                let rest = text[i..].trim_start();
                let Some(rest) = rest.strip_prefix("::") else {
                    continue;
                };
                let rest = rest.trim_start();
                if !rest.starts_with('"') {
                    continue;
                }
                let open = bytes.len() - rest.len();
                let close = string_end(bytes, open + 1);
                found.push((
                    start,
                    unescape(&text[open + 1..close.saturating_sub(1).max(open + 1)]),
                ));
                i = close;
            }
            _ => i += 1,
        }
    }
    found
}

/// The index just after the string literal whose text starts at `from`.
fn string_end(bytes: &[u8], from: usize) -> usize {
    let mut i = from;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// Cedar's common string escapes (enough to compare uids).
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('0') => out.push('\0'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}
