//! Policy test cases (`wisp test`): YAML files of requests and the decision
//! expected for each, run through the same pipeline `serve` uses
//! ([`crate::offline`]). A malformed file is an error with file:line, never
//! a skipped case.
//!
//! ```yaml
//! tests:
//!   - name: frontend pods read orders          # required, unique in the file
//!     issuer: kubernetes                        # an issuers[].name
//!     claims: { sub: system:serviceaccount:shop:frontend }
//!     # or: token: <JWT> (verified); or: spiffe_id: spiffe://example.org/ns/shop/sa/web
//!     request: { method: GET, path: /api/orders/1 }   # optional host, source_ip, headers
//!     expect: allow                             # allow | deny | public | unauthenticated |
//!                                               # bad_request | unavailable | <status> | <reason>
//!     policies: [frontend-reads-orders]         # optional: exactly these determining policy ids
//!     shadow: { admin-lockdown: deny }          # optional: what these @shadow policies would
//!                                               # decide: allow | deny | none (does not apply)
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::offline::{Explanation, Input, Offline};
use crate::pipeline::callers::UnverifiedClaims;
use crate::pipeline::Outcome;

/// The decisions `expect` may name.
const DECISIONS: [&str; 6] = [
    "allow",
    "deny",
    "public",
    "unauthenticated",
    "bad_request",
    "unavailable",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    tests: Vec<RawCase>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    name: Spanned<String>,
    issuer: Option<String>,
    claims: Option<serde_json::Map<String, serde_json::Value>>,
    token: Option<String>,
    spiffe_id: Option<String>,
    request: RawRequest,
    expect: Spanned<RawExpect>,
    policies: Option<Vec<String>>,
    shadow: Option<BTreeMap<String, ShadowExpect>>,
}

/// What a `@shadow` policy is expected to decide for a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShadowExpect {
    /// The request would be allowed with the policy enforced.
    Allow,
    /// It would be denied.
    Deny,
    /// The policy does not apply to the request.
    None,
}

impl ShadowExpect {
    fn as_str(self) -> &'static str {
        match self {
            ShadowExpect::Allow => "allow",
            ShadowExpect::Deny => "deny",
            ShadowExpect::None => "none",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequest {
    method: Option<String>,
    path: String,
    host: Option<String>,
    source_ip: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawExpect {
    Status(u16),
    Word(String),
}

/// What a case expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// A decision (`allow`, `deny`, …).
    Decision(String),
    /// The HTTP status `serve` would answer.
    Status(u16),
    /// A stable reason (`token_expired`, `policy`, …).
    Reason(String),
}

/// One test case, validated.
#[derive(Debug, Clone)]
pub struct Case {
    /// Its name.
    pub name: String,
    /// Where it is: `file:line`.
    pub location: String,
    /// The request.
    pub input: Input,
    /// The expected outcome.
    pub expect: Expect,
    /// Exactly these determining policy ids, when given.
    pub policies: Option<Vec<String>>,
    /// What these `@shadow` policies would decide (the policy must be a
    /// `@shadow` policy of the loaded set, checked when the case runs).
    pub shadow: BTreeMap<String, ShadowExpect>,
}

/// A test file's cases, or the first problem with it (`file:line:col: …`).
///
/// # Errors
/// Unreadable or malformed files, unknown keys, duplicate names, an unknown
/// issuer, a case with both `claims` and `token`, an unknown `expect`.
pub fn load(path: &Path, issuers: &[String]) -> Result<Vec<Case>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(&text, path, issuers)
}

/// [`load`] on text already read (`path` names it in messages).
///
/// # Errors
/// As [`load`].
pub fn parse(text: &str, path: &Path, issuers: &[String]) -> Result<Vec<Case>, String> {
    let file = path.display();
    let raw: RawFile = crate::config::parse_yaml(text).map_err(|message| {
        let separator = if message.starts_with(|c: char| c.is_ascii_digit()) {
            ":"
        } else {
            ": "
        };
        format!("{file}{separator}{message}")
    })?;
    if raw.tests.is_empty() {
        return Err(format!("{file}: `tests` lists no case"));
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut cases = Vec::with_capacity(raw.tests.len());
    for case in raw.tests {
        let line = case.name.referenced.line();
        let at = |message: String| format!("{file}:{line}: {message}");
        let name = case.name.value;
        if name.trim().is_empty() {
            return Err(at("a case needs a non-empty `name`".to_owned()));
        }
        if let Some(first) = seen.insert(name.clone(), line as usize) {
            return Err(at(format!(
                "duplicate test name `{name}` (also line {first})"
            )));
        }
        let claims = match (case.claims, case.token.is_some(), &case.issuer) {
            (Some(_), true, _) => {
                return Err(at(format!("`{name}`: give `claims` or `token`, not both")))
            }
            (Some(_), false, None) => {
                return Err(at(format!(
                    "`{name}`: `claims` needs `issuer` (an issuers[].name: {})",
                    issuers.join(", ")
                )))
            }
            (Some(claims), false, Some(issuer)) => Some(UnverifiedClaims {
                issuer: issuer.clone(),
                claims,
            }),
            (None, _, _) => None,
        };
        if let Some(issuer) = &case.issuer {
            if !issuers.contains(issuer) {
                return Err(at(format!(
                    "`{name}`: unknown issuer `{issuer}`; the config has: {}",
                    issuers.join(", ")
                )));
            }
        }
        let source_ip = match &case.request.source_ip {
            None => None,
            Some(ip) => Some(ip.parse::<IpAddr>().map_err(|_| {
                at(format!(
                    "`{name}`: request.source_ip `{ip}` is not an IP address"
                ))
            })?),
        };
        let expect = match case.expect.value {
            RawExpect::Status(status) if (100..600).contains(&status) => Expect::Status(status),
            RawExpect::Status(status) => {
                return Err(at(format!("`{name}`: expect {status} is not an HTTP status")))
            }
            RawExpect::Word(word) if DECISIONS.contains(&word.as_str()) => Expect::Decision(word),
            RawExpect::Word(word)
                if Outcome::labels().iter().any(|(_, reason)| *reason == word) =>
            {
                Expect::Reason(word)
            }
            RawExpect::Word(word) => {
                return Err(format!(
                    "{file}:{}: `{name}`: expect `{word}` is neither a decision ({}), an HTTP status nor a reason wisp gives",
                    case.expect.referenced.line(),
                    DECISIONS.join(", ")
                ))
            }
        };
        cases.push(Case {
            location: format!("{file}:{line}"),
            input: Input {
                token: case.token,
                claims,
                spiffe_id: case.spiffe_id,
                method: case
                    .request
                    .method
                    .unwrap_or_else(|| "GET".to_owned())
                    .to_ascii_uppercase(),
                path: case.request.path,
                host: case.request.host,
                source_ip,
                headers: case.request.headers.into_iter().collect(),
            },
            expect,
            policies: case.policies,
            shadow: case.shadow.unwrap_or_default(),
            name,
        });
    }
    Ok(cases)
}

/// The test files under `paths` (files as given; directories: their
/// `*.yaml`/`*.yml` files, sorted).
///
/// # Errors
/// A path that does not exist or cannot be listed.
pub fn files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| format!("{}: {e}", path.display()))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| {
                    p.is_file()
                        && p.extension()
                            .is_some_and(|ext| ext == "yaml" || ext == "yml")
                })
                .collect();
            found.sort();
            files.extend(found);
        } else if path.is_file() {
            files.push(path.clone());
        } else {
            return Err(format!("{}: no such file or directory", path.display()));
        }
    }
    Ok(files)
}

