//! The verdict on a presented certificate chain, without I/O: the candidate bundle is the only
//! set of trust roots, the name is the webhook URL's host, the time is a parameter.
//!
//! Path building and name checks are rustls-webpki's. Two cases are decided here because
//! webpki decides them differently from the coreapps' TLS clients (OpenSSL-style):
//! - a self-signed server certificate that is itself in the bundle is trusted as its own anchor
//!   (the seed's `openssl req -x509` recipe makes it `CA:TRUE`, which webpki refuses as an end
//!   entity);
//! - a certificate without any subjectAltName is matched by its subject CN, as OpenSSL's and
//!   curl's host checks do (the same recipe makes a CN-only certificate). The verdict says so.

use rustls::pki_types::{CertificateDer, ServerName, TrustAnchor, UnixTime};
use webpki::{EndEntityCert, KeyUsage};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer as _;

/// What the presented chain earns against the bundle. Indexes point into the bundle's
/// certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// A bundle certificate anchors the chain, the name matches, every certificate is valid.
    Trusted {
        anchor: usize,
        /// The name matched only the subject CN (no subjectAltName at all).
        by_common_name: bool,
    },
    /// No bundle certificate anchors the chain; `issuer` is the issuer of the top of the
    /// presented chain, the name a bundle certificate would need to carry.
    UntrustedChain { issuer: String },
    /// Anchored, but not valid for the host name; `names` are the ones it is valid for.
    HostnameMismatch { anchor: usize, names: Vec<String> },
    /// A certificate of the chain expired at `not_after` (Unix seconds); `anchor` says whether
    /// the bundle anchors the chain otherwise.
    Expired {
        not_after: u64,
        anchor: Option<usize>,
    },
    /// A certificate of the chain is valid only from `not_before` (Unix seconds).
    NotYetValid {
        not_before: u64,
        anchor: Option<usize>,
    },
    /// No verdict is possible (garbage, an unsupported algorithm, a CA certificate used as the
    /// server's own without being in the bundle): never treated as a definite refusal.
    Unverifiable(String),
}

