//! Real certificates for the engine's tests, made by the shared test fixture at test time.
//! Validity windows are fixed dates around [`now`], so no test depends on the clock.

use jiff::Timestamp;
pub use test_support::certs::{Cert, base64_body, key_pem};
use test_support::certs::{CertSpec, Ymd};

use super::{Policy, SourceInput};

/// The instant every test evaluates validity at.
pub fn now() -> Timestamp {
    "2030-06-01T00:00:00Z".parse().expect("valid timestamp")
}

pub fn policy() -> Policy {
    Policy::defaults_at(now())
}

pub fn input<'a>(source: &'a str, pem: &'a str) -> SourceInput<'a> {
    SourceInput { source, pem }
}

/// The validity window of most fixtures: around [`now`], comfortably.
pub const VALID: (Ymd, Ymd) = ((2020, 1, 1), (2040, 1, 1));
pub const EXPIRED: (Ymd, Ymd) = ((2020, 1, 1), (2030, 1, 1));
pub const NOT_YET_VALID: (Ymd, Ymd) = ((2031, 1, 1), (2040, 1, 1));

/// The engine's fixtures: subject `CN=<name>, O=Example`, fixed dates and serial numbers.
fn spec(name: &str, is_ca: bool, window: (Ymd, Ymd), serial: u64) -> CertSpec {
    CertSpec::new(name, is_ca)
        .organization("Example")
        .valid(window)
        .serial(serial)
}

/// A self-signed certificate.
pub fn self_signed(name: &str, is_ca: bool, window: (Ymd, Ymd)) -> Cert {
    spec(name, is_ca, window, 0x1234_5678).self_signed()
}

pub fn ca(name: &str) -> Cert {
    self_signed(name, true, VALID)
}

/// A root CA, an intermediate CA it signed, and a leaf the intermediate signed.
pub fn chain() -> [Cert; 3] {
    let root = spec("Root CA", true, VALID, 1).self_signed();
    let mid = spec("Intermediate CA", true, VALID, 2).signed_by(&root);
    let leaf = spec("webhook", false, VALID, 3).signed_by(&mid);
    [root, mid, leaf]
}
