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
    #[error(
        "the policy left every certificate out ({}); an empty bundle is never built",
        join(findings)
    )]
    AllDropped { findings: Vec<Finding> },
    #[error("{}; an empty bundle is never built", read_from(sources))]
    Empty {
        /// The names of the sources read, in order: which ones to look at.
        sources: Vec<String>,
    },
}

fn read_from(sources: &[String]) -> String {
    if sources.is_empty() {
        // Every source was optional and absent, or matched no key with PEM.
        return "no source contributed any text".to_owned();
    }
    format!("no certificate in the sources read: {}", sources.join(", "))
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
            BundleError::Empty { .. } | BundleError::AllDropped { .. } => "BundleEmpty",
        }
    }
}
