//! Callers and the token cache, over a real JWKS file and tokens minted by
//! the dev issuer.

use std::path::Path;
use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::authn::unix_now;
use crate::authz::Authorizer;
use crate::config::Config;
use crate::devtools::issuer::{DevIssuer, DevIssuerOptions};
use crate::identity::Identity;

struct Fixture {
    dir: tempfile::TempDir,
    issuer: DevIssuer,
    authorizer: LoadedPolicies,
    metrics: Metrics,
}

/// Authentication and the callers it feeds, as the live state holds them.
struct Stage {
    authn: Authenticator,
    callers: Callers,
}

impl Stage {
    fn cache(&self) -> Option<&TokenCache> {
        self.callers.cache()
    }

    fn issuers(&self) -> &[Arc<crate::authn::jwks::IssuerKeys>] {
        self.authn.issuers()
    }
}

/// The shipped policies, as generation `generation`.
fn policies(generation: u64) -> LoadedPolicies {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    LoadedPolicies {
        authorizer: Authorizer::load(&dir.join("wisp.cedarschema"), &dir).unwrap(),
        generation,
    }
}

const ISS: &str = "https://issuer.example";

impl Fixture {
    async fn new() -> Fixture {
        crate::server::install_crypto();
        let issuer = DevIssuer::start(
            "127.0.0.1:0".parse().unwrap(),
            DevIssuerOptions {
                issuer: Some(ISS.into()),
                default_audience: "orders".into(),
                ..DevIssuerOptions::default()
            },
        )
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("jwks.json"), issuer.jwks_json()).unwrap();
        Fixture {
            dir,
            issuer,
            authorizer: policies(1),
            metrics: Metrics::new().unwrap(),
        }
    }

    fn config(&self, audience: &str, cache_bytes: &str) -> Config {
        let yaml = format!(
            "upstream: {{ address: 127.0.0.1:1 }}\n\
             issuers:\n  - name: test\n    issuer: {ISS}\n    jwks: {{ file: jwks.json }}\n    audiences: [{audience}]\n    algorithms: [ES256]\n    leeway: 5s\n\
             authn: {{ token_cache: {{ max_bytes: {cache_bytes} }} }}\n\
             policies: {{ dir: {} }}\n",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("policies").display()
        );
        Config::from_yaml(&yaml, &self.dir.path().join("wisp.yaml")).unwrap()
    }

    async fn authenticator(&self, config: &Config, cache: Option<TokenCache>) -> Stage {
        let http = crate::authn::jwks::http_client().unwrap();
        let authn = Authenticator::new(config, http, self.metrics.clone()).unwrap();
        let callers = match cache {
            Some(cache) => Callers::with_cache(Some(cache), self.metrics.clone()),
            None => Callers::new(config.authn.token_cache_max_bytes, self.metrics.clone()),
        };
        authn.issuers()[0].refresh().await.unwrap();
        Stage { authn, callers }
    }

    async fn check(
        &self,
        stage: &Stage,
        token: &str,
        now: i64,
    ) -> Result<Arc<CachedToken>, AuthnError> {
        stage
            .callers
            .token(&stage.authn, token, &self.authorizer, now)
            .await
    }
}

#[tokio::test]
async fn a_repeated_token_is_a_cache_hit() {
    let f = Fixture::new().await;
    let authn = f.authenticator(&f.config("orders", "1MiB"), None).await;
    let token = f.issuer.mint(json!({"sub": "acme:a:1"})).unwrap();
    let first = f.check(&authn, &token, unix_now()).await.unwrap();
    let second = f.check(&authn, &token, unix_now()).await.unwrap();
    assert!(
        Arc::ptr_eq(&first, &second),
        "the second call is served from the cache"
    );
    assert_eq!(f.metrics.token_cache_misses.get(), 1);
    assert_eq!(f.metrics.token_cache_hits.get(), 1);
}

