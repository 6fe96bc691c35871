//! Host validation and normalization before policy. Untrusted input.
//!
//! `resource.host` is only as trustworthy as its parsing: a policy that
//! forbids `admin.example` must not be passed by `admin.example.`,
//! `ADMIN.example`, `admin.example, other` or `admin.example:80:80`, which
//! upstreams and their routers read as that host (or as something else).
//! So the host is brought to one canonical form, and anything that is not
//! plainly one RFC 3986 `host[:port]` is refused (400) rather than guessed at:
//!
//! - a reg-name of letters, digits, `-`, `.`, `_`, `~` (percent-escapes of
//!   those are decoded; any other escape and every sub-delim, `,` `;` `=`
//!   `!` `$` `&` `'` `(` `)` `*` `+`, is refused as ambiguous), lowercased,
//!   one trailing dot stripped, no empty label, at most 255 bytes;
//! - a name whose last label is numeric must be a dotted-quad IPv4 address
//!   (`127.0.0.01`, `0x7f.1`, `2130706433` are refused: resolvers read them
//!   as addresses, policies as names);
//! - `[IPv6]`, written in its canonical (RFC 5952) form; no zone, no IPvFuture;
//! - an optional port of at most five digits, ≤ 65535 (leading zeros dropped).
//!
//! Per request ([`normalize_request`]): HTTP/1.1 needs exactly one `Host`
//! (RFC 9112 §3.2); HTTP/2 uses `:authority` (pingora keeps it as the URI's
//! authority), else its `Host`; an absolute-form target's authority has
//! already replaced `Host` (RFC 9112 §3.2.2). Policy decides on the name
//! without the port; the upstream gets the normalized `host[:port]`.

use std::net::Ipv6Addr;

use pingora::http::RequestHeader;

/// The longest host name accepted, in bytes (DNS names are at most 253).
pub const MAX_HOST_BYTES: usize = 255;

/// A validated, normalized `host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// Lowercase name, IPv4 address, or `[IPv6]`; never empty.
    name: String,
    port: Option<u16>,
}

impl Host {
    /// The host without port: what policy sees as `resource.host`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The port, when one was given.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// `host[:port]`: what the upstream receives as `Host`.
    pub fn authority(&self) -> String {
        let mut out = String::with_capacity(self.name.len() + 6);
        out.push_str(&self.name);
        if let Some(port) = self.port {
            // Per request: digits by hand rather than through `fmt`.
            out.push(':');
            let mut digits = [0u8; 5];
            let mut at = digits.len();
            let mut rest = port;
            loop {
                at -= 1;
                digits[at] = b'0' + (rest % 10) as u8;
                rest /= 10;
                if rest == 0 {
                    break;
                }
            }
            for &digit in &digits[at..] {
                out.push(char::from(digit));
            }
        }
        out
    }
}

/// Why a request's host was refused (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// No `Host` (and no `:authority`), or an empty one.
    #[error("the request names no host")]
    Missing,
    /// Not one plain `host[:port]`: a list, a path, two ports, a sub-delim,
    /// an escape, an over-long or malformed name.
    #[error("the host is not a valid host[:port]")]
    Invalid,
    /// More than one `Host` header, or an HTTP/2 `Host` that differs from
    /// `:authority`.
    #[error("the request names more than one host")]
    Multiple,
}

impl HostError {
    /// Every value [`HostError::reason`] returns.
    pub const REASONS: &'static [&'static str] = &["host_missing", "host_invalid", "host_multiple"];

    /// The stable, machine-readable reason for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            HostError::Missing => "host_missing",
            HostError::Invalid => "host_invalid",
            HostError::Multiple => "host_multiple",
        }
    }
}

