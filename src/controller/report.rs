//! What one pass decided, collected from the steps' results, and writing it out: Events for
//! what changed, then the status by server-side apply.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::restart::RolloutReport;
use super::status::{
    BUNDLE_VALID, EXPIRING_SOON, INSECURE_TLS, READY, ROLLOUT_COMPLETE, UPLOADED, Verdict,
    WEBHOOK_TRUSTED, bundle_status, changed, expiry_verdict, merge_conditions, ready_verdict,
    short, webhook_expiry_verdict,
};
use super::step::{Requeue, StepFailure};
use super::upload::Synced;
use super::{CONTROLLER_NAME, Context};
use crate::bundle::Bundle;
use crate::crd::{
    BundleStatus, RolloutStatus, WebhookCaCertificate, WebhookCaCertificateStatus,
    WebhookTrustStatus,
};
use crate::webhook::{Check, Trust};

/// The decisions of one pass, before they are written. Fields left `None` keep what status holds.
pub struct Report {
    retry: Duration,
    verdicts: Vec<Verdict>,
    bundle: Option<BundleStatus>,
    uploaded_sha256: Option<String>,
    last_upload_time: Option<Time>,
    last_drift_check_time: Option<Time>,
    last_in_sync_time: Option<Time>,
    rollout: Option<RolloutStatus>,
    /// `Some(None)` clears the webhook trust status (the check is switched off).
    webhook_trust: Option<Option<WebhookTrustStatus>>,
    /// When the bundle's first certificate and the webhook server's certificate expire.
    bundle_expiry: Option<Timestamp>,
    webhook_expiry: Option<Timestamp>,
    /// Events that are not condition changes: an upload, a restart begun.
    notes: Vec<(EventType, &'static str, String)>,
    requeue: Option<Duration>,
}

impl Report {
    /// `retry` is what [`Requeue::Retry`] means.
    pub fn new(retry: Duration) -> Self {
        Self {
            retry,
            verdicts: Vec::new(),
            bundle: None,
            uploaded_sha256: None,
            last_upload_time: None,
            last_drift_check_time: None,
            last_in_sync_time: None,
            rollout: None,
            webhook_trust: None,
            bundle_expiry: None,
            webhook_expiry: None,
            notes: Vec::new(),
            requeue: None,
        }
    }

    pub fn verdict(&mut self, verdict: Verdict) {
        self.verdicts.push(verdict);
    }

    /// A Warning Event about what this pass did, not a condition change.
    pub fn warn(&mut self, reason: &'static str, message: String) {
        self.notes.push((EventType::Warning, reason, message));
    }

    fn requeue_on(&mut self, requeue: Requeue) {
        let after = match requeue {
            Requeue::Retry => self.retry,
            Requeue::After(after) => after,
            Requeue::OnChange => return,
        };
        self.requeue = Some(self.requeue.map_or(after, |r| r.min(after)));
    }

    /// The step that stopped the pass: its condition turns False.
    pub fn stopped(&mut self, failure: StepFailure) {
        self.verdict(Verdict::new(
            failure.condition,
            false,
            failure.reason,
            failure.message,
        ));
        self.requeue_on(failure.requeue);
    }

    /// `wcc` is read for what its status said last time, so that certificates the policy
    /// dropped are reported once, not at every pass.
    pub fn bundle_built(
        &mut self,
        wcc: &WebhookCaCertificate,
        bundle: &Bundle,
        sources: usize,
        now: Timestamp,
    ) {
        let mut message = format!(
            "{} certificate(s) from {sources} source(s), sha256 {}",
            bundle.certificates.len(),
            short(&bundle.sha256)
        );
        self.notes
            .extend(super::dropped::note(wcc, bundle, &mut message));
        self.verdict(Verdict::new(BUNDLE_VALID, true, "Valid", message));
        self.verdict(expiry_verdict(bundle, now));
        self.bundle = Some(bundle_status(bundle));
        self.bundle_expiry = bundle.earliest_expiry().map(|c| c.not_after);
        // The webhook server's certificate seen last time counts until the next check.
        let last_seen = wcc
            .status
            .as_ref()
            .and_then(|s| s.webhook_trust.as_ref())
            .and_then(|w| w.server_certificate.as_ref());
        if let Some(server) = last_seen {
            self.webhook_expiry(Some((&server.subject, server.not_after.0)), bundle, now);
        }
    }

    /// The webhook server's certificate (subject, notAfter) joins the expiry: `ExpiringSoon`
    /// names it when it expires first and soon; `None` leaves the bundle's alone.
    fn webhook_expiry(
        &mut self,
        server: Option<(&str, Timestamp)>,
        bundle: &Bundle,
        now: Timestamp,
    ) {
        self.webhook_expiry = server.map(|(_, not_after)| not_after);
        let verdict = server
            .and_then(|(subject, not_after)| {
                webhook_expiry_verdict(subject, not_after, bundle, now)
            })
            .unwrap_or_else(|| expiry_verdict(bundle, now));
        self.verdicts.retain(|v| v.type_ != EXPIRING_SOON);
        self.verdict(verdict);
    }

    /// A webhook trust check of this pass (`None`: none was due): the `WebhookTrusted`
    /// condition, the status, and the server certificate's expiry.
    pub fn webhook_checked(&mut self, check: Option<Check>, bundle: &Bundle, now: Timestamp) {
        let Some(check) = check else { return };
        let message = check.message.clone();
        self.verdict(match check.trust {
            Trust::Trusted => Verdict::new(WEBHOOK_TRUSTED, true, check.reason, message),
            Trust::Untrusted => Verdict::new(WEBHOOK_TRUSTED, false, check.reason, message),
            Trust::Unknown => Verdict::unknown(WEBHOOK_TRUSTED, check.reason, message),
        });
        let server = check
            .server
            .as_ref()
            .map(|s| (s.subject.as_str(), s.not_after));
        self.webhook_expiry(server, bundle, now);
        let disabled = check.reason == crate::webhook::reason::CHECK_DISABLED;
        self.webhook_trust =
            Some((!disabled).then(|| super::webhook_trust::status(&check, bundle, now)));
    }