#[tokio::test]
async fn a_token_used_again_is_found_by_its_text_and_served_only_to_itself() {
    let f = Fixture::new().await;
    let authn = f.authenticator(&f.config("orders", "1MiB"), None).await;
    let cache = authn.cache().unwrap();
    let token = f.issuer.mint(json!({"sub": "acme:a:1"})).unwrap();
    let first = f.check(&authn, &token, unix_now()).await.unwrap();
    assert!(
        cache.get_recent(&token).is_none(),
        "a token seen once is not remembered by its text"
    );
    f.check(&authn, &token, unix_now()).await.unwrap();
    let (key, entry) = cache
        .get_recent(&token)
        .expect("remembered on its second use");
    assert_eq!(key, TokenKey::of(&token));
    assert!(Arc::ptr_eq(&entry, &first));
    let third = f.check(&authn, &token, unix_now()).await.unwrap();
    assert!(Arc::ptr_eq(&third, &first));
    assert_eq!(f.metrics.token_cache_hits.get(), 2);

    // Same length and same last bytes as the remembered token (so the same
    // slot), but another payload: verified, never served the other's entry.
    let (header, rest) = token.split_once('.').unwrap();
    let (payload, signature) = rest.split_once('.').unwrap();
    let mut forged_payload = payload.as_bytes().to_vec();
    forged_payload[2] = if forged_payload[2] == b'A' {
        b'B'
    } else {
        b'A'
    };
    let forged = format!(
        "{header}.{}.{signature}",
        String::from_utf8(forged_payload).unwrap()
    );
    assert_eq!(forged.len(), token.len());
    assert!(cache.get_recent(&forged).is_none());
    assert!(f.check(&authn, &forged, unix_now()).await.is_err());
    assert!(
        cache.get_recent(&token).is_some(),
        "a token that failed takes no slot"
    );
}

#[tokio::test]
async fn a_slot_changes_tokens_only_after_holding_one_a_while() {
    let f = Fixture::new().await;
    let authn = f.authenticator(&f.config("orders", "1MiB"), None).await;
    let cache = authn.cache().unwrap();
    let a = f.issuer.mint(json!({"sub": "acme:a:1"})).unwrap();
    let entry = f.check(&authn, &a, unix_now()).await.unwrap();
    cache.put_recent(&a, TokenKey::of(&a), Arc::clone(&entry));
    // The slot is picked from the length and the last 16 bytes: `b` shares
    // both with `a`, and is another text.
    let b = format!("X{}", &a[1..]);
    cache.put_recent(&b, TokenKey::of(&b), Arc::clone(&entry));
    assert!(cache.get_recent(&a).is_some(), "held: not replaced at once");
    assert!(cache.get_recent(&b).is_none());
    // The same token's newer entry replaces it at once.
    let rebuilt = f.check(&authn, &a, unix_now()).await.unwrap();
    cache.put_recent(&a, TokenKey::of(&a), Arc::clone(&rebuilt));
    std::thread::sleep(std::time::Duration::from_millis(120));
    cache.put_recent(&b, TokenKey::of(&b), Arc::clone(&entry));
    assert!(cache.get_recent(&a).is_none(), "replaced after the hold");
    assert_eq!(
        cache.get_recent(&b).map(|(key, _)| key),
        Some(TokenKey::of(&b))
    );
    cache.clear();
    assert!(cache.get_recent(&b).is_none(), "clear forgets them too");
}

#[tokio::test]
async fn tokens_that_fail_are_not_cached() {
    let f = Fixture::new().await;
    let authn = f.authenticator(&f.config("orders", "1MiB"), None).await;
    let wrong_audience = f
        .issuer
        .mint(json!({"sub": "acme:a:1", "aud": "billing"}))
        .unwrap();
    for _ in 0..2 {
        assert_eq!(
            f.check(&authn, &wrong_audience, unix_now())
                .await
                .unwrap_err(),
            AuthnError::BadAudience
        );
    }
    assert_eq!(f.metrics.token_cache_hits.get(), 0);
    assert_eq!(authn.cache().unwrap().usage().0, 0);
}

