//! The webhook trust check: does this bundle trust the certificate the webhook server presents?
//!
//! The coreapps are the TLS clients of the webhook URL and verify its server against the
//! uploaded bundle; a bundle that no longer anchors that server's chain stops webhook delivery
//! after the next restart. The check connects to the URL's host and port (TLS handshake only,
//! bounded by [`HANDSHAKE_TIMEOUT`]), takes the presented chain ([`probe`]) and verifies it with
//! the candidate bundle as the only roots, the URL's host name and the current time
//! ([`verify`]). Only a definite answer is True or False; everything else is Unknown.

pub mod probe;
pub mod verify;

use std::time::Duration;

use jiff::Timestamp;
use reqwest::Url;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

use crate::bundle::{Bundle, CertificateInfo};
use crate::onprem::{ApiError, OnPremClient};
use verify::Finding;

/// The limit on resolving, connecting and completing the handshake with the webhook server.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Condition reasons of `WebhookTrusted`.
pub mod reason {
    pub const TRUSTED: &str = "Trusted";
    pub const UNTRUSTED_CHAIN: &str = "UntrustedChain";
    pub const HOSTNAME_MISMATCH: &str = "HostnameMismatch";
    pub const EXPIRED: &str = "ServerCertificateExpired";
    pub const NOT_YET_VALID: &str = "ServerCertificateNotYetValid";
    pub const UNVERIFIABLE: &str = "Unverifiable";
    pub const NO_WEBHOOK_URL: &str = "NoWebhookUrl";
    pub const PLAIN_HTTP: &str = "PlainHttpWebhook";
    pub const INVALID_URL: &str = "InvalidWebhookUrl";
    pub const SETTINGS_FORBIDDEN: &str = "SettingsForbidden";
    pub const SETTINGS_UNAVAILABLE: &str = "SettingsUnavailable";
    pub const DNS_FAILURE: &str = "DnsFailure";
    pub const UNREACHABLE: &str = "Unreachable";
    pub const TIMEOUT: &str = "Timeout";
    pub const HANDSHAKE_FAILED: &str = "HandshakeFailed";
    pub const CHECK_DISABLED: &str = "CheckDisabled";
}

/// The condition status a check earns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    Trusted,
    Untrusted,
    Unknown,
}

/// The result of one check, ready for a condition, the status and the CLI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub trust: Trust,
    pub reason: &'static str,
    pub message: String,
    /// `host:port` checked (never the whole URL, which may carry credentials).
    pub endpoint: Option<String>,
    /// The server's leaf certificate (boxed: a `Check` is also an error value).
    pub server: Option<Box<CertificateInfo>>,
    /// The bundle certificate that anchors the server's chain.
    pub anchor: Option<Box<CertificateInfo>>,
}

impl Check {
    pub fn unknown(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            trust: Trust::Unknown,
            reason,
            message: message.into(),
            endpoint: None,
            server: None,
            anchor: None,
        }
    }

    /// Whether the bundle itself is the cause: no bundle certificate anchors the server's chain.
    /// Only this refuses an upload: a wrong host name or an expired server certificate fails
    /// with any bundle, so holding the bundle back would not help delivery.
    pub fn blocks_upload(&self) -> bool {
        self.reason == reason::UNTRUSTED_CHAIN
    }
}

/// Where the check connects, from the webhook URL.
#[derive(Debug, Clone)]
pub struct Target {
    host: String,
    port: u16,
    name: ServerName<'static>,
}