/// Normalizes one `Host` field value (or `:authority`): see the module
/// documentation for the rules. Surrounding spaces and tabs (the field's
/// optional whitespace) are ignored. The output is a fixed point:
/// normalizing `authority()` again yields the same [`Host`].
///
/// # Errors
/// [`HostError::Missing`] for an empty value; [`HostError::Invalid`] for
/// anything that is not one plain `host[:port]`.
///
/// # Examples
/// ```
/// use wisp::host::{normalize, HostError};
///
/// let host = normalize(b"Admin.Example.:0443").unwrap();
/// assert_eq!((host.name(), host.port()), ("admin.example", Some(443)));
/// assert_eq!(normalize(b"admin.example, other"), Err(HostError::Invalid));
/// ```
pub fn normalize(raw: &[u8]) -> Result<Host, HostError> {
    let raw = trim_ows(raw);
    if raw.is_empty() {
        return Err(HostError::Missing);
    }
    // A generous early bound: a name, its trailing dot, escapes cannot make
    // a valid host longer than this (each escape decodes to one byte).
    if raw.len() > 3 * (MAX_HOST_BYTES + 1) + 6 {
        return Err(HostError::Invalid);
    }
    let (name, port) = split_port(raw)?;
    let name = if name.first() == Some(&b'[') {
        ipv6(name)?
    } else {
        reg_name_or_ipv4(name)?
    };
    Ok(Host { name, port })
}

