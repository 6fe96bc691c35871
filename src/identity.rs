//! The verified identity of a caller: what authentication proved, in the shape
//! authorization consumes. Built once per verified token (or client certificate)
//! and cached with it; never built from unverified input.

use std::collections::BTreeMap;
use std::sync::Arc;

/// How the caller authenticated. Its `as_str()` is the Cedar `principal.authn` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthnMethod {
    /// A bearer JWT.
    Jwt,
    /// A client certificate (X.509-SVID).
    Mtls,
    /// Both a bearer JWT and a client certificate.
    JwtAndMtls,
}

impl AuthnMethod {
    /// The stable string used in Cedar (`principal.authn`), logs and headers.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthnMethod::Jwt => "jwt",
            AuthnMethod::Mtls => "mtls",
            AuthnMethod::JwtAndMtls => "jwt+mtls",
        }
    }
}

/// A value of a principal attribute, typed as Cedar will see it.
///
/// The variant follows the claim's JSON type (README, "Cedar model"): string →
/// `String`, integer → `Long`, bool → `Bool`, array of strings → `Set`, object
/// → `Record`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AttrValue {
    /// A JSON string.
    String(String),
    /// A JSON integer that fits in an i64.
    Long(i64),
    /// A JSON boolean.
    Bool(bool),
    /// A JSON array whose elements are all strings.
    Set(Vec<String>),
    /// A JSON object whose values are themselves representable.
    Record(BTreeMap<String, AttrValue>),
}

/// A verified caller.
///
/// Compact, because one is cached per verified token (100k tokens must fit
/// in tens of MiB): `uid`, `sub`, `iss` and the tags share one allocation,
/// `sub` and `iss` usually as slices of `uid` (`<iss>#<sub>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `uid`, then `sub` and `iss` where they are not part of it, then the
    /// tags joined by `,` (a tag never contains one).
    text: Box<str>,
    /// `uid` is `text[..uid_end]`.
    uid_end: u16,
    /// `sub` is `text[sub.0..sub.1]`.
    sub: (u16, u16),
    /// `iss` is `text[iss.0..iss.1]`.
    iss: (u16, u16),
    /// The tags are `text[tags_start..]`, split at `,`.
    tags_start: u16,
    /// How many tags there are (`[""]` and `[]` join to the same text).
    tag_count: u16,
    /// The configured name of the issuer that verified the token (for logs
    /// and metrics), shared with the issuer's configuration.
    pub issuer_name: Arc<str>,
    /// How the caller authenticated.
    pub authn: AuthnMethod,
    /// Further principal attributes from the preset and the `claims:` mapping,
    /// by Cedar attribute name. Absent claims are absent here (never defaulted).
    pub attrs: BTreeMap<String, AttrValue>,
    /// The token's `exp` as Unix seconds (`i64::MAX` when not bounded by a token).
    pub expires_at: i64,
    /// RFC 8705 certificate binding: the SHA-256 thumbprint from the token's
    /// `cnf.x5t#S256`. A bound token is valid only on a connection whose client
    /// certificate has this thumbprint. Boxed: rare, and 33 bytes inline.
    pub bound_certificate: Option<Box<[u8; 32]>>,
}

/// Why an [`Identity`] cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// A tag contains `,`, the separator of the tags header.
    #[error("tag {0:?} contains ',', the separator of the tags header")]
    TagWithComma(String),
    /// `sub`, `iss` and the tags take more than 64 KiB together (no
    /// upstream accepts identity headers that large).
    #[error("sub, iss and tags take more than 64 KiB")]
    TooLarge,
}

/// The names of an [`Identity`], checked by the caller for what its source
/// requires (header safety, tag syntax).
#[derive(Debug, Clone, Copy)]
pub struct Names<'a, T> {
    /// Cedar entity id of the principal, unique across issuers:
    /// `<iss>#<sub>` for tokens, the SPIFFE ID for mTLS callers.
    pub uid: &'a str,
    /// The token's `sub` (or the SPIFFE ID for mTLS callers).
    pub sub: &'a str,
    /// The token's `iss` (or `spiffe://<trust domain>` for mTLS callers).
    pub iss: &'a str,
    /// Tags from the preset or the `claims:` mapping; empty when none.
    pub tags: &'a [T],
}

