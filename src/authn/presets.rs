//! Verified claims → [`Identity`], per issuer kind (preset) plus the `claims:` mapping.
//!
//! A preset is a default mapping of the issuer kind's claims into principal
//! attributes (README, "Cedar model") plus that kind's consistency checks. The
//! config's `claims:` entries (RFC 6901 JSON Pointers) are applied after it and
//! replace a preset attribute of the same name. Everything here runs once per
//! verified token; the result is cached with it.
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
        Preset::Azure => &[
            ("tenant_id", "String"),
            ("object_id", "String"),
            ("client_id", "String"),
            ("managed_identity", "String"),
        ],
        Preset::Gcp => &[
            ("email", "String"),
            ("project_id", "String"),
            ("project_number", "String"),
            ("zone", "String"),
            ("instance_name", "String"),
        ],
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
/// - `azure`: `tenant_id`, `object_id`, `client_id` (GUIDs, lower-cased) and
///   `managed_identity` (`xms_mirid`, lower-cased); `tid` must be the tenant
///   `iss` names, and `appid`/`azp` agree when both are present.
/// - `gcp`: `email` (only when `email_verified` is true), and `project_id`,
///   `project_number`, `zone`, `instance_name` from `google.compute_engine`;
///   `sub` must be a Google account's numeric ID.
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
        Preset::Azure => azure(iss, claims)?,
        Preset::Gcp => gcp(sub, claims)?,
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

/// Microsoft Entra ID (Azure) access tokens of managed identities and of
/// workload identity federation (AKS), v1.0 and v2.0 (claims per Microsoft's
/// "Access token claims reference"):
///
/// ```json
/// { "ver": "1.0", "iss": "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/",
///   "aud": "api://orders", "sub": "5e0c5b4b-…", "oid": "5e0c5b4b-…",
///   "tid": "72f988bf-86f1-41af-91ab-2d7cd011db47", "appid": "0bd9a2f3-…", "idtyp": "app",
///   "xms_mirid": "/subscriptions/…/resourcegroups/shop/providers/Microsoft.ManagedIdentity/userAssignedIdentities/frontend" }
/// { "ver": "2.0", "iss": "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0",
///   "aud": "0bd9a2f3-…", "sub": "5e0c5b4b-…", "oid": "5e0c5b4b-…", "tid": "72f988bf-…",
///   "azp": "0bd9a2f3-…", "azpacr": "2" }
/// ```
///
/// Attributes: `tenant_id` ← `tid`, `object_id` ← `oid` (the service
/// principal: what to write policies against, since it never changes for the
/// identity's lifetime), `client_id` ← `appid` (v1.0) or `azp` (v2.0), and
/// `managed_identity` ← `xms_mirid` (the identity's Azure resource ID, only
/// in managed-identity tokens). GUIDs and the resource ID are lower-cased:
/// Azure compares both case-insensitively and emits either case.
///
/// Checks: `tid`, `oid` and the client ID are GUIDs and present; `tid` is the
/// tenant that `iss` names (its first path segment, as in every Entra
/// issuer: a token of another tenant signed with the shared Entra keys is
/// refused even under a misconfigured `issuer`); `ver`, when present, is
/// `1.0` or `2.0`; `appid` and `azp`, when both present, agree;
/// `xms_mirid` is an Azure resource ID (`/subscriptions/…`).
fn azure(iss: &str, claims: &Claims) -> Result<Attributes<'static>, AuthnError> {
    let tenant = guid(required_str(claims, "tid", "/tid")?, "/tid")?;
    let named = iss
        .split_once("://")
        .and_then(|(_, rest)| rest.split('/').nth(1))
        .unwrap_or("");
    if !named.eq_ignore_ascii_case(&tenant) {
        return Err(invalid(
            "/tid",
            format!("is not the tenant `iss` names ({iss:?}): Entra issuers are per tenant"),
        ));
    }
    let object = guid(required_str(claims, "oid", "/oid")?, "/oid")?;
    let appid = optional_str(claims, "appid", "/appid")?;
    let azp = optional_str(claims, "azp", "/azp")?;
    let (client, pointer) = match (optional_str(claims, "ver", "/ver")?, appid, azp) {
        (Some(ver), ..) if ver != "1.0" && ver != "2.0" => {
            return Err(invalid(
                "/ver",
                format!("expected \"1.0\" or \"2.0\", found {ver:?}"),
            ));
        }
        (_, Some(appid), Some(azp)) if !appid.eq_ignore_ascii_case(azp) => {
            return Err(invalid(
                "/azp",
                "differs from `appid`: they name the same client",
            ));
        }
        (_, Some(appid), _) => (appid, "/appid"),
        (_, None, Some(azp)) => (azp, "/azp"),
        (_, None, None) => {
            return Err(invalid(
                "/appid",
                "missing: the client ID is `appid` in v1.0 tokens and `azp` in v2.0 tokens",
            ));
        }
    };
    let client = guid(client, pointer)?;
    let mut out = Attributes::default();
    out.set_str("tenant_id", Some(&tenant));
    out.set_str("object_id", Some(&object));
    out.set_str("client_id", Some(&client));
    if let Some(resource) = optional_str(claims, "xms_mirid", "/xms_mirid")? {
        let resource = resource.to_ascii_lowercase();
        if !resource.starts_with("/subscriptions/") {
            return Err(invalid(
                "/xms_mirid",
                "expected an Azure resource ID (`/subscriptions/…`)",
            ));
        }
        out.set_str("managed_identity", Some(&resource));
    }
    Ok(out)
}

