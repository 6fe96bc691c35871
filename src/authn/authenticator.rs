//! The authentication stage: a bearer token → a verified [`Identity`].
//! Ties the pure pieces ([`super::jwt`], [`super::verify`],
//! [`super::presets`]) to the key holders ([`super::jwks`]).
//!
//! Authentication knows no policy: what is cached per verified token (the
//! identity and its Cedar principal) belongs to the decision pipeline
//! (`crate::pipeline::callers`), which asks [`Authenticator::recheck`]
//! whether a cached verification still holds.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use super::jwks::{http_client_for, HttpClientError, IssuerKeys, LoadedKeys, REFETCH_WAIT};
use super::{jwt, presets, verify, AuthnError};
use crate::config::{Config, Preset};
use crate::identity::Identity;
use crate::metrics::Metrics;

/// The authentication stage.
pub struct Authenticator {
    issuers: Vec<Arc<IssuerKeys>>,
    /// Per issuer, a hash of every rule its tokens are verified under (the
    /// issuer's config and the trust domains): a cached token verified under
    /// other rules is verified afresh.
    issuer_fingerprints: Vec<u64>,
    /// Issuer index by `iss`. Hashed with foldhash: the table is fixed by
    /// the configuration, so a forged `iss` can only miss.
    by_iss: crate::FastMap<String, usize>,
    max_token_bytes: usize,
    /// The last token header parsed (tokens of one issuer share theirs).
    headers: jwt::HeaderMemo,
    trust_domains: Vec<String>,
    metrics: Metrics,
}

/// A token that passed every check, and what a later re-check needs.
#[derive(Debug)]
pub struct VerifiedToken {
    /// The caller's identity.
    pub identity: Identity,
    /// What [`Authenticator::recheck`] compares.
    pub provenance: Provenance,
}

/// Under which rules, with which key and until when a token was verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Provenance {
    /// Index of the issuer (in config order) that verified the token
    /// (`u32::MAX` for certificate callers: no issuer has it).
    pub issuer_index: u32,
    /// Hash of the issuer rules the token was verified under.
    pub issuer_fingerprint: u64,
    /// Fingerprint of the verifying key.
    pub key_fingerprint: u64,
    /// Unix seconds after which the token is no longer accepted (`exp` + leeway).
    pub valid_until: i64,
}

/// What [`Authenticator::recheck`] says of an earlier verification.
#[derive(Debug, PartialEq, Eq)]
pub enum Recheck {
    /// Still valid: it may be served.
    Valid,
    /// Verified under other rules, or its key was withdrawn: verify afresh.
    Stale,
}

impl Authenticator {
    /// Builds the stage for `config`; keys are not fetched yet (see
    /// [`Authenticator::issuers`]). Issuers share `http` unless they need
    /// their own client ([`super::jwks::http_client_for`]).
    ///
    /// # Errors
    /// When an issuer's own HTTP client cannot be built.
    pub fn new(
        config: &Config,
        http: reqwest::Client,
        metrics: Metrics,
    ) -> Result<Authenticator, HttpClientError> {
        Authenticator::build(config, http, metrics, &[])
    }

    /// The stage for a reloaded `config`: an issuer whose configuration did
    /// not change keeps its key holder (its keys, its refresh loop and its
    /// state).
    ///
    /// # Errors
    /// When a new issuer's HTTP client cannot be built.
    pub fn rebuilt(
        &self,
        config: &Config,
        http: reqwest::Client,
    ) -> Result<Authenticator, HttpClientError> {
        Authenticator::build(config, http, self.metrics.clone(), &self.issuers)
    }

