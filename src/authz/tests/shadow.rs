//! `@shadow` policies: validated and evaluated, reported, never enforced.

use super::*;
use crate::authz::{Effect, ShadowResult};

const ENFORCED: &str = r#"
@id("frontend-reads")
permit (principal, action in Action::"read", resource)
when { principal.sub like "acme:frontend*" };

@id("no-secrets")
forbid (principal, action, resource) when { resource.path like "/secrets*" };
"#;

fn shadow(policy: &str, effect: &'static str, decision: Effect) -> ShadowResult {
    ShadowResult {
        policy: policy.to_owned(),
        effect,
        decision,
        error: None,
    }
}

#[test]
fn a_shadow_forbid_is_reported_for_what_it_would_deny_and_not_enforced() {
    let authorizer = authorizer(&format!(
        "{ENFORCED}\n@id(\"admin-lockdown\") @shadow\nforbid (principal, action, resource) when {{ resource.path like \"/admin*\" }};\n"
    ));
    assert_eq!(authorizer.shadow_count(), 1);
    assert!(authorizer.is_shadow("admin-lockdown"));
    assert!(!authorizer.is_shadow("no-secrets"));
    assert_eq!(authorizer.policy_count(), 3);
    let frontend = identity("acme:frontend:web-1");
    // Allowed today; the shadow forbid would deny it.
    let admin = decide(&authorizer, &frontend, "GET", "/admin/users");
    assert_eq!(admin.effect, Effect::Allow);
    assert_eq!(admin.policy_ids, ["frontend-reads"]);
    assert_eq!(
        admin.shadow,
        [shadow("admin-lockdown", "forbid", Effect::Deny)]
    );
    // Denied today (default deny): still deny, still reported.
    let other = decide(&authorizer, &identity("acme:batch"), "GET", "/admin/x");
    assert_eq!(other.effect, Effect::Deny);
    assert_eq!(
        other.shadow,
        [shadow("admin-lockdown", "forbid", Effect::Deny)]
    );
    // Not applying: nothing reported.
    let orders = decide(&authorizer, &frontend, "GET", "/api/orders");
    assert_eq!(orders.effect, Effect::Allow);
    assert!(orders.shadow.is_empty());
    // The same question again comes from the decision cache, shadow included.
    let again = decide(&authorizer, &frontend, "GET", "/admin/users");
    assert_eq!(again, admin);
}

#[test]
fn a_shadow_permit_would_lift_only_a_default_deny() {
    let authorizer = authorizer(&format!(
        "{ENFORCED}\n@id(\"batch-reads\") @shadow\npermit (principal, action == Action::\"GET\", resource) when {{ principal.sub == \"acme:batch\" }};\n"
    ));
    let batch = identity("acme:batch");
    let orders = decide(&authorizer, &batch, "GET", "/api/orders");
    assert_eq!(
        orders.effect,
        Effect::Deny,
        "a shadow permit allows nothing"
    );
    assert_eq!(
        orders.shadow,
        [shadow("batch-reads", "permit", Effect::Allow)]
    );
    let secrets = decide(&authorizer, &batch, "GET", "/secrets/x");
    assert_eq!(secrets.effect, Effect::Deny);
    assert_eq!(secrets.policy_ids, ["no-secrets"]);
    assert_eq!(
        secrets.shadow,
        [shadow("batch-reads", "permit", Effect::Deny)]
    );
    // Another method: the policy's scope excludes it.
    assert!(decide(&authorizer, &batch, "HEAD", "/api/orders")
        .shadow
        .is_empty());
}

#[test]
fn a_shadow_policy_that_errors_would_deny_and_says_why() {
    let authorizer = authorizer(&format!(
        "{ENFORCED}\n@id(\"overflows\") @shadow\nforbid (principal, action, resource) when {{ 9223372036854775807 + 1 > 0 }};\n"
    ));
    let decision = decide(
        &authorizer,
        &identity("acme:frontend:web-1"),
        "GET",
        "/api/orders",
    );
    assert_eq!(decision.effect, Effect::Allow);
    assert!(
        decision.errors.is_empty(),
        "a shadow error never touches the decision"
    );
    let [result] = decision.shadow.as_slice() else {
        panic!("{:?}", decision.shadow);
    };
    assert_eq!(result.policy, "overflows");
    assert_eq!(result.decision, Effect::Deny);
    assert!(
        result
            .error
            .as_deref()
            .is_some_and(|e| e.contains("overflow")),
        "{result:?}"
    );
}