/// How one case went.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// The case.
    pub case: Case,
    /// What the pipeline answered.
    pub got: Explanation,
    /// Why it failed; `None` when it passed.
    pub failure: Option<String>,
}

/// Runs `case` under `offline` at Unix time `now`.
pub async fn run(offline: &Offline, case: Case, now: i64) -> CaseResult {
    let got = offline.explain(&case.input, now).await;
    let mut problems = Vec::new();
    let matches = match &case.expect {
        Expect::Decision(decision) => got.decision == decision,
        Expect::Status(status) => got.status == *status,
        Expect::Reason(reason) => got.reason == reason,
    };
    if !matches {
        let want = match &case.expect {
            Expect::Decision(d) => d.clone(),
            Expect::Status(s) => s.to_string(),
            Expect::Reason(r) => r.clone(),
        };
        problems.push(format!(
            "- expect: {want}\n+ got:    {} {} ({}){}",
            got.status,
            got.decision,
            got.reason,
            got.detail
                .as_deref()
                .map(|d| format!(": {d}"))
                .unwrap_or_default()
        ));
    }
    if let Some(want) = &case.policies {
        let mut want = want.clone();
        want.sort();
        let mut have = got.policies.clone();
        have.sort();
        if want != have {
            problems.push(format!(
                "- policies: [{}]\n+ policies: [{}]",
                want.join(", "),
                have.join(", ")
            ));
        }
    }
    for (policy, want) in &case.shadow {
        let have = match got.shadow.iter().find(|result| &result.policy == policy) {
            Some(result) => result.decision.as_str(),
            None if offline.is_shadow(policy) => "none",
            None => {
                problems.push(format!(
                    "- shadow: {policy} is not a @shadow policy of the loaded set"
                ));
                continue;
            }
        };
        if have != want.as_str() {
            problems.push(format!(
                "- shadow {policy}: {}\n+ shadow {policy}: {have}",
                want.as_str()
            ));
        }
    }
    for error in &got.errors {
        problems.push(format!(
            "  policy {} failed to evaluate: {}",
            error.policy, error.message
        ));
    }
    let failure =
        (!matches || problems.iter().any(|p| p.starts_with("- "))).then(|| problems.join("\n"));
    CaseResult { case, got, failure }
}

