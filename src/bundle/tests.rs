//! The engine against real certificates in the shapes users keep them.

use crate::reason::ConditionReason;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::fixtures::{
    self, EXPIRED, NOT_YET_VALID, VALID, base64_body, ca, chain, input, key_pem, policy,
    self_signed,
};
use super::*;

fn sha256_hex(text: &str) -> String {
    cert::sha256_hex(text.as_bytes())
}

#[test]
fn one_ca_gives_its_canonical_pem_and_the_facts_about_it() {
    let root = ca("Internal CA");
    let bundle = build(&[input("ca.crt", &root.pem)], &policy()).expect("builds");

    assert_eq!(bundle.pem, root.pem);
    assert_eq!(bundle.sha256, sha256_hex(&root.pem));
    assert_eq!(bundle.duplicates_removed, 0);
    assert!(bundle.warnings.is_empty(), "{:?}", bundle.warnings);
    let info = &bundle.certificates[..];
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].subject, "CN=Internal CA, O=Example");
    assert_eq!(info[0].issuer, info[0].subject);
    assert_eq!(info[0].serial, "12345678");
    assert_eq!(info[0].not_before.to_string(), "2020-01-01T00:00:00Z");
    assert_eq!(info[0].not_after.to_string(), "2040-01-01T00:00:00Z");
    assert_eq!(info[0].sha256, root.sha256);
    assert!(info[0].is_ca);
    assert_eq!(info[0].source, "ca.crt");
}

#[test]
fn pem_as_users_keep_it_gives_the_same_bundle_as_clean_pem() {
    let [root, mid, leaf] = chain();
    let clean = format!("{}{}{}", root.pem, mid.pem, leaf.pem);
    let indented: String = mid.pem.lines().map(|l| format!("    {l}\n")).collect();
    let messy = format!(
        "Bag Attributes\r\n    friendlyName: root\r\nsubject=/CN=Root CA\r\n{}\r\n\
         # the intermediate, pasted from a wiki\n{indented}\n\
         {}trailing garbage -- not PEM ====\n\x00\u{fffd}",
        root.pem.replace('\n', "\r\n"),
        leaf.pem.replace('\n', " ").replace("----- ", "-----\n"),
    );

    let from_clean = build(&[input("clean", &clean)], &policy()).expect("clean builds");
    let from_messy = build(&[input("messy", &messy)], &policy()).expect("messy builds");

    assert_eq!(from_messy.pem, clean);
    assert_eq!(from_messy.sha256, from_clean.sha256);
    assert_eq!(from_messy.certificates.len(), 3);
}

#[test]
fn duplicates_are_dropped_keeping_the_first_occurrence() {
    let a = ca("A");
    let b = ca("B");
    let first = format!("{}{}", a.pem, a.pem);
    let second = format!("{}{}", b.pem, a.pem);
    let bundle = build(
        &[input("first", &first), input("second", &second)],
        &policy(),
    )
    .expect("builds");

    assert_eq!(bundle.pem, format!("{}{}", a.pem, b.pem));
    assert_eq!(bundle.duplicates_removed, 2);
    let sources: Vec<&str> = bundle
        .certificates
        .iter()
        .map(|c| c.source.as_str())
        .collect();
    assert_eq!(sources, ["first", "second"]);
}

#[test]
fn source_order_keeps_chains_and_sorted_order_ignores_input_order() {
    let [root, mid, leaf] = chain();
    let leaf_first = [
        input("leaf", &leaf.pem),
        input("mid", &mid.pem),
        input("root", &root.pem),
    ];
    let as_given = build(&leaf_first, &policy()).expect("builds");
    assert_eq!(as_given.pem, format!("{}{}{}", leaf.pem, mid.pem, root.pem));

    let sorted_policy = Policy {
        order: Order::Sorted,
        ..policy()
    };
    let sorted = build(&leaf_first, &sorted_policy).expect("builds");
    let mut reversed = leaf_first;
    reversed.reverse();
    let sorted_reversed = build(&reversed, &sorted_policy).expect("builds");
    assert_eq!(sorted.pem, sorted_reversed.pem);
    let fingerprints: Vec<&str> = sorted
        .certificates
        .iter()
        .map(|c| c.sha256.as_str())
        .collect();
    assert!(fingerprints.is_sorted(), "{fingerprints:?}");
}

