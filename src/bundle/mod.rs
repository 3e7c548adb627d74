//! The bundle engine: PEM text from several sources in; a validated, deduplicated, canonical,
//! hashed CA bundle out. Pure: no I/O, no clock (the caller passes `now` in the [`Policy`]).
//!
//! The rules, in the order they apply (docs/bundle.md says the same for users):
//! 1. A source that holds anything like a private key refuses the whole build.
//! 2. Each source is scanned for PEM blocks; text outside blocks is ignored, a broken block is an
//!    error. Only `CERTIFICATE` blocks are used; other blocks are reported and skipped.
//! 3. Every certificate must parse as X.509.
//! 4. Duplicates (same DER SHA-256) are dropped, keeping the first occurrence.
//! 5. Expired, not-yet-valid and non-CA certificates are refused, reported, or left out and
//!    reported, as the policy says.
//! 6. No certificate at all is an error, never an empty bundle (also when the policy left every
//!    certificate out).

mod cert;
mod error;
mod pem;
mod policy;

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::collections::HashSet;

pub use cert::CertificateInfo;
pub(crate) use cert::{inspect, printable};
pub use error::BundleError;
pub use pem::PemError;
pub use policy::{Action, Finding, Order, Policy};

/// One piece of PEM text and the name it is reported under.
#[derive(Debug, Clone, Copy)]
pub struct SourceInput<'a> {
    /// How a person finds the source again, e.g. `secret whatsapp/internal-ca key ca.crt` or a
    /// file path. Appears in errors and findings; must not hold secret data itself.
    pub source: &'a str,
    pub pem: &'a str,
}

/// A bundle ready to upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// The canonical PEM: one strict RFC 7468 block per certificate, LF only, trailing newline.
    pub pem: String,
    /// SHA-256 of `pem`, lowercase hex.
    pub sha256: String,
    /// The certificates in bundle order.
    pub certificates: Vec<CertificateInfo>,
    /// Findings the policy let pass, in source order.
    pub warnings: Vec<Finding>,
    /// Certificates dropped because an identical one came earlier.
    pub duplicates_removed: usize,
}

impl Bundle {
    /// The certificate that expires first: the bundle's own expiry, as far as trust goes.
    pub fn earliest_expiry(&self) -> Option<&CertificateInfo> {
        self.certificates.iter().min_by_key(|c| c.not_after)
    }

    /// The certificates the policy left out, as one line for a condition or an Event; `None`
    /// when nothing was dropped.
    pub fn dropped_note(&self) -> Option<String> {
        let dropped: Vec<String> = self
            .warnings
            .iter()
            .filter(|f| matches!(f, Finding::Dropped { .. }))
            .map(Finding::to_string)
            .collect();
        (!dropped.is_empty()).then(|| dropped.join("; "))
    }

    /// Whether `remote` (what an API holds) has the same certificates in the same order and
    /// nothing else, whatever its whitespace, line ends or prose. Text that does not scan as PEM
    /// differs.
    pub fn matches(&self, remote: &str) -> bool {
        canonicalize(remote).is_ok_and(|c| c.ignored_blocks == 0 && c.sha256 == self.sha256)
    }
}

