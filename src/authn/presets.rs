//! Verified claims → [`Identity`], per issuer kind (preset) plus the `claims:` mapping.
//!
//! A preset is a default mapping of the issuer kind's claims into principal
//! attributes (DESIGN.md §4) plus that kind's consistency checks. The config's
//! `claims:` entries (RFC 6901 JSON Pointers) are applied after it and replace
//! a preset attribute of the same name. Everything here runs once per verified
//! token; the result is cached with it.
//!
//! Errors name the offending claim as a JSON Pointer (`/kubernetes.io/namespace`).

mod claims;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use self::claims::{
    bound_certificate, invalid, optional_object, optional_str, optional_strings, required_str,
};
use super::jwt::Claims;
use super::spiffe::SpiffeId;
use super::AuthnError;
use crate::config::{ClaimMapping, IssuerConfig, Preset};
use crate::identity::{AttrValue, AuthnMethod, Identity, Names};

/// tsiam's claim object as its code emits it (`buildinfo.AppNamespace`).
const TSIAM_CLAIM: &str = "italypaleale.me/tsiam";
/// tsiam's claim object as its documentation shows it.
const TSIAM_DOCS_CLAIM: &str = "tsiam";
/// The attribute that fills [`Identity::tags`] rather than `attrs`.
const TAGS: &str = "tags";

/// The principal attributes `preset` can set (beyond the built-in `sub`,
/// `iss`, `authn` and `tags`), with their Cedar schema types: what a schema
/// must declare for that issuer's callers (`wisp check`, `wisp schema`).
/// Each may be absent from a given token.
pub fn preset_attributes(preset: Preset) -> &'static [(&'static str, &'static str)] {
    match preset {
        Preset::Generic => &[],
        Preset::Tsiam => &[
            ("node_id", "String"),
            ("node_name", "String"),
            ("ip4", "String"),
            ("ip6", "String"),
        ],
        Preset::Kubernetes => &[
            ("namespace", "String"),
            ("service_account", "String"),
            ("pod", "String"),
        ],
        Preset::GithubActions => &[
            ("repository", "String"),
            ("ref", "String"),
            ("environment", "String"),
            ("workflow_ref", "String"),
        ],
        Preset::Fly => &[
            ("org", "String"),
            ("app", "String"),
            ("machine", "String"),
            ("region", "String"),
            ("image_digest", "String"),
        ],
        Preset::SpiffeJwt => &[("spiffe_id", "String"), ("trust_domain", "String")],
    }
}

