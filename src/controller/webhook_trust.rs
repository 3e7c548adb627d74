//! The webhook trust step: before every upload, and once per drift check interval otherwise,
//! check that the candidate bundle trusts the certificate the webhook server presents
//! (`crate::webhook`). Under `Refuse` a bundle that would not anchor the server's chain is not
//! uploaded.
//!
//! Cheap in the steady state: a check is one settings GET (none with `spec.webhookTrust.url`)
//! and one TLS handshake, and runs only when an upload is about to happen, the bundle or the
//! spec changed since the last one, or the last one is older than `driftCheckInterval`.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::status::{UPLOADED, WEBHOOK_TRUSTED};
use super::step::{Pass, Requeue, StepFailure};
use crate::bundle::{Bundle, CertificateInfo};
use crate::crd::{
    WebhookCaCertificate, WebhookCertificateStatus, WebhookTrustPolicy, WebhookTrustStatus,
};
use crate::onprem::OnPremClient;
use crate::webhook::{self, Check, HANDSHAKE_TIMEOUT, reason};

/// The reason of `Uploaded` when the check held an upload back.
pub const WEBHOOK_UNTRUSTED: &str = "WebhookUntrusted";

/// Runs the check when it is due; `None` when it is not (status keeps the last one).
pub async fn check(
    pass: &Pass<'_>,
    client: &OnPremClient,
    bundle: &Bundle,
    uploading: bool,
) -> Option<Check> {
    let spec = &pass.wcc.spec.webhook_trust;
    if spec.policy == WebhookTrustPolicy::Ignore {
        return Some(Check::unknown(
            reason::CHECK_DISABLED,
            "spec.webhookTrust.policy is Ignore: the webhook server is not checked",
        ));
    }
    if !uploading && !due(pass.wcc, bundle, pass.now) {
        return None;
    }
    let url = match &spec.url {
        Some(url) => url.clone(),
        None => match webhook::url_from_settings(client).await {
            Ok(url) => url,
            Err(unknown) => return Some(unknown),
        },
    };
    let check = webhook::check_url(&url, bundle, HANDSHAKE_TIMEOUT, pass.now).await;
    // The endpoint only: the URL may carry credentials.
    tracing::info!(
        resource = %pass.key,
        endpoint = check.endpoint.as_deref().unwrap_or("-"),
        reason = check.reason,
        uploading,
        "webhook trust checked"
    );
    Some(check)
}

/// Whether the last check no longer speaks for this pass: none yet, another bundle, another
/// generation of the spec, or older than the drift check interval.
fn due(wcc: &WebhookCaCertificate, bundle: &Bundle, now: Timestamp) -> bool {
    let Some(status) = wcc.status.as_ref() else {
        return true;
    };
    let Some(last) = status.webhook_trust.as_ref() else {
        return true;
    };
    let same_generation = status
        .conditions
        .iter()
        .find(|c| c.type_ == WEBHOOK_TRUSTED)
        .is_some_and(|c| c.observed_generation == wcc.metadata.generation);
    let interval = wcc.spec.drift_check_interval();
    let age = now.duration_since(last.checked_at.0);
    last.bundle_sha256 != bundle.sha256
        || !same_generation
        || age.is_negative()
        || age.unsigned_abs() >= interval
}

/// Stops the pass before the upload when the policy is `Refuse` and the bundle itself would
/// not trust the webhook server. Under `Warn` the upload goes on, and the warning to publish
/// with it is returned.
pub fn gate(
    wcc: &WebhookCaCertificate,
    check: Option<&Check>,
    uploading: bool,
) -> Result<Option<String>, StepFailure> {
    let Some(check) = check.filter(|c| uploading && c.blocks_upload()) else {
        return Ok(None);
    };
    match wcc.spec.webhook_trust.policy {
        WebhookTrustPolicy::Refuse => Err(StepFailure::halt(
            UPLOADED,
            WEBHOOK_UNTRUSTED,
            format!(
                "not uploaded, the API keeps its bundle (spec.webhookTrust.policy: Refuse): {}",
                check.message
            ),
            // The webhook server may change its certificate, which no watch sees.
            Requeue::Retry,
        )),
        WebhookTrustPolicy::Warn => Ok(Some(format!(
            "uploaded although the coreapps will not trust the webhook server with it \
             (spec.webhookTrust.policy: Warn): {}",
            check.message
        ))),
        WebhookTrustPolicy::Ignore => Ok(None),
    }
}