#[tokio::test]
async fn an_expired_cached_token_is_rejected_and_leaves_the_cache() {
    let f = Fixture::new().await;
    let authn = f.authenticator(&f.config("orders", "1MiB"), None).await;
    let now = unix_now();
    let token = f
        .issuer
        .mint(json!({"sub": "acme:a:1", "iat": now, "exp": now + 60}))
        .unwrap();
    f.check(&authn, &token, now).await.unwrap();
    assert_eq!(authn.cache().unwrap().usage().0, 1);
    // Within the leeway (5 s) it is still accepted from the cache…
    f.check(&authn, &token, now + 64).await.unwrap();
    // …past it, rejected and dropped.
    assert_eq!(
        f.check(&authn, &token, now + 65).await.unwrap_err(),
        AuthnError::Expired
    );
    assert!(authn.cache().unwrap().get(&token).is_none());
    assert_eq!(authn.cache().unwrap().usage().0, 0);
}

#[tokio::test]
async fn the_sweep_drops_entries_past_exp_and_leeway() {
    let f = Fixture::new().await;
    let cache = TokenCache::new(1 << 20, f.metrics.token_cache_evictions.clone());
    let authn = f
        .authenticator(&f.config("orders", "1MiB"), Some(cache.clone()))
        .await;
    let now = unix_now();
    let short = f
        .issuer
        .mint(json!({"sub": "acme:a:1", "iat": now - 10, "exp": now + 30}))
        .unwrap();
    let long = f
        .issuer
        .mint(json!({"sub": "acme:a:2", "iat": now - 10, "exp": now + 3600}))
        .unwrap();
    f.check(&authn, &short, now).await.unwrap();
    f.check(&authn, &long, now).await.unwrap();
    cache.remove_expired(now);
    assert_eq!(cache.usage().0, 2, "both still valid");
    // The config's leeway is 5 s: `short` is valid until exp + 5.
    cache.remove_expired(now + 34);
    assert!(cache.get(&short).is_some(), "valid until exp + leeway");
    // Used again: remembered by its text too, and swept from there as well.
    f.check(&authn, &short, now).await.unwrap();
    assert!(cache.get_recent(&short).is_some());
    cache.remove_expired(now + 35);
    assert!(cache.get(&short).is_none(), "swept at exp + leeway");
    assert!(cache.get_recent(&short).is_none());
    assert!(cache.get(&long).is_some());
    assert_eq!(cache.usage().0, 1);
}

#[tokio::test]
async fn a_changed_issuer_configuration_never_serves_old_verifications() {
    let f = Fixture::new().await;
    let cache = TokenCache::new(1 << 20, f.metrics.token_cache_evictions.clone());
    let before = f
        .authenticator(&f.config("orders", "1MiB"), Some(cache.clone()))
        .await;
    let token = f.issuer.mint(json!({"sub": "acme:a:1"})).unwrap();
    f.check(&before, &token, unix_now()).await.unwrap();
    assert!(cache.get(&token).is_some());

    // The same cache under a configuration whose audience no longer matches.
    let after = f
        .authenticator(&f.config("billing", "1MiB"), Some(cache.clone()))
        .await;
    assert_eq!(
        f.check(&after, &token, unix_now()).await.unwrap_err(),
        AuthnError::BadAudience
    );
    assert!(cache.get(&token).is_none(), "the stale entry was dropped");
}

