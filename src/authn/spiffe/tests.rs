use proptest::prelude::*;

use super::*;

#[test]
fn accepts_the_spec_and_go_spiffe_examples() {
    for (input, trust_domain, path) in [
        (
            "spiffe://trust-domain-name/path",
            "trust-domain-name",
            "/path",
        ),
        (
            "spiffe://staging.example.com/payments/mysql",
            "staging.example.com",
            "/payments/mysql",
        ),
        (
            "spiffe://staging.example.com/payments/web-fe",
            "staging.example.com",
            "/payments/web-fe",
        ),
        (
            "spiffe://k8s-west.example.com/ns/staging/sa/default",
            "k8s-west.example.com",
            "/ns/staging/sa/default",
        ),
        (
            "spiffe://example.com/9eebccd2-12bf-40a6-b262-65fe0487d453",
            "example.com",
            "/9eebccd2-12bf-40a6-b262-65fe0487d453",
        ),
        ("spiffe://example.org", "example.org", ""),
        (
            "spiffe://domain.test/path/element",
            "domain.test",
            "/path/element",
        ),
        ("spiffe://trustdomain/.../a", "trustdomain", "/.../a"),
        (
            "spiffe://trustdomain/.a/a..b/_-",
            "trustdomain",
            "/.a/a..b/_-",
        ),
        ("spiffe://under_score.0-9", "under_score.0-9", ""),
        (
            "spiffe://example.org/UPPER/Case",
            "example.org",
            "/UPPER/Case",
        ),
    ] {
        let id = SpiffeId::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(id.as_str(), input);
        assert_eq!(id.to_string(), input);
        assert_eq!(id.trust_domain(), trust_domain, "{input}");
        assert_eq!(id.path(), path, "{input}");
        assert_eq!(input.parse::<SpiffeId>(), Ok(id));
    }
}

#[test]
fn rejects_each_broken_rule_with_its_own_error() {
    use SpiffeIdError::*;
    let cases: &[(&str, SpiffeIdError)] = &[
        ("", Empty),
        ("example.org/path", WrongScheme),
        ("http://domain.test/path/element", WrongScheme),
        ("SPIFFE://domain.test/path/element", WrongScheme),
        ("Spiffe://domain.test", WrongScheme),
        ("spiffe:path/element", WrongScheme),
        ("spiffe:/path/element", WrongScheme),
        ("192.168.2.2:6688", WrongScheme),
        ("spiffe://", MissingTrustDomain),
        ("spiffe:///path/element", MissingTrustDomain),
        ("spiffe://domain.test:8080/path/element", Port),
        ("spiffe://domain.test:/path/element", Port),
        ("spiffe://user:password@test.org/path/element", UserInfo),
        ("spiffe://user@test.org", UserInfo),
        ("spiffe://%F0%9F%A4%AF/path", PercentEncoded),
        ("spiffe://example.org/p%41th", PercentEncoded),
        ("spiffe://Example.org/path", TrustDomainCharacter('E')),
        ("spiffe://exa mple.org", TrustDomainCharacter(' ')),
        ("spiffe://exämple.org", TrustDomainCharacter('ä')),
        ("spiffe://[::1]/path", TrustDomainCharacter('[')),
        ("spiffe://domain.test/path/element?query=1", Query),
        ("spiffe://domain.test?x", Query),
        ("spiffe://domain.test/path/element#fragment-1", Fragment),
        ("spiffe://domain.test/path/element?#fragment-1", Query),
        ("spiffe://domain.test/", TrailingSlash),
        ("spiffe://domain.test/path/", TrailingSlash),
        ("spiffe://domain.test//", EmptySegment),
        ("spiffe://domain.test//path/element", EmptySegment),
        ("spiffe://domain.test/path//element", EmptySegment),
        ("spiffe://domain.test/./path", DotSegment),
        ("spiffe://domain.test/path/..", DotSegment),
        ("spiffe://domain.test/path/../other", DotSegment),
        ("spiffe://domain.test/pa:th/element", PathCharacter(':')),
        ("spiffe://domain.test/pa@th", PathCharacter('@')),
        (
            "spiffe://domain.test/p!a$t&h'/(e)l*e+m,e;n=t",
            PathCharacter('!'),
        ),
        ("spiffe://domain.test/path/elem[ent", PathCharacter('[')),
        (
            "spiffe://domain.test/spiffe://domain.test/path",
            PathCharacter(':'),
        ),
        ("spiffe://domain.test/pa\\th", PathCharacter('\\')),
        ("spiffe://domain.test/ünicode", PathCharacter('ü')),
        ("spiffe://domain.test/nul\0", PathCharacter('\0')),
    ];
    for (input, expected) in cases {
        assert_eq!(SpiffeId::parse(input).as_ref(), Err(expected), "{input:?}");
    }
}