/// JUnit XML for `results`, one `<testsuite>` per file.
pub fn junit(results: &[CaseResult]) -> String {
    let mut by_file: BTreeMap<String, Vec<&CaseResult>> = BTreeMap::new();
    for result in results {
        let file = result
            .case
            .location
            .rsplit_once(':')
            .map_or(result.case.location.as_str(), |(file, _)| file)
            .to_owned();
        by_file.entry(file).or_default().push(result);
    }
    let failures = results.iter().filter(|r| r.failure.is_some()).count();
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        xml,
        "<testsuites name=\"wisp test\" tests=\"{}\" failures=\"{failures}\">",
        results.len()
    );
    for (file, cases) in by_file {
        let failed = cases.iter().filter(|r| r.failure.is_some()).count();
        let _ = writeln!(
            xml,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failed}\">",
            escape(&file),
            cases.len()
        );
        for result in cases {
            let _ = write!(
                xml,
                "    <testcase name=\"{}\" classname=\"{}\"",
                escape(&result.case.name),
                escape(&file)
            );
            match &result.failure {
                None => xml.push_str("/>\n"),
                Some(failure) => {
                    let _ = writeln!(
                        xml,
                        ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>",
                        escape(failure.lines().next().unwrap_or("failed")),
                        escape(failure)
                    );
                }
            }
        }
        xml.push_str("  </testsuite>\n");
    }
    xml.push_str("</testsuites>\n");
    xml
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() && c != '\n' && c != '\t' => {
                let _ = write!(out, "&#{};", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<Vec<Case>, String> {
        parse(
            text,
            Path::new("t.yaml"),
            &["dev".to_owned(), "k8s".to_owned()],
        )
    }

    #[test]
    fn cases_parse_with_their_line() {
        let cases = parse_text(
            "tests:\n  - name: a\n    issuer: dev\n    claims: { sub: x }\n    request: { path: /a }\n    expect: allow\n  - name: b\n    request: { method: post, path: /b }\n    expect: 401\n    policies: [p]\n",
        )
        .unwrap();
        assert_eq!(cases.len(), 2);
        assert_eq!(cases[0].location, "t.yaml:2");
        assert_eq!(cases[0].expect, Expect::Decision("allow".into()));
        assert_eq!(cases[1].location, "t.yaml:7");
        assert_eq!(cases[1].input.method, "POST");
        assert_eq!(cases[1].expect, Expect::Status(401));
        assert_eq!(cases[1].policies.as_deref(), Some(&["p".to_owned()][..]));
    }

    #[test]
    fn malformed_files_are_errors_with_file_and_line() {
        for (text, want) in [
            ("tests:\n  - name: a\n    request: { path: /a }\n    expect: allow\n    expected: deny\n", "t.yaml:5:"),
            ("tests:\n  - name: a\n    request: { path: /a }\n    expect: allow\n  - name: a\n    request: { path: /b }\n    expect: deny\n", "t.yaml:5: duplicate test name `a` (also line 2)"),
            ("tests:\n  - name: a\n    claims: { sub: x }\n    request: { path: /a }\n    expect: allow\n", "t.yaml:2: `a`: `claims` needs `issuer`"),
            ("tests:\n  - name: a\n    issuer: nope\n    claims: { sub: x }\n    request: { path: /a }\n    expect: allow\n", "t.yaml:2: `a`: unknown issuer `nope`"),
            ("tests:\n  - name: a\n    request: { path: /a }\n    expect: allowed\n", "t.yaml:4: `a`: expect `allowed` is neither"),
            ("tests:\n  - name: a\n    request: { path: /a }\n    expect: 999\n", "t.yaml:2: `a`: expect 999 is not an HTTP status"),
            ("tests:\n  - name: a\n    issuer: dev\n    token: t\n    claims: { sub: x }\n    request: { path: /a }\n    expect: allow\n", "give `claims` or `token`, not both"),
            ("tests:\n  - name: a\n    expect: allow\n", "t.yaml:"),
            ("tests: []\n", "t.yaml: `tests` lists no case"),
            ("tests:\n  - name: a\n    request: { path: /a, source_ip: nope }\n    expect: allow\n", "source_ip `nope` is not an IP address"),
            ("tests:\n  - name: a\n    request: { path: /a }\n    expect: allow\n    shadow: { p: maybe }\n", "t.yaml:5:"),
        ] {
            let error = parse_text(text).unwrap_err();
            assert!(error.contains(want), "{text:?}: {error}");
        }
    }

    #[test]
    fn junit_escapes_and_counts() {
        let xml = escape("a<b & \"c\"\u{1}");
        assert_eq!(xml, "a&lt;b &amp; &quot;c&quot;&#1;");
    }
}
