//! Properties of the engine over generated inputs.

use std::sync::LazyLock;

use proptest::prelude::*;

use super::fixtures::{Cert, ca, input, policy};
use super::*;

/// Certificates are costly to make; cases pick from a few made once.
static POOL: LazyLock<Vec<Cert>> =
    LazyLock::new(|| (0..5).map(|i| ca(&format!("Pool CA {i}"))).collect());

/// A non-empty sequence of pool indexes, repeats allowed.
fn picks() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0..5usize, 1..8)
}

/// Text that cannot start or end a block: anything without a dash.
fn junk() -> impl Strategy<Value = String> {
    "[^-]{0,40}"
}

fn concatenated(picks: &[usize]) -> String {
    picks.iter().map(|&i| POOL[i].pem.as_str()).collect()
}

/// Fragments that look like PEM, so that random text reaches deep into the scanner.
fn pem_like() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("-----BEGIN ".to_owned()),
        Just("-----END ".to_owned()),
        Just("-----".to_owned()),
        Just("CERTIFICATE".to_owned()),
        Just("X509 CRL".to_owned()),
        Just("\r\n".to_owned()),
        Just("\n".to_owned()),
        Just("MIIB".to_owned()),
        Just("AAAA".to_owned()),
        Just("=".to_owned()),
        (0..5usize).prop_map(|i| POOL[i].pem.clone()),
        any::<String>(),
    ];
    prop::collection::vec(piece, 0..12).prop_map(|pieces| pieces.concat())
}

proptest! {
    #[test]
    fn canonical_output_is_a_fixed_point(picks in picks()) {
        let text = concatenated(&picks);
        let first = build(&[input("in", &text)], &policy()).expect("builds");
        let second = build(&[input("again", &first.pem)], &policy()).expect("rebuilds");
        prop_assert_eq!(&second.pem, &first.pem);
        prop_assert_eq!(&second.sha256, &first.sha256);
        prop_assert_eq!(second.duplicates_removed, 0);
        let canonical = canonicalize(&first.pem).expect("canonicalizes");
        prop_assert_eq!(&canonical.sha256, &first.sha256);
    }

    #[test]
    fn junk_around_blocks_changes_nothing(
        picks in picks(),
        junks in prop::collection::vec(junk(), 9),
        crlf in any::<bool>(),
    ) {
        let clean = concatenated(&picks);
        let mut messy = String::new();
        for (i, &pick) in picks.iter().enumerate() {
            messy.push_str(&junks[i]);
            messy.push_str(&POOL[pick].pem);
        }
        messy.push_str(&junks[8]);
        if crlf {
            messy = messy.replace('\n', "\r\n");
        }
        let expected = build(&[input("clean", &clean)], &policy()).expect("builds");
        let got = build(&[input("messy", &messy)], &policy()).expect("builds");
        prop_assert_eq!(&got.pem, &expected.pem);
        prop_assert_eq!(got.duplicates_removed, expected.duplicates_removed);
        prop_assert_eq!(
            canonicalize(&messy).expect("canonicalizes"),
            canonicalize(&clean).expect("canonicalizes")
        );
    }

    #[test]
    fn source_order_is_first_occurrence_order_and_duplicates_are_counted(picks in picks()) {
        let texts: Vec<&str> = picks.iter().map(|&i| POOL[i].pem.as_str()).collect();
        let names: Vec<String> = (0..picks.len()).map(|i| format!("source {i}")).collect();
        let inputs: Vec<SourceInput<'_>> =
            names.iter().zip(&texts).map(|(n, t)| input(n, t)).collect();
        let bundle = build(&inputs, &policy()).expect("builds");

        let mut first_seen = Vec::new();
        for &pick in &picks {
            if !first_seen.contains(&pick) {
                first_seen.push(pick);
            }
        }
        let expected: Vec<&str> = first_seen.iter().map(|&i| POOL[i].sha256.as_str()).collect();
        let got: Vec<&str> = bundle.certificates.iter().map(|c| c.sha256.as_str()).collect();
        prop_assert_eq!(got, expected);
        prop_assert_eq!(bundle.duplicates_removed, picks.len() - first_seen.len());
    }

    #[test]
    fn sorted_order_does_not_depend_on_input_order(
        picks in picks(),
        seed in any::<u64>(),
    ) {
        let sorted = Policy { order: Order::Sorted, ..policy() };
        let mut shuffled = picks.clone();
        // A cheap deterministic shuffle: rotate and reverse by the seed.
        shuffled.rotate_left(usize::try_from(seed).unwrap_or(0) % picks.len());
        if seed % 2 == 0 {
            shuffled.reverse();
        }
        let a = build(&[input("a", &concatenated(&picks))], &sorted).expect("builds");
        let b = build(&[input("b", &concatenated(&shuffled))], &sorted).expect("builds");
        prop_assert_eq!(&a.pem, &b.pem);
        prop_assert_eq!(&a.sha256, &b.sha256);
    }

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>(), pem_ish in pem_like()) {
        for t in [&text, &pem_ish] {
            let _ = build(&[input("fuzz", t)], &policy());
            let _ = canonicalize(t);
        }
    }

    #[test]
    fn mutated_certificates_are_parsed_or_refused_never_panic(
        pick in 0..5usize,
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..5),
        keep in any::<prop::sample::Index>(),
    ) {
        let mut der = POOL[pick].der.clone();
        for (at, byte) in edits {
            let at = at.index(der.len());
            der[at] = byte;
        }
        der.truncate(keep.index(der.len()) + 1);
        let mut text = String::new();
        pem::push_certificate(&mut text, &der);
        let lenient = Policy::lenient_at(policy().now);
        if let Ok(bundle) = build(&[input("mutant", &text)], &lenient) {
            prop_assert_eq!(&bundle.certificates[0].sha256, &cert::sha256_hex(&der));
        }
    }
}