#[test]
fn enforces_the_length_limits_at_their_exact_bounds() {
    let at_limit = format!("spiffe://example.org/{}", "a".repeat(MAX_ID_BYTES - 21));
    assert_eq!(at_limit.len(), MAX_ID_BYTES);
    assert!(SpiffeId::parse(&at_limit).is_ok());
    assert_eq!(
        SpiffeId::parse(&format!("{at_limit}a")),
        Err(SpiffeIdError::TooLong)
    );

    let longest_domain = "d".repeat(MAX_TRUST_DOMAIN_BYTES);
    assert!(SpiffeId::parse(&format!("spiffe://{longest_domain}/x")).is_ok());
    assert_eq!(
        SpiffeId::parse(&format!("spiffe://{longest_domain}d/x")),
        Err(SpiffeIdError::TrustDomainTooLong)
    );
}

#[test]
fn every_error_has_a_distinct_stable_reason() {
    use SpiffeIdError::*;
    let all = [
        Empty,
        TooLong,
        WrongScheme,
        MissingTrustDomain,
        TrustDomainTooLong,
        Port,
        UserInfo,
        PercentEncoded,
        TrustDomainCharacter('x'),
        Query,
        Fragment,
        EmptySegment,
        DotSegment,
        TrailingSlash,
        PathCharacter('x'),
        NotBareTrustDomain,
    ];
    let mut reasons: Vec<_> = all.iter().map(SpiffeIdError::reason).collect();
    reasons.sort_unstable();
    reasons.dedup();
    assert_eq!(reasons.len(), all.len());
    assert_eq!(Port.reason(), "spiffe_id_port");
}

#[test]
fn parse_trust_domain_accepts_bare_names_and_rejects_uris_and_bad_names() {
    assert_eq!(
        parse_trust_domain("example.org").as_deref(),
        Ok("example.org")
    );
    assert_eq!(
        parse_trust_domain("prod_1-x.example").as_deref(),
        Ok("prod_1-x.example")
    );
    for (input, expected) in [
        ("", SpiffeIdError::MissingTrustDomain),
        ("spiffe://example.org", SpiffeIdError::NotBareTrustDomain),
        ("https://example.org", SpiffeIdError::NotBareTrustDomain),
        ("Example.org", SpiffeIdError::TrustDomainCharacter('E')),
        ("example.org/path", SpiffeIdError::TrustDomainCharacter('/')),
        ("example.org:443", SpiffeIdError::Port),
        ("user@example.org", SpiffeIdError::UserInfo),
        ("ex%41mple.org", SpiffeIdError::PercentEncoded),
    ] {
        assert_eq!(parse_trust_domain(input), Err(expected), "{input:?}");
    }
    assert_eq!(
        parse_trust_domain(&"a".repeat(256)),
        Err(SpiffeIdError::TrustDomainTooLong)
    );
}

fn trust_domain() -> impl Strategy<Value = String> {
    "[a-z0-9._-]{1,64}"
}

fn segment() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9._-]{1,24}".prop_filter("dot segments are invalid", |s| s != "." && s != "..")
}

proptest! {
    #[test]
    fn parsing_never_panics_on_arbitrary_strings(input in any::<String>()) {
        let _ = SpiffeId::parse(&input);
        let _ = parse_trust_domain(&input);
    }

    #[test]
    fn parsing_never_panics_on_near_valid_strings(
        input in "spiffe://[a-zA-Z0-9._:@%?#/-]{0,40}"
    ) {
        if let Ok(id) = SpiffeId::parse(&input) {
            prop_assert_eq!(format!("spiffe://{}{}", id.trust_domain(), id.path()), input);
        }
    }

    #[test]
    fn every_generated_valid_id_parses_round_trips_and_recomposes(
        domain in trust_domain(),
        segments in proptest::collection::vec(segment(), 0..8),
    ) {
        let path: String = segments.iter().map(|s| format!("/{s}")).collect();
        let input = format!("spiffe://{domain}{path}");
        let id = SpiffeId::parse(&input).map_err(|e| TestCaseError::fail(format!("{input}: {e}")))?;
        prop_assert_eq!(id.as_str(), input.as_str());
        prop_assert_eq!(id.trust_domain(), domain.as_str());
        prop_assert_eq!(id.path(), path.as_str());
        prop_assert_eq!(format!("spiffe://{}{}", id.trust_domain(), id.path()), input.clone());
        prop_assert_eq!(id.to_string().parse::<SpiffeId>(), Ok(id));
        prop_assert_eq!(parse_trust_domain(&domain), Ok(domain));
    }
}