impl Identity {
    /// An identity with `names`, no attributes, no certificate binding,
    /// authenticated by `authn` and valid until `expires_at`.
    ///
    /// # Errors
    /// A tag containing `,`, or more than 64 KiB of names and tags.
    pub fn new<T: AsRef<str>>(
        names: Names<'_, T>,
        issuer_name: Arc<str>,
        authn: AuthnMethod,
        expires_at: i64,
    ) -> Result<Identity, IdentityError> {
        let Names {
            uid,
            sub,
            iss,
            tags,
        } = names;
        // Exact when `sub` and `iss` are part of `uid` (always, for tokens
        // and certificates), so the boxing below does not reallocate.
        let tags_len = tags.iter().map(|t| t.as_ref().len()).sum::<usize>();
        let mut text = String::with_capacity(uid.len() + tags_len + tags.len().saturating_sub(1));
        text.push_str(uid);
        let sub = place(&mut text, uid, sub);
        let iss = place(&mut text, uid, iss);
        let tags_start = text.len();
        for (i, tag) in tags.iter().enumerate() {
            let tag = tag.as_ref();
            if tag.contains(',') {
                return Err(IdentityError::TagWithComma(tag.to_owned()));
            }
            if i > 0 {
                text.push(',');
            }
            text.push_str(tag);
        }
        let offset = |n: usize| u16::try_from(n).map_err(|_| IdentityError::TooLarge);
        // Every offset is at most the text's length.
        offset(text.len())?;
        Ok(Identity {
            uid_end: offset(uid.len())?,
            sub: (offset(sub.0)?, offset(sub.1)?),
            iss: (offset(iss.0)?, offset(iss.1)?),
            tags_start: offset(tags_start)?,
            tag_count: offset(tags.len())?,
            text: text.into_boxed_str(),
            issuer_name,
            authn,
            attrs: BTreeMap::new(),
            expires_at,
            bound_certificate: None,
        })
    }

    /// This identity with other names and tags; every other field is kept
    /// (for tests that vary one name of an otherwise equal identity).
    ///
    /// # Errors
    /// As [`Identity::new`].
    #[cfg(test)]
    pub(crate) fn renamed<T: AsRef<str>>(
        &self,
        names: Names<'_, T>,
    ) -> Result<Identity, IdentityError> {
        let renamed = Identity::new(
            names,
            Arc::clone(&self.issuer_name),
            self.authn,
            self.expires_at,
        )?;
        Ok(Identity {
            attrs: self.attrs.clone(),
            bound_certificate: self.bound_certificate.clone(),
            ..renamed
        })
    }

    /// Cedar entity id of the principal, unique across issuers:
    /// `<iss>#<sub>` for tokens, the SPIFFE ID for mTLS callers.
    pub fn uid(&self) -> &str {
        self.slice(0, self.uid_end)
    }

    /// The token's `sub` (or the SPIFFE ID for mTLS callers).
    pub fn sub(&self) -> &str {
        self.slice(self.sub.0, self.sub.1)
    }

    /// The token's `iss` (or `spiffe://<trust domain>` for mTLS callers).
    pub fn iss(&self) -> &str {
        self.slice(self.iss.0, self.iss.1)
    }

    /// The tags, in the order the token gave them.
    pub fn tags(&self) -> Tags<'_> {
        Tags {
            rest: self.tags_text(),
            left: self.tag_count,
        }
    }

    /// The tags joined by `,` (the tags header's value); empty when none.
    pub fn tags_text(&self) -> &str {
        self.slice(self.tags_start, u16::MAX)
    }

    /// Bytes of text the names and tags take (for memory accounting).
    pub fn text_len(&self) -> usize {
        self.text.len()
    }

    /// Whether `tag` is one of the tags.
    pub fn has_tag(&self, tag: &str) -> bool {
        if self.tag_count == 0 {
            return false;
        }
        // One pass over the joined tags: an element matches when it has the
        // tag's length and bytes (a plain loop: the elements are short, and
        // this runs per tag condition on every decision-cache miss).
        let tag = tag.as_bytes();
        let mut rest = self.tags_text().as_bytes();
        loop {
            let end = rest.iter().position(|&b| b == b',').unwrap_or(rest.len());
            if crate::same_bytes(&rest[..end], tag) {
                return true;
            }
            match rest.get(end + 1..) {
                Some(next) => rest = next,
                None => return false,
            }
        }
    }

    /// What the principal entity is built from: the names, tags, `authn` and
    /// `attrs`. `issuer_name`, `expires_at` and `bound_certificate` are not
    /// part of it (no policy can read them). Equal for identities that give
    /// the same entity.
    pub fn entity_content(&self) -> EntityContent<'_> {
        // Destructured so that a new field must be considered here: is it
        // part of the entity?
        let Identity {
            text,
            uid_end,
            sub,
            iss,
            tags_start,
            tag_count,
            issuer_name: _,
            authn,
            attrs,
            expires_at: _,
            bound_certificate: _,
        } = self;
        // The offsets are a function of the names and tags (`new`), so the
        // text and the offsets together are exactly the names and tags.
        EntityContent {
            text,
            offsets: [
                *uid_end,
                sub.0,
                sub.1,
                iss.0,
                iss.1,
                *tags_start,
                *tag_count,
            ],
            authn: *authn,
            attrs,
        }
    }

    /// `text[start..end]`, `end` clamped to the text. The offsets were taken
    /// at char boundaries of this text when it was built, so the slice always
    /// exists; the empty fallback is unreachable.
    fn slice(&self, start: u16, end: u16) -> &str {
        let end = usize::from(end).min(self.text.len());
        self.text.get(usize::from(start)..end).unwrap_or_default()
    }
}

