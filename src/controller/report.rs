//! What one pass decided, collected from the steps' results, and writing it out: Events for
//! what changed, then the status by server-side apply.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::health::Checked;
use super::restart::RolloutReport;
use super::status::{
    API_HEALTHY, BUNDLE_VALID, EXPIRING_SOON, INSECURE_TLS, READY, ROLLOUT_COMPLETE, UPLOADED,
    Verdict, bundle_status, changed, expiry_verdict, merge_conditions, ready_verdict, short,
};
use super::step::{Requeue, StepFailure};
use super::upload::Synced;
use super::{CONTROLLER_NAME, Context};
use crate::bundle::Bundle;
use crate::crd::{
    ApiHealthStatus, BundleStatus, RolloutStatus, WebhookCaCertificate, WebhookCaCertificateStatus,
};

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
    health: Option<ApiHealthStatus>,
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
            health: None,
            notes: Vec::new(),
            requeue: None,
        }
    }

    /// A later verdict on the same condition replaces an earlier one (the read-back after a
    /// rollout can undo the pass's `Uploaded`).
    pub fn verdict(&mut self, verdict: Verdict) {
        self.verdicts.retain(|v| v.type_ != verdict.type_);
        self.verdicts.push(verdict);
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

    /// The read-back after a rollout and the health answer, when there were any.
    pub fn checked(&mut self, checked: Checked) {
        if let Some(failure) = checked.read_back {
            self.stopped(failure);
        }
        if let Some((verdict, status)) = checked.health {
            self.verdict(verdict);
            self.health = Some(status);
        }
        self.requeue_on(Requeue::After(checked.next));
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
                // Unknown is no verdict on the installation: no Warning for a rate limit.
                _ => {
                    !v.status
                        && !v.unknown
                        && !matches!(v.reason.as_str(), "Pending" | "RolloutInProgress")
                }
            };
            let good_news = v.status && matches!(v.type_, READY | ROLLOUT_COMPLETE | API_HEALTHY);
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
            health: self.health.clone().or(old.health),
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
        note: Some(note),
        action: "Reconcile".to_owned(),
        secondary: None,
    };
    // An Event that cannot be written is not worth failing the reconcile for.
    if let Err(e) = ctx.recorder().publish(&event, &wcc.object_ref(&())).await {
        tracing::warn!(error = %e, reason, "could not publish an Event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_bundle_after_the_rollout_replaces_the_pass_s_uploaded() {
        let mut report = Report::new(Duration::from_secs(30));
        report.verdict(Verdict::new(BUNDLE_VALID, true, "Valid", ""));
        report.verdict(Verdict::new(UPLOADED, true, "UpToDate", ""));
        report.verdict(Verdict::new(ROLLOUT_COMPLETE, true, "RolloutComplete", ""));
        report.checked(Checked {
            read_back: Some(StepFailure::halt(
                UPLOADED,
                "LostAfterRestart",
                "gone",
                Requeue::Retry,
            )),
            health: Some((
                Verdict::new(API_HEALTHY, true, "Connected", ""),
                ApiHealthStatus::default(),
            )),
            next: Duration::from_secs(600),
        });
        let uploaded: Vec<&Verdict> = report
            .verdicts
            .iter()
            .filter(|v| v.type_ == UPLOADED)
            .collect();
        assert_eq!(uploaded.len(), 1, "one condition per type");
        assert_eq!(uploaded[0].reason, "LostAfterRestart");
        assert!(!report.decide_ready(true));
        assert!(report.health.is_some());
        assert_eq!(
            report.requeue_after(Duration::from_secs(600)),
            Duration::from_secs(30),
            "the retry comes before the next health question"
        );
    }
}
