//! Certificates for tests, generated with rcgen at test time: the one place the tests (and the
//! bundle engine's unit tests) make them.

use std::sync::Arc;

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType, SerialNumber,
    date_time_ymd,
};
use sha2::{Digest as _, Sha256};

/// A calendar date, `(year, month, day)`.
pub type Ymd = (i32, u8, u8);

/// A generated certificate, its key, and the forms tests compare against.
#[derive(Debug, Clone)]
pub struct Cert {
    /// rcgen's own PEM (LF, 64 columns): already canonical.
    pub pem: String,
    pub der: Vec<u8>,
    /// Lowercase hex SHA-256 of the DER, the fingerprint the operator reports.
    pub sha256: String,
    /// The certificate's private key (PKCS#8 PEM), for Secrets that hold one next to it.
    pub key_pem: String,
    /// Signs certificates made with [`CertSpec::signed_by`] this one.
    issuer: Arc<Issuer<'static, KeyPair>>,
}

/// What to generate: the subject is `CN=<name>` (and `O=<organization>` when given), validity
/// and serial are rcgen's defaults (1975 to 4096, random) unless set.
#[derive(Debug, Clone)]
pub struct CertSpec {
    name: String,
    is_ca: bool,
    organization: Option<String>,
    validity: Option<(Ymd, Ymd)>,
    serial: Option<u64>,
    /// subjectAltName entries: DNS names and IP addresses.
    sans: Vec<SanType>,
}

impl CertSpec {
    pub fn new(name: &str, is_ca: bool) -> Self {
        Self {
            name: name.to_owned(),
            is_ca,
            organization: None,
            validity: None,
            serial: None,
            sans: Vec::new(),
        }
    }

    pub fn ca(name: &str) -> Self {
        Self::new(name, true)
    }

    pub fn leaf(name: &str) -> Self {
        Self::new(name, false)
    }

    pub fn organization(mut self, organization: &str) -> Self {
        self.organization = Some(organization.to_owned());
        self
    }

    /// Valid from the first date to the second, both at midnight UTC.
    pub fn valid(mut self, window: (Ymd, Ymd)) -> Self {
        self.validity = Some(window);
        self
    }

    pub fn serial(mut self, serial: u64) -> Self {
        self.serial = Some(serial);
        self
    }

    /// Adds a DNS name to the subjectAltName extension (a server certificate).
    pub fn dns(mut self, name: &str) -> Self {
        let name = name.to_owned().try_into().expect("an IA5 DNS name");
        self.sans.push(SanType::DnsName(name));
        self
    }

    /// Adds an IP address to the subjectAltName extension.
    pub fn ip(mut self, ip: IpAddr) -> Self {
        self.sans.push(SanType::IpAddress(ip));
        self
    }

    pub fn self_signed(&self) -> Cert {
        let key = KeyPair::generate().expect("key generation");
        let params = self.params();
        let cert = params.self_signed(&key).expect("self-signed certificate");
        finish(&cert, params, key)
    }

    pub fn signed_by(&self, issuer: &Cert) -> Cert {
        let key = KeyPair::generate().expect("key generation");
        let params = self.params();
        let cert = params
            .signed_by(&key, &issuer.issuer)
            .expect("signed certificate");
        finish(&cert, params, key)
    }

    fn params(&self) -> CertificateParams {
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, self.name.as_str());
        if let Some(organization) = &self.organization {
            params
                .distinguished_name
                .push(DnType::OrganizationName, organization.as_str());
        }
        params.is_ca = if self.is_ca {
            IsCa::Ca(BasicConstraints::Unconstrained)
        } else {
            IsCa::ExplicitNoCa
        };
        if let Some(((from_y, from_m, from_d), (until_y, until_m, until_d))) = self.validity {
            params.not_before = date_time_ymd(from_y, from_m, from_d);
            params.not_after = date_time_ymd(until_y, until_m, until_d);
        }
        if let Some(serial) = self.serial {
            params.serial_number = Some(SerialNumber::from(serial));
        }
        params.subject_alt_names = self.sans.clone();
        params
    }
}

fn finish(cert: &rcgen::Certificate, params: CertificateParams, key: KeyPair) -> Cert {
    let der = cert.der().to_vec();
    Cert {
        pem: cert.pem(),
        sha256: hex::encode(Sha256::digest(&der)),
        der,
        key_pem: key.serialize_pem(),
        issuer: Arc::new(Issuer::new(params, key)),
    }
}

/// A self-signed CA's PEM, subject `CN=<name>`, valid from 1975 to 4096.
pub fn ca_pem(name: &str) -> String {
    CertSpec::ca(name).self_signed().pem
}

/// A CA certificate that expired in 2021.
pub fn expired_ca_pem(name: &str) -> String {
    CertSpec::ca(name)
        .valid(((2020, 1, 1), (2021, 1, 1)))
        .self_signed()
        .pem
}

/// A certificate and key as `openssl` wrote them.
#[derive(Debug, Clone)]
pub struct OpensslCert {
    pub cert_pem: String,
    pub key_pem: String,
}

/// The seed's recipe for a self-signed certificate, `openssl req -newkey rsa:2048 -nodes
/// -keyout key.pem -x509 -days 365 -out certificate.pem`, with the subject `CN=<cn>` given on
/// the command line instead of the prompt: no subjectAltName, and OpenSSL marks it CA:TRUE.
/// The files stay in `dir`.
pub fn openssl_req_x509(dir: &std::path::Path, cn: &str) -> OpensslCert {
    let out = std::process::Command::new("openssl")
        .current_dir(dir)
        .args(["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "key.pem"])
        .args(["-x509", "-days", "365", "-out", "certificate.pem"])
        .args(["-subj", &format!("/CN={cn}")])
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).expect("openssl output");
    OpensslCert {
        cert_pem: read("certificate.pem"),
        key_pem: read("key.pem"),
    }
}

/// A PKCS#8 private key in PEM, as a careless Secret would hold it next to `tls.crt`.
/// Recorded for the secret scan: a test makes one to put where it must not show.
pub fn key_pem() -> String {
    let pem = KeyPair::generate().expect("key generation").serialize_pem();
    crate::test_logs::record_key("a private key from certs::key_pem", &pem);
    pem
}

/// The base64 lines of a PEM block's body: what must never show up in an error or a status.
pub fn base64_lines(pem: &str) -> Vec<&str> {
    pem.lines().filter(|l| !l.starts_with("-----")).collect()
}

/// The base64 body of a PEM block, lines joined.
pub fn base64_body(pem: &str) -> String {
    base64_lines(pem).concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_certificate_names_its_issuer() {
        let root = CertSpec::ca("Root").organization("Example").self_signed();
        let leaf = CertSpec::leaf("leaf").serial(7).signed_by(&root);
        let (_, parsed) = x509_parser::parse_x509_certificate(&leaf.der).expect("DER parses");
        assert_eq!(parsed.issuer().to_string(), "CN=Root, O=Example");
        assert_eq!(parsed.subject().to_string(), "CN=leaf");
        assert_eq!(parsed.raw_serial(), [7]);
        assert!(!parsed.is_ca());
    }
}
