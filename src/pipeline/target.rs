//! The request target and host, normalized: what policy decides on and
//! what the upstream receives are the same path and host.

use crate::path;

/// The request's host as a front end passes it to the pipeline.
#[derive(Debug, Clone, Copy)]
pub enum HostField<'a> {
    /// As received (`Host`, `:authority`, `X-Forwarded-Host`, a test
    /// file): validated and normalized here.
    Raw(&'a str),
    /// Already validated and normalized by the front end (the proxy's
    /// [`crate::host::normalize_request`]): not done twice per request.
    Normalized(&'a crate::host::Host),
}

/// 400 reasons of the target itself, beside [`path::PathError::REASONS`].
pub const TARGET_REASONS: &[&str] = &["invalid_path"];

/// The request target after normalization.
#[derive(Debug, Clone)]
pub struct Target {
    /// The normalized path.
    pub path: String,
    /// The query, without `?`.
    pub query: Option<String>,
    /// The URI to forward when normalization changed anything.
    pub rewritten_uri: Option<http::Uri>,
    /// The authority of an absolute-form target, which replaces `Host`.
    pub authority: Option<String>,
    /// The host decided on: lowercased, without port.
    pub host: String,
}

impl Target {
    /// Normalizes a raw request target and the request's `Host`; `Err`
    /// carries the 400 reason.
    ///
    /// # Errors
    /// The stable reason of an ambiguous or invalid target.
    pub fn parse(raw: &[u8], host: Option<HostField<'_>>) -> Result<Target, &'static str> {
        let mut target = normalized_target(raw)?;
        // RFC 9112 §3.2.2: an absolute-form target's authority wins over `Host`.
        let host = match target.authority.as_deref() {
            Some(authority) => Some(HostField::Raw(authority)),
            None => host,
        };
        target.host = match host {
            Some(HostField::Raw(host)) => crate::host::normalize(host.as_bytes())
                .map_err(|error| error.reason())?
                .name()
                .to_owned(),
            Some(HostField::Normalized(host)) => host.name().to_owned(),
            // Offline tools may decide without a host; front ends never do.
            None => String::new(),
        };
        Ok(target)
    }
}

/// Splits an absolute-form request target (`http://host:port/path?q`, which
/// HTTP/1.1 servers must accept, RFC 9112 §3.2.2) into its authority and its
/// origin-form rest (`/path?q`, or `/` when there is no path). Other targets
/// are returned as they are, with no authority.
fn split_absolute_form(raw: &str) -> (Option<&str>, std::borrow::Cow<'_, str>) {
    let scheme_len = ["http://", "https://"]
        .iter()
        .find(|scheme| {
            // Compared as bytes: slicing the text could split a multibyte
            // character (found by the `target` fuzz target).
            raw.as_bytes()
                .get(..scheme.len())
                .is_some_and(|start| start.eq_ignore_ascii_case(scheme.as_bytes()))
        })
        .map(|scheme| scheme.len());
    let Some(scheme_len) = scheme_len else {
        return (None, std::borrow::Cow::Borrowed(raw));
    };
    let rest = &raw[scheme_len..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, origin) = rest.split_at(end);
    let origin = if origin.starts_with('/') {
        std::borrow::Cow::Borrowed(origin)
    } else {
        std::borrow::Cow::Owned(format!("/{origin}"))
    };
    (Some(authority), origin)
}

/// Normalizes the raw request target; `Err` carries the 400 reason.
fn normalized_target(raw: &[u8]) -> Result<Target, &'static str> {
    let raw = std::str::from_utf8(raw).map_err(|_| "invalid_path")?;
    let (authority, origin) = split_absolute_form(raw);
    if authority.is_some_and(|a| a.is_empty() || a.contains('@')) {
        // No host, or userinfo (`http://user@host/`): ambiguous, refused.
        return Err("path_not_absolute");
    }
    let normalized = path::normalize(&origin).map_err(|error| error.reason())?;
    // The common case, a target already in normal form, costs no allocation.
    let unchanged =
        raw.strip_prefix(normalized.path.as_str())
            .is_some_and(|rest| match &normalized.query {
                Some(query) => rest.strip_prefix('?') == Some(query.as_str()),
                None => rest.is_empty(),
            });
    let rewritten_uri = if unchanged {
        None
    } else {
        let forwarded = match &normalized.query {
            Some(query) => format!("{}?{}", normalized.path, query),
            None => normalized.path.clone(),
        };
        Some(forwarded.parse::<http::Uri>().map_err(|_| "invalid_path")?)
    };
    Ok(Target {
        path: normalized.path,
        query: normalized.query,
        rewritten_uri,
        authority: authority.map(str::to_owned),
        host: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_form_targets_are_split_into_authority_and_origin_form() {
        for (raw, authority, origin) in [
            (
                "http://orders.internal/a/b?x=1",
                Some("orders.internal"),
                "/a/b?x=1",
            ),
            ("HTTPS://Orders:8443/a", Some("Orders:8443"), "/a"),
            ("http://orders.internal", Some("orders.internal"), "/"),
            (
                "http://orders.internal?x=1",
                Some("orders.internal"),
                "/?x=1",
            ),
            ("/a/b", None, "/a/b"),
            // Multibyte text where a scheme would end: no panic (fuzz crash).
            ("/2F%|||\u{3b1}\u{6e0}", None, "/2F%|||\u{3b1}\u{6e0}"),
            ("http:/\u{3b1}", None, "http:/\u{3b1}"),
            ("*", None, "*"),
        ] {
            let (got_authority, got_origin) = split_absolute_form(raw);
            assert_eq!(
                (got_authority, got_origin.as_ref()),
                (authority, origin),
                "{raw}"
            );
        }
    }

    #[test]
    fn absolute_form_is_normalized_and_ambiguous_authorities_are_refused() {
        let target = normalized_target(b"http://orders.internal/a/../admin?x=1").unwrap();
        assert_eq!(target.path, "/admin");
        assert_eq!(target.query.as_deref(), Some("x=1"));
        assert_eq!(target.authority.as_deref(), Some("orders.internal"));
        assert!(normalized_target(b"http://user@orders/a").is_err());
        let target = Target::parse(
            b"http://Orders.Internal:8080/a",
            Some(HostField::Raw("other")),
        )
        .unwrap();
        assert_eq!(
            target.host, "orders.internal",
            "the authority wins over Host"
        );
    }

    #[test]
    fn only_targets_that_normalization_changed_are_rewritten() {
        for (raw, rewritten) in [
            ("/api/orders", None),
            ("/api/orders?limit=5", None),
            ("/api/orders?", None),
            ("/a/../api", Some("/api")),
            ("//api?x=1", Some("/api?x=1")),
            ("/%61pi", Some("/api")),
        ] {
            let target = normalized_target(raw.as_bytes()).unwrap();
            let got = target.rewritten_uri.map(|uri| uri.to_string());
            assert_eq!(got.as_deref(), rewritten, "{raw}");
        }
    }

    #[test]
    fn host_is_lowercased_without_port() {
        for (raw, want) in [
            ("Orders.Example:8080", "orders.example"),
            ("orders", "orders"),
            ("[::1]:8080", "[::1]"),
            ("[::1]", "[::1]"),
            ("127.0.0.1:80", "127.0.0.1"),
        ] {
            let parsed = Target::parse(b"/", Some(HostField::Raw(raw))).unwrap();
            assert_eq!(parsed.host, want, "{raw}");
            // The proxy's already normalized host gives the same name, and
            // an absolute-form authority still wins over it.
            let host = crate::host::normalize(raw.as_bytes()).unwrap();
            let normalized = Target::parse(b"/", Some(HostField::Normalized(&host))).unwrap();
            assert_eq!(normalized.host, want, "{raw}");
            let absolute =
                Target::parse(b"http://Other.Example/", Some(HostField::Normalized(&host)));
            assert_eq!(absolute.unwrap().host, "other.example", "{raw}");
        }
    }
}