#[test]
fn a_private_key_anywhere_refuses_the_build_and_names_the_source() {
    let root = ca("Internal CA");
    let key = key_pem();
    let tls_secret = format!("{}{key}", root.pem);
    let broken = "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n";

    // The key is refused as a key even when an earlier source would fail for another reason.
    let err = build(
        &[
            input("broken.pem", broken),
            input("secret whatsapp/webhook-tls key tls.crt", &tls_secret),
        ],
        &policy(),
    )
    .expect_err("refused");
    assert_eq!(
        err,
        BundleError::PrivateKey {
            source_name: "secret whatsapp/webhook-tls key tls.crt".into()
        }
    );
    assert!(err.to_string().contains("tls.crt"));
    assert_no_key_material(&err, &key);
}

#[test]
fn every_kind_of_key_label_is_refused() {
    let root = ca("Internal CA");
    let body = base64_body(&key_pem());
    for label in [
        "PRIVATE KEY",
        "RSA PRIVATE KEY",
        "EC PRIVATE KEY",
        "ENCRYPTED PRIVATE KEY",
        "OPENSSH PRIVATE KEY",
        "DSA PRIVATE KEY",
    ] {
        let text = format!(
            "{}-----BEGIN {label}-----\n{body}\n-----END {label}-----\n",
            root.pem
        );
        let err = build(&[input("f", &text)], &policy()).expect_err(label);
        assert!(
            matches!(err, BundleError::PrivateKey { .. }),
            "{label}: {err}"
        );
    }
}

#[test]
fn a_key_label_padded_far_from_its_dashes_is_still_refused() {
    let root = ca("Internal CA");
    let pad = " ".repeat(500);
    let text = format!(
        "{}-----BEGIN{pad}PRIVATE KEY-----\nAAAA\n-----END{pad}PRIVATE KEY-----\n",
        root.pem
    );
    let err = build(&[input("padded.pem", &text)], &policy()).expect_err("refused");
    assert!(matches!(err, BundleError::PrivateKey { .. }), "{err}");
}

/// Key material put where the engine reads certificates, in every way that yields an error:
/// whichever error it is, neither its Display nor its Debug carries the key.
#[test]
fn no_error_carries_key_material() {
    let key = key_pem();
    let body = base64_body(&key);
    let wrapped: String = body
        .as_bytes()
        .chunks(64)
        .map(|c| format!("{}\n", String::from_utf8_lossy(c)))
        .collect();
    let as_cert = |b: &str| format!("-----BEGIN CERTIFICATE-----\n{b}-----END CERTIFICATE-----\n");
    let texts = [
        key.clone(),
        key.replace("-----END PRIVATE KEY-----", ""),
        as_cert(&wrapped),
        as_cert(&wrapped.replacen('A', "*", 1)),
        as_cert(&wrapped[..wrapped.len() - 3]),
        format!("-----BEGIN CERTIFICATE-----\n{wrapped}-----END PUBLIC KEY-----\n"),
        format!("-----BEGIN CERTIFICATE-----\n{wrapped}"),
        format!("-----BEGIN {body}-----\n{wrapped}-----END X-----\n"),
        format!("-----BEGIN {body}\n"),
    ];
    for text in &texts {
        let err = build(&[input("leaky.pem", text)], &policy()).expect_err("refused");
        assert_no_key_material(&err, &key);
        if let Err(err) = canonicalize(text) {
            assert_no_key_material(&err, &key);
        }
    }
}

fn assert_no_key_material(err: &(impl std::fmt::Display + std::fmt::Debug), key: &str) {
    let body = base64_body(key);
    let der = STANDARD.decode(&body).expect("rcgen writes valid base64");
    for shown in [err.to_string(), format!("{err:?}")] {
        for window in body.as_bytes().windows(12) {
            let window = String::from_utf8_lossy(window);
            assert!(!shown.contains(&*window), "{shown:?} holds {window:?}");
        }
        // Nor as hex or as a byte list.
        for window in der.windows(6) {
            assert!(
                !shown.contains(&hex::encode(window)),
                "{shown:?} holds key hex"
            );
            let as_list = format!("{window:?}");
            assert!(
                !shown.contains(as_list.trim_matches(['[', ']'])),
                "{shown:?}"
            );
        }
    }
}