/// Verifies `chain` (leaf first, as presented) for `host` at `now`, with `roots` (the bundle's
/// certificates, in bundle order) as the only trust anchors.
pub fn verify(
    chain: &[CertificateDer<'_>],
    roots: &[CertificateDer<'_>],
    host: &ServerName<'_>,
    now: UnixTime,
) -> Finding {
    let Some(leaf) = chain.first() else {
        return Finding::Unverifiable("the server presented no certificate".to_owned());
    };
    let Ok((_, parsed)) = X509Certificate::from_der(leaf.as_ref()) else {
        return Finding::Unverifiable("the server's certificate does not parse".to_owned());
    };
    let Ok(end_entity) = EndEntityCert::try_from(leaf) else {
        return Finding::Unverifiable("the server's certificate does not parse".to_owned());
    };
    if let Some(anchor) = pinned_self_signed(leaf, &parsed, roots) {
        return match validity(&parsed, now) {
            Some(expiry) => expiry.with_anchor(Some(anchor)),
            None => name_check(&end_entity, &parsed, host, anchor),
        };
    }

    let anchors: Vec<(usize, TrustAnchor<'_>)> = roots
        .iter()
        .enumerate()
        .filter_map(|(i, der)| webpki::anchor_from_trusted_cert(der).ok().map(|a| (i, a)))
        .collect();
    let trust_anchors: Vec<TrustAnchor<'_>> = anchors.iter().map(|(_, a)| a.clone()).collect();
    let intermediates = &chain[1..];
    let build = |at: UnixTime| -> Result<usize, webpki::Error> {
        let path = end_entity.verify_for_usage(
            algorithms(),
            &trust_anchors,
            intermediates,
            at,
            KeyUsage::server_auth(),
            None,
            None,
        )?;
        let found = path.anchor();
        Ok(anchors
            .iter()
            .find(|(_, a)| {
                a.subject == found.subject
                    && a.subject_public_key_info == found.subject_public_key_info
            })
            .map_or(0, |(i, _)| *i))
    };
    match build(now) {
        Ok(anchor) => name_check(&end_entity, &parsed, host, anchor),
        Err(webpki::Error::UnknownIssuer) => Finding::UntrustedChain {
            issuer: top_issuer(chain),
        },
        // Would the bundle anchor the chain were it valid now? Asked at the leaf's last (or
        // first) second of validity.
        Err(webpki::Error::CertExpired { not_after, .. }) => {
            let at = not_after.as_secs().min(leaf_not_after(&parsed));
            let expired = Finding::Expired {
                not_after: not_after.as_secs(),
                anchor: None,
            };
            anchored_at(build(unix(at)), chain, expired)
        }
        Err(webpki::Error::CertNotValidYet { not_before, .. }) => {
            let at = not_before.as_secs().max(leaf_not_before(&parsed));
            let early = Finding::NotYetValid {
                not_before: not_before.as_secs(),
                anchor: None,
            };
            anchored_at(build(unix(at)), chain, early)
        }
        // webpki refuses a CA:TRUE server certificate before it looks for an issuer, so the
        // question whether the bundle could anchor it is answered here: not when no bundle
        // certificate carries the name of any issuer in the presented chain (a self-signed
        // certificate that is not in the bundle, above all: the seed's recipe after a
        // rotation). Otherwise an OpenSSL-style client may accept what webpki cannot judge.
        Err(webpki::Error::CaUsedAsEndEntity) if !names_an_issuer(chain, roots) => {
            Finding::UntrustedChain {
                issuer: top_issuer(chain),
            }
        }
        Err(webpki::Error::CaUsedAsEndEntity) => Finding::Unverifiable(
            "the server's certificate is a CA certificate (CA:TRUE) that is not itself in the \
             bundle"
                .to_owned(),
        ),
        Err(other) => Finding::Unverifiable(format!("{other:?}")),
    }
}

fn unix(seconds: u64) -> UnixTime {
    UnixTime::since_unix_epoch(std::time::Duration::from_secs(seconds))
}

/// The signature algorithms of the one crypto provider the operator uses.
fn algorithms() -> &'static [&'static dyn rustls::pki_types::SignatureVerificationAlgorithm] {
    rustls::crypto::aws_lc_rs::default_provider()
        .signature_verification_algorithms
        .all
}

impl Finding {
    fn with_anchor(self, anchor: Option<usize>) -> Self {
        match self {
            Finding::Expired { not_after, .. } => Finding::Expired { not_after, anchor },
            Finding::NotYetValid { not_before, .. } => Finding::NotYetValid { not_before, anchor },
            other => other,
        }
    }
}

/// The time finding, with the anchor found when the chain is built at a time it is valid; a
/// chain the bundle would not anchor at any time is untrusted first of all.
fn anchored_at(
    built: Result<usize, webpki::Error>,
    chain: &[CertificateDer<'_>],
    finding: Finding,
) -> Finding {
    match built {
        Ok(anchor) => finding.with_anchor(Some(anchor)),
        Err(webpki::Error::UnknownIssuer) => Finding::UntrustedChain {
            issuer: top_issuer(chain),
        },
        Err(_) => finding,
    }
}

/// The bundle index of `leaf` when it is self-signed and in the bundle byte for byte.
fn pinned_self_signed(
    leaf: &CertificateDer<'_>,
    parsed: &X509Certificate<'_>,
    roots: &[CertificateDer<'_>],
) -> Option<usize> {
    if parsed.subject().as_raw() != parsed.issuer().as_raw() {
        return None;
    }
    roots.iter().position(|r| r.as_ref() == leaf.as_ref())
}

fn leaf_not_after(parsed: &X509Certificate<'_>) -> u64 {
    u64::try_from(parsed.validity().not_after.timestamp()).unwrap_or(0)
}

fn leaf_not_before(parsed: &X509Certificate<'_>) -> u64 {
    u64::try_from(parsed.validity().not_before.timestamp()).unwrap_or(0)
}

/// The leaf's own validity at `now` (for a pinned certificate, where webpki is not asked).
fn validity(parsed: &X509Certificate<'_>, now: UnixTime) -> Option<Finding> {
    let now = now.as_secs();
    if now > leaf_not_after(parsed) {
        return Some(Finding::Expired {
            not_after: leaf_not_after(parsed),
            anchor: None,
        });
    }
    if now < leaf_not_before(parsed) {
        return Some(Finding::NotYetValid {
            not_before: leaf_not_before(parsed),
            anchor: None,
        });
    }
    None
}

fn name_check(
    end_entity: &EndEntityCert<'_>,
    parsed: &X509Certificate<'_>,
    host: &ServerName<'_>,
    anchor: usize,
) -> Finding {
    if end_entity.verify_is_valid_for_subject_name(host).is_ok() {
        return Finding::Trusted {
            anchor,
            by_common_name: false,
        };
    }
    let sans = subject_alt_names(parsed);
    if sans.is_none()
        && let ServerName::DnsName(dns) = host
        && common_names(parsed)
            .iter()
            .any(|cn| name_matches(cn, dns.as_ref()))
    {
        return Finding::Trusted {
            anchor,
            by_common_name: true,
        };
    }
    Finding::HostnameMismatch {
        anchor,
        names: sans.unwrap_or_else(|| common_names(parsed)),
    }
}

/// The DNS names and IP addresses of the subjectAltName extension; `None` without one.
fn subject_alt_names(parsed: &X509Certificate<'_>) -> Option<Vec<String>> {
    let ext = parsed.subject_alternative_name().ok()??;
    Some(
        ext.value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::DNSName(dns) => Some((*dns).to_owned()),
                GeneralName::IPAddress(bytes) => ip_text(bytes),
                _ => None,
            })
            .collect(),
    )
}

fn ip_text(bytes: &[u8]) -> Option<String> {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        return Some(std::net::Ipv4Addr::from(v4).to_string());
    }
    <[u8; 16]>::try_from(bytes)
        .ok()
        .map(|v6| std::net::Ipv6Addr::from(v6).to_string())
}

fn common_names(parsed: &X509Certificate<'_>) -> Vec<String> {
    parsed
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_owned))
        .collect()
}