/// Builds the identity for verified `claims` under `issuer`'s preset and mapping.
///
/// `claims` must already be signature- and time-verified. The result has
/// `uid = "<iss>#<sub>"`, `authn = jwt`, the preset's attributes, then the
/// `claims:` mapping's (a mapping replaces a preset attribute of the same
/// name; one resolving to nothing leaves the attribute absent, or `tags` empty).
///
/// Presets (token shapes and sources are documented on each preset's function):
/// - `generic`: nothing beyond `sub`/`iss`; `tags` only through the mapping.
/// - `tsiam`: `node_id`, `node_name`, `ip4`, `ip6`, `tags` from the tsiam claim
///   object (`italypaleale.me/tsiam`, or `tsiam` as in its docs), which is required.
/// - `kubernetes`: `namespace`, `service_account`, `pod`, from projected or
///   legacy tokens; `sub` must be `system:serviceaccount:<ns>:<sa>` and agree.
/// - `github-actions`: `repository` (required), `ref`, `environment`, `workflow_ref`.
/// - `fly`: `org`, `app`, `machine`, `region`, `image_digest`; `sub` must be
///   `<org>:<app>:<machine>` and agree with those claims.
/// - `spiffe-jwt`: `spiffe_id` (= `sub`) and `trust_domain`; `sub` must be a
///   SPIFFE ID whose trust domain is one of `trust_domains` and, when the
///   issuer is scoped to one (`issuers[].trust_domain`), that one.
///
/// For every preset, an RFC 8705 `cnf.x5t#S256` claim (the base64url SHA-256
/// thumbprint of a client certificate) sets [`Identity::bound_certificate`];
/// other `cnf` members are ignored (DPoP's `jkt` is not supported).
///
/// # Errors
/// [`AuthnError::InvalidClaim`] when
/// - `sub` or `iss` is missing, not a string, or empty;
/// - `sub`, `iss` or a tag cannot be sent in an HTTP header (control or
///   non-ASCII characters, surrounding spaces), or a tag is empty or holds `,`;
/// - a preset's required claim is missing, a claim it reads has the wrong JSON
///   type, or its consistency checks fail (see above);
/// - a mapped claim has a type Cedar cannot hold (null, float, mixed array, …),
///   or a mapping to `tags` is not an array of strings;
/// - `cnf` is not an object, or its `x5t#S256` is not a base64url (unpadded)
///   SHA-256 thumbprint (claim `/cnf/x5t#S256`).
pub fn identity(
    issuer: &IssuerConfig,
    claims: &Claims,
    expires_at: i64,
    trust_domains: &[String],
) -> Result<Identity, AuthnError> {
    let sub = required_str(claims, "sub", "/sub")?;
    let iss = required_str(claims, "iss", "/iss")?;
    header_safe("/sub", sub)?;
    header_safe("/iss", iss)?;

    let mut mapped = match issuer.preset {
        Preset::Generic => Attributes::default(),
        Preset::Tsiam => tsiam(claims)?,
        Preset::Kubernetes => kubernetes(sub, claims)?,
        Preset::GithubActions => github_actions(claims)?,
        Preset::Fly => fly(sub, claims)?,
        Preset::SpiffeJwt => spiffe_jwt(sub, trust_domains, issuer)?,
    };
    for mapping in &issuer.claims {
        apply_mapping(&mut mapped, claims, mapping)?;
    }
    for tag in &mapped.tags {
        check_tag(&mapped.tags_pointer, tag)?;
    }
    let mut uid = String::with_capacity(iss.len() + 1 + sub.len());
    uid.push_str(iss);
    uid.push('#');
    uid.push_str(sub);
    let names = Names {
        uid: &uid,
        sub,
        iss,
        tags: &mapped.tags,
    };
    let mut identity = Identity::new(
        names,
        Arc::clone(&issuer.name),
        AuthnMethod::Jwt,
        expires_at,
    )
    .map_err(|why| invalid(&mapped.tags_pointer, why.to_string()))?;
    identity.attrs = mapped.attrs;
    identity.bound_certificate = bound_certificate(claims)?.map(Box::new);
    Ok(identity)
}

/// Tags and attributes gathered from a preset and the mapping.
#[derive(Debug, Default)]
struct Attributes<'c> {
    tags: Vec<String>,
    /// Where the tags came from, for error messages (borrowed from the
    /// issuer's mapping, when it came from there).
    tags_pointer: Cow<'c, str>,
    attrs: BTreeMap<String, AttrValue>,
}

impl Attributes<'_> {
    /// Sets `name` to the string when there is one.
    fn set_str(&mut self, name: &str, value: Option<&str>) {
        if let Some(value) = value {
            self.attrs
                .insert(name.to_owned(), AttrValue::String(value.to_owned()));
        }
    }
}

