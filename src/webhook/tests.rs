//! The verdicts on presented chains: CA-A and CA-B, intermediates, host names, validity and the
//! seed's self-signed `openssl req -x509` certificate.

use std::net::{IpAddr, Ipv4Addr};

use jiff::Timestamp;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use test_support::certs::{Cert, CertSpec};

use super::verify::{Finding, verify};
use super::*;

fn der(cert: &Cert) -> CertificateDer<'static> {
    CertificateDer::from(cert.der.clone())
}

fn ders(certs: &[&Cert]) -> Vec<CertificateDer<'static>> {
    certs.iter().map(|c| der(c)).collect()
}

fn localhost() -> ServerName<'static> {
    ServerName::try_from("localhost").unwrap()
}

fn now() -> UnixTime {
    UnixTime::now()
}

fn bundle_of(pems: &[&str]) -> Bundle {
    let inputs: Vec<crate::bundle::SourceInput<'_>> = pems
        .iter()
        .map(|pem| crate::bundle::SourceInput {
            source: "test",
            pem,
        })
        .collect();
    crate::bundle::build(
        &inputs,
        &crate::bundle::Policy::defaults_at(Timestamp::now()),
    )
    .unwrap()
}

#[test]
fn a_chain_is_trusted_only_by_the_bundle_holding_its_ca() {
    let (a, b) = (
        CertSpec::ca("CA A").self_signed(),
        CertSpec::ca("CA B").self_signed(),
    );
    let leaf = CertSpec::leaf("webhook").dns("localhost").signed_by(&a);
    let chain = ders(&[&leaf]);
    assert_eq!(
        verify(&chain, &ders(&[&a]), &localhost(), now()),
        Finding::Trusted {
            anchor: 0,
            by_common_name: false
        }
    );
    assert_eq!(
        verify(&chain, &ders(&[&b]), &localhost(), now()),
        Finding::UntrustedChain {
            issuer: "CN=CA A".into()
        }
    );
    // Both during a rotation: the anchor is A wherever it stands in the bundle.
    assert_eq!(
        verify(&chain, &ders(&[&b, &a]), &localhost(), now()),
        Finding::Trusted {
            anchor: 1,
            by_common_name: false
        }
    );
}

#[test]
fn intermediates_come_from_the_server_and_the_missing_issuer_is_named() {
    let root = CertSpec::ca("Root").self_signed();
    let intermediate = CertSpec::ca("Intermediate").signed_by(&root);
    let leaf = CertSpec::leaf("webhook")
        .dns("localhost")
        .signed_by(&intermediate);
    assert_eq!(
        verify(
            &ders(&[&leaf, &intermediate]),
            &ders(&[&root]),
            &localhost(),
            now()
        ),
        Finding::Trusted {
            anchor: 0,
            by_common_name: false
        }
    );
    // A server that does not send its intermediate is refused by a client holding the root
    // only; the issuer it lacks is the intermediate.
    assert_eq!(
        verify(&ders(&[&leaf]), &ders(&[&root]), &localhost(), now()),
        Finding::UntrustedChain {
            issuer: "CN=Intermediate".into()
        }
    );
    // The chain's top issuer is named when nothing anchors it.
    let other = CertSpec::ca("Other").self_signed();
    assert_eq!(
        verify(
            &ders(&[&leaf, &intermediate]),
            &ders(&[&other]),
            &localhost(),
            now()
        ),
        Finding::UntrustedChain {
            issuer: "CN=Root".into()
        }
    );
}