impl Target {
    /// `host:port` (IPv6 in brackets), as status and messages show it.
    pub fn endpoint(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// The check's target for `url`, or the Unknown check that says why there is none. Messages
/// never repeat the URL: it may carry credentials.
pub fn target(url: &str) -> Result<Target, Check> {
    let invalid = |why: &str| {
        Check::unknown(
            reason::INVALID_URL,
            format!("the webhook URL cannot be checked: {why}"),
        )
    };
    let parsed = Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
    match parsed.scheme() {
        "https" => {}
        "http" => {
            return Err(Check::unknown(
                reason::PLAIN_HTTP,
                "the webhook URL is http://: no certificate and no CA are involved",
            ));
        }
        other => return Err(invalid(&format!("unsupported scheme {other:?}"))),
    }
    let port = parsed.port_or_known_default().unwrap_or(443);
    let (host, name) = match parsed.host() {
        Some(url::Host::Domain(domain)) => {
            let name = ServerName::try_from(domain.to_owned())
                .map_err(|_| invalid("the host is not a valid DNS name"))?;
            (domain.to_owned(), name)
        }
        Some(url::Host::Ipv4(ip)) => (ip.to_string(), ServerName::from(std::net::IpAddr::V4(ip))),
        Some(url::Host::Ipv6(ip)) => (ip.to_string(), ServerName::from(std::net::IpAddr::V6(ip))),
        None => return Err(invalid("it has no host")),
    };
    Ok(Target { host, port, name })
}

/// The webhook URL from the API's application settings, or the Unknown check that says why
/// there is none.
pub async fn url_from_settings(client: &OnPremClient) -> Result<String, Check> {
    match client.webhook_url().await {
        Ok(Some(url)) => Ok(url),
        Ok(None) => Err(Check::unknown(
            reason::NO_WEBHOOK_URL,
            "the API's application settings name no webhook URL",
        )),
        Err(e) => Err(settings_error(&e)),
    }
}

fn settings_error(e: &ApiError) -> Check {
    if matches!(e.status(), Some(401 | 403)) {
        Check::unknown(
            reason::SETTINGS_FORBIDDEN,
            format!(
                "the application settings cannot be read (admin only): {e}; give the \
                 webhook URL instead (spec.webhookTrust.url, or --webhook-url)"
            ),
        )
    } else {
        Check::unknown(
            reason::SETTINGS_UNAVAILABLE,
            format!("the application settings cannot be read: {e}"),
        )
    }
}

/// Connects to `url` and verifies what its server presents against `bundle` at `now`.
pub async fn check_url(url: &str, bundle: &Bundle, timeout: Duration, now: Timestamp) -> Check {
    let target = match target(url) {
        Ok(target) => target,
        Err(check) => return check,
    };
    let endpoint = target.endpoint();
    let chain =
        match probe::presented_chain(&target.host, target.port, target.name.clone(), timeout).await
        {
            Ok(chain) => chain,
            Err(e) => {
                let reason = match e {
                    probe::ProbeError::Dns { .. } | probe::ProbeError::NoAddress { .. } => {
                        reason::DNS_FAILURE
                    }
                    probe::ProbeError::Connect { .. } => reason::UNREACHABLE,
                    probe::ProbeError::Timeout { .. } => reason::TIMEOUT,
                    probe::ProbeError::Handshake { .. } | probe::ProbeError::Setup(_) => {
                        reason::HANDSHAKE_FAILED
                    }
                };
                let mut check = Check::unknown(reason, e.to_string());
                check.endpoint = Some(endpoint);
                return check;
            }
        };
    judge(&chain, bundle, &target, now)
}

/// The verdict on a presented chain, as a [`Check`].
pub fn judge(
    chain: &[CertificateDer<'_>],
    bundle: &Bundle,
    target: &Target,
    now: Timestamp,
) -> Check {
    let endpoint = target.endpoint();
    let roots: Vec<CertificateDer<'static>> = crate::bundle::certificate_ders(&bundle.pem)
        .unwrap_or_default()
        .into_iter()
        .map(CertificateDer::from)
        .collect();
    let server = chain
        .first()
        .and_then(|leaf| crate::bundle::inspect(leaf.as_ref(), &endpoint).ok())
        .map(Box::new);
    let at = UnixTime::since_unix_epoch(Duration::from_secs(
        u64::try_from(now.as_second()).unwrap_or(0),
    ));
    let finding = verify::verify(chain, &roots, &target.name, at);
    let anchor_of = |i: usize| bundle.certificates.get(i).cloned().map(Box::new);
    let presents = server.as_ref().map_or_else(
        || "a certificate".to_owned(),
        |s| format!("{} (sha256 {}…)", s.subject, s.short_sha256()),
    );
    let anchored = |a: &Option<Box<CertificateInfo>>| {
        a.as_ref().map_or_else(String::new, |a| {
            format!(
                ", anchored by the bundle's {} (sha256 {}…)",
                a.subject,
                a.short_sha256()
            )
        })
    };
    let out_of_validity = |reason, when: String, anchor: Option<usize>| {
        let anchor = anchor.and_then(anchor_of);
        let message = format!(
            "the webhook server {endpoint} presents {presents}; a certificate of its chain \
             {when}{}",
            anchored(&anchor)
        );
        (Trust::Untrusted, reason, message, anchor)
    };
    let (trust, reason, message, anchor) = match finding {
        Finding::Trusted {
            anchor,
            by_common_name,
        } => {
            let anchor = anchor_of(anchor);
            let note = if by_common_name {
                "; its host name matched only the subject CN (it has no subjectAltName, which \
                 strict TLS clients refuse)"
            } else {
                ""
            };
            (
                Trust::Trusted,
                reason::TRUSTED,
                format!(
                    "the webhook server {endpoint} presents {presents}{}{note}",
                    anchored(&anchor)
                ),
                anchor,
            )
        }
        Finding::UntrustedChain { issuer } => (
            Trust::Untrusted,
            reason::UNTRUSTED_CHAIN,
            format!(
                "no certificate of the bundle anchors the chain the webhook server {endpoint} \
                 presents ({presents}): its issuer {issuer} is not in the bundle"
            ),
            None,
        ),
        Finding::HostnameMismatch { anchor, names } => {
            let anchor = anchor_of(anchor);
            (
                Trust::Untrusted,
                reason::HOSTNAME_MISMATCH,
                format!(
                    "the webhook server {endpoint} presents {presents}, which is not valid for \
                     the host name {} (it names {}){}",
                    target.host,
                    if names.is_empty() {
                        "none".to_owned()
                    } else {
                        names
                            .iter()
                            .map(|n| crate::bundle::printable(n))
                            .collect::<Vec<_>>()
                            .join(", ")
                    },
                    anchored(&anchor)
                ),
                anchor,
            )
        }
        Finding::Expired { not_after, anchor } => out_of_validity(
            reason::EXPIRED,
            format!("expired at {}", seconds(not_after)),
            anchor,
        ),
        Finding::NotYetValid { not_before, anchor } => out_of_validity(
            reason::NOT_YET_VALID,
            format!("is valid only from {}", seconds(not_before)),
            anchor,
        ),
        Finding::Unverifiable(why) => (
            Trust::Unknown,
            reason::UNVERIFIABLE,
            format!(
                "the webhook server {endpoint} presents {presents}, which cannot be verified: {why}"
            ),
            None,
        ),
    };
    Check {
        trust,
        reason,
        message,
        endpoint: Some(endpoint),
        server,
        anchor,
    }
}

fn seconds(unix: u64) -> String {
    i64::try_from(unix)
        .ok()
        .and_then(|s| Timestamp::from_second(s).ok())
        .map_or_else(|| unix.to_string(), |t| t.to_string())
}

#[cfg(test)]
mod tests;
