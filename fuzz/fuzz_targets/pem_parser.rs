//! Arbitrary bytes, read as text the way the CLI reads a file (lossy UTF-8), through the PEM
//! scanner, X.509 parsing and the whole build. Besides "never panics", it checks the invariants
//! the controller relies on when it compares bundles.

#![no_main]

use libfuzzer_sys::fuzz_target;
use webhook_ca_operator::bundle::{self, Policy, SourceInput};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let canonical = bundle::canonicalize(&text);

    // A fixed instant: the engine never reads a clock, and a fuzz run must be reproducible.
    let now = jiff::Timestamp::from_second(1_900_000_000).expect("in range");
    let policy = Policy::lenient_at(now);
    let input = [SourceInput {
        source: "fuzz",
        pem: &text,
    }];
    let Ok(built) = bundle::build(&input, &policy) else {
        return;
    };

    // What builds also scans and decodes leniently, to the same bytes unless dedup dropped some.
    let canonical = canonical.expect("a text that builds canonicalizes");
    if built.duplicates_removed == 0 {
        assert_eq!(canonical.pem, built.pem);
    }
    // Canonical output is a fixed point and matches itself.
    let again = bundle::build(
        &[SourceInput {
            source: "again",
            pem: &built.pem,
        }],
        &policy,
    )
    .expect("canonical output rebuilds");
    assert_eq!(again.pem, built.pem);
    assert_eq!(again.sha256, built.sha256);
    assert!(built.matches(&built.pem));
});
