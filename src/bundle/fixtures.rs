//! Real certificates for the engine's tests, made with rcgen at test time. Validity windows are
//! fixed dates around [`now`], so no test depends on the clock.

use jiff::Timestamp;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SerialNumber, date_time_ymd,
};

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

/// A generated certificate and the forms a test compares against.
#[derive(Debug, Clone)]
pub struct Cert {
    /// rcgen's own PEM (LF, 64 columns): already canonical.
    pub pem: String,
    pub der: Vec<u8>,
    pub sha256: String,
}

type Ymd = (i32, u8, u8);

/// The validity window of most fixtures: around [`now`], comfortably.
pub const VALID: (Ymd, Ymd) = ((2020, 1, 1), (2040, 1, 1));
pub const EXPIRED: (Ymd, Ymd) = ((2020, 1, 1), (2030, 1, 1));
pub const NOT_YET_VALID: (Ymd, Ymd) = ((2031, 1, 1), (2040, 1, 1));

fn params(name: &str, is_ca: bool, (from, until): (Ymd, Ymd), serial: u64) -> CertificateParams {
    let mut params = CertificateParams::new(vec![format!("{name}.example")]).expect("valid SAN");
    params.distinguished_name.push(DnType::CommonName, name);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Example");
    params.is_ca = if is_ca {
        IsCa::Ca(BasicConstraints::Unconstrained)
    } else {
        IsCa::ExplicitNoCa
    };
    params.not_before = date_time_ymd(from.0, from.1, from.2);
    params.not_after = date_time_ymd(until.0, until.1, until.2);
    params.serial_number = Some(SerialNumber::from(serial));
    params
}

fn finish(cert: rcgen::Certificate) -> Cert {
    let der = cert.der().to_vec();
    Cert {
        pem: cert.pem(),
        sha256: super::cert::sha256_hex(&der),
        der,
    }
}

/// A self-signed certificate.
pub fn self_signed(name: &str, is_ca: bool, window: (Ymd, Ymd)) -> Cert {
    let key = KeyPair::generate().expect("key generation");
    finish(
        params(name, is_ca, window, 0x1234_5678)
            .self_signed(&key)
            .expect("self-signed"),
    )
}

pub fn ca(name: &str) -> Cert {
    self_signed(name, true, VALID)
}

/// A root CA, an intermediate CA it signed, and a leaf the intermediate signed.
pub fn chain() -> [Cert; 3] {
    let root_key = KeyPair::generate().expect("key generation");
    let root_params = params("Root CA", true, VALID, 1);
    let root = root_params.self_signed(&root_key).expect("root");
    let root_issuer = Issuer::new(root_params, &root_key);

    let mid_key = KeyPair::generate().expect("key generation");
    let mid_params = params("Intermediate CA", true, VALID, 2);
    let mid = mid_params.signed_by(&mid_key, &root_issuer).expect("mid");
    let mid_issuer = Issuer::new(mid_params, &mid_key);

    let leaf_key = KeyPair::generate().expect("key generation");
    let leaf = params("webhook", false, VALID, 3)
        .signed_by(&leaf_key, &mid_issuer)
        .expect("leaf");
    [finish(root), finish(mid), finish(leaf)]
}

/// A PKCS#8 private key in PEM, as a careless Secret would hold it next to `tls.crt`.
pub fn private_key_pem() -> String {
    KeyPair::generate().expect("key generation").serialize_pem()
}

/// The base64 body of a PEM block, lines joined: what must never show up in an error.
pub fn base64_body(pem: &str) -> String {
    pem.lines().filter(|l| !l.starts_with("-----")).collect()
}