/// tsiam (workload identity for Tailscale nodes, github.com/ItalyPaleAle/tsiam).
///
/// tsiam puts the caller's Tailscale identity in one object claim, named
/// `italypaleale.me/tsiam` by its code (`pkg/jwks/token.go`:
/// `Claim(buildinfo.AppNamespace, …)`, `AppNamespace = "italypaleale.me/tsiam"`)
/// and `tsiam` in its docs (`docs/content/docs/getting-a-token.md`). Both are
/// accepted; when both are present they must be equal. Fields (from
/// `TailscaleWhoIs` in `pkg/types/tailscale-whois.go`):
///
/// ```json
/// { "sub": "nABC123CNTRL", "iss": "https://tsiam.example.ts.net", "aud": ["orders"],
///   "italypaleale.me/tsiam": { "nodeId": "nABC123CNTRL", "name": "web-1.tailnet.ts.net",
///     "hostname": "web-1", "ip4": "100.64.0.1", "ip6": "fd7a:115c:a1e0::1",
///     "userLoginName": "", "tags": ["tag:web", "tag:prod"] } }
/// ```
///
/// Attributes: `node_id` ← `nodeId`, `node_name` ← `name`, `ip4`, `ip6`
/// (strings, when present) and `tags` ← `tags` (`omitempty` upstream: absent
/// means none). The claim object is required: tsiam always emits it.
fn tsiam(claims: &Claims) -> Result<Attributes<'static>, AuthnError> {
    const CODE_POINTER: &str = "/italypaleale.me~1tsiam";
    const DOCS_POINTER: &str = "/tsiam";
    let from_code = optional_object(claims, TSIAM_CLAIM, CODE_POINTER)?;
    let from_docs = optional_object(claims, TSIAM_DOCS_CLAIM, DOCS_POINTER)?;
    let (object, pointer) = match (from_code, from_docs) {
        (Some(code), Some(docs)) if code != docs => {
            return Err(invalid(
                CODE_POINTER,
                "both `italypaleale.me/tsiam` and `tsiam` claims are present and differ",
            ));
        }
        (Some(code), _) => (code, CODE_POINTER),
        (None, Some(docs)) => (docs, DOCS_POINTER),
        (None, None) => {
            return Err(invalid(
                CODE_POINTER,
                "missing the tsiam claim object (`italypaleale.me/tsiam` or `tsiam`)",
            ));
        }
    };
    let at = |field: &str| format!("{pointer}/{field}");
    let mut out = Attributes::default();
    out.set_str("node_id", optional_str(object, "nodeId", &at("nodeId"))?);
    out.set_str("node_name", optional_str(object, "name", &at("name"))?);
    out.set_str("ip4", optional_str(object, "ip4", &at("ip4"))?);
    out.set_str("ip6", optional_str(object, "ip6", &at("ip6"))?);
    out.tags_pointer = Cow::Owned(at("tags"));
    out.tags = optional_strings(object, "tags", &out.tags_pointer)?.unwrap_or_default();
    Ok(out)
}

/// Kubernetes service-account tokens, both shapes (shapes as shown, for
/// example, in github.com/SovereignCloudStack/standards issue 34 and the
/// Kubernetes "Managing Service Accounts" docs):
///
/// Projected (bound) tokens:
/// ```json
/// { "iss": "https://kubernetes.default.svc.cluster.local", "aud": ["orders"],
///   "sub": "system:serviceaccount:shop:frontend",
///   "kubernetes.io": { "namespace": "shop",
///     "serviceaccount": { "name": "frontend", "uid": "a709ef71-…" },
///     "pod": { "name": "frontend-7d9f", "uid": "900f80ed-…" },
///     "node": { "name": "node-1", "uid": "…" } } }
/// ```
/// Legacy secret-based tokens:
/// ```json
/// { "iss": "kubernetes/serviceaccount", "sub": "system:serviceaccount:shop:frontend",
///   "kubernetes.io/serviceaccount/namespace": "shop",
///   "kubernetes.io/serviceaccount/secret.name": "frontend-token-pnj77",
///   "kubernetes.io/serviceaccount/service-account.name": "frontend",
///   "kubernetes.io/serviceaccount/service-account.uid": "a709ef71-…" }
/// ```
///
/// Attributes: `namespace`, `service_account`, and `pod` (projected tokens
/// bound to a pod only). Checks: one of the shapes is present (if both are,
/// they agree); `sub` is `system:serviceaccount:<ns>:<sa>` with non-empty
/// parts equal to the namespace and service-account claims.
fn kubernetes(sub: &str, claims: &Claims) -> Result<Attributes<'static>, AuthnError> {
    let projected = kubernetes_projected(claims)?;
    let legacy = kubernetes_legacy(claims)?;
    let account = match (projected, legacy) {
        (Some(p), Some(l))
            if (p.namespace, p.service_account) != (l.namespace, l.service_account) =>
        {
            return Err(invalid(
                "/kubernetes.io",
                "projected and legacy service-account claims name different accounts",
            ));
        }
        (Some(account), _) | (None, Some(account)) => account,
        (None, None) => {
            return Err(invalid(
                "/kubernetes.io",
                "missing: neither a projected (`kubernetes.io`) nor a legacy \
                 (`kubernetes.io/serviceaccount/…`) service-account claim",
            ));
        }
    };

    let (sub_namespace, sub_account) = sub
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'))
        .filter(|(ns, sa)| !ns.is_empty() && !sa.is_empty() && !sa.contains(':'))
        .ok_or_else(|| {
            invalid(
                "/sub",
                "expected `system:serviceaccount:<namespace>:<service account>`",
            )
        })?;
    if sub_namespace != account.namespace || sub_account != account.service_account {
        return Err(invalid(
            "/sub",
            format!(
                "names {sub_namespace}/{sub_account} but the service-account claims name {}/{}",
                account.namespace, account.service_account
            ),
        ));
    }

    let mut out = Attributes::default();
    out.set_str("namespace", Some(account.namespace));
    out.set_str("service_account", Some(account.service_account));
    out.set_str("pod", account.pod);
    Ok(out)
}