#[tokio::test]
async fn a_key_withdrawn_from_the_jwks_fails_cached_tokens_after_the_refresh() {
    let f = Fixture::new().await;
    let authn = f.authenticator(&f.config("orders", "1MiB"), None).await;
    let old_kid = f.issuer.signer().unwrap();
    let token = f.issuer.mint(json!({"sub": "acme:a:1"})).unwrap();
    f.check(&authn, &token, unix_now()).await.unwrap();

    f.issuer.rotate().unwrap();
    f.issuer.remove_key(&old_kid);
    std::fs::write(f.dir.path().join("jwks.json"), f.issuer.jwks_json()).unwrap();
    // Still cached until the refresh…
    f.check(&authn, &token, unix_now()).await.unwrap();
    authn.issuers()[0].refresh().await.unwrap();
    // …then verified afresh against the new keys, which no longer have its kid.
    assert_eq!(
        f.check(&authn, &token, unix_now()).await.unwrap_err(),
        AuthnError::UnknownKey
    );
}

#[tokio::test]
async fn the_byte_bound_holds_under_100k_inserts() {
    let f = Fixture::new().await;
    let max_bytes: u64 = 1 << 20;
    let cache = TokenCache::new(max_bytes, f.metrics.token_cache_evictions.clone());
    let authn = f
        .authenticator(&f.config("orders", "1MiB"), Some(cache.clone()))
        .await;
    let token = f.issuer.mint(json!({"sub": "acme:a:1"})).unwrap();
    let template = f.check(&authn, &token, unix_now()).await.unwrap();
    for n in 0..100_000u32 {
        let key = format!("{token}{n:08}");
        let entry = CachedToken {
            principal: template.principal.clone(),
            policy_generation: 1,
            provenance: template.provenance,
            weight: template.weight,
        };
        cache.insert(&key, Arc::new(entry));
    }
    let (entries, bytes) = cache.usage();
    assert!(bytes <= max_bytes, "{bytes} bytes held, bound {max_bytes}");
    assert!(entries > 100 && entries < 100_000, "{entries} entries");
    assert!(
        f.metrics.token_cache_evictions.get() > 90_000,
        "{}",
        f.metrics.token_cache_evictions.get()
    );
}

fn peer(spiffe_id: &str, thumbprint: u8) -> crate::authn::svid::PeerIdentity {
    crate::authn::svid::PeerIdentity {
        spiffe_id: crate::authn::spiffe::SpiffeId::parse(spiffe_id).unwrap(),
        thumbprint: [thumbprint; 32],
        not_after: unix_now() + 3600,
    }
}

#[tokio::test]
async fn certificate_callers_are_cached_per_certificate_and_rebuilt_for_new_policies() {
    use crate::config::RequireCredentials::Any;
    let f = Fixture::new().await;
    let stage = f.authenticator(&f.config("orders", "1MiB"), None).await;
    let a = peer("spiffe://example.org/ns/prod/sa/a", 1);
    let b = peer("spiffe://example.org/ns/prod/sa/b", 2);
    let second_generation = policies(2);
    let ask = |peer, policies: &'static LoadedPolicies| {
        let credentials = Credentials {
            token: None,
            claims: None,
            peer: Some(peer),
        };
        stage
            .callers
            .authenticate(&stage.authn, credentials, Any, policies, unix_now())
    };
    let first_generation: &'static LoadedPolicies = Box::leak(Box::new(policies(1)));
    let second_generation: &'static LoadedPolicies = Box::leak(Box::new(second_generation));
    let first = ask(&a, first_generation).await.unwrap();
    let again = ask(&a, first_generation).await.unwrap();
    assert!(
        Arc::ptr_eq(&first, &again),
        "same certificate: served from the cache"
    );
    assert_eq!(first.identity().sub(), "spiffe://example.org/ns/prod/sa/a");
    let other = ask(&b, first_generation).await.unwrap();
    assert_eq!(other.identity().sub(), "spiffe://example.org/ns/prod/sa/b");
    let reloaded = ask(&a, second_generation).await.unwrap();
    assert!(
        !Arc::ptr_eq(&first, &reloaded),
        "a policy reload rebuilds the principal"
    );
    assert_eq!(reloaded.policy_generation, 2);
}

