//! Why a bundle was not built. Every variant names the source (and block) at fault; none
//! carries any of the text it read.

use super::pem::PemError;
use super::policy::Finding;
use crate::reason::ConditionReason;

/// `source_name`, not `source`: thiserror would take a field named `source` for the error's cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error(
        "{source_name}: holds a private key; refusing it (a CA bundle takes certificates only, \
         and keys must not leave their Secret)"
    )]
    PrivateKey { source_name: String },
    #[error("{source_name}: {reason}")]
    InvalidPem {
        source_name: String,
        reason: PemError,
    },
    #[error("{source_name}: block {index} is not a valid X.509 certificate: {reason}")]
    InvalidCertificate {
        source_name: String,
        /// 1-based position of the block among all PEM blocks of the source.
        index: usize,
        reason: String,
    },
    #[error("refused by policy: {}", join(findings))]
    Refused { findings: Vec<Finding> },
    #[error("no certificate in {sources} source(s); an empty bundle is never built")]
    Empty { sources: usize },
}

fn join(findings: &[Finding]) -> String {
    let shown: Vec<String> = findings.iter().map(Finding::to_string).collect();
    shown.join("; ")
}

/// The `BundleValid` condition's reason and the matching Event's reason.
impl ConditionReason for BundleError {
    fn reason(&self) -> &'static str {
        match self {
            BundleError::PrivateKey { .. } => "PrivateKeyRefused",
            BundleError::InvalidPem { .. } => "InvalidPem",
            BundleError::InvalidCertificate { .. } => "InvalidCertificate",
            BundleError::Refused { .. } => "CertificateRefused",
            BundleError::Empty { .. } => "BundleEmpty",
        }
    }
}