#[test]
fn a_corrupt_block_is_an_error_naming_source_and_block() {
    let a = ca("A");
    let b = ca("B");
    let corrupt = b.pem.replacen("\n", "\n%%", 2);
    let text = format!("{}{corrupt}", a.pem);
    let err = build(&[input("ca-bundle.pem", &text)], &policy()).expect_err("corrupt");
    assert!(
        matches!(
            err,
            BundleError::InvalidPem {
                ref source_name,
                reason: PemError::InvalidBase64Character { index: 2, line: 1, .. },
            } if source_name == "ca-bundle.pem"
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().starts_with("ca-bundle.pem: block 2"),
        "{err}"
    );
}

#[test]
fn a_block_that_is_not_x509_is_an_error_naming_source_and_block() {
    let a = ca("A");
    let not_x509 = STANDARD.encode(b"this decodes, but it is no certificate");
    let text = format!(
        "{}-----BEGIN CERTIFICATE-----\n{not_x509}\n-----END CERTIFICATE-----\n",
        a.pem
    );
    let err = build(&[input("partner-cas", &text)], &policy()).expect_err("not x509");
    assert!(
        matches!(
            err,
            BundleError::InvalidCertificate { ref source_name, index: 2, .. }
                if source_name == "partner-cas"
        ),
        "{err:?}"
    );

    let mut der = a.der.clone();
    der.extend_from_slice(b"trailer");
    let padded = format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        STANDARD.encode(&der)
    );
    let err = build(&[input("padded", &padded)], &policy()).expect_err("trailing bytes");
    assert!(err.to_string().contains("7 bytes follow"), "{err}");
}

#[test]
fn no_certificate_at_all_is_an_error_never_an_empty_bundle() {
    let trusted = "-----BEGIN TRUSTED CERTIFICATE-----\nAAAA\n-----END TRUSTED CERTIFICATE-----\n";
    for inputs in [
        vec![],
        vec![input("empty.pem", "")],
        vec![input("prose", "just some text\r\n"), input("t", trusted)],
    ] {
        let err = build(&inputs, &policy()).expect_err("empty");
        let names: Vec<String> = inputs.iter().map(|i| i.source.to_owned()).collect();
        assert_eq!(
            err,
            BundleError::Empty {
                sources: names.clone()
            }
        );
        let message = err.to_string();
        for name in &names {
            assert!(message.contains(name.as_str()), "{message}");
        }
    }
    assert_eq!(
        build(&[], &policy()).unwrap_err().to_string(),
        "no source contributed any text; an empty bundle is never built"
    );
}

#[test]
fn empty_sources_and_other_blocks_are_reported_beside_a_good_bundle() {
    let a = ca("A");
    let with_crl = format!(
        "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n{}-----BEGIN TRUSTED CERTIFICATE-----\nAAAA\n-----END TRUSTED CERTIFICATE-----\n",
        a.pem
    );
    let bundle = build(
        &[input("empty.pem", "\n"), input("mixed.pem", &with_crl)],
        &policy(),
    )
    .expect("builds");
    assert_eq!(bundle.pem, a.pem);
    assert_eq!(
        bundle.warnings,
        [
            Finding::EmptySource {
                source: "empty.pem".into()
            },
            Finding::IgnoredBlock {
                source: "mixed.pem".into(),
                index: 1,
                label: "X509 CRL".into()
            },
            Finding::IgnoredBlock {
                source: "mixed.pem".into(),
                index: 3,
                label: "TRUSTED CERTIFICATE".into()
            },
        ]
    );
}