/// The service account a Kubernetes token names.
struct ServiceAccount<'c> {
    namespace: &'c str,
    service_account: &'c str,
    pod: Option<&'c str>,
}

fn kubernetes_projected(claims: &Claims) -> Result<Option<ServiceAccount<'_>>, AuthnError> {
    let Some(k8s) = optional_object(claims, "kubernetes.io", "/kubernetes.io")? else {
        return Ok(None);
    };
    let namespace = required_str(k8s, "namespace", "/kubernetes.io/namespace")?;
    let account = optional_object(k8s, "serviceaccount", "/kubernetes.io/serviceaccount")?
        .ok_or_else(|| invalid("/kubernetes.io/serviceaccount", "required claim is missing"))?;
    let service_account = required_str(account, "name", "/kubernetes.io/serviceaccount/name")?;
    let pod = match optional_object(k8s, "pod", "/kubernetes.io/pod")? {
        Some(pod) => Some(required_str(pod, "name", "/kubernetes.io/pod/name")?),
        None => None,
    };
    Ok(Some(ServiceAccount {
        namespace,
        service_account,
        pod,
    }))
}

fn kubernetes_legacy(claims: &Claims) -> Result<Option<ServiceAccount<'_>>, AuthnError> {
    const NAMESPACE: &str = "kubernetes.io/serviceaccount/namespace";
    const ACCOUNT: &str = "kubernetes.io/serviceaccount/service-account.name";
    const NAMESPACE_POINTER: &str = "/kubernetes.io~1serviceaccount~1namespace";
    const ACCOUNT_POINTER: &str = "/kubernetes.io~1serviceaccount~1service-account.name";
    let namespace = optional_str(claims, NAMESPACE, NAMESPACE_POINTER)?;
    let service_account = optional_str(claims, ACCOUNT, ACCOUNT_POINTER)?;
    match (namespace, service_account) {
        (None, None) => Ok(None),
        (Some(namespace), Some(service_account)) => Ok(Some(ServiceAccount {
            namespace,
            service_account,
            pod: None,
        })),
        (None, Some(_)) => Err(invalid(NAMESPACE_POINTER, "required claim is missing")),
        (Some(_), None) => Err(invalid(ACCOUNT_POINTER, "required claim is missing")),
    }
}

