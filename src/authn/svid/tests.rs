use std::sync::LazyLock;

use proptest::prelude::*;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, CustomExtension, ExtendedKeyUsagePurpose,
    IsCa, KeyPair, KeyUsagePurpose, SanType,
};

use super::*;

const ORDERS: &str = "spiffe://example.org/ns/prod/sa/orders";
/// 2030-01-01T00:00:00Z.
const NOT_AFTER: i64 = 1_893_456_000;

fn domains() -> Vec<String> {
    vec!["example.org".into()]
}

fn uri(value: &str) -> SanType {
    SanType::URI(value.try_into().unwrap())
}

fn dns(value: &str) -> SanType {
    SanType::DnsName(value.try_into().unwrap())
}

/// The trust domain's signing certificate (cA=true, keyCertSign).
fn ca() -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.subject_alt_names = vec![uri("spiffe://example.org")];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// A valid X.509-SVID's parameters, as SPIRE issues them.
fn svid_params() -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = vec![uri(ORDERS)];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
        KeyUsagePurpose::KeyAgreement,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.not_after = rcgen::date_time_ymd(2030, 1, 1);
    params
}

/// The DER of a leaf signed by a fresh CA, from the valid SVID's parameters
/// after `edit`.
fn leaf(edit: impl FnOnce(&mut CertificateParams)) -> Vec<u8> {
    let mut params = svid_params();
    edit(&mut params);
    let key = KeyPair::generate().unwrap();
    params.signed_by(&key, &ca()).unwrap().der().to_vec()
}

static VALID_SVID: LazyLock<Vec<u8>> = LazyLock::new(|| leaf(|_| {}));

#[track_caller]
fn assert_rejected(der: &[u8], expected: SvidError) {
    assert_eq!(peer_identity(der, &domains()), Err(expected));
}

#[test]
fn accepts_a_valid_svid_with_its_id_thumbprint_and_expiry() {
    let der = &*VALID_SVID;
    let peer = peer_identity(der, &domains()).unwrap();
    assert_eq!(peer.spiffe_id.as_str(), ORDERS);
    assert_eq!(peer.spiffe_id.trust_domain(), "example.org");
    assert_eq!(peer.thumbprint.as_slice(), digest(&SHA256, der).as_ref());
    assert_eq!(peer.not_after, NOT_AFTER);
}

#[test]
fn accepts_an_svid_among_several_trust_domains() {
    let trusted = vec!["other.org".to_owned(), "example.org".to_owned()];
    assert!(peer_identity(&VALID_SVID, &trusted).is_ok());
}

#[test]
fn accepts_an_svid_without_extended_key_usage() {
    let der = leaf(|p| {
        p.extended_key_usages.clear();
        p.is_ca = IsCa::NoCa;
    });
    assert!(peer_identity(&der, &domains()).is_ok());
}

#[test]
fn rejects_an_svid_without_key_usage() {
    let der = leaf(|p| {
        p.key_usages.clear();
        p.is_ca = IsCa::NoCa;
    });
    assert_eq!(
        peer_identity(&der, &domains()).unwrap_err().reason(),
        "svid_key_usage"
    );
}

#[test]
fn accepts_client_auth_only_and_any_extended_key_usage() {
    for eku in [
        vec![ExtendedKeyUsagePurpose::ClientAuth],
        vec![ExtendedKeyUsagePurpose::Any],
    ] {
        let der = leaf(|p| p.extended_key_usages = eku.clone());
        assert!(peer_identity(&der, &domains()).is_ok(), "{eku:?}");
    }
}

#[test]
fn accepts_dns_sans_next_to_the_single_uri_san() {
    let der = leaf(|p| p.subject_alt_names = vec![dns("orders.example.org"), uri(ORDERS)]);
    assert!(peer_identity(&der, &domains()).is_ok());
}

