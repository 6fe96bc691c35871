//! Identity headers: strip every client-sent copy, inject verified values.
//!
//! The upstream trusts these headers, so a client must never be able to set
//! them: every header with a configured name or an `x-wisp-` prefix is
//! removed, whatever its case, count, or `_`-for-`-` spelling (CGI-style
//! upstreams fold `_` into `-`, so `X_WISP_SUBJECT` would arrive as the real one).

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};

use pingora::http::RequestHeader;

use crate::config::IdentityHeaderNames;
use crate::identity::{AttrValue, Identity};

/// Every header whose folded name starts with this is ours.
const RESERVED_PREFIX: &str = "x-wisp-";

/// Whether a client-sent header named `name` must be removed: it is one of the
/// configured identity header names or starts with `x-wisp-`, compared
/// case-insensitively and with `_` read as `-`.
pub fn is_identity_header(name: &str, names: &IdentityHeaderNames) -> bool {
    folded_starts_with(name, RESERVED_PREFIX)
        || [&names.subject, &names.issuer, &names.tags, &names.spiffe_id]
            .into_iter()
            .chain(names.claims.iter().map(|(header, _)| header))
            .any(|configured| folded_eq(name, configured))
}

/// Removes every identity header (all copies, any case or `_` spelling).
pub fn strip(request: &mut RequestHeader, names: &IdentityHeaderNames) {
    // `HeaderName`s are stored lowercase whatever the case on the wire; removing
    // by that name drops every value and the case-preserving copy of the name.
    let doomed: Vec<http::HeaderName> = request
        .headers
        .keys()
        .filter(|name| is_identity_header(name.as_str(), names))
        .cloned()
        .collect();
    for name in &doomed {
        request.remove_header(name);
    }
}

/// The identity header values of one caller, borrowed from its identity.
/// Built per request (three small copies) rather than cached per token: a
/// cached set of `HeaderValue`s cost ~200 bytes per cached token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdentityHeaderValues<'a> {
    subject: &'a str,
    issuer: &'a str,
    /// Tags, comma-separated; `None` when there are none.
    tags: Option<&'a str>,
    /// Only when the identity has a `spiffe_id` string attribute.
    spiffe_id: Option<&'a str>,
    /// The identity, for `headers.claims`.
    identity: &'a Identity,
}

impl<'a> IdentityHeaderValues<'a> {
    /// The values for `identity`.
    pub fn of(identity: &'a Identity) -> IdentityHeaderValues<'a> {
        IdentityHeaderValues {
            subject: identity.sub(),
            issuer: identity.iss(),
            tags: (identity.tags().len() > 0).then(|| identity.tags_text()),
            spiffe_id: match identity.attrs.get("spiffe_id") {
                Some(AttrValue::String(id)) => Some(id.as_str()),
                _ => None,
            },
            identity,
        }
    }

    /// The `headers.claims` value of principal attribute `attribute`:
    /// strings as they are, numbers and booleans as text, sets
    /// comma-joined. `None` (the header is not sent) when the caller lacks
    /// the attribute, for a record or an empty set, and for a value that
    /// would not arrive as it is at every upstream: anything but printable
    /// ASCII, surrounding spaces (parsers strip them), or a set
    /// element that is empty or holds `,` (the separator).
    fn claim(&self, attribute: &str) -> Option<Cow<'a, str>> {
        let identity = self.identity;
        let value: Cow<'a, str> = match attribute {
            "sub" => Cow::Borrowed(self.subject),
            "iss" => Cow::Borrowed(self.issuer),
            "tags" => Cow::Borrowed(self.tags?),
            "authn" => Cow::Borrowed(identity.authn.as_str()),
            _ => match identity.attrs.get(attribute)? {
                AttrValue::String(text) => Cow::Borrowed(text.as_str()),
                AttrValue::Long(number) => Cow::Owned(number.to_string()),
                AttrValue::Bool(flag) => Cow::Borrowed(if *flag { "true" } else { "false" }),
                AttrValue::Set(items) => {
                    if items.is_empty()
                        || items.iter().any(|item| {
                            item.is_empty() || item.contains(',') || !arrives_as_is(item)
                        })
                    {
                        return None;
                    }
                    Cow::Owned(items.join(","))
                }
                AttrValue::Record(_) => return None,
            },
        };
        arrives_as_is(&value).then_some(value)
    }

    /// Checks that every value can be sent in a header.
    ///
    /// # Errors
    /// A message naming the value that cannot be carried in a header (the
    /// identity builders reject such claims, so this is a second line of
    /// defence, run once per verified identity).
    pub fn check(&self) -> Result<(), String> {
        let values = [
            ("sub", Some(self.subject)),
            ("iss", Some(self.issuer)),
            ("tags", self.tags),
            ("spiffe_id", self.spiffe_id),
        ];
        for (what, value) in values {
            if value.is_some_and(|value| !can_be_header_value(value)) {
                return Err(format!("{what} cannot be sent in a header"));
            }
        }
        Ok(())
    }
}