fn trim_ows(mut raw: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = raw {
        raw = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = raw {
        raw = rest;
    }
    raw
}

/// Splits `host[:port]`; the port must be 1–5 digits, ≤ 65535 (an empty
/// port, `host:`, is RFC 3986's "no port").
fn split_port(raw: &[u8]) -> Result<(&[u8], Option<u16>), HostError> {
    let colon = if raw.first() == Some(&b'[') {
        let close = raw
            .iter()
            .position(|&b| b == b']')
            .ok_or(HostError::Invalid)?;
        match raw.get(close + 1) {
            None => return Ok((raw, None)),
            Some(b':') => close + 1,
            Some(_) => return Err(HostError::Invalid),
        }
    } else {
        match raw.iter().position(|&b| b == b':') {
            None => return Ok((raw, None)),
            Some(colon) => colon,
        }
    };
    let (name, port) = (&raw[..colon], &raw[colon + 1..]);
    if port.is_empty() {
        return Ok((name, None));
    }
    if port.len() > 5 || !port.iter().all(u8::is_ascii_digit) {
        return Err(HostError::Invalid);
    }
    let port = port
        .iter()
        .fold(0u32, |n, &digit| n * 10 + u32::from(digit - b'0'));
    let port = u16::try_from(port).map_err(|_| HostError::Invalid)?;
    Ok((name, Some(port)))
}

fn ipv6(name: &[u8]) -> Result<String, HostError> {
    let inner = name
        .strip_prefix(b"[")
        .and_then(|rest| rest.strip_suffix(b"]"))
        .ok_or(HostError::Invalid)?;
    // Ipv6Addr refuses zones (`%25eth0`) and IPvFuture (`v1.x`).
    let text = std::str::from_utf8(inner).map_err(|_| HostError::Invalid)?;
    let address: Ipv6Addr = text.parse().map_err(|_| HostError::Invalid)?;
    Ok(format!("[{address}]"))
}

fn reg_name_or_ipv4(name: &[u8]) -> Result<String, HostError> {
    let decoded;
    let name = if name.contains(&b'%') {
        decoded = decode_escapes(name)?;
        &decoded[..]
    } else {
        name
    };
    // One trailing dot (the root) is dropped; a second would be an empty label.
    let name = name.strip_suffix(b".").unwrap_or(name);
    if name.is_empty() || name.len() > MAX_HOST_BYTES {
        return Err(HostError::Invalid);
    }
    // One pass (this runs on every request): bytes, labels, lowercase.
    let mut out = Vec::with_capacity(name.len());
    let mut label_len = 0;
    let mut label_digits = true;
    for &byte in name {
        if byte == b'.' {
            if label_len == 0 {
                return Err(HostError::Invalid);
            }
            label_len = 0;
            label_digits = true;
        } else if is_name_byte(byte) {
            label_len += 1;
            label_digits &= byte.is_ascii_digit();
        } else {
            return Err(HostError::Invalid);
        }
        out.push(byte.to_ascii_lowercase());
    }
    if label_len == 0 || (label_digits && !is_ipv4(&out)) {
        return Err(HostError::Invalid);
    }
    // Only unreserved ASCII bytes are left, so this cannot fail.
    String::from_utf8(out).map_err(|_| HostError::Invalid)
}

/// Decodes `%XX` escapes, refusing any that does not decode to a byte a name
/// may hold literally (`%2C`, `%2F`, `%00`, UTF-8): those would let a
/// list, a path or another host hide in one name.
fn decode_escapes(name: &[u8]) -> Result<Vec<u8>, HostError> {
    let mut out = Vec::with_capacity(name.len());
    let mut i = 0;
    while let Some(&byte) = name.get(i) {
        if byte == b'%' {
            let hex = name.get(i + 1..i + 3).ok_or(HostError::Invalid)?;
            let value = std::str::from_utf8(hex)
                .ok()
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .filter(|&value| is_name_byte(value))
                .ok_or(HostError::Invalid)?;
            out.push(value);
            i += 3;
        } else {
            out.push(byte);
            i += 1;
        }
    }
    Ok(out)
}

/// Dotted-decimal IPv4 as `Ipv4Addr` parses it: four parts of 0–255 without
/// leading zeros, so an accepted address is already in canonical form (the
/// tests hold this to `Ipv4Addr`).
fn is_ipv4(text: &[u8]) -> bool {
    let mut parts = 0;
    for part in text.split(|&b| b == b'.') {
        parts += 1;
        let canonical = match part {
            [] => false,
            [b'0'] => true,
            [b'0', ..] => false,
            _ => part.len() <= 3 && part.iter().all(u8::is_ascii_digit),
        };
        if parts > 4 || !canonical {
            return false;
        }
        // At most three digits: no overflow.
        let value = part
            .iter()
            .fold(0u32, |n, &digit| n * 10 + u32::from(digit - b'0'));
        if value > 255 {
            return false;
        }
    }
    parts == 4
}

/// RFC 3986 unreserved: the only characters a host name may hold here.
fn is_name_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// Finds the request's host by the rules of the module documentation,
/// replaces `Host` with its normalized `host[:port]` (and an HTTP/2
/// authority with the origin-form target, so `Host` alone names it
/// upstream), and returns it.
///
/// # Errors
/// [`HostError`]: none, more than one, or an invalid one.
pub fn normalize_request(request: &mut RequestHeader) -> Result<Host, HostError> {
    let host = request_host(request)?;
    if request.uri.authority().is_some() {
        let origin = request
            .uri
            .path_and_query()
            .map_or("/", http::uri::PathAndQuery::as_str)
            .parse::<http::Uri>()
            .map_err(|_| HostError::Invalid)?;
        request.set_uri(origin);
    }
    let authority = host.authority();
    // The common case, one `Host` already in normal form, is left as sent:
    // rewriting a header in pingora's request costs more than deciding.
    let unchanged = request
        .headers
        .get(http::header::HOST)
        .is_some_and(|sent| sent.as_bytes() == authority.as_bytes());
    if !unchanged {
        request
            .insert_header(http::header::HOST, authority)
            .map_err(|_| HostError::Invalid)?;
    }
    Ok(host)
}

/// The request's host, not yet written back.
fn request_host(request: &RequestHeader) -> Result<Host, HostError> {
    let mut values = request.headers.get_all(http::header::HOST).iter();
    let header = match (values.next(), values.next()) {
        (_, Some(_)) => return Err(HostError::Multiple),
        (one, None) => one,
    };
    let authority = match request.uri.authority() {
        Some(authority) if request.version == http::Version::HTTP_2 => authority,
        _ => {
            let header = header.ok_or(HostError::Missing)?;
            return normalize(header.as_bytes());
        }
    };
    let host = normalize(authority.as_str().as_bytes())?;
    match header {
        Some(header) if normalize(header.as_bytes()).as_ref() != Ok(&host) => {
            Err(HostError::Multiple)
        }
        _ => Ok(host),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    #[test]
    fn each_input_normalizes_or_is_refused_with_its_reason() {
        use HostError::*;
        let ok = |name: &str, port: Option<u16>| {
            Ok(Host {
                name: name.to_owned(),
                port,
            })
        };
        let cases: Vec<(&str, Result<Host, HostError>)> = vec![
            ("admin.example", ok("admin.example", None)),
            ("Admin.EXAMPLE", ok("admin.example", None)),
            ("admin.example.", ok("admin.example", None)),
            ("admin.example.:80", ok("admin.example", Some(80))),
            ("admin.example:8080", ok("admin.example", Some(8080))),
            ("admin.example:080", ok("admin.example", Some(80))),
            ("admin.example:", ok("admin.example", None)),
            (" admin.example\t", ok("admin.example", None)),
            ("%61dmin.example", ok("admin.example", None)),
            ("%41dmin.example", ok("admin.example", None)),
            ("my_host-1.internal~x", ok("my_host-1.internal~x", None)),
            ("localhost", ok("localhost", None)),
            ("127.0.0.1:8080", ok("127.0.0.1", Some(8080))),
            ("[::1]", ok("[::1]", None)),
            ("[::1]:443", ok("[::1]", Some(443))),
            ("[0:0:0:0:0:0:0:1]", ok("[::1]", None)),
            ("[2001:DB8::1]", ok("[2001:db8::1]", None)),
            ("1a.example", ok("1a.example", None)),
            ("", Err(Missing)),
            ("  ", Err(Missing)),
            ("admin.example..", Err(Invalid)),
            (".admin.example", Err(Invalid)),
            ("admin..example", Err(Invalid)),
            (".", Err(Invalid)),
            (":80", Err(Invalid)),
            ("admin.example, other", Err(Invalid)),
            ("other, admin.example", Err(Invalid)),
            ("admin.example,other", Err(Invalid)),
            ("admin.example/x", Err(Invalid)),
            ("admin.example:80:80", Err(Invalid)),
            ("admin.example:65536", Err(Invalid)),
            ("admin.example:123456", Err(Invalid)),
            ("admin.example:8o", Err(Invalid)),
            ("admin.example:-1", Err(Invalid)),
            ("admin example", Err(Invalid)),
            ("user@admin.example", Err(Invalid)),
            ("admin.example;x", Err(Invalid)),
            ("admin.example?x", Err(Invalid)),
            ("admin.example#x", Err(Invalid)),
            ("admin.example\\x", Err(Invalid)),
            ("admin.example%2C", Err(Invalid)),
            ("admin%2Eexample%2F", Err(Invalid)),
            ("admin%00.example", Err(Invalid)),
            ("admin%zz.example", Err(Invalid)),
            ("admin.example%2", Err(Invalid)),
            ("adm\u{ed}n.example", Err(Invalid)),
            ("a*.example", Err(Invalid)),
            ("a=b", Err(Invalid)),
            ("127.0.0.01", Err(Invalid)),
            ("127.1", Err(Invalid)),
            ("2130706433", Err(Invalid)),
            ("0x7f.0.0.1", Err(Invalid)),
            ("1.2.3.4.5", Err(Invalid)),
            ("256.0.0.1", Err(Invalid)),
            ("[::1", Err(Invalid)),
            ("[::1]x", Err(Invalid)),
            ("[::1]:", ok("[::1]", None)),
            ("[fe80::1%25eth0]", Err(Invalid)),
            ("[v1.x]", Err(Invalid)),
            ("[127.0.0.1]", Err(Invalid)),
            ("::1", Err(Invalid)),
        ];
        for (raw, want) in cases {
            assert_eq!(normalize(raw.as_bytes()), want, "{raw:?}");
        }
        let long = format!("{}.example", "a".repeat(250));
        assert_eq!(normalize(long.as_bytes()), Err(Invalid));
        let max = "a".repeat(MAX_HOST_BYTES);
        assert_eq!(normalize(max.as_bytes()).map(|h| h.name.len()), Ok(255));
        assert_eq!(normalize(&[b'a'; 900_000]), Err(Invalid));
    }

    fn request(version: http::Version, target: &str, hosts: &[&str]) -> RequestHeader {
        let mut request = RequestHeader::build("GET", target.as_bytes(), None).unwrap();
        request.set_version(version);
        if let Ok(uri) = target.parse::<http::Uri>() {
            request.set_uri(uri);
        }
        for host in hosts {
            request.append_header("host", *host).unwrap();
        }
        request
    }

    #[test]
    fn a_request_has_exactly_one_host_written_back_normalized() {
        use http::Version;
        use HostError::*;
        type Case<'a> = (Version, &'a str, &'a [&'a str], Result<&'a str, HostError>);
        let cases: Vec<Case> = vec![
            (
                Version::HTTP_11,
                "/a",
                &["Admin.Example.:8080"],
                Ok("admin.example:8080"),
            ),
            (Version::HTTP_11, "/a", &[], Err(Missing)),
            (Version::HTTP_11, "/a", &[""], Err(Missing)),
            (Version::HTTP_10, "/a", &[], Err(Missing)),
            (
                Version::HTTP_11,
                "/a",
                &["a.example", "a.example"],
                Err(Multiple),
            ),
            (
                Version::HTTP_11,
                "/a",
                &["a.example", "b.example"],
                Err(Multiple),
            ),
            (
                Version::HTTP_11,
                "/a",
                &["admin.example, other"],
                Err(Invalid),
            ),
            (
                Version::HTTP_2,
                "https://admin.example./a?x",
                &[],
                Ok("admin.example"),
            ),
            (
                Version::HTTP_2,
                "https://a.example/a",
                &["A.example."],
                Ok("a.example"),
            ),
            (
                Version::HTTP_2,
                "https://a.example/a",
                &["b.example"],
                Err(Multiple),
            ),
            (Version::HTTP_2, "/a", &["a.example:1"], Ok("a.example:1")),
            // Already normal: left as sent.
            (
                Version::HTTP_11,
                "/a",
                &["127.0.0.1:8080"],
                Ok("127.0.0.1:8080"),
            ),
            (Version::HTTP_11, "/a", &["a.example"], Ok("a.example")),
            (
                Version::HTTP_11,
                "/a",
                &["a.example:080"],
                Ok("a.example:80"),
            ),
            (Version::HTTP_2, "/a", &[], Err(Missing)),
        ];
        for (version, target, hosts, want) in cases {
            let mut request = request(version, target, hosts);
            let got = normalize_request(&mut request).map(|host| host.authority());
            let case = format!("{version:?} {target} {hosts:?}");
            assert_eq!(got, want.map(str::to_owned), "{case}");
            if want.is_ok() {
                let written: Vec<_> = request.headers.get_all("host").iter().collect();
                assert_eq!(written.len(), 1, "{case}");
                assert_eq!(written[0].to_str().ok(), want.ok(), "{case}");
                assert!(request.uri.authority().is_none(), "{case}");
            }
        }
        let mut h2 = request(http::Version::HTTP_2, "https://a.example/p?q=1", &[]);
        normalize_request(&mut h2).unwrap();
        assert_eq!(h2.uri.to_string(), "/p?q=1");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// IPv4 hosts are kept as written once accepted: that text must be
        /// the address's canonical form, and the port written by hand must
        /// be what `fmt` writes.
        #[test]
        fn ipv4_hosts_and_ports_are_written_canonically(
            octets in proptest::collection::vec("0|[1-9][0-9]{0,2}|0[0-9]{1,2}|[0-9]{4,12}", 3..=5),
            port in proptest::option::of(any::<u16>()),
        ) {
            let name = octets.join(".");
            let raw = match port {
                Some(port) => format!("{name}:{port}"),
                None => name.clone(),
            };
            if let Ok(host) = normalize(raw.as_bytes()) {
                let address: Ipv4Addr = name.parse().unwrap();
                prop_assert_eq!(host.name(), address.to_string());
                prop_assert_eq!(host.authority(), raw);
            } else {
                prop_assert!(name.parse::<Ipv4Addr>().is_err());
            }
        }

        #[test]
        fn normalized_hosts_are_fixed_points_in_plain_lowercase(
            raw in prop_oneof![
                "[a-zA-Z0-9._~%,;=:/ \\-\\[\\]]{0,40}",
                "([a-zA-Z0-9-]{1,8}\\.){0,3}[a-zA-Z0-9-]{1,8}\\.?(:[0-9]{0,6})?",
                "\\[[0-9a-fA-F:.]{2,30}\\](:[0-9]{1,5})?",
                any::<Vec<u8>>().prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
            ]
        ) {
            if let Ok(host) = normalize(raw.as_bytes()) {
                let authority = host.authority();
                prop_assert_eq!(normalize(authority.as_bytes()), Ok(host.clone()));
                prop_assert!(!authority.is_empty());
                prop_assert!(!authority.bytes().any(|b| matches!(b, b',' | b'/' | b'%' | b'@')
                    || b.is_ascii_whitespace() || b.is_ascii_control()));
                prop_assert_eq!(authority.to_ascii_lowercase(), authority.clone());
                prop_assert!(host.name().len() <= MAX_HOST_BYTES);
                prop_assert!(!host.name().ends_with('.'));
                prop_assert_eq!(host.name().contains(':'), host.name().starts_with('['));
            }
        }
    }
}