    fn build(
        config: &Config,
        http: reqwest::Client,
        metrics: Metrics,
        previous: &[Arc<IssuerKeys>],
    ) -> Result<Authenticator, HttpClientError> {
        let issuers: Vec<Arc<IssuerKeys>> = config
            .issuers
            .iter()
            .map(
                |issuer| match previous.iter().find(|keys| **keys.config() == *issuer) {
                    Some(unchanged) => Ok(Arc::clone(unchanged)),
                    None => Ok(Arc::new(IssuerKeys::new(
                        Arc::new(issuer.clone()),
                        http_client_for(issuer, &http)?,
                        metrics.clone(),
                    ))),
                },
            )
            .collect::<Result<_, _>>()?;
        let by_iss = config
            .issuers
            .iter()
            .enumerate()
            .map(|(index, issuer)| (issuer.issuer.clone(), index))
            .collect();
        let issuer_fingerprints = config
            .issuers
            .iter()
            .map(|issuer| {
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                issuer.hash(&mut hasher);
                config.trust_domains.hash(&mut hasher);
                hasher.finish()
            })
            .collect();
        Ok(Authenticator {
            issuers,
            issuer_fingerprints,
            by_iss,
            max_token_bytes: config.authn.max_token_bytes,
            headers: jwt::HeaderMemo::default(),
            trust_domains: config.trust_domains.clone(),
            metrics,
        })
    }

    /// The issuers' key holders (for the refresh loops and `/readyz`).
    pub fn issuers(&self) -> &[Arc<IssuerKeys>] {
        &self.issuers
    }

    /// `authn.max_token_bytes`.
    pub fn max_token_bytes(&self) -> usize {
        self.max_token_bytes
    }

    /// Whether an earlier verification still holds at Unix time `now`:
    /// the issuer's rules are the same, the token has not expired, and its
    /// key is still published.
    ///
    /// # Errors
    /// [`AuthnError::Expired`] past `valid_until`;
    /// [`AuthnError::IssuerUnavailable`] when the issuer has no usable keys.
    pub fn recheck(&self, provenance: &Provenance, now: i64) -> Result<Recheck, AuthnError> {
        let index = provenance.issuer_index as usize;
        let Some(issuer) = self.issuers.get(index) else {
            return Ok(Recheck::Stale);
        };
        if self.issuer_fingerprints.get(index) != Some(&provenance.issuer_fingerprint) {
            // Verified under other rules (the configuration changed).
            return Ok(Recheck::Stale);
        }
        if now >= provenance.valid_until {
            return Err(AuthnError::Expired);
        }
        match issuer.has_key(provenance.key_fingerprint) {
            None => Err(AuthnError::IssuerUnavailable(
                issuer.config().name.to_string(),
            )),
            // The key was withdrawn: verify afresh (it fails unless re-signed).
            Some(false) => Ok(Recheck::Stale),
            Some(true) => Ok(Recheck::Valid),
        }
    }

    /// A claim set taken as given, without a token or a signature (`wisp
    /// explain --claims` and policy tests): `iss`, `aud`, `iat` and `exp`
    /// are filled in from issuer `name` when absent (`exp` = now + 10 min),
    /// then every check but the signature's runs, as for a token.
    ///
    /// # Errors
    /// [`AuthnError::UnknownIssuer`] when no issuer is called `name`;
    /// otherwise the first failed claim check.
    pub fn unverified(
        &self,
        name: &str,
        mut claims: serde_json::Map<String, serde_json::Value>,
        now: i64,
    ) -> Result<VerifiedToken, AuthnError> {
        let issuer_index = self
            .issuers
            .iter()
            .position(|issuer| &*issuer.config().name == name)
            .ok_or(AuthnError::UnknownIssuer)?;
        let config = self.issuers[issuer_index].config();
        let defaults = [
            ("iss", serde_json::Value::from(config.issuer.clone())),
            (
                "aud",
                serde_json::Value::from(config.audiences.first().cloned().unwrap_or_default()),
            ),
            ("iat", serde_json::Value::from(now)),
            ("exp", serde_json::Value::from(now + 600)),
        ];
        for (claim, value) in defaults {
            claims.entry(claim).or_insert(value);
        }
        let claims = super::jwt::Claims::from(claims);
        let expires_at = verify::check_claims(&claims, config, now)?;
        let identity = presets::identity(config, &claims, expires_at, &self.trust_domains)?;
        check_header_values(&identity)?;
        let leeway = i64::try_from(config.leeway.as_secs()).unwrap_or(0);
        Ok(VerifiedToken {
            identity,
            provenance: Provenance {
                issuer_index: u32::try_from(issuer_index).unwrap_or(u32::MAX),
                issuer_fingerprint: self.issuer_fingerprints[issuer_index],
                // No key verified it.
                key_fingerprint: 0,
                valid_until: expires_at.saturating_add(leeway),
            },
        })
    }