#[test]
fn shadow_policies_reading_the_host_keep_it_in_the_cache_key() {
    let authorizer = authorizer(&format!(
        "{ENFORCED}\n@id(\"admin-host\") @shadow\nforbid (principal, action, resource) when {{ resource.host == \"admin.internal\" }};\n"
    ));
    let principal = authorizer
        .principal(identity("acme:frontend:web-1"))
        .unwrap();
    let mut info = request("GET", "/api/orders");
    assert!(authorizer.authorize(&principal, &info).shadow.is_empty());
    info.host = "admin.internal";
    let admin = authorizer.authorize(&principal, &info);
    assert_eq!(admin.shadow, [shadow("admin-host", "forbid", Effect::Deny)]);
}

#[test]
fn shadow_takes_no_value_and_a_shadow_policy_must_validate() {
    let diagnostics = load_files(&[(
        "p.cedar",
        "permit (principal, action, resource);\n\n@shadow(\"false\")\nforbid (principal, action, resource);\n",
    )])
    .unwrap_err();
    assert_eq!(diagnostics.len(), 1, "{diagnostics:#?}");
    assert_eq!(diagnostics[0].line, 3, "{diagnostics:#?}");
    assert!(diagnostics[0].message.contains("`@shadow` takes no value"));
    let diagnostics = load_files(&[(
        "p.cedar",
        "@shadow\nforbid (principal, action, resource) when { principal.nope == \"x\" };\n",
    )])
    .unwrap_err();
    assert!(
        diagnostics.iter().any(|d| d.message.contains("nope")),
        "{diagnostics:#?}"
    );
    // `@shadow("")` is the same as `@shadow`.
    let authorizer = authorizer("@shadow(\"\")\nforbid (principal, action, resource);\n");
    assert_eq!(authorizer.shadow_count(), 1);
}

#[test]
fn shadow_results_are_the_same_with_and_without_slicing_and_the_guard_index() {
    let policies = format!(
        "{ENFORCED}
@id(\"s-forbid-tag\") @shadow
forbid (principal, action in Action::\"write\", resource) when {{ principal.tags.contains(\"tag:frozen\") }};
@id(\"s-permit-sub\") @shadow
permit (principal, action == Action::\"GET\", resource) when {{ principal.sub like \"acme:batch*\" }};
@id(\"s-permit-path\") @shadow
permit (principal, action, resource) when {{ resource.path like \"/public/*\" }};
@id(\"s-forbid-ip\") @shadow
forbid (principal, action, resource) unless {{ context.source_ip.isInRange(ip(\"10.0.0.0/8\")) }};
"
    );
    let dir = dir_with(&[("p.cedar", &policies)]);
    let fast = Authorizer::load(&shipped_schema(), dir.path()).unwrap();
    let reference = Authorizer::load_with(
        &shipped_schema(),
        dir.path(),
        crate::authz::AuthorizerOptions {
            decision_cache_entries: 0,
            decision_cache_bytes: 0,
            slice_by_action: false,
            index_principals: false,
        },
    )
    .unwrap();
    let callers = [
        identity("acme:frontend:web-1"),
        with_tags(identity("acme:batch:7"), &["tag:frozen"]),
        identity("other"),
    ];
    let mut applied = 0;
    for caller in &callers {
        for method in ["GET", "POST", "DELETE", "HEAD"] {
            for path in ["/api/orders", "/public/x", "/secrets/k"] {
                for source in [[10, 1, 2, 3], [192, 0, 2, 1]] {
                    let mut info = request(method, path);
                    info.source_ip = IpAddr::from(source);
                    let want =
                        reference.authorize(&reference.principal(caller.clone()).unwrap(), &info);
                    let got = fast.authorize(&fast.principal(caller.clone()).unwrap(), &info);
                    assert_eq!(got, want, "{} {method} {path} {source:?}", caller.sub());
                    applied += got.shadow.len();
                }
            }
        }
    }
    assert!(
        applied > 20,
        "the cases exercise the shadow policies: {applied}"
    );
}