/// GitHub Actions OIDC (`https://token.actions.githubusercontent.com`; claims
/// per docs.github.com/en/actions/reference/security/oidc):
///
/// ```json
/// { "iss": "https://token.actions.githubusercontent.com", "aud": "https://github.com/octo-org",
///   "sub": "repo:octo-org/octo-repo:environment:prod", "repository": "octo-org/octo-repo",
///   "repository_owner": "octo-org", "ref": "refs/heads/main", "ref_type": "branch",
///   "environment": "prod", "event_name": "workflow_dispatch",
///   "workflow_ref": "octo-org/octo-repo/.github/workflows/deploy.yml@refs/heads/main",
///   "job_workflow_ref": "octo-org/octo-automation/.github/workflows/oidc.yml@refs/heads/main" }
/// ```
///
/// Attributes: `repository` (required string), `ref`, `environment` (only in
/// jobs that name one), `workflow_ref`. `sub` is not parsed: its format is
/// customizable per organization and repository.
fn github_actions(claims: &Claims) -> Result<Attributes<'static>, AuthnError> {
    let mut out = Attributes::default();
    out.set_str(
        "repository",
        Some(required_str(claims, "repository", "/repository")?),
    );
    out.set_str("ref", optional_str(claims, "ref", "/ref")?);
    out.set_str(
        "environment",
        optional_str(claims, "environment", "/environment")?,
    );
    out.set_str(
        "workflow_ref",
        optional_str(claims, "workflow_ref", "/workflow_ref")?,
    );
    Ok(out)
}

/// Fly.io machine tokens (`https://oidc.fly.io/<org>`; shape per
/// fly.io/docs/reference/openid-connect/ and the Fly.io blog post "AWS without
/// access keys", 2024-06-19):
///
/// ```json
/// { "iss": "https://oidc.fly.io/example", "aud": "https://fly.io/example",
///   "sub": "example:autumn-sun-5055:3d8d9d0d25e189", "org_id": "29873298",
///   "org_name": "example", "app_id": "3671581", "app_name": "autumn-sun-5055",
///   "machine_id": "3d8d9d0d25e189", "machine_name": "nameless-water-3089",
///   "machine_version": "01H6M1WGRA2EY4W3KX8HRRMKXE", "region": "iad",
///   "image": "registry.fly.io/autumn-sun-5055:deployment-01H6M1",
///   "image_digest": "sha256:0b2e…" }
/// ```
///
/// Attributes: `org` ← `org_name`, `app` ← `app_name`, `machine` ←
/// `machine_id`, `region`, `image_digest`. Checks: `sub` is
/// `<org>:<app>:<machine>` with non-empty parts, each equal to its claim when
/// that claim is present.
fn fly(sub: &str, claims: &Claims) -> Result<Attributes<'static>, AuthnError> {
    let org = optional_str(claims, "org_name", "/org_name")?;
    let app = optional_str(claims, "app_name", "/app_name")?;
    let machine = optional_str(claims, "machine_id", "/machine_id")?;

    let parts: Vec<&str> = sub.split(':').collect();
    let [sub_org, sub_app, sub_machine] = parts.as_slice() else {
        return Err(invalid("/sub", "expected `<org>:<app>:<machine>`"));
    };
    for (part, claim, name) in [
        (sub_org, org, "org_name"),
        (sub_app, app, "app_name"),
        (sub_machine, machine, "machine_id"),
    ] {
        if part.is_empty() {
            return Err(invalid(
                "/sub",
                "expected `<org>:<app>:<machine>` with non-empty parts",
            ));
        }
        if claim.is_some_and(|claim| claim != *part) {
            return Err(invalid(
                "/sub",
                format!("does not agree with the `{name}` claim"),
            ));
        }
    }

    let mut out = Attributes::default();
    out.set_str("org", org);
    out.set_str("app", app);
    out.set_str("machine", machine);
    out.set_str("region", optional_str(claims, "region", "/region")?);
    out.set_str(
        "image_digest",
        optional_str(claims, "image_digest", "/image_digest")?,
    );
    Ok(out)
}