/// Builds the bundle from `inputs` under `policy`.
pub fn build(inputs: &[SourceInput<'_>], policy: &Policy) -> Result<Bundle, BundleError> {
    // Keys first, over every source: a key must be refused as a key even where another source
    // would fail sooner for a lesser reason.
    if let Some(input) = inputs.iter().find(|i| pem::mentions_private_key(i.pem)) {
        return Err(BundleError::PrivateKey {
            source_name: input.source.to_owned(),
        });
    }

    let mut seen = HashSet::new();
    let mut kept: Vec<(CertificateInfo, Vec<u8>)> = Vec::new();
    let mut findings = Vec::new();
    let mut duplicates_removed = 0;
    for input in inputs {
        let invalid_pem = |reason| BundleError::InvalidPem {
            source_name: input.source.to_owned(),
            reason,
        };
        let mut certificates_in_source = 0;
        for block in pem::scan(input.pem).map_err(invalid_pem)? {
            // The text check above bounds its look-ahead; a label padded past it is caught here.
            if pem::is_private_key_label(block.label) {
                return Err(BundleError::PrivateKey {
                    source_name: input.source.to_owned(),
                });
            }
            if !block.is_certificate() {
                findings.push(Finding::IgnoredBlock {
                    source: input.source.to_owned(),
                    index: block.index,
                    label: block.shown_label(),
                });
                continue;
            }
            let der = block.decode().map_err(invalid_pem)?;
            let info = cert::inspect(&der, input.source).map_err(|reason| {
                BundleError::InvalidCertificate {
                    source_name: input.source.to_owned(),
                    index: block.index,
                    reason,
                }
            })?;
            certificates_in_source += 1;
            if !seen.insert(info.sha256.clone()) {
                duplicates_removed += 1;
                continue;
            }
            let checks = policy.check(&info);
            if checks.iter().any(|f| policy.action(f) == Action::Drop) {
                // Left out: only why it was dropped is worth reporting, not its other findings.
                findings.extend(
                    checks
                        .into_iter()
                        .filter(|f| policy.action(f) == Action::Drop)
                        .map(|f| Finding::Dropped {
                            finding: Box::new(f),
                        }),
                );
                continue;
            }
            findings.extend(checks);
            kept.push((info, der));
        }
        if certificates_in_source == 0 {
            findings.push(Finding::EmptySource {
                source: input.source.to_owned(),
            });
        }
    }

    if kept.is_empty() {
        let dropped: Vec<Finding> = findings
            .into_iter()
            .filter(|f| matches!(f, Finding::Dropped { .. }))
            .collect();
        if !dropped.is_empty() {
            return Err(BundleError::AllDropped { findings: dropped });
        }
        return Err(BundleError::Empty {
            sources: inputs.iter().map(|i| i.source.to_owned()).collect(),
        });
    }
    let (refused, warnings): (Vec<Finding>, Vec<Finding>) = findings
        .into_iter()
        .partition(|f| policy.action(f) == Action::Refuse);
    if !refused.is_empty() {
        return Err(BundleError::Refused { findings: refused });
    }

    if policy.order == Order::Sorted {
        kept.sort_by(|(a, _), (b, _)| a.sha256.cmp(&b.sha256));
    }
    let mut pem = String::new();
    for (_, der) in &kept {
        pem::push_certificate(&mut pem, der);
    }
    Ok(Bundle {
        sha256: cert::sha256_hex(pem.as_bytes()),
        pem,
        certificates: kept.into_iter().map(|(info, _)| info).collect(),
        warnings,
        duplicates_removed,
    })
}

/// The canonical form of any PEM text, for comparing by content rather than by bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalPem {
    /// The certificate blocks re-encoded canonically, in their order, duplicates included.
    pub pem: String,
    /// SHA-256 of `pem`, lowercase hex; equals [`Bundle::sha256`] for the same certificates.
    pub sha256: String,
    pub certificates: usize,
    /// Blocks other than certificates (left out of `pem`).
    pub ignored_blocks: usize,
}

/// Lenient: no X.509 parsing, no policy, no dedup; only PEM structure and base64 must be sound.
/// Two texts with the same certificates in the same order give the same result.
pub fn canonicalize(text: &str) -> Result<CanonicalPem, PemError> {
    let mut pem = String::new();
    let mut certificates = 0;
    let mut ignored_blocks = 0;
    for block in pem::scan(text)? {
        if block.is_certificate() {
            pem::push_certificate(&mut pem, &block.decode()?);
            certificates += 1;
        } else {
            ignored_blocks += 1;
        }
    }
    Ok(CanonicalPem {
        sha256: cert::sha256_hex(pem.as_bytes()),
        pem,
        certificates,
        ignored_blocks,
    })
}

/// The DER of every certificate block of `text`, in order; other blocks are passed over. For
/// trusting certificates (the webapp's CA), where no policy applies.
pub fn certificate_ders(text: &str) -> Result<Vec<Vec<u8>>, PemError> {
    pem::scan(text)?
        .iter()
        .filter(|block| block.is_certificate())
        .map(pem::Block::decode)
        .collect()
}