    /// Verifies a bearer token at Unix time `now`: parse, issuer, keys,
    /// signature, claims, the preset's identity.
    ///
    /// # Errors
    /// [`AuthnError`] with the first failed check.
    pub async fn verify(&self, token: &str, now: i64) -> Result<VerifiedToken, AuthnError> {
        if token.len() > self.max_token_bytes {
            return Err(AuthnError::TokenTooLarge {
                max: self.max_token_bytes,
            });
        }
        let parsed = jwt::parse_remembering(token, self.max_token_bytes, &self.headers)?;
        let iss = parsed
            .claims
            .get("iss")
            .and_then(serde_json::Value::as_str)
            .ok_or(AuthnError::UnknownIssuer)?;
        let issuer_index = *self.by_iss.get(iss).ok_or(AuthnError::UnknownIssuer)?;
        let issuer = &self.issuers[issuer_index];
        let keys = self
            .usable_keys(issuer, parsed.header.kid.as_deref())
            .await?;
        // Read before the token moves into verification, reported after it
        // (a forged token learns nothing from the header checks).
        let svid_type = check_jwt_svid_type(parsed.header.typ.as_deref());
        let verified = verify::verify(parsed, issuer.config(), &keys.set, now)?;
        if issuer.config().preset == Preset::SpiffeJwt {
            svid_type?;
        }
        let identity = presets::identity(
            issuer.config(),
            &verified.claims,
            verified.expires_at,
            &self.trust_domains,
        )?;
        check_header_values(&identity)?;
        let leeway = i64::try_from(issuer.config().leeway.as_secs()).unwrap_or(0);
        Ok(VerifiedToken {
            identity,
            provenance: Provenance {
                // Never more than u32::MAX issuers; were there, the index would
                // match none and the token be verified afresh.
                issuer_index: u32::try_from(issuer_index).unwrap_or(u32::MAX),
                issuer_fingerprint: self.issuer_fingerprints[issuer_index],
                key_fingerprint: verified.key_fingerprint,
                valid_until: verified.expires_at.saturating_add(leeway),
            },
        })
    }

    /// The issuer's keys, refetching (single flight, rate-limited) when there are
    /// none yet or the token names an unknown `kid`.
    async fn usable_keys(
        &self,
        issuer: &IssuerKeys,
        kid: Option<&str>,
    ) -> Result<Arc<LoadedKeys>, AuthnError> {
        let unavailable = || AuthnError::IssuerUnavailable(issuer.config().name.to_string());
        let current = issuer.keys();
        let needs_refetch = match (&current, kid) {
            (None, _) => true,
            (Some(keys), Some(kid)) => !keys.set.has_kid(kid),
            (Some(_), None) => false,
        };
        if !needs_refetch {
            return current.ok_or_else(unavailable);
        }
        let refreshed = tokio::time::timeout(REFETCH_WAIT, issuer.refetch_for_unknown_kid())
            .await
            .unwrap_or_else(|_| issuer.keys());
        refreshed.or(current).ok_or_else(unavailable)
    }
}

/// Checks the identity's upstream header values; a value that cannot be a
/// header is an authentication failure (never a 500 later).
pub fn check_header_values(identity: &crate::identity::Identity) -> Result<(), AuthnError> {
    crate::headers::IdentityHeaderValues::of(identity)
        .check()
        .map_err(|detail| AuthnError::InvalidClaim {
            claim: "sub".to_owned(),
            detail,
        })
}

/// JWT-SVID §3: `typ`, when present, is `JWT` or `JOSE`.
fn check_jwt_svid_type(typ: Option<&str>) -> Result<(), AuthnError> {
    match typ {
        None | Some("JWT") | Some("JOSE") => Ok(()),
        Some(_) => Err(AuthnError::InvalidClaim {
            claim: "typ".to_owned(),
            detail: "a JWT-SVID's typ header must be JWT or JOSE".to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_svid_type_must_be_jwt_or_jose_when_present() {
        assert!(check_jwt_svid_type(None).is_ok());
        assert!(check_jwt_svid_type(Some("JWT")).is_ok());
        assert!(check_jwt_svid_type(Some("JOSE")).is_ok());
        assert!(check_jwt_svid_type(Some("at+jwt")).is_err());
        assert!(check_jwt_svid_type(Some("jwt")).is_err());
    }
}
