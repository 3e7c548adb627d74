//! The webhook trust check on the command line: `api webhook-check FILE...` prints it alone (for
//! docker-compose installations), and `api push` runs it before uploading.

use jiff::Timestamp;

use crate::bundle::Bundle;
use crate::onprem::OnPremClient;
use crate::webhook::{self, Check, HANDSHAKE_TIMEOUT, Trust};

/// `webhook-check` when the bundle would not trust the webhook server (a definite answer);
/// also `push` when it refuses to upload for that reason.
pub const EXIT_WEBHOOK_UNTRUSTED: u8 = 4;
/// `webhook-check` when no definite answer was possible (no URL, unreachable, ...).
pub const EXIT_WEBHOOK_UNKNOWN: u8 = 5;

/// Checks `bundle` against the webhook server at `url`, or at the URL of the API's application
/// settings when `url` is `None` (then `client` must be given).
pub async fn check(bundle: &Bundle, url: Option<&str>, client: Option<&OnPremClient>) -> Check {
    let url = match (url, client) {
        (Some(url), _) => url.to_owned(),
        (None, Some(client)) => match webhook::url_from_settings(client).await {
            Ok(url) => url,
            Err(unknown) => return unknown,
        },
        (None, None) => {
            return Check::unknown(
                webhook::reason::NO_WEBHOOK_URL,
                "no webhook URL: pass --webhook-url or --url to read it from the API",
            );
        }
    };
    webhook::check_url(&url, bundle, HANDSHAKE_TIMEOUT, Timestamp::now()).await
}

/// The check as text: the verdict, then what was seen.
pub fn describe(check: &Check) -> String {
    let status = match check.trust {
        Trust::Trusted => "trusted",
        Trust::Untrusted => "NOT trusted",
        Trust::Unknown => "unknown",
    };
    let mut out = format!(
        "webhook trust: {status} ({})\n  {}\n",
        check.reason, check.message
    );
    if let Some(endpoint) = &check.endpoint {
        out.push_str(&format!("  endpoint: {endpoint}\n"));
    }
    if let Some(server) = &check.server {
        out.push_str(&format!(
            "  server certificate: {} (issuer {}, not after {}, sha256 {})\n",
            server.subject, server.issuer, server.not_after, server.sha256
        ));
    }
    if let Some(anchor) = &check.anchor {
        out.push_str(&format!(
            "  anchored by: {} (sha256 {})\n",
            anchor.subject, anchor.sha256
        ));
    }
    out
}

/// The exit code `webhook-check` ends with.
pub fn exit_code(check: &Check) -> u8 {
    match check.trust {
        Trust::Trusted => 0,
        Trust::Untrusted => EXIT_WEBHOOK_UNTRUSTED,
        Trust::Unknown => EXIT_WEBHOOK_UNKNOWN,
    }
}