/// JWT-SVIDs (github.com/spiffe/spiffe `standards/JWT-SVID.md`): `sub` is
/// the workload's SPIFFE ID, e.g. as minted by SPIRE:
///
/// ```json
/// { "iss": "https://oidc-discovery.example.org", "aud": ["orders"],
///   "sub": "spiffe://example.org/ns/prod/sa/frontend", "exp": 1735707600, "iat": 1735707300 }
/// ```
///
/// Attributes: `spiffe_id` ← `sub`, `trust_domain` ← its trust domain.
/// Checks: `sub` is a valid SPIFFE ID (SPIFFE-ID spec) in one of the
/// configured `trust_domains`, and in the issuer's own trust domain when it
/// has one (`issuers[].trust_domain`): an issuer's keys vouch only for its own
/// domain's workloads, never for a federated domain's. The other JWT-SVID rules (algorithms, `aud`,
/// `exp`, header `typ`) concern the token, not its claims: they belong to
/// config validation and [`verify`](super::verify), not here.
fn spiffe_jwt(
    sub: &str,
    trust_domains: &[String],
    issuer: &IssuerConfig,
) -> Result<Attributes<'static>, AuthnError> {
    let id = SpiffeId::parse(sub)
        .map_err(|e| invalid("/sub", format!("not a SPIFFE ID: {e} ({})", e.reason())))?;
    if !trust_domains
        .iter()
        .any(|domain| domain == id.trust_domain())
    {
        return Err(invalid(
            "/sub",
            format!(
                "trust domain `{}` is not configured in `trust_domains`",
                id.trust_domain()
            ),
        ));
    }
    if let Some(scope) = &issuer.trust_domain {
        if scope != id.trust_domain() {
            return Err(invalid(
                "/sub",
                format!(
                    "trust domain `{}` is not issuer `{}`'s: it signs JWT-SVIDs of trust domain \
                     `{scope}` only (issuers[].trust_domain)",
                    id.trust_domain(),
                    issuer.name
                ),
            ));
        }
    }
    let mut out = Attributes::default();
    out.set_str("trust_domain", Some(id.trust_domain()));
    out.set_str("spiffe_id", Some(id.as_str()));
    Ok(out)
}

/// Applies one `claims:` entry, replacing any preset value of that attribute.
fn apply_mapping<'c>(
    out: &mut Attributes<'c>,
    claims: &Claims,
    mapping: &'c ClaimMapping,
) -> Result<(), AuthnError> {
    let ClaimMapping { attribute, pointer } = mapping;
    let value = match claims::resolve(claims, pointer) {
        None => None,
        Some(resolved) => Some(resolved.to_attr().map_err(|why| {
            invalid(
                pointer,
                format!("mapped to attribute `{attribute}`: {why} cannot be a Cedar value"),
            )
        })?),
    };
    if attribute == TAGS {
        out.tags_pointer = Cow::Borrowed(pointer);
        out.tags = match value {
            None => Vec::new(),
            Some(AttrValue::Set(tags)) => tags,
            Some(_) => {
                return Err(invalid(
                    pointer,
                    "mapped to attribute `tags`: expected an array of strings",
                ));
            }
        };
    } else if let Some(value) = value {
        out.attrs.insert(attribute.clone(), value);
    } else {
        out.attrs.remove(attribute);
    }
    Ok(())
}

/// `sub` and `iss` travel upstream in headers: only printable ASCII, and no
/// surrounding spaces (header parsers strip them, so the upstream would see
/// another value than policy did).
fn header_safe(pointer: &str, value: &str) -> Result<(), AuthnError> {
    if value.is_empty() {
        return Err(invalid(pointer, "must not be empty"));
    }
    // Printable ASCII is bytes 0x20..=0x7e; the loop over bytes vectorizes,
    // and only a refused value is walked again for the character to name.
    let printable = value
        .bytes()
        .fold(true, |ok, b| ok & (b' '..=b'~').contains(&b));
    if let Some(c) = (!printable)
        .then(|| value.chars().find(|c| !matches!(c, ' '..='~')))
        .flatten()
    {
        return Err(invalid(
            pointer,
            format!(
                "contains {c:?}, which cannot be sent in an HTTP header (printable ASCII only)"
            ),
        ));
    }
    if value.starts_with(' ') || value.ends_with(' ') {
        return Err(invalid(
            pointer,
            "has leading or trailing spaces, which HTTP headers drop",
        ));
    }
    Ok(())
}

/// Tags are sent comma-separated, so a tag may hold no `,` and may not be empty.
fn check_tag(pointer: &str, tag: &str) -> Result<(), AuthnError> {
    if tag.contains(',') {
        return Err(invalid(
            pointer,
            format!("tag {tag:?} contains ',', the separator of the tags header"),
        ));
    }
    header_safe(pointer, tag)
}

#[cfg(test)]
mod tests;