/// Sets the verified identity headers: subject, issuer, tags (comma-separated,
/// removed when there are none) and the SPIFFE ID (removed when there is
/// none). Replaces any earlier value of those names.
///
/// # Errors
/// A message when a value cannot be a header value (never expected: the
/// identity was checked when it was built).
pub fn inject(
    request: &mut RequestHeader,
    values: &IdentityHeaderValues<'_>,
    names: &PreparedNames,
) -> Result<(), String> {
    for (name, value) in names.pairs(values) {
        set(request, name, value)?;
    }
    for (name, attribute) in names.claims.iter() {
        set(request, name, values.claim(attribute).as_deref())?;
    }
    Ok(())
}

/// The identity headers the upstream receives for `values`, as (name,
/// value) pairs: what [`inject`] sets (for `wisp explain` and front ends
/// that hand headers to another proxy).
pub fn plan(values: &IdentityHeaderValues<'_>, names: &PreparedNames) -> Vec<(String, String)> {
    let identity = names
        .pairs(values)
        .into_iter()
        .filter_map(|(name, value)| Some((name.to_owned(), value?.to_owned())));
    let claims = names.claims.iter().filter_map(|(name, attribute)| {
        Some(((*name).to_owned(), values.claim(attribute)?.into_owned()))
    });
    identity.chain(claims).collect()
}

/// Whether `value` reaches every upstream byte for byte: printable ASCII
/// (header bytes beyond ASCII are read as Latin-1 by some parsers and UTF-8
/// by others; tabs and control characters are rewritten or refused), without
/// leading or trailing spaces, which parsers drop.
fn arrives_as_is(value: &str) -> bool {
    value.bytes().all(|b| (b' '..=b'~').contains(&b))
        && !value.starts_with(' ')
        && !value.ends_with(' ')
}

fn header_value(value: &str) -> Result<http::HeaderValue, http::header::InvalidHeaderValue> {
    http::HeaderValue::from_str(value)
}

/// Whether [`header_value`] accepts `value`, without building one (which
/// copies it into a new allocation): what `http` checks, byte by byte
/// (tab, and every byte from space up but DEL).
fn can_be_header_value(value: &str) -> bool {
    // No early return, so that the loop vectorizes.
    value
        .bytes()
        .fold(true, |ok, b| ok & ((b >= b' ' && b != 0x7f) || b == b'\t'))
}

/// The identity header names in the form pingora takes them, built once at
/// startup so a request does not allocate a name per header. `'static`, so
/// that pingora wraps them in a static `Bytes`: cloning a shared `Bytes`
/// instead bumps one reference count from every worker thread, a cache line
/// bounced between cores on every request.
#[derive(Debug, Clone)]
pub struct PreparedNames {
    subject: &'static str,
    issuer: &'static str,
    tags: &'static str,
    spiffe_id: &'static str,
    /// `headers.claims`: (header name, principal attribute).
    claims: Arc<[(&'static str, String)]>,
}

/// The one `'static` copy of `name`: leaked once per distinct name for the
/// life of the process (a handful of configured header names), however many
/// proxies are built.
fn intern(name: &str) -> &'static str {
    static NAMES: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
    // A panic while holding the lock cannot leave the set half-updated
    // (one insert), so a poisoned lock is still a good set.
    let mut names = NAMES.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(interned) = names.get(name) {
        return interned;
    }
    let interned: &'static str = Box::leak(name.into());
    names.insert(interned);
    interned
}

impl PreparedNames {
    /// Each identity header name with its value for `values` (`None`: the
    /// header is removed, e.g. no tags).
    fn pairs<'v>(&self, values: &IdentityHeaderValues<'v>) -> [(&'static str, Option<&'v str>); 4] {
        [
            (self.subject, Some(values.subject)),
            (self.issuer, Some(values.issuer)),
            (self.tags, values.tags),
            (self.spiffe_id, values.spiffe_id),
        ]
    }

