//! What one pass decided, collected from the steps' results, and writing it out: Events for
//! what changed, then the status by server-side apply.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::effects::DRY_RUN;
use super::health::Checked;
use super::restart::RolloutReport;
use super::status::{
    API_HEALTHY, BUNDLE_VALID, EXPIRING_SOON, INSECURE_TLS, READY, ROLLOUT_COMPLETE, UPLOADED,
    Verdict, WEBHOOK_TRUSTED, bounded, bundle_status, changed, expiry_verdict, merge_conditions,
    ready_verdict, short, webhook_expiry_verdict,
};
use super::step::{Requeue, StepFailure};
use super::upload::Synced;
use super::{CONTROLLER_NAME, Context};
use crate::bundle::Bundle;
use crate::crd::{
    ApiHealthStatus, BundleStatus, RolloutStatus, WebhookCaCertificate, WebhookCaCertificateStatus,
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
    health: Option<ApiHealthStatus>,
    /// `Some(None)` clears the webhook trust status (the check is switched off).
    webhook_trust: Option<Option<WebhookTrustStatus>>,
    /// When the bundle's first certificate and the webhook server's certificate expire.
    bundle_expiry: Option<Timestamp>,
    webhook_expiry: Option<Timestamp>,
    /// `spec.expiryWarning`, for the webhook server's certificate checked later in the pass.
    expiry_window: Duration,
    /// Events that are not condition changes: an upload, a restart begun.
    notes: Vec<(EventType, &'static str, String)>,
    /// Dry run: changes a live operator would make that no condition names (the finalizer).
    would: Vec<String>,
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
            webhook_trust: None,
            bundle_expiry: None,
            webhook_expiry: None,
            expiry_window: crate::crd::WebhookCaCertificateSpec::DEFAULT_EXPIRY_WARNING,
            notes: Vec::new(),
            would: Vec::new(),
            requeue: None,
        }
    }

    /// Dry run: a change this pass did not make.
    pub fn would(&mut self, what: String) {
        self.would.push(what);
    }

    /// A later verdict on the same condition replaces an earlier one (the read-back after a
    /// rollout can undo the pass's `Uploaded`).
    pub fn verdict(&mut self, verdict: Verdict) {
        self.verdicts.retain(|v| v.type_ != verdict.type_);
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
        self.expiry_window = wcc.spec.expiry_warning();
        self.verdict(expiry_verdict(bundle, now, self.expiry_window));
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
        let window = self.expiry_window;
        let verdict = server
            .and_then(|(subject, not_after)| {
                webhook_expiry_verdict(subject, not_after, bundle, now, window)
            })
            .unwrap_or_else(|| expiry_verdict(bundle, now, window));
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
        if let Synced::WouldUpload { message } = synced {
            self.verdict(Verdict::new(UPLOADED, false, DRY_RUN, message));
            return;
        }
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
            Synced::WouldUpload { .. } => {}
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
    /// In a dry run, a pass that would have changed something is not Ready: reason `DryRun`,
    /// and the message lists every change it would have made. A real failure still wins.
    pub fn decide_ready(&mut self, wait_for_rollout: bool) -> bool {
        if !self.verdicts.iter().any(|v| v.type_ == READY) {
            // Ready as it would be had the dry run made its changes: a real failure shows.
            let as_if_done: Vec<Verdict> = self
                .verdicts
                .iter()
                .map(|v| Verdict {
                    status: v.status || v.reason == DRY_RUN,
                    ..v.clone()
                })
                .collect();
            let mut ready = ready_verdict(&as_if_done, wait_for_rollout);
            let would: Vec<&str> = self
                .verdicts
                .iter()
                .filter(|v| v.reason == DRY_RUN)
                .map(|v| v.message.as_str())
                .chain(self.would.iter().map(String::as_str))
                .collect();
            if ready.status && !would.is_empty() {
                ready = Verdict::new(
                    READY,
                    false,
                    DRY_RUN,
                    format!("dry run: {}", would.join("; ")),
                );
            }
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
                // Unknown is no verdict on the installation: no Warning for a rate limit or an
                // unreachable webhook server.
                _ => {
                    !v.status
                        && !v.unknown
                        && !matches!(v.reason.as_str(), "Pending" | "RolloutInProgress" | DRY_RUN)
                }
            };
            let good_news = v.status
                && matches!(
                    v.type_,
                    READY | ROLLOUT_COMPLETE | API_HEALTHY | WEBHOOK_TRUSTED
                );
            if bad {
                publish(ctx, wcc, EventType::Warning, &v.reason, v.message.clone()).await;
            } else if good_news {
                publish(ctx, wcc, EventType::Normal, &v.reason, v.message.clone()).await;
            }
        }
        // A dry run tells what it would do once per change of plan, in one Event: the Ready
        // condition's, which lists every change (the other conditions' parts of it stay quiet).
        let dry_run = self
            .verdicts
            .iter()
            .find(|v| v.type_ == READY && v.reason == DRY_RUN);
        if let Some(v) = dry_run
            && !old.iter().any(|c| {
                c.type_ == READY && c.reason == DRY_RUN && c.message == bounded(&v.message)
            })
        {
            publish(ctx, wcc, EventType::Normal, DRY_RUN, v.message.clone()).await;
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

    fn ready(report: &Report) -> &Verdict {
        report
            .verdicts
            .iter()
            .find(|v| v.type_ == READY)
            .expect("Ready decided")
    }

    #[test]
    fn a_dry_run_is_not_ready_and_lists_every_change_it_would_make() {
        let mut report = Report::new(Duration::from_secs(30));
        report.verdict(Verdict::new(BUNDLE_VALID, true, "Valid", ""));
        report.synced(
            "ab",
            Synced::WouldUpload {
                message: "would upload 1 certificate(s)".into(),
            },
            Timestamp::UNIX_EPOCH,
        );
        report.verdict(Verdict::new(
            ROLLOUT_COMPLETE,
            false,
            DRY_RUN,
            "would restart Deployment/coreapp by RolloutRestart",
        ));
        report.would("would add the finalizer".into());
        assert!(!report.decide_ready(true));
        let ready = ready(&report);
        assert_eq!(ready.reason, DRY_RUN);
        assert_eq!(
            ready.message,
            "dry run: would upload 1 certificate(s); would restart Deployment/coreapp by \
             RolloutRestart; would add the finalizer"
        );
        assert_eq!(report.uploaded_sha256, None, "nothing was uploaded");
    }

    #[test]
    fn a_dry_run_with_nothing_to_change_is_ready_and_a_real_failure_wins() {
        let mut in_step = Report::new(Duration::from_secs(30));
        in_step.verdict(Verdict::new(BUNDLE_VALID, true, "Valid", ""));
        in_step.synced("ab", Synced::UpToDate, Timestamp::UNIX_EPOCH);
        in_step.verdict(Verdict::new(ROLLOUT_COMPLETE, true, "RolloutComplete", ""));
        assert!(in_step.decide_ready(true));
        assert_eq!(ready(&in_step).reason, "Synced");

        let mut failing = Report::new(Duration::from_secs(30));
        failing.verdict(Verdict::new(BUNDLE_VALID, true, "Valid", ""));
        failing.synced(
            "ab",
            Synced::WouldUpload {
                message: "would upload".into(),
            },
            Timestamp::UNIX_EPOCH,
        );
        failing.stopped(StepFailure::halt(
            ROLLOUT_COMPLETE,
            "TargetNotFound",
            "Deployment coreapp not found",
            Requeue::Retry,
        ));
        // A restart target that does not exist is news the dry run's plan must not hide.
        assert!(!failing.decide_ready(true));
        assert_eq!(ready(&failing).reason, "TargetNotFound");

        let mut broken = Report::new(Duration::from_secs(30));
        broken.stopped(StepFailure::halt(
            BUNDLE_VALID,
            "SourceNotFound",
            "Secret internal-ca not found",
            Requeue::OnChange,
        ));
        broken.would("would add the finalizer".into());
        assert!(!broken.decide_ready(true));
        assert_eq!(ready(&broken).reason, "SourceNotFound");
    }
}
