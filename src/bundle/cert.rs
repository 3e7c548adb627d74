//! What the engine reports about one certificate, read from its DER with x509-parser.

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use x509_parser::certificate::X509Certificate;
use x509_parser::nom;
use x509_parser::prelude::FromDer as _;
use x509_parser::time::ASN1Time;

/// One certificate of a bundle, as shown in `bundle inspect`, `--output json` and the resource
/// status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificateInfo {
    /// Subject distinguished name, e.g. `CN=Internal CA, O=Example`.
    pub subject: String,
    /// Issuer distinguished name; equal to the subject for a self-signed root.
    pub issuer: String,
    /// Serial number, lowercase hex.
    pub serial: String,
    #[schemars(with = "String")]
    pub not_before: Timestamp,
    #[schemars(with = "String")]
    pub not_after: Timestamp,
    /// SHA-256 of the DER encoding, lowercase hex: the certificate's identity in the bundle.
    pub sha256: String,
    /// basicConstraints cA=true.
    pub is_ca: bool,
    /// The source the certificate was first found in.
    pub source: String,
}

impl CertificateInfo {
    /// The first 16 hex digits of the fingerprint, for tables and messages.
    pub fn short_sha256(&self) -> &str {
        short_fingerprint(&self.sha256)
    }
}

/// The first 16 hex digits of a fingerprint: enough to tell certificates apart in a message.
pub(crate) fn short_fingerprint(sha256: &str) -> &str {
    sha256.get(..16).unwrap_or(sha256)
}

/// Reads `der` as one X.509 certificate. The error is a reason fit for a message: it describes
/// the structure, never the bytes.
pub(crate) fn inspect(der: &[u8], source: &str) -> Result<CertificateInfo, String> {
    let (rest, cert) = X509Certificate::from_der(der).map_err(|err| match err {
        nom::Err::Error(e) | nom::Err::Failure(e) => e.to_string(),
        nom::Err::Incomplete(_) => "the DER is truncated".to_owned(),
    })?;
    if !rest.is_empty() {
        return Err(format!(
            "{} bytes follow the certificate inside the block",
            rest.len()
        ));
    }
    let is_ca = cert
        .basic_constraints()
        .map_err(|e| format!("basicConstraints: {e}"))?
        .is_some_and(|ext| ext.value.ca);
    let validity = cert.validity();
    Ok(CertificateInfo {
        subject: printable(&cert.subject().to_string()),
        issuer: printable(&cert.issuer().to_string()),
        serial: hex::encode(cert.raw_serial()),
        not_before: timestamp(validity.not_before, "notBefore")?,
        not_after: timestamp(validity.not_after, "notAfter")?,
        sha256: sha256_hex(der),
        is_ca,
        source: source.to_owned(),
    })
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn timestamp(time: ASN1Time, field: &str) -> Result<Timestamp, String> {
    Timestamp::from_second(time.timestamp()).map_err(|_| format!("{field} is out of range"))
}

/// Names end up in tables, status fields and Events: control characters from a hostile
/// certificate are escaped so that they cannot rewrite a terminal or split a log line.
pub(crate) fn printable(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_in_names_are_escaped() {
        assert_eq!(printable("CN=a\u{1b}[2Jb\nc"), "CN=a\\u{1b}[2Jb\\nc");
        assert_eq!(printable("CN=Ünïcode"), "CN=Ünïcode");
    }

    #[test]
    fn garbage_der_is_an_error_not_a_panic() {
        assert!(inspect(&[0x30, 0x03, 0x02, 0x01], "s").is_err());
        assert!(inspect(&[], "s").is_err());
    }
}