#[test]
fn rejects_each_broken_svid_rule_with_its_reason() {
    type Edit = Box<dyn FnOnce(&mut CertificateParams)>;
    let cases: Vec<(&str, Edit, SvidError)> = vec![
        (
            "no SAN at all",
            Box::new(|p| p.subject_alt_names.clear()),
            SvidError::NoUriSan,
        ),
        (
            "DNS-only SAN",
            Box::new(|p| p.subject_alt_names = vec![dns("orders.example.org")]),
            SvidError::NoUriSan,
        ),
        (
            "two URI SANs",
            Box::new(|p| {
                p.subject_alt_names =
                    vec![uri(ORDERS), uri("spiffe://example.org/ns/prod/sa/admin")]
            }),
            SvidError::MultipleUriSans(2),
        ),
        (
            "https URI SAN",
            Box::new(|p| p.subject_alt_names = vec![uri("https://example.org/orders")]),
            SvidError::NotSpiffe,
        ),
        (
            "invalid SPIFFE ID",
            Box::new(|p| p.subject_alt_names = vec![uri("spiffe://Example.org/orders")]),
            SvidError::InvalidSpiffeId(SpiffeIdError::TrustDomainCharacter('E')),
        ),
        (
            "SPIFFE ID with a trailing slash",
            Box::new(|p| p.subject_alt_names = vec![uri("spiffe://example.org/orders/")]),
            SvidError::InvalidSpiffeId(SpiffeIdError::TrailingSlash),
        ),
        (
            "SPIFFE ID without a path",
            Box::new(|p| p.subject_alt_names = vec![uri("spiffe://example.org")]),
            SvidError::NoPath,
        ),
        (
            "CA leaf",
            Box::new(|p| p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained)),
            SvidError::LeafIsCa,
        ),
        (
            "key usage without digitalSignature",
            Box::new(|p| p.key_usages = vec![KeyUsagePurpose::KeyEncipherment]),
            SvidError::KeyUsage("lacks digitalSignature"),
        ),
        (
            "key usage with keyCertSign",
            Box::new(|p| {
                p.key_usages = vec![
                    KeyUsagePurpose::DigitalSignature,
                    KeyUsagePurpose::KeyCertSign,
                ]
            }),
            SvidError::KeyUsage("has keyCertSign"),
        ),
        (
            "key usage with cRLSign",
            Box::new(|p| {
                p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::CrlSign]
            }),
            SvidError::KeyUsage("has cRLSign"),
        ),
        (
            "EKU serverAuth only",
            Box::new(|p| p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth]),
            SvidError::NoClientAuthEku,
        ),
    ];
    for (name, edit, expected) in cases {
        let result = peer_identity(&leaf(edit), &domains());
        assert_eq!(result, Err(expected), "{name}");
    }
}

#[test]
fn rejects_the_trust_domains_signing_certificate_presented_as_a_leaf() {
    assert_rejected(ca().der(), SvidError::LeafIsCa);
}

#[test]
fn rejects_an_svid_whose_trust_domain_is_not_configured() {
    assert_eq!(
        peer_identity(&VALID_SVID, &["other.org".to_owned()]),
        Err(SvidError::UntrustedDomain("example.org".into()))
    );
    assert_eq!(
        peer_identity(&VALID_SVID, &[]),
        Err(SvidError::UntrustedDomain("example.org".into()))
    );
}

#[test]
fn rejects_a_second_subject_alt_name_extension_as_malformed() {
    // SEQUENCE { [6] IA5String "spiffe://example.org/evil" }
    let smuggled = b"spiffe://example.org/evil";
    let mut san = vec![0x30, 2 + smuggled.len() as u8, 0x86, smuggled.len() as u8];
    san.extend_from_slice(smuggled);
    let der = leaf(|p| {
        p.custom_extensions = vec![CustomExtension::from_oid_content(&[2, 5, 29, 17], san)]
    });
    assert!(matches!(
        peer_identity(&der, &domains()),
        Err(SvidError::Malformed(_))
    ));
}

#[test]
fn rejects_empty_input_garbage_and_trailing_data_as_malformed() {
    let mut trailing = VALID_SVID.clone();
    trailing.push(0);
    for der in [&[][..], b"not a certificate", &trailing] {
        let result = peer_identity(der, &domains());
        assert!(matches!(result, Err(SvidError::Malformed(_))), "{result:?}");
    }
}

#[test]
fn every_error_has_a_distinct_stable_reason() {
    let all = [
        SvidError::Malformed(String::new()),
        SvidError::NoUriSan,
        SvidError::MultipleUriSans(2),
        SvidError::NotSpiffe,
        SvidError::InvalidSpiffeId(SpiffeIdError::Empty),
        SvidError::NoPath,
        SvidError::LeafIsCa,
        SvidError::KeyUsage(""),
        SvidError::NoClientAuthEku,
        SvidError::UntrustedDomain(String::new()),
    ];
    let mut reasons: Vec<_> = all.iter().map(SvidError::reason).collect();
    reasons.sort_unstable();
    reasons.dedup();
    assert_eq!(reasons.len(), all.len());
    assert!(reasons.iter().all(|r| r.starts_with("svid_")));
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = peer_identity(&bytes, &domains());
    }

    #[test]
    fn truncated_valid_der_is_malformed_and_never_panics(len in 0..VALID_SVID.len()) {
        let result = peer_identity(&VALID_SVID[..len], &domains());
        prop_assert!(matches!(result, Err(SvidError::Malformed(_))), "{:?}", result);
    }

    #[test]
    fn mutated_valid_der_never_panics(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)
    ) {
        let mut der = VALID_SVID.clone();
        for (index, byte) in edits {
            let i = index.index(der.len());
            der[i] = byte;
        }
        let _ = peer_identity(&der, &domains());
    }
}
