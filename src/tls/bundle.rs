//! Trust bundle files, in either of the two forms SPIFFE tooling writes:
//!
//! - PEM: one or more `CERTIFICATE` sections (`spire-agent api fetch x509
//!   -write` writes `bundle.0.pem`; tbot and cert-manager write the same);
//! - the SPIFFE bundle format (SPIFFE Trust Domain and Bundle spec §4): a JWK
//!   set with `spiffe_refresh_hint`/`spiffe_sequence`, whose `"use":
//!   "x509-svid"` keys carry their CA certificate in `x5c` and whose `"use":
//!   "jwt-svid"` keys verify JWT-SVIDs (`spire-server bundle show -format
//!   spiffe`, federation endpoints).
//!
//! Told apart by content: a file whose first non-blank byte is `{` is JSON.

use base64::Engine;
use rustls::pki_types::CertificateDer;
use serde_json::Value;

/// What a bundle file holds.
#[derive(Debug)]
pub(super) struct BundleContents {
    /// The X.509 authorities (CA certificates, DER); never empty.
    pub(super) x509_authorities: Vec<CertificateDer<'static>>,
    /// How many `jwt-svid` keys a SPIFFE bundle carries (0 for PEM).
    pub(super) jwt_authorities: usize,
}

/// Why a bundle file's contents are unusable (the caller names the file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum BundleProblem {
    /// Malformed PEM or JSON, or a JSON bundle breaking the format.
    Malformed(String),
    /// No X.509 authority at all.
    NoCertificate,
}

/// The `use` of SPIFFE bundle keys that hold X.509 authorities.
const X509_SVID_USE: &str = "x509-svid";
/// The `use` of SPIFFE bundle keys that verify JWT-SVIDs.
const JWT_SVID_USE: &str = "jwt-svid";

/// Parses a bundle file's bytes, PEM or SPIFFE JSON.
pub(super) fn parse(bytes: &[u8]) -> Result<BundleContents, BundleProblem> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    let contents = if first == Some(&b'{') {
        parse_spiffe_json(bytes)?
    } else {
        BundleContents {
            x509_authorities: parse_pem(bytes)?,
            jwt_authorities: 0,
        }
    };
    if contents.x509_authorities.is_empty() {
        return Err(BundleProblem::NoCertificate);
    }
    Ok(contents)
}

fn parse_pem(bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, BundleProblem> {
    rustls_pemfile::certs(&mut &bytes[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| BundleProblem::Malformed(format!("malformed PEM: {error}")))
}

/// A SPIFFE bundle: `keys` must be an array of objects, each with a `use`;
/// an `x509-svid` key has exactly one certificate in `x5c` (spec §4.2.1);
/// keys of another `use` are ignored, as the spec asks.
fn parse_spiffe_json(bytes: &[u8]) -> Result<BundleContents, BundleProblem> {
    let malformed = |why: String| BundleProblem::Malformed(format!("SPIFFE bundle: {why}"));
    let document: Value =
        serde_json::from_slice(bytes).map_err(|error| malformed(error.to_string()))?;
    let keys = document
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed("`keys` must be an array".to_owned()))?;
    let mut contents = BundleContents {
        x509_authorities: Vec::new(),
        jwt_authorities: 0,
    };
    for (index, key) in keys.iter().enumerate() {
        let key_use = key
            .get("use")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed(format!("keys[{index}] has no `use`")))?;
        match key_use {
            X509_SVID_USE => {
                let certificate = single_x5c(key)
                    .map_err(|why| malformed(format!("keys[{index}] (x509-svid): {why}")))?;
                contents.x509_authorities.push(certificate);
            }
            JWT_SVID_USE => contents.jwt_authorities += 1,
            _ => {}
        }
    }
    Ok(contents)
}

/// The one certificate of an `x509-svid` key's `x5c` (standard base64 DER).
fn single_x5c(key: &Value) -> Result<CertificateDer<'static>, String> {
    let chain = key
        .get("x5c")
        .and_then(Value::as_array)
        .ok_or("`x5c` must be an array")?;
    let [encoded] = chain.as_slice() else {
        return Err(format!(
            "`x5c` must hold exactly one certificate, not {}",
            chain.len()
        ));
    };
    let encoded = encoded.as_str().ok_or("`x5c[0]` must be a string")?;
    let der = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|error| format!("`x5c[0]` is not base64: {error}"))?;
    Ok(CertificateDer::from(der))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spiffe_json(keys: &str) -> Vec<u8> {
        format!(r#"{{"spiffe_sequence": 3, "spiffe_refresh_hint": 300, "keys": [{keys}]}}"#)
            .into_bytes()
    }

    #[test]
    fn reads_x509_authorities_and_counts_jwt_keys_of_a_spiffe_bundle() {
        let keys = r#"{"use": "x509-svid", "kty": "EC", "crv": "P-256", "x5c": ["AQID"]},
            {"use": "jwt-svid", "kty": "EC", "kid": "k1", "crv": "P-256", "x": "", "y": ""},
            {"use": "something-else"}"#;
        let contents = parse(&spiffe_json(keys)).unwrap();
        assert_eq!(
            contents.x509_authorities,
            [CertificateDer::from(vec![1, 2, 3])]
        );
        assert_eq!(contents.jwt_authorities, 1);
    }

    #[test]
    fn refuses_spiffe_bundles_that_break_the_format() {
        let cases = [
            ("not JSON", b"{ nope".to_vec()),
            ("keys not an array", br#"{"keys": {}}"#.to_vec()),
            ("key without use", spiffe_json(r#"{"x5c": ["AQID"]}"#)),
            ("x5c missing", spiffe_json(r#"{"use": "x509-svid"}"#)),
            (
                "two certificates",
                spiffe_json(r#"{"use": "x509-svid", "x5c": ["AQID", "AQID"]}"#),
            ),
            (
                "x5c not base64",
                spiffe_json(r#"{"use": "x509-svid", "x5c": ["***"]}"#),
            ),
        ];
        for (case, bytes) in cases {
            assert!(
                matches!(parse(&bytes), Err(BundleProblem::Malformed(_))),
                "{case}"
            );
        }
    }

    #[test]
    fn a_bundle_without_x509_authorities_is_refused() {
        let jwt_only = spiffe_json(r#"{"use": "jwt-svid", "kid": "k"}"#);
        assert_eq!(parse(&jwt_only).unwrap_err(), BundleProblem::NoCertificate);
        assert_eq!(parse(b"\n").unwrap_err(), BundleProblem::NoCertificate);
    }
}