#[test]
fn expired_certificates_are_refused_by_default_and_can_be_let_through() {
    let good = ca("Current CA");
    let old = self_signed("Old CA", true, EXPIRED);
    let text = format!("{}{}", good.pem, old.pem);
    let inputs = [input("cas.pem", &text)];

    let err = build(&inputs, &policy()).expect_err("expired refused");
    let BundleError::Refused { findings } = &err else {
        panic!("expected a refusal, got {err:?}");
    };
    assert_eq!(findings.len(), 1);
    assert!(
        matches!(&findings[0], Finding::Expired { sha256, .. } if *sha256 == old.sha256),
        "{findings:?}"
    );
    assert!(err.to_string().contains("Old CA"), "{err}");
    assert!(err.to_string().contains("2030-01-01"), "{err}");

    let lenient = Policy {
        expired: Action::Warn,
        ..policy()
    };
    let bundle = build(&inputs, &lenient).expect("builds");
    assert_eq!(bundle.certificates.len(), 2);
    assert!(matches!(bundle.warnings[..], [Finding::Expired { .. }]));
}

#[test]
fn expired_certificates_can_be_dropped_but_never_down_to_nothing() {
    let good = ca("Current CA");
    let old = self_signed("Old CA", true, EXPIRED);
    let text = format!("{}{}", old.pem, good.pem);
    let inputs = [input("cas.pem", &text)];
    let drop = Policy {
        expired: Action::Drop,
        ..policy()
    };
    let bundle = build(&inputs, &drop).expect("builds without the expired certificate");
    assert_eq!(bundle.certificates.len(), 1);
    assert_eq!(bundle.certificates[0].sha256, good.sha256);
    assert_eq!(
        bundle,
        build(&[input("cas.pem", &good.pem)], &drop)
            .map(|b| Bundle {
                warnings: bundle.warnings.clone(),
                ..b
            })
            .expect("the same bundle as the good CA alone")
    );
    let [Finding::Dropped { finding }] = &bundle.warnings[..] else {
        panic!("expected one dropped finding: {:?}", bundle.warnings);
    };
    assert!(matches!(**finding, Finding::Expired { ref sha256, .. } if *sha256 == old.sha256));
    let note = bundle.dropped_note().expect("a note");
    assert!(
        note.contains("Old CA") && note.contains("left out of the bundle"),
        "{note}"
    );
    assert_eq!(
        build(&[input("good", &good.pem)], &drop)
            .unwrap()
            .dropped_note(),
        None
    );

    // Nothing left: refused as empty, saying what was dropped.
    let err = build(&[input("old.pem", &old.pem)], &drop).expect_err("empty");
    assert_eq!(err.reason(), "BundleEmpty");
    assert!(err.to_string().contains("Old CA"), "{err}");
}

#[test]
fn not_yet_valid_warns_by_default_and_can_refuse() {
    let future = self_signed("Next CA", true, NOT_YET_VALID);
    let inputs = [input("next.pem", &future.pem)];
    let bundle = build(&inputs, &policy()).expect("builds");
    assert!(matches!(bundle.warnings[..], [Finding::NotYetValid { .. }]));

    let strict = Policy {
        not_yet_valid: Action::Refuse,
        ..policy()
    };
    assert!(matches!(
        build(&inputs, &strict),
        Err(BundleError::Refused { .. })
    ));
}

#[test]
fn non_ca_certificates_warn_by_default_and_can_refuse() {
    let [root, _, leaf] = chain();
    let text = format!("{}{}", root.pem, leaf.pem);
    let inputs = [input("chain.pem", &text)];
    let bundle = build(&inputs, &policy()).expect("builds");
    assert!(!bundle.certificates[1].is_ca);
    assert!(matches!(
        &bundle.warnings[..],
        [Finding::NonCa { subject, .. }] if subject == "CN=webhook, O=Example"
    ));

    let strict = Policy {
        non_ca: Action::Refuse,
        ..policy()
    };
    assert!(matches!(
        build(&inputs, &strict),
        Err(BundleError::Refused { findings }) if findings.len() == 1
    ));
}

#[test]
fn every_refused_finding_is_reported_at_once() {
    let old = self_signed("Old leaf", false, EXPIRED);
    let strict = Policy {
        non_ca: Action::Refuse,
        ..policy()
    };
    let err = build(&[input("old.pem", &old.pem)], &strict).expect_err("refused");
    assert!(
        matches!(&err, BundleError::Refused { findings } if findings.len() == 2),
        "{err:?}"
    );
}

