//! Scalars with a text syntax of their own (durations, sizes, addresses,
//! server names, algorithms), parsed while deserializing so that their errors
//! carry the parser's line and column.

use std::fmt;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use super::units::{parse_duration, parse_size};
use super::Algorithm;

/// A scalar parsed from its text form with [`FromText`]; errors carry the
/// parser's location because they are raised while deserializing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Parsed<T>(pub T);

/// A value with a text syntax of its own.
pub(super) trait FromText: Sized {
    /// What the value is, for "expected …" messages.
    const EXPECTING: &'static str;
    /// Parses the scalar's text.
    fn from_text(text: &str) -> Result<Self, String>;
}

impl<'de, T: FromText> Deserialize<'de> for Parsed<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(TextVisitor(PhantomData))
    }
}

/// Accepts any scalar as text (YAML scalars are untyped until read), so `30`
/// reaches the duration parser and gets its "ambiguous" message.
struct TextVisitor<T>(PhantomData<T>);

impl<T: FromText> Visitor<'_> for TextVisitor<T> {
    type Value = Parsed<T>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(T::EXPECTING)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        T::from_text(text).map(Parsed).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Self::Value, E> {
        self.visit_str(&value.to_string())
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Self::Value, E> {
        self.visit_str(&value.to_string())
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Self::Value, E> {
        self.visit_str(&value.to_string())
    }
}

impl FromText for Duration {
    const EXPECTING: &'static str = "a duration such as 30s, 5m or 1h30m";

    fn from_text(text: &str) -> Result<Self, String> {
        parse_duration(text)
    }
}

/// A size in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Size(pub u64);

impl FromText for Size {
    const EXPECTING: &'static str = "a size such as 8192, 8KiB or 64MiB";

    fn from_text(text: &str) -> Result<Self, String> {
        parse_size(text).map(Size)
    }
}

/// A listener address: an IP and a port (`0.0.0.0:8080`, `[::1]:9901`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ListenAddr(pub SocketAddr);

impl FromText for ListenAddr {
    const EXPECTING: &'static str = "an IP address and port such as 0.0.0.0:8080";

    fn from_text(text: &str) -> Result<Self, String> {
        SocketAddr::from_str(text).map(ListenAddr).map_err(|_| {
            format!(
                "invalid listen address `{text}`: expected IP:port such as 0.0.0.0:8080 \
                 or [::1]:8080 (hostnames are not accepted here)"
            )
        })
    }
}

/// An upstream address: a hostname or IP and a port (`127.0.0.1:8081`,
/// `orders.svc:80`, `[::1]:8081`), kept as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct HostPort(pub String);

impl FromText for HostPort {
    const EXPECTING: &'static str = "host:port such as 127.0.0.1:8081";

    fn from_text(text: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!(
                "invalid address `{text}`: {why}; expected host:port such as \
                 127.0.0.1:8081, localhost:8081 or [::1]:8081"
            )
        };
        let (host, port) = text.rsplit_once(':').ok_or_else(|| bad("missing port"))?;
        match port.parse::<u16>() {
            Ok(0) => return Err(bad("port 0")),
            Ok(_) => {}
            Err(_) => return Err(bad("port must be a number from 1 to 65535")),
        }
        let host_ok = if let Some(inner) = host.strip_prefix('[') {
            inner
                .strip_suffix(']')
                .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok())
        } else {
            host.parse::<std::net::Ipv4Addr>().is_ok() || is_hostname(host)
        };
        if host_ok {
            Ok(HostPort(text.to_owned()))
        } else {
            Err(bad("not a hostname or IP address (IPv6 goes in brackets)"))
        }
    }
}

/// DNS hostname syntax: dot-separated labels of letters, digits and inner
/// hyphens, 1–63 bytes each; a trailing dot is allowed.
fn is_hostname(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// The name a TLS server certificate must carry: a DNS name or an IP address
/// (no port, no brackets), as rustls accepts it for SNI and verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ServerNameText(pub String);

impl FromText for ServerNameText {
    const EXPECTING: &'static str = "a DNS name or IP address such as orders.internal";

    fn from_text(text: &str) -> Result<Self, String> {
        match rustls::pki_types::ServerName::try_from(text) {
            Ok(_) => Ok(ServerNameText(text.to_owned())),
            Err(_) => Err(format!(
                "invalid server name `{text}`: expected a DNS name such as orders.internal \
                 or an IP address such as 10.0.0.5 (no port, no brackets)"
            )),
        }
    }
}

impl FromText for Algorithm {
    const EXPECTING: &'static str = "a JWS algorithm name such as ES256";

    fn from_text(text: &str) -> Result<Self, String> {
        text.parse().map_err(|_| {
            let why = if text.eq_ignore_ascii_case("none") {
                "unsigned tokens are never accepted"
            } else if text.to_ascii_uppercase().starts_with("HS") {
                "HMAC needs a shared secret and is never accepted"
            } else {
                "unknown or unsupported"
            };
            let allowed: Vec<&str> = Algorithm::ALL.iter().map(|a| a.name()).collect();
            format!(
                "algorithm `{text}` is not allowed ({why}); allowed: {}",
                allowed.join(", ")
            )
        })
    }
}
