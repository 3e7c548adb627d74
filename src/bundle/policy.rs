//! What the engine notices about a bundle, and what the policy makes of it.

use std::fmt;

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::cert::{CertificateInfo, short_fingerprint};

/// What to do about a finding: refuse the whole bundle, build it and report the finding, or
/// build it without the certificate and report that.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Action {
    Refuse,
    Warn,
    /// Leave the certificate out of the bundle (reported as a [`Finding::Dropped`]). A bundle
    /// left with no certificate is still refused.
    Drop,
}

/// The order of certificates in the bundle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Order {
    /// As found: sources in the order given, blocks in the order of each source. Keeps chains
    /// in the order their authors wrote them.
    #[default]
    Source,
    /// By SHA-256 fingerprint: the same set of certificates gives the same bundle however the
    /// sources are ordered.
    Sorted,
}

/// The rules one build applies. `now` is an input so that the engine never reads a clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub expired: Action,
    pub not_yet_valid: Action,
    pub non_ca: Action,
    pub order: Order,
    pub now: Timestamp,
}

impl Policy {
    /// The defaults: refuse expired certificates, warn about not-yet-valid and non-CA ones,
    /// keep source order.
    pub fn defaults_at(now: Timestamp) -> Self {
        Self {
            expired: Action::Refuse,
            not_yet_valid: Action::Warn,
            non_ca: Action::Warn,
            order: Order::Source,
            now,
        }
    }

    /// Every finding a warning: builds whatever parses, to show all that is wrong at once.
    pub fn lenient_at(now: Timestamp) -> Self {
        Self {
            expired: Action::Warn,
            not_yet_valid: Action::Warn,
            non_ca: Action::Warn,
            order: Order::Source,
            now,
        }
    }

    /// What this policy does about `finding`. Notes about the input's shape are never refused.
    pub fn action(&self, finding: &Finding) -> Action {
        match finding {
            Finding::Expired { .. } => self.expired,
            Finding::NotYetValid { .. } => self.not_yet_valid,
            Finding::NonCa { .. } => self.non_ca,
            Finding::IgnoredBlock { .. }
            | Finding::EmptySource { .. }
            | Finding::Dropped { .. } => Action::Warn,
        }
    }

    /// Everything worth saying about one certificate at `self.now`.
    pub(crate) fn check(&self, cert: &CertificateInfo) -> Vec<Finding> {
        let mut findings = Vec::new();
        if cert.not_after < self.now {
            findings.push(Finding::Expired {
                source: cert.source.clone(),
                subject: cert.subject.clone(),
                sha256: cert.sha256.clone(),
                not_after: cert.not_after,
            });
        }
        if cert.not_before > self.now {
            findings.push(Finding::NotYetValid {
                source: cert.source.clone(),
                subject: cert.subject.clone(),
                sha256: cert.sha256.clone(),
                not_before: cert.not_before,
            });
        }
        if !cert.is_ca {
            findings.push(Finding::NonCa {
                source: cert.source.clone(),
                subject: cert.subject.clone(),
                sha256: cert.sha256.clone(),
            });
        }
        findings
    }
}

/// Something worth telling about the input. Whether it refuses the bundle is the policy's call
/// ([`Policy::action`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Finding {
    Expired {
        source: String,
        subject: String,
        sha256: String,
        not_after: Timestamp,
    },
    NotYetValid {
        source: String,
        subject: String,
        sha256: String,
        not_before: Timestamp,
    },
    /// basicConstraints does not say cA=true: a leaf or intermediate without the flag, which
    /// cannot anchor a chain.
    NonCa {
        source: String,
        subject: String,
        sha256: String,
    },
    /// A block that is not a certificate (a CRL, a public key, `TRUSTED CERTIFICATE`, ...).
    IgnoredBlock {
        source: String,
        index: usize,
        label: String,
    },
    /// A source without a single certificate block.
    EmptySource { source: String },
    /// A certificate left out of the bundle because the policy says `Drop` for this finding.
    Dropped { finding: Box<Finding> },
}

impl Finding {
    /// The source the finding is about.
    pub fn source(&self) -> &str {
        match self {
            Finding::Expired { source, .. }
            | Finding::NotYetValid { source, .. }
            | Finding::NonCa { source, .. }
            | Finding::IgnoredBlock { source, .. }
            | Finding::EmptySource { source } => source,
            Finding::Dropped { finding } => finding.source(),
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cert = |f: &mut fmt::Formatter<'_>, source: &str, subject: &str, sha256: &str| {
            let short = short_fingerprint(sha256);
            write!(f, "{source}: certificate \"{subject}\" (sha256 {short}…)")
        };
        match self {
            Finding::Expired {
                source,
                subject,
                sha256,
                not_after,
            } => {
                cert(f, source, subject, sha256)?;
                write!(f, " expired at {not_after}")
            }
            Finding::NotYetValid {
                source,
                subject,
                sha256,
                not_before,
            } => {
                cert(f, source, subject, sha256)?;
                write!(f, " is not valid before {not_before}")
            }
            Finding::NonCa {
                source,
                subject,
                sha256,
            } => {
                cert(f, source, subject, sha256)?;
                write!(f, " is not a CA certificate (no basicConstraints cA=true)")
            }
            Finding::IgnoredBlock {
                source,
                index,
                label,
            } => write!(
                f,
                "{source}: block {index} ({label}) is not a CERTIFICATE block; ignored"
            ),
            Finding::EmptySource { source } => write!(f, "{source}: holds no certificate"),
            Finding::Dropped { finding } => write!(f, "{finding}; left out of the bundle"),
        }
    }
}