/// Host name matching as for a DNS subjectAltName: case-insensitive, a wildcard only as the
/// whole leftmost label, matching exactly one label.
fn name_matches(pattern: &str, host: &str) -> bool {
    let (pattern, host) = (pattern.to_ascii_lowercase(), host.to_ascii_lowercase());
    let (pattern, host) = (pattern.trim_end_matches('.'), host.trim_end_matches('.'));
    match pattern.strip_prefix("*.") {
        Some(suffix) => host.split_once('.').is_some_and(|(label, rest)| {
            !label.is_empty() && rest == suffix && suffix.contains('.')
        }),
        None => pattern == host,
    }
}

/// Whether some bundle certificate could be the issuer of a certificate in `chain`: it carries
/// the issuer's name, and for a self-signed certificate also its key (its only possible issuer
/// is itself).
fn names_an_issuer(chain: &[CertificateDer<'_>], roots: &[CertificateDer<'_>]) -> bool {
    let parse = |der: &CertificateDer<'_>| {
        X509Certificate::from_der(der.as_ref()).ok().map(|(_, c)| {
            (
                c.subject().as_raw().to_vec(),
                c.issuer().as_raw().to_vec(),
                c.public_key().raw.to_vec(),
            )
        })
    };
    let roots: Vec<_> = roots.iter().filter_map(parse).collect();
    chain
        .iter()
        .filter_map(parse)
        .any(|(subject, issuer, key)| {
            roots.iter().any(|(root, _, root_key)| {
                *root == issuer && (subject != issuer || *root_key == key)
            })
        })
}

/// The issuer a bundle certificate would need to be: that of the top of the presented chain,
/// following issuer names through the certificates the server sent.
fn top_issuer(chain: &[CertificateDer<'_>]) -> String {
    let parsed: Vec<X509Certificate<'_>> = chain
        .iter()
        .filter_map(|der| X509Certificate::from_der(der.as_ref()).ok().map(|(_, c)| c))
        .collect();
    let Some(mut current) = parsed.first() else {
        return "an unreadable issuer".to_owned();
    };
    for _ in 0..parsed.len() {
        let next = parsed.iter().find(|c| {
            c.subject().as_raw() == current.issuer().as_raw()
                && c.subject().as_raw() != current.subject().as_raw()
        });
        match next {
            Some(next) => current = next,
            None => break,
        }
    }
    crate::bundle::printable(&current.issuer().to_string())
}