    /// The first expiry that matters: the bundle's or the webhook server's certificate.
    pub fn earliest_expiry(&self) -> Option<Timestamp> {
        match (self.bundle_expiry, self.webhook_expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn drift_checked(&mut self, now: Timestamp) {
        self.last_drift_check_time = Some(Time(now));
    }

    pub fn synced(&mut self, sha: &str, synced: Synced, now: Timestamp) {
        self.uploaded_sha256 = Some(sha.to_owned());
        self.last_in_sync_time = Some(Time(now));
        match synced {
            Synced::UpToDate => self.verdict(Verdict::new(
                UPLOADED,
                true,
                "UpToDate",
                format!("the API holds the bundle, sha256 {}", short(sha)),
            )),
            Synced::Uploaded { message, .. } => {
                self.notes
                    .push((EventType::Normal, "Uploaded", message.clone()));
                self.verdict(Verdict::new(UPLOADED, true, "Uploaded", message));
                self.last_upload_time = Some(Time(now));
            }
        }
    }

    pub fn rolled(&mut self, report: RolloutReport) {
        if let Some(note) = report.started {
            self.notes.push((EventType::Normal, "RolloutStarted", note));
        }
        self.verdict(report.verdict);
        self.rollout = report.rollout;
        if let Some(requeue) = report.requeue {
            self.requeue_on(requeue);
        }
    }

    /// Decides `Ready` unless a step did (suspend); returns whether the resource is ready.
    pub fn decide_ready(&mut self, wait_for_rollout: bool) -> bool {
        if !self.verdicts.iter().any(|v| v.type_ == READY) {
            let ready = ready_verdict(&self.verdicts, wait_for_rollout);
            self.verdicts.insert(0, ready);
        }
        self.verdicts.iter().any(|v| v.type_ == READY && v.status)
    }

    /// When to look again: the soonest any step asked for, and at the latest the drift check.
    pub fn requeue_after(&self, drift_check: Duration) -> Duration {
        self.requeue.unwrap_or(drift_check).min(drift_check)
    }

    /// Condition changes become Events (reason = condition reason); so do the notes.
    pub async fn publish_events(&self, ctx: &Context, wcc: &WebhookCaCertificate) {
        let old = wcc
            .status
            .as_ref()
            .map(|s| s.conditions.as_slice())
            .unwrap_or_default();
        for v in changed(old, &self.verdicts) {
            let bad = match v.type_ {
                EXPIRING_SOON | INSECURE_TLS => v.status,
                WEBHOOK_TRUSTED => !v.status && !v.unknown,
                _ => !v.status && !matches!(v.reason.as_str(), "Pending" | "RolloutInProgress"),
            };
            let good_news =
                v.status && matches!(v.type_, READY | ROLLOUT_COMPLETE | WEBHOOK_TRUSTED);
            if bad {
                publish(ctx, wcc, EventType::Warning, &v.reason, v.message.clone()).await;
            } else if good_news {
                publish(ctx, wcc, EventType::Normal, &v.reason, v.message.clone()).await;
            }
        }
        for (type_, reason, note) in &self.notes {
            publish(ctx, wcc, *type_, reason, note.clone()).await;
        }
    }

    /// Applies the status on the status subresource, keeping what this pass did not decide.
    pub async fn write_status(
        &self,
        api: &Api<WebhookCaCertificate>,
        wcc: &WebhookCaCertificate,
        now: Timestamp,
    ) -> Result<WebhookCaCertificateStatus, kube::Error> {
        let old = wcc.status.clone().unwrap_or_default();
        let status = WebhookCaCertificateStatus {
            observed_generation: wcc.metadata.generation,
            conditions: merge_conditions(
                &old.conditions,
                &self.verdicts,
                wcc.metadata.generation,
                now,
            ),
            bundle: self.bundle.clone().or(old.bundle),
            uploaded_sha256: self.uploaded_sha256.clone().or(old.uploaded_sha256),
            last_upload_time: self.last_upload_time.clone().or(old.last_upload_time),
            last_drift_check_time: self
                .last_drift_check_time
                .clone()
                .or(old.last_drift_check_time),
            last_in_sync_time: self.last_in_sync_time.clone().or(old.last_in_sync_time),
            rollout: self.rollout.clone().or(old.rollout),
            webhook_trust: match &self.webhook_trust {
                Some(decided) => decided.clone(),
                None => old.webhook_trust,
            },
        };
        let patch = json!({
            "apiVersion": WebhookCaCertificate::api_version(&()),
            "kind": WebhookCaCertificate::kind(&()),
            "status": status,
        });
        api.patch_status(
            &wcc.name_any(),
            &PatchParams::apply(CONTROLLER_NAME).force(),
            &Patch::Apply(&patch),
        )
        .await?;
        Ok(status)
    }
}

/// One Event about `wcc`.
pub async fn publish(
    ctx: &Context,
    wcc: &WebhookCaCertificate,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(super::status::bounded(&note)),
        action: "Reconcile".to_owned(),
        secondary: None,
    };
    // An Event that cannot be written is not worth failing the reconcile for.
    if let Err(e) = ctx.recorder().publish(&event, &wcc.object_ref(&())).await {
        tracing::warn!(error = %e, reason, "could not publish an Event");
    }
}