/// See [`Identity::entity_content`].
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct EntityContent<'a> {
    text: &'a str,
    offsets: [u16; 7],
    authn: AuthnMethod,
    attrs: &'a BTreeMap<String, AttrValue>,
}

/// Where `part` sits in `text`, whose start is `uid`: inside `uid` when it is
/// its prefix or suffix, otherwise appended.
fn place(text: &mut String, uid: &str, part: &str) -> (usize, usize) {
    if uid.starts_with(part) {
        (0, part.len())
    } else if uid.ends_with(part) {
        (uid.len() - part.len(), uid.len())
    } else {
        let start = text.len();
        text.push_str(part);
        (start, text.len())
    }
}

/// The tags of an [`Identity`].
#[derive(Debug, Clone)]
pub struct Tags<'a> {
    rest: &'a str,
    left: u16,
}

impl<'a> Iterator for Tags<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        if self.left == 0 {
            return Some(std::mem::take(&mut self.rest));
        }
        let (tag, rest) = self.rest.split_once(',').unwrap_or((self.rest, ""));
        self.rest = rest;
        Some(tag)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = usize::from(self.left);
        (left, Some(left))
    }
}

impl ExactSizeIterator for Tags<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(uid: &str, sub: &str, iss: &str, tags: &[&str]) -> Identity {
        let names = Names {
            uid,
            sub,
            iss,
            tags,
        };
        Identity::new(names, Arc::from("test"), AuthnMethod::Jwt, 0).unwrap()
    }

    #[test]
    fn names_read_back_whether_or_not_they_are_part_of_the_uid() {
        let cases = [
            ("https://i#acme:web", "acme:web", "https://i"),
            ("spiffe://td/ns/a", "spiffe://td/ns/a", "spiffe://td"),
            ("u", "sub-elsewhere", "iss-elsewhere"),
            ("", "", ""),
            ("ü#ß", "ß", "ü"),
        ];
        for (uid, sub, iss) in cases {
            let identity = build(uid, sub, iss, &["a", "b"]);
            assert_eq!(
                (identity.uid(), identity.sub(), identity.iss()),
                (uid, sub, iss)
            );
            assert_eq!(identity.tags().collect::<Vec<_>>(), ["a", "b"]);
        }
    }

    #[test]
    fn tags_keep_their_order_count_and_empty_values() {
        let cases: [&[&str]; 5] = [&[], &[""], &["", ""], &["x"], &["tag:prod", "", "tag:eu"]];
        for tags in cases {
            let identity = build("i#s", "s", "i", tags);
            assert_eq!(identity.tags().collect::<Vec<_>>(), tags);
            assert_eq!(identity.tags().len(), tags.len());
            assert_eq!(identity.tags_text(), tags.join(","));
        }
        let identity = build("i#s", "s", "i", &["tag:prod", "tag:eu"]);
        assert!(identity.has_tag("tag:eu") && !identity.has_tag("tag:"));
        assert_ne!(build("i#s", "s", "i", &[]), build("i#s", "s", "i", &[""]));
    }

    #[test]
    fn rejects_more_than_64_kib_of_names_and_tags() {
        let long = "t".repeat(40_000);
        let names = Names {
            uid: "i#s",
            sub: "s",
            iss: "i",
            tags: &[&long, &long],
        };
        assert_eq!(
            Identity::new(names, Arc::from("t"), AuthnMethod::Jwt, 0),
            Err(IdentityError::TooLarge)
        );
        let names = Names {
            uid: "i#s",
            sub: "s",
            iss: "i",
            tags: &[&long],
        };
        let identity = Identity::new(names, Arc::from("t"), AuthnMethod::Jwt, 0).unwrap();
        assert_eq!(identity.tags_text(), long);
    }

    #[test]
    fn rejects_a_tag_with_the_separator() {
        let names = Names {
            uid: "u",
            sub: "s",
            iss: "i",
            tags: &["a,b"],
        };
        assert_eq!(
            Identity::new(names, Arc::from("t"), AuthnMethod::Jwt, 0),
            Err(IdentityError::TagWithComma("a,b".to_owned()))
        );
    }
}