/// `value` as a lower-case GUID (`8-4-4-4-12` hex digits).
fn guid(value: &str, pointer: &str) -> Result<String, AuthnError> {
    let groups: Vec<&str> = value.split('-').collect();
    let shaped = groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups
            .iter()
            .all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()));
    if !shaped {
        return Err(invalid(
            pointer,
            format!("expected a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx), found {value:?}"),
        ));
    }
    Ok(value.to_ascii_lowercase())
}

/// Google-signed ID tokens of service accounts (the metadata server's
/// `instance/service-accounts/default/identity?audience=…&format=full`, or
/// IAM Credentials `generateIdToken` with `includeEmail`; claims per Google
/// Cloud's "Verifying the identity of instances"):
///
/// ```json
/// { "iss": "https://accounts.google.com", "aud": "https://orders.example.com",
///   "sub": "104708291578374923674", "azp": "104708291578374923674",
///   "email": "frontend@shop-prod.iam.gserviceaccount.com", "email_verified": true,
///   "google": { "compute_engine": { "project_id": "shop-prod", "project_number": 739419398126,
///     "zone": "europe-west1-b", "instance_id": "4682541727637213440",
///     "instance_name": "frontend-1", "instance_creation_timestamp": 1733480000 } } }
/// ```
///
/// Attributes: `email` (only when `email_verified` is `true`), and from
/// `google.compute_engine` (present in `format=full` tokens of Compute
/// Engine instances only): `project_id`, `project_number` (a number in the
/// token, a decimal String here: it is an identifier, not a quantity), `zone`,
/// `instance_name`.
///
/// Checks: `sub` is a Google account's numeric unique ID; an `email` whose
/// `email_verified` is not `true` is refused rather than dropped, so a policy
/// on `email` never sees an unverified address; the Compute Engine fields
/// have their documented types.
fn gcp(sub: &str, claims: &Claims) -> Result<Attributes<'static>, AuthnError> {
    if sub.len() > 32 || !sub.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(
            "/sub",
            "expected the numeric unique ID of a Google account (service account)",
        ));
    }
    let mut out = Attributes::default();
    if let Some(email) = optional_str(claims, "email", "/email")? {
        if claims.get("email_verified") != Some(&serde_json::Value::Bool(true)) {
            return Err(invalid(
                "/email_verified",
                "must be true when `email` is present: wisp never maps an unverified email",
            ));
        }
        out.set_str("email", Some(email));
    }
    let google = optional_object(claims, "google", "/google")?;
    let engine = match google {
        Some(google) => optional_object(google, "compute_engine", "/google/compute_engine")?,
        None => None,
    };
    if let Some(engine) = engine {
        let at = |field: &str| format!("/google/compute_engine/{field}");
        out.set_str(
            "project_id",
            optional_str(engine, "project_id", &at("project_id"))?,
        );
        let number = match engine.get("project_number") {
            None => None,
            Some(serde_json::Value::Number(n)) if n.is_u64() => Some(n.to_string()),
            Some(serde_json::Value::String(s))
                if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) =>
            {
                Some(s.clone())
            }
            Some(_) => {
                return Err(invalid(
                    &at("project_number"),
                    "expected a project number (a non-negative integer)",
                ));
            }
        };
        out.set_str("project_number", number.as_deref());
        out.set_str("zone", optional_str(engine, "zone", &at("zone"))?);
        out.set_str(
            "instance_name",
            optional_str(engine, "instance_name", &at("instance_name"))?,
        );
    }
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
