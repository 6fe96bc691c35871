//! [`Outcome`]: what the pipeline decided and why — the one list from which
//! the metric labels, the decision log's fields and the responses derive.

use crate::authn::AuthnError;

/// What the pipeline decided, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A policy permits it: forward.
    Allow,
    /// Policies deny it but `policies.mode` is `dry-run`: forward, count, log.
    DryRunAllow,
    /// A public route: forwarded without authentication.
    Public,
    /// Policies deny it (403); `policy_error`: a policy failed to evaluate
    /// (any evaluation error denies).
    Forbidden {
        /// Whether an evaluation error took part.
        policy_error: bool,
    },
    /// The request target or host is ambiguous or invalid (400); the
    /// stable reason (`path_dot_segments`, `host_invalid`, …).
    BadRequest(&'static str),
    /// Authentication failed (401), or the issuer has no usable keys (503).
    Unauthenticated(AuthnError),
}

impl Outcome {
    /// Whether the request goes to the upstream.
    pub fn forwards(&self) -> bool {
        matches!(
            self,
            Outcome::Allow | Outcome::DryRunAllow | Outcome::Public
        )
    }

    /// The `decision` label and log field: `allow`, `deny` or `public`.
    pub fn decision(&self) -> &'static str {
        match self {
            Outcome::Allow | Outcome::DryRunAllow => "allow",
            Outcome::Public => "public",
            Outcome::Forbidden { .. } | Outcome::BadRequest(_) | Outcome::Unauthenticated(_) => {
                "deny"
            }
        }
    }

    /// The `reason` label and log field.
    pub fn reason(&self) -> &'static str {
        match self {
            Outcome::Allow => "policy",
            Outcome::DryRunAllow => "dry_run",
            Outcome::Public => "public_route",
            Outcome::Forbidden {
                policy_error: false,
            } => "policy",
            Outcome::Forbidden { policy_error: true } => "policy_error",
            Outcome::BadRequest(reason) => reason,
            Outcome::Unauthenticated(error) => error.reason(),
        }
    }

    /// The HTTP status wisp answers with itself, or `None` when the request
    /// is forwarded (the upstream's status is the answer).
    pub fn status(&self) -> Option<u16> {
        match self {
            Outcome::Allow | Outcome::DryRunAllow | Outcome::Public => None,
            Outcome::Forbidden { .. } => Some(403),
            Outcome::BadRequest(_) => Some(400),
            Outcome::Unauthenticated(error) => Some(error.status()),
        }
    }

    /// The kind of verdict for people and tools (`wisp explain`):
    /// `allow`, `deny`, `public`, `unauthenticated`, `bad_request`,
    /// `unavailable`.
    pub fn verdict(&self) -> &'static str {
        match self {
            Outcome::Allow | Outcome::DryRunAllow => "allow",
            Outcome::Public => "public",
            Outcome::Forbidden { .. } => "deny",
            Outcome::BadRequest(_) => "bad_request",
            Outcome::Unauthenticated(error) if error.status() == 503 => "unavailable",
            Outcome::Unauthenticated(_) => "unauthenticated",
        }
    }

    /// Every (decision, reason) pair a request can be counted under: the
    /// pipeline's outcomes, and `deny`/`bad_request` for what the transport
    /// refuses before or after it (a malformed request, a client gone).
    pub fn labels() -> Vec<(&'static str, &'static str)> {
        let mut labels = vec![
            ("allow", "policy"),
            ("allow", "dry_run"),
            ("public", "public_route"),
            ("deny", "policy"),
            ("deny", "policy_error"),
            ("deny", "bad_request"),
        ];
        for reasons in [
            AuthnError::REASONS,
            crate::authn::svid::SvidError::REASONS,
            crate::path::PathError::REASONS,
            crate::host::HostError::REASONS,
            super::target::TARGET_REASONS,
        ] {
            labels.extend(reasons.iter().map(|reason| ("deny", *reason)));
        }
        labels
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_is_in_the_label_list() {
        let labels = Outcome::labels();
        let outcomes = [
            Outcome::Allow,
            Outcome::DryRunAllow,
            Outcome::Public,
            Outcome::Forbidden {
                policy_error: false,
            },
            Outcome::Forbidden { policy_error: true },
            Outcome::BadRequest("path_encoded_slash"),
            Outcome::BadRequest("invalid_path"),
            Outcome::BadRequest("path_not_absolute"),
            Outcome::Unauthenticated(AuthnError::Expired),
            Outcome::Unauthenticated(AuthnError::IssuerUnavailable("k".into())),
        ];
        for outcome in outcomes {
            let pair = (outcome.decision(), outcome.reason());
            assert!(labels.contains(&pair), "{pair:?} missing");
            assert_eq!(
                outcome.forwards(),
                outcome.status().is_none(),
                "{outcome:?}"
            );
        }
    }

    #[test]
    fn statuses_and_verdicts_follow_the_outcome() {
        let unavailable = Outcome::Unauthenticated(AuthnError::IssuerUnavailable("k".into()));
        assert_eq!(unavailable.status(), Some(503));
        assert_eq!(unavailable.verdict(), "unavailable");
        let expired = Outcome::Unauthenticated(AuthnError::Expired);
        assert_eq!(
            (expired.status(), expired.verdict()),
            (Some(401), "unauthenticated")
        );
        assert_eq!(Outcome::DryRunAllow.decision(), "allow");
        assert_eq!(Outcome::DryRunAllow.verdict(), "allow");
        assert_eq!(Outcome::BadRequest("host_invalid").status(), Some(400));
    }
}