    /// Prepares `names`.
    pub fn new(names: &IdentityHeaderNames) -> PreparedNames {
        PreparedNames {
            subject: intern(&names.subject),
            issuer: intern(&names.issuer),
            tags: intern(&names.tags),
            spiffe_id: intern(&names.spiffe_id),
            claims: names
                .claims
                .iter()
                .map(|(header, attribute)| (intern(header), attribute.clone()))
                .collect(),
        }
    }
}

/// Inserts `name: value`, or removes `name` when `value` is `None`.
fn set(request: &mut RequestHeader, name: &'static str, value: Option<&str>) -> Result<(), String> {
    match value {
        Some(value) => {
            let value = header_value(value)
                .map_err(|_| format!("the value of header {name} is not valid"))?;
            request
                .insert_header(name, value)
                .map_err(|e| format!("cannot set header {name}: {e}"))
        }
        None => {
            request.remove_header(name);
            Ok(())
        }
    }
}

/// The byte as compared: ASCII lowercase, `_` read as `-`.
fn fold(byte: u8) -> u8 {
    match byte {
        b'_' => b'-',
        b => b.to_ascii_lowercase(),
    }
}

fn folded_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| fold(x) == fold(y))
}

fn folded_starts_with(name: &str, prefix: &str) -> bool {
    name.len() >= prefix.len()
        && name
            .bytes()
            .zip(prefix.bytes())
            .all(|(x, y)| fold(x) == fold(y))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use crate::identity::{AuthnMethod, Names};

    fn names() -> IdentityHeaderNames {
        IdentityHeaderNames {
            subject: "x-wisp-subject".into(),
            issuer: "x-wisp-issuer".into(),
            tags: "x-wisp-tags".into(),
            spiffe_id: "x-wisp-spiffe-id".into(),
            claims: Vec::new(),
        }
    }

    fn custom_names() -> IdentityHeaderNames {
        IdentityHeaderNames {
            subject: "x-caller".into(),
            issuer: "x-caller-iss".into(),
            tags: "x-caller-tags".into(),
            spiffe_id: "x-caller-spiffe".into(),
            claims: vec![("x-team".into(), "team".into())],
        }
    }

    fn request(headers: &[(&str, &str)]) -> RequestHeader {
        let mut request = RequestHeader::build("GET", b"/", None).unwrap();
        for (name, value) in headers {
            request.append_header(name.to_string(), *value).unwrap();
        }
        request
    }

    fn values(request: &RequestHeader, name: &str) -> Vec<String> {
        request
            .headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    /// What the upstream sees on the wire.
    fn wire(request: &RequestHeader) -> String {
        let mut buf = Vec::new();
        request.header_to_h1_wire(&mut buf);
        String::from_utf8(buf).unwrap()
    }

    fn identity(tags: &[&str], spiffe_id: Option<AttrValue>) -> Identity {
        let mut attrs = BTreeMap::new();
        if let Some(id) = spiffe_id {
            attrs.insert("spiffe_id".to_owned(), id);
        }
        with_sub("acme:frontend", tags, attrs)
    }

    fn with_sub(sub: &str, tags: &[&str], attrs: BTreeMap<String, AttrValue>) -> Identity {
        let iss = "https://issuer.example";
        let uid = format!("{iss}#{sub}");
        let names = Names {
            uid: &uid,
            sub,
            iss,
            tags,
        };
        let mut identity = Identity::new(names, Arc::from("demo"), AuthnMethod::Jwt, 0).unwrap();
        identity.attrs = attrs;
        identity
    }

    #[test]
    fn recognizes_identity_headers_in_any_case_and_underscore_spelling() {
        let names = names();
        for name in [
            "x-wisp-subject",
            "X-Wisp-Subject",
            "X_WISP_SUBJECT",
            "x-wisp-anything",
            "X-WISP-",
            "x_wisp_tags",
        ] {
            assert!(is_identity_header(name, &names), "{name}");
        }
        for name in [
            "x-wisp",
            "x-wis-subject",
            "authorization",
            "xx-wisp-subject",
            "",
            "x-wisp",
        ] {
            assert!(!is_identity_header(name, &names), "{name}");
        }
    }

    #[test]
    fn recognizes_configured_custom_names_in_odd_case() {
        let names = custom_names();
        for name in [
            "X-Caller",
            "x_CALLER_iss",
            "X-CALLER-TAGS",
            "x-caller-SPIFFE",
            "x-wisp-other",
            "X_Team",
        ] {
            assert!(is_identity_header(name, &names), "{name}");
        }
        assert!(!is_identity_header("x-caller-id", &names));
    }

    #[test]
    fn strip_removes_every_spoofed_copy_and_leaves_other_headers() {
        let mut req = request(&[
            ("X-Wisp-Subject", "evil"),
            ("x-wisp-subject", "evil2"),
            ("x-wisp-subject", "evil3"),
            ("x-wisp-anything", "evil"),
            ("X_WISP_SUBJECT", "evil"),
            ("Host", "example.com"),
            ("Accept", "a"),
            ("accept", "b"),
            ("X-Request-Id", "42"),
        ]);
        strip(&mut req, &names());
        assert_eq!(req.headers.len(), 4);
        assert_eq!(values(&req, "accept"), ["a", "b"]);
        assert_eq!(values(&req, "host"), ["example.com"]);
        assert_eq!(values(&req, "x-request-id"), ["42"]);
        let wire = wire(&req);
        assert!(!wire.to_ascii_lowercase().contains("wisp"), "{wire}");
        assert!(wire.contains("X-Request-Id: 42"), "{wire}");
    }

    #[test]
    fn strip_removes_configured_custom_names_in_odd_case() {
        let mut req = request(&[
            ("X-CALLER", "evil"),
            ("x_caller_tags", "evil"),
            ("X-Wisp-Foo", "evil"),
            ("X-Caller-Id", "ok"),
        ]);
        strip(&mut req, &custom_names());
        assert_eq!(req.headers.len(), 1);
        assert_eq!(values(&req, "x-caller-id"), ["ok"]);
    }

    #[test]
    fn inject_sets_subject_issuer_and_comma_joined_tags() {
        let mut req = request(&[("x-wisp-subject", "stale")]);
        let identity = identity(&["tag:prod", "tag:web"], None);
        let values_of = IdentityHeaderValues::of(&identity);
        inject(&mut req, &values_of, &PreparedNames::new(&names())).unwrap();
        assert_eq!(values(&req, "x-wisp-subject"), ["acme:frontend"]);
        assert_eq!(values(&req, "x-wisp-issuer"), ["https://issuer.example"]);
        assert_eq!(values(&req, "x-wisp-tags"), ["tag:prod,tag:web"]);
        assert!(values(&req, "x-wisp-spiffe-id").is_empty());
    }

    #[test]
    fn inject_omits_tags_when_there_are_none() {
        let mut req = request(&[]);
        let identity = identity(&[], None);
        let values_of = IdentityHeaderValues::of(&identity);
        inject(&mut req, &values_of, &PreparedNames::new(&names())).unwrap();
        assert!(req.headers.get("x-wisp-tags").is_none());
        assert_eq!(req.headers.len(), 2);
    }

    #[test]
    fn inject_sends_the_spiffe_id_only_when_it_is_a_string_attribute() {
        let mut req = request(&[]);
        let id = AttrValue::String("spiffe://example.org/ns/a/sa/b".into());
        let identity_with_id = identity(&[], Some(id));
        let values_of = IdentityHeaderValues::of(&identity_with_id);
        inject(&mut req, &values_of, &PreparedNames::new(&names())).unwrap();
        assert_eq!(
            values(&req, "x-wisp-spiffe-id"),
            ["spiffe://example.org/ns/a/sa/b"]
        );

        let mut req = request(&[]);
        let identity = identity(&[], Some(AttrValue::Long(1)));
        let values_of = IdentityHeaderValues::of(&identity);
        inject(&mut req, &values_of, &PreparedNames::new(&names())).unwrap();
        assert!(req.headers.get("x-wisp-spiffe-id").is_none());
    }

    #[test]
    fn a_value_that_cannot_be_a_header_is_an_error() {
        let bad = with_sub("a\nb", &[], BTreeMap::new());
        assert!(IdentityHeaderValues::of(&bad).check().is_err());
        let mut req = request(&[]);
        let names = PreparedNames::new(&names());
        assert!(inject(&mut req, &IdentityHeaderValues::of(&bad), &names).is_err());
        let good = identity(&["tag:prod"], None);
        assert_eq!(IdentityHeaderValues::of(&good).check(), Ok(()));
    }

    #[test]
    fn a_header_name_is_interned_once_however_many_proxies_use_it() {
        let first = intern("X-Test-Interned");
        let again = intern(&String::from("X-Test-Interned"));
        assert_eq!(first, "X-Test-Interned");
        assert!(std::ptr::eq(first, again), "one leaked copy per name");
        assert!(!std::ptr::eq(first, intern("x-test-interned")));
    }

    proptest! {
        /// The allocation-free check answers as `http` does, on text with
        /// every kind of byte (controls, DEL, tab, non-ASCII).
        #[test]
        fn the_header_value_check_agrees_with_http(
            value in "([\\x00-\\x1f\\x7f\\t ~a-z]|\\PC){0,24}",
        ) {
            prop_assert_eq!(can_be_header_value(&value), header_value(&value).is_ok(), "{:?}", value);
        }

        #[test]
        fn after_strip_no_identity_header_remains(
            header_names in proptest::collection::vec("([xX][-_][wW][iI][sS][pP][-_]|[xX][-_][cC][aA][lL][lL][eE][rR])?[a-zA-Z0-9_-]{0,8}", 0..12),
            custom in any::<bool>(),
        ) {
            let names = if custom { custom_names() } else { names() };
            let mut req = RequestHeader::build("GET", b"/", None).unwrap();
            for name in &header_names {
                if name.is_empty() { continue; }
                req.append_header(name.clone(), "v").unwrap();
            }
            strip(&mut req, &names);
            for name in req.headers.keys() {
                prop_assert!(!is_identity_header(name.as_str(), &names), "{} survived", name);
            }
            let wire = wire(&req);
            for line in wire.lines() {
                let name = line.split(':').next().unwrap_or_default();
                prop_assert!(!is_identity_header(name, &names), "{} on the wire", name);
            }
        }
    }

    #[test]
    fn claim_headers_carry_attributes_as_text_and_omit_what_would_not_arrive_as_is() {
        let mut attrs = BTreeMap::new();
        let text = |s: &str| AttrValue::String(s.to_owned());
        let set = |items: &[&str]| AttrValue::Set(items.iter().map(|s| s.to_string()).collect());
        attrs.insert("team".to_owned(), text("payments"));
        attrs.insert("level".to_owned(), AttrValue::Long(-3));
        attrs.insert("admin".to_owned(), AttrValue::Bool(false));
        attrs.insert("groups".to_owned(), set(&["a", "b c"]));
        attrs.insert("empty".to_owned(), set(&[]));
        attrs.insert("comma".to_owned(), set(&["a,b"]));
        attrs.insert("blank".to_owned(), set(&["a", ""]));
        attrs.insert("padded".to_owned(), text(" x"));
        attrs.insert("newline".to_owned(), text("a\nb"));
        attrs.insert("tab".to_owned(), text("a\tb"));
        attrs.insert("latin".to_owned(), text("équipe"));
        attrs.insert("record".to_owned(), AttrValue::Record(BTreeMap::new()));
        let identity = with_sub("acme:frontend", &["tag:a", "tag:b"], attrs);
        let values = IdentityHeaderValues::of(&identity);
        let got = |attribute: &str| values.claim(attribute).map(Cow::into_owned);
        assert_eq!(got("team").as_deref(), Some("payments"));
        assert_eq!(got("level").as_deref(), Some("-3"));
        assert_eq!(got("admin").as_deref(), Some("false"));
        assert_eq!(got("groups").as_deref(), Some("a,b c"));
        assert_eq!(got("sub").as_deref(), Some("acme:frontend"));
        assert_eq!(got("iss").as_deref(), Some("https://issuer.example"));
        assert_eq!(got("tags").as_deref(), Some("tag:a,tag:b"));
        assert_eq!(got("authn").as_deref(), Some("jwt"));
        for absent in [
            "missing", "empty", "comma", "blank", "padded", "newline", "tab", "latin", "record",
        ] {
            assert_eq!(got(absent), None, "{absent}");
        }
    }

    #[test]
    fn claim_headers_are_stripped_from_clients_and_injected_from_the_identity() {
        let names = custom_names();
        let mut attrs = BTreeMap::new();
        attrs.insert("team".to_owned(), AttrValue::String("payments".to_owned()));
        let identity = with_sub("acme:frontend", &[], attrs);
        let mut req = request(&[("X-Team", "admins"), ("x_team", "admins"), ("accept", "a")]);
        strip(&mut req, &names);
        assert!(values(&req, "x-team").is_empty());
        let prepared = PreparedNames::new(&names);
        let values_of = IdentityHeaderValues::of(&identity);
        inject(&mut req, &values_of, &prepared).unwrap();
        assert_eq!(values(&req, "x-team"), ["payments"]);
        assert!(plan(&values_of, &prepared).contains(&("x-team".to_owned(), "payments".to_owned())));
        // A caller without the attribute gets no header, whatever the client sent.
        let other = with_sub("acme:other", &[], BTreeMap::new());
        let mut req = request(&[("X-Team", "admins")]);
        strip(&mut req, &names);
        inject(&mut req, &IdentityHeaderValues::of(&other), &prepared).unwrap();
        assert!(values(&req, "x-team").is_empty());
    }
}