#[test]
fn the_host_name_must_match_a_subject_alt_name() {
    let ca = CertSpec::ca("CA").self_signed();
    let leaf = CertSpec::leaf("webhook")
        .dns("hooks.example")
        .signed_by(&ca);
    assert_eq!(
        verify(&ders(&[&leaf]), &ders(&[&ca]), &localhost(), now()),
        Finding::HostnameMismatch {
            anchor: 0,
            names: vec!["hooks.example".into()]
        }
    );
    let by_ip = CertSpec::leaf("webhook")
        .ip(IpAddr::V4(Ipv4Addr::LOCALHOST))
        .signed_by(&ca);
    let ip = ServerName::from(IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert!(matches!(
        verify(&ders(&[&by_ip]), &ders(&[&ca]), &ip, now()),
        Finding::Trusted {
            by_common_name: false,
            ..
        }
    ));
    // A CN is not read when a subjectAltName exists, as with every TLS client.
    let cn_and_san = CertSpec::leaf("localhost")
        .dns("hooks.example")
        .signed_by(&ca);
    assert!(matches!(
        verify(&ders(&[&cn_and_san]), &ders(&[&ca]), &localhost(), now()),
        Finding::HostnameMismatch { .. }
    ));
}

#[test]
fn an_expired_server_certificate_is_told_apart_from_an_untrusted_one() {
    let (a, b) = (
        CertSpec::ca("CA A").self_signed(),
        CertSpec::ca("CA B").self_signed(),
    );
    let expired = CertSpec::leaf("webhook")
        .dns("localhost")
        .valid(((2020, 1, 1), (2021, 1, 1)))
        .signed_by(&a);
    let not_after = Timestamp::from_second(1_609_459_200).unwrap(); // 2021-01-01
    assert_eq!(
        verify(&ders(&[&expired]), &ders(&[&a]), &localhost(), now()),
        Finding::Expired {
            not_after: not_after.as_second().unsigned_abs(),
            anchor: Some(0)
        }
    );
    // Expired and signed by a CA the bundle lacks: the bundle is the problem first.
    assert_eq!(
        verify(&ders(&[&expired]), &ders(&[&b]), &localhost(), now()),
        Finding::UntrustedChain {
            issuer: "CN=CA A".into()
        }
    );
    let future = CertSpec::leaf("webhook")
        .dns("localhost")
        .valid(((4000, 1, 1), (4001, 1, 1)))
        .signed_by(&a);
    assert!(matches!(
        verify(&ders(&[&future]), &ders(&[&a]), &localhost(), now()),
        Finding::NotYetValid {
            anchor: Some(0),
            ..
        }
    ));
}

/// The seed's recipe (`test_support::certs::openssl_req_x509`): no subjectAltName, CA:TRUE.
fn openssl_self_signed(dir: &std::path::Path, cn: &str) -> CertificateDer<'static> {
    let made = test_support::certs::openssl_req_x509(dir, cn);
    CertificateDer::from(
        crate::bundle::certificate_ders(&made.cert_pem)
            .unwrap()
            .remove(0),
    )
}

#[test]
fn a_self_signed_openssl_certificate_in_the_bundle_is_its_own_anchor() {
    let dir = tempfile::tempdir().unwrap();
    let served = openssl_self_signed(dir.path(), "localhost");
    let other_dir = tempfile::tempdir().unwrap();
    let other = openssl_self_signed(other_dir.path(), "localhost");
    let ca = CertSpec::ca("Unrelated").self_signed();
    assert_eq!(
        verify(
            std::slice::from_ref(&served),
            &[der(&ca), served.clone()],
            &localhost(),
            now()
        ),
        Finding::Trusted {
            anchor: 1,
            by_common_name: true
        }
    );
    // The same recipe run again is another certificate: not trusted (webpki alone would only
    // say "CA used as end entity").
    assert_eq!(
        verify(std::slice::from_ref(&served), &[other], &localhost(), now()),
        Finding::UntrustedChain {
            issuer: "CN=localhost".into()
        }
    );
    // Pinned, but for another host name.
    let elsewhere = ServerName::try_from("hooks.example").unwrap();
    assert!(matches!(
        verify(
            std::slice::from_ref(&served),
            std::slice::from_ref(&served),
            &elsewhere,
            now()
        ),
        Finding::HostnameMismatch { anchor: 0, .. }
    ));
    // Pinned, but past its 365 days.
    let later = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        UnixTime::now().as_secs() + 400 * 86_400,
    ));
    assert!(matches!(
        verify(
            std::slice::from_ref(&served),
            std::slice::from_ref(&served),
            &localhost(),
            later
        ),
        Finding::Expired {
            anchor: Some(0),
            ..
        }
    ));
}