#[tokio::test]
async fn a_combined_caller_is_rebuilt_when_its_token_is_verified_afresh() {
    use crate::config::RequireCredentials::Any;
    let f = Fixture::new().await;
    let authn = f.authenticator(&f.config("orders", "1MiB"), None).await;
    let cert = peer("spiffe://example.org/ns/prod/sa/a", 1);
    let token_a = f
        .issuer
        .mint(json!({"sub": "acme:a:1", "tags": []}))
        .unwrap();
    let token_b = f.issuer.mint(json!({"sub": "acme:b:2"})).unwrap();
    let ask = |token| {
        let credentials = Credentials {
            token: Some(token),
            claims: None,
            peer: Some(&cert),
        };
        authn
            .callers
            .authenticate(&authn.authn, credentials, Any, &f.authorizer, unix_now())
    };
    let first = ask(&token_a).await.unwrap();
    assert_eq!(
        first.identity().authn,
        crate::identity::AuthnMethod::JwtAndMtls
    );
    assert!(Arc::ptr_eq(&first, &ask(&token_a).await.unwrap()));
    let other = ask(&token_b).await.unwrap();
    assert_eq!(
        other.identity().sub(),
        "acme:b:2",
        "another token over the same connection"
    );
    authn.cache().unwrap().clear();
    let fresh = ask(&token_a).await.unwrap();
    assert!(
        !Arc::ptr_eq(&first, &fresh),
        "a re-verified token is combined afresh"
    );
    assert_eq!(fresh.identity().sub(), "acme:a:1");
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Measures real memory per cached token (run by hand: `cargo test --release
/// --lib memory_per_cached_token -- --ignored --nocapture`).
#[tokio::test]
#[ignore = "a measurement, not a check"]
async fn memory_per_cached_token() {
    let f = Fixture::new().await;
    let authn = f.authenticator(&f.config("orders", "1GiB"), None).await;
    let n = 20_000;
    let tokens: Vec<String> = (0..n)
        .map(|i| {
            f.issuer
                .mint(json!({"sub": format!("acme:frontend:web-{i}"), "tags": ["tag:prod", "tag:eu"]}))
                .unwrap()
        })
        .collect();
    let before = rss_kib();
    for token in &tokens {
        f.check(&authn, token, unix_now()).await.unwrap();
    }
    let after = rss_kib();
    let (entries, weighed) = authn.cache().unwrap().usage();
    println!(
        "{entries} entries: RSS +{} KiB = {} B/entry; weighed {} B/entry; token {} B",
        after - before,
        (after - before) * 1024 / entries,
        weighed / entries,
        tokens[0].len()
    );
}

#[tokio::test]
#[ignore = "a measurement, not a check"]
async fn memory_per_principal() {
    let f = Fixture::new().await;
    let authn = f.authenticator(&f.config("orders", "1GiB"), None).await;
    let token = f
        .issuer
        .mint(json!({"sub": "acme:frontend:web-1", "tags": ["tag:prod", "tag:eu"]}))
        .unwrap();
    let template = f.check(&authn, &token, unix_now()).await.unwrap();
    let n = 20_000u64;
    let before = rss_kib();
    let principals: Vec<_> = (0..n)
        .map(|_| {
            f.authorizer
                .authorizer
                .principal(template.identity().clone())
                .unwrap()
        })
        .collect();
    let mid = rss_kib();
    let identities: Vec<Identity> = (0..n).map(|_| (**template.identity()).clone()).collect();
    let after = rss_kib();
    let cache = TokenCache::new(1 << 30, f.metrics.token_cache_evictions.clone());
    for i in 0..n {
        cache.insert(&format!("{i:0336}"), template.clone());
    }
    cache.usage();
    let end = rss_kib();
    println!(
        "principal (identity shared) {} B, identity {} B, cache entry (32-B key) {} B",
        (mid - before) * 1024 / n,
        (after - mid) * 1024 / n,
        (end - after) * 1024 / n
    );
    drop((principals, identities));
}