/// The status record of a check.
pub fn status(check: &Check, bundle: &Bundle, now: Timestamp) -> WebhookTrustStatus {
    let summary = |c: &CertificateInfo| WebhookCertificateStatus {
        subject: c.subject.clone(),
        issuer: c.issuer.clone(),
        not_after: Time(c.not_after),
        sha256: c.sha256.clone(),
    };
    WebhookTrustStatus {
        endpoint: check.endpoint.clone(),
        checked_at: Time(now),
        bundle_sha256: bundle.sha256.clone(),
        server_certificate: check.server.as_deref().map(summary),
        anchor: check.anchor.as_deref().map(summary),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wcc(
        policy: &str,
        checked_at: Option<&str>,
        bundle_sha: &str,
        generation: i64,
    ) -> WebhookCaCertificate {
        let mut status = serde_json::json!({"conditions": [{
            "type": WEBHOOK_TRUSTED, "status": "True", "reason": "Trusted", "message": "",
            "observedGeneration": 2, "lastTransitionTime": "2026-01-01T00:00:00Z"
        }]});
        if let Some(at) = checked_at {
            status["webhookTrust"] =
                serde_json::json!({"checkedAt": at, "bundleSha256": bundle_sha});
        }
        serde_json::from_value(serde_json::json!({
            "apiVersion": "webhookca.io/v1alpha1", "kind": "WebhookCaCertificate",
            "metadata": {"name": "prod", "namespace": "wa", "generation": generation},
            "spec": {
                "sources": [{"inline": "x"}],
                "api": {"url": "https://webapp", "credentials": {"tokenSecret": {"name": "t"}}},
                "driftCheckInterval": "10m",
                "webhookTrust": {"policy": policy}
            },
            "status": status
        }))
        .unwrap()
    }

    fn bundle(sha: &str) -> Bundle {
        Bundle {
            pem: String::new(),
            sha256: sha.to_owned(),
            certificates: Vec::new(),
            warnings: Vec::new(),
            duplicates_removed: 0,
        }
    }

    #[test]
    fn a_check_is_due_once_per_interval_bundle_and_generation() {
        let at = |s: &str| s.parse::<Timestamp>().unwrap();
        let checked = "2026-01-01T00:00:00Z";
        let w = wcc("Refuse", Some(checked), "aa", 2);
        assert!(
            !due(&w, &bundle("aa"), at("2026-01-01T00:09:59Z")),
            "within the interval"
        );
        assert!(
            due(&w, &bundle("aa"), at("2026-01-01T00:10:00Z")),
            "interval passed"
        );
        assert!(
            due(&w, &bundle("bb"), at("2026-01-01T00:00:01Z")),
            "another bundle"
        );
        assert!(
            due(
                &wcc("Refuse", Some(checked), "aa", 3),
                &bundle("aa"),
                at("2026-01-01T00:00:01Z")
            ),
            "a new generation"
        );
        assert!(
            due(&wcc("Refuse", None, "aa", 2), &bundle("aa"), at(checked)),
            "never checked"
        );
        assert!(
            due(&w, &bundle("aa"), at("2025-12-31T23:00:00Z")),
            "a clock that went back"
        );
    }

    #[test]
    fn only_an_untrusted_chain_under_refuse_stops_an_upload() {
        let untrusted = Check {
            trust: webhook::Trust::Untrusted,
            reason: reason::UNTRUSTED_CHAIN,
            message: "its issuer CN=A is not in the bundle".into(),
            endpoint: None,
            server: None,
            anchor: None,
        };
        let refused = gate(&wcc("Refuse", None, "", 1), Some(&untrusted), true).unwrap_err();
        assert_eq!(
            (refused.condition, refused.reason.as_str()),
            (UPLOADED, WEBHOOK_UNTRUSTED)
        );
        assert!(refused.message.contains("CN=A"), "{}", refused.message);
        assert!(
            gate(&wcc("Refuse", None, "", 1), Some(&untrusted), false).is_ok(),
            "no upload due"
        );
        assert!(gate(&wcc("Warn", None, "", 1), Some(&untrusted), true).is_ok());
        let hostname = Check {
            reason: reason::HOSTNAME_MISMATCH,
            ..untrusted.clone()
        };
        assert_eq!(
            gate(&wcc("Refuse", None, "", 1), Some(&hostname), true),
            Ok(None)
        );
        assert_eq!(
            gate(&wcc("Warn", None, "", 1), Some(&hostname), true),
            Ok(None)
        );
        let unknown = Check::unknown(reason::UNREACHABLE, "closed");
        assert_eq!(
            gate(&wcc("Refuse", None, "", 1), Some(&unknown), true),
            Ok(None)
        );
        assert_eq!(gate(&wcc("Refuse", None, "", 1), None, true), Ok(None));
    }
}