#[test]
fn a_ca_certificate_served_as_the_leaf_is_untrusted_only_when_nothing_could_anchor_it() {
    let root = CertSpec::ca("Root").self_signed();
    let ca_leaf = CertSpec::ca("localhost").dns("localhost").signed_by(&root);
    let other = CertSpec::ca("Other").self_signed();
    assert_eq!(
        verify(&ders(&[&ca_leaf]), &ders(&[&other]), &localhost(), now()),
        Finding::UntrustedChain {
            issuer: "CN=Root".into()
        }
    );
    assert!(matches!(
        verify(&ders(&[&ca_leaf]), &ders(&[&root]), &localhost(), now()),
        Finding::Unverifiable(_)
    ));
}

#[test]
fn common_name_fallback_matches_like_a_dns_name() {
    use super::verify::Finding::*;
    let ca = CertSpec::ca("CA").self_signed();
    let cases = [
        ("localhost", "localhost", true),
        ("LOCALHOST", "localhost", true),
        ("*.example.com", "hooks.example.com", true),
        ("*.example.com", "a.hooks.example.com", false),
        ("*.com", "example.com", false),
        ("hooks.example", "localhost", false),
    ];
    for (cn, host, ok) in cases {
        let leaf = CertSpec::leaf(cn).signed_by(&ca);
        let name = ServerName::try_from(host.to_owned()).unwrap();
        let finding = verify(&ders(&[&leaf]), &ders(&[&ca]), &name, now());
        if ok {
            assert_eq!(
                finding,
                Trusted {
                    anchor: 0,
                    by_common_name: true
                },
                "{cn} vs {host}"
            );
        } else {
            assert!(
                matches!(finding, HostnameMismatch { .. }),
                "{cn} vs {host}: {finding:?}"
            );
        }
    }
}

#[test]
fn garbage_and_nothing_are_unverifiable_not_untrusted() {
    let ca = CertSpec::ca("CA").self_signed();
    let garbage = [CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00])];
    assert!(matches!(
        verify(&garbage, &ders(&[&ca]), &localhost(), now()),
        Finding::Unverifiable(_)
    ));
    assert!(matches!(
        verify(&[], &ders(&[&ca]), &localhost(), now()),
        Finding::Unverifiable(_)
    ));
}

#[test]
fn the_check_names_the_missing_issuer_and_never_the_url() {
    let (a, b) = (
        CertSpec::ca("CA A").self_signed(),
        CertSpec::ca("CA B").self_signed(),
    );
    let leaf = CertSpec::leaf("webhook").dns("localhost").signed_by(&a);
    let target = target("https://user:s3cret@localhost:8443/hook?token=abc").unwrap();
    let check = judge(
        &ders(&[&leaf]),
        &bundle_of(&[b.pem.as_str()]),
        &target,
        Timestamp::now(),
    );
    assert_eq!(check.trust, Trust::Untrusted);
    assert!(check.blocks_upload());
    assert!(
        check
            .message
            .contains("its issuer CN=CA A is not in the bundle"),
        "{}",
        check.message
    );
    assert_eq!(check.endpoint.as_deref(), Some("localhost:8443"));
    assert!(!check.message.contains("s3cret") && !check.message.contains("abc"));

    let check = judge(
        &ders(&[&leaf]),
        &bundle_of(&[b.pem.as_str(), a.pem.as_str()]),
        &target,
        Timestamp::now(),
    );
    assert_eq!(
        (check.trust, check.reason),
        (Trust::Trusted, reason::TRUSTED)
    );
    assert_eq!(check.anchor.map(|a| a.subject).as_deref(), Some("CN=CA A"));
    assert_eq!(
        check.server.map(|s| s.subject).as_deref(),
        Some("CN=webhook")
    );
}

#[test]
fn urls_without_a_certificate_to_check_are_unknown() {
    for (url, reason) in [
        ("http://hooks.example/x", reason::PLAIN_HTTP),
        ("ftp://hooks.example/", reason::INVALID_URL),
        ("not a url", reason::INVALID_URL),
    ] {
        let check = target(url).unwrap_err();
        assert_eq!(
            (check.trust, check.reason),
            (Trust::Unknown, reason),
            "{url}"
        );
    }
    assert_eq!(
        target("https://hooks.example/x").unwrap().endpoint(),
        "hooks.example:443"
    );
    assert_eq!(
        target("https://[::1]:9443/").unwrap().endpoint(),
        "[::1]:9443"
    );
}