#[test]
fn validity_is_judged_at_the_given_instant() {
    let old = self_signed("Old CA", true, EXPIRED);
    let inputs = [input("old.pem", &old.pem)];
    let before_expiry = Policy::defaults_at("2029-12-31T23:59:59Z".parse().expect("timestamp"));
    assert!(build(&inputs, &before_expiry).is_ok());
    // notAfter itself is still inside the validity period (RFC 5280 §4.1.2.5).
    let at_expiry = Policy::defaults_at("2030-01-01T00:00:00Z".parse().expect("timestamp"));
    assert!(build(&inputs, &at_expiry).is_ok());
    let after_expiry = Policy::defaults_at("2030-01-01T00:00:01Z".parse().expect("timestamp"));
    assert!(build(&inputs, &after_expiry).is_err());
}

#[test]
fn earliest_expiry_is_the_first_certificate_to_expire() {
    let long = ca("Long CA");
    let short = self_signed("Short CA", true, ((2020, 1, 1), (2031, 3, 1)));
    let text = format!("{}{}", long.pem, short.pem);
    let bundle = build(&[input("f", &text)], &policy()).expect("builds");
    let earliest = bundle.earliest_expiry().expect("has certificates");
    assert_eq!(earliest.sha256, short.sha256);
}

#[test]
fn canonicalize_compares_by_content_not_by_whitespace() {
    let a = ca("A");
    let b = ca("B");
    let bundle = build(&[input("a", &a.pem), input("b", &b.pem)], &policy()).expect("builds");

    let remote_crlf = format!("{}\r\n\r\n{}", a.pem, b.pem).replace('\n', "\r\n");
    let canonical = canonicalize(&remote_crlf).expect("canonicalizes");
    assert_eq!(canonical.pem, bundle.pem);
    assert_eq!(canonical.sha256, bundle.sha256);
    assert_eq!(canonical.certificates, 2);
    assert!(bundle.matches(&remote_crlf));

    let reordered = format!("{}{}", b.pem, a.pem);
    assert!(!bundle.matches(&reordered));
    assert!(!bundle.matches(&a.pem));
    assert!(!bundle.matches(""));
    assert!(!bundle.matches(&format!("{}{}", bundle.pem, key_pem())));
    assert!(!bundle.matches("-----BEGIN CERTIFICATE-----\ntruncated"));
}

#[test]
fn canonicalize_is_lenient_about_validity() {
    // The remote side may hold anything a person uploaded: expired or leaf certificates still
    // count as content to compare.
    let old = self_signed("Old leaf", false, EXPIRED);
    let canonical = canonicalize(&old.pem).expect("canonicalizes");
    assert_eq!(canonical.pem, old.pem);
}

#[test]
fn certificate_info_serializes_in_camel_case_with_rfc3339_times() {
    let root = ca("A");
    let bundle = build(&[input("a", &root.pem)], &policy()).expect("builds");
    let json = serde_json::to_value(&bundle.certificates[0]).expect("serializes");
    assert_eq!(json["notAfter"], "2040-01-01T00:00:00Z");
    assert_eq!(json["isCa"], true);
    assert_eq!(json["sha256"], root.sha256.as_str());
    let back: CertificateInfo = serde_json::from_value(json).expect("deserializes");
    assert_eq!(back, bundle.certificates[0]);

    let finding = Finding::EmptySource { source: "x".into() };
    let json = serde_json::to_value(&finding).expect("serializes");
    assert_eq!(
        json,
        serde_json::json!({"kind": "emptySource", "source": "x"})
    );
}

#[test]
fn the_fixture_window_brackets_the_test_instant() {
    // Guards the fixtures themselves: the tests above rely on VALID spanning `now`.
    let valid = self_signed("x", true, VALID);
    let bundle = build(&[input("x", &valid.pem)], &fixtures::policy()).expect("builds");
    let info = &bundle.certificates[0];
    assert!(info.not_before < fixtures::now() && fixtures::now() < info.not_after);
}
