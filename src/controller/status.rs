//! Conditions and status, computed without I/O: the reconcile's steps decide [`Verdict`]s, and
//! this module merges them into `metav1.Condition`s and summarises the bundle.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::bundle::Bundle;
use crate::crd::{BundleStatus, CertificateStatus};

/// Condition types, in the order they are listed in status.
pub const READY: &str = "Ready";
pub const BUNDLE_VALID: &str = "BundleValid";
pub const UPLOADED: &str = "Uploaded";
pub const ROLLOUT_COMPLETE: &str = "RolloutComplete";
pub const EXPIRING_SOON: &str = "ExpiringSoon";
pub const INSECURE_TLS: &str = "InsecureTls";
/// What `GET /v1/health` said after the last rollout or drift check; never gates `Ready`.
pub const API_HEALTHY: &str = "ApiHealthy";

/// A condition as the reconcile decides it; `lastTransitionTime` is filled in against the old
/// status by [`merge_conditions`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub type_: &'static str,
    pub status: bool,
    /// The check could not be made (`status` is then false): the condition reads `Unknown`.
    pub unknown: bool,
    pub reason: String,
    pub message: String,
}

impl Verdict {
    pub fn new(
        type_: &'static str,
        status: bool,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            unknown: false,
            reason: reason.into(),
            message: message.into(),
        }
    }

    /// A condition whose check could not be made this time (status `Unknown`).
    pub fn unknown(
        type_: &'static str,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            unknown: true,
            ..Self::new(type_, false, reason, message)
        }
    }

    /// The metav1.Condition status: `True`, `False` or `Unknown`.
    pub fn status_str(&self) -> &'static str {
        match (self.unknown, self.status) {
            (true, _) => "Unknown",
            (false, true) => "True",
            (false, false) => "False",
        }
    }
}

/// The reason of a resource that steps back for an older one (see `conflict`).
pub const CONFLICT: &str = "Conflict";

/// Whether `wcc`'s status says it stepped back for an older resource.
pub fn in_conflict(wcc: &crate::crd::WebhookCaCertificate) -> bool {
    wcc.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == READY && c.reason == CONFLICT)
    })
}

/// The first 16 hex digits of a hash, as messages show it.
pub fn short(sha: &str) -> &str {
    sha.get(..16).unwrap_or(sha)
}

/// Messages end up in `kubectl describe` and Events; keep them short and bounded.
const MAX_MESSAGE: usize = 1024;

fn bounded(message: &str) -> String {
    if message.len() <= MAX_MESSAGE {
        return message.to_owned();
    }
    let mut end = MAX_MESSAGE;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &message[..end])
}

/// The new condition list: one entry per verdict, keeping `lastTransitionTime` from `old` when a
/// condition's status did not change, and keeping old conditions of types not decided this time
/// (a reconcile that stops early leaves later conditions as they were, marked by their older
/// observedGeneration).
pub fn merge_conditions(
    old: &[Condition],
    verdicts: &[Verdict],
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    let old_by_type: BTreeMap<&str, &Condition> =
        old.iter().map(|c| (c.type_.as_str(), c)).collect();
    let mut out: Vec<Condition> = verdicts
        .iter()
        .map(|v| {
            let status = v.status_str();
            let last_transition_time = match old_by_type.get(v.type_) {
                Some(previous) if previous.status == status => {
                    previous.last_transition_time.clone()
                }
                _ => Time(now),
            };
            Condition {
                type_: v.type_.to_owned(),
                status: status.to_owned(),
                reason: v.reason.clone(),
                message: bounded(&v.message),
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect();
    for previous in old {
        if !verdicts.iter().any(|v| v.type_ == previous.type_) {
            out.push(previous.clone());
        }
    }
    out
}

/// Which verdicts changed against the old conditions (status or reason): these get an Event, so
/// that a steady state does not repeat the same Event at every drift check.
pub fn changed<'a>(old: &[Condition], verdicts: &'a [Verdict]) -> Vec<&'a Verdict> {
    verdicts
        .iter()
        .filter(|v| {
            let status = v.status_str();
            !old.iter()
                .any(|c| c.type_ == v.type_ && c.status == status && c.reason == v.reason)
        })
        .collect()
}

/// The status summary of a built bundle.
pub fn bundle_status(bundle: &Bundle) -> BundleStatus {
    BundleStatus {
        sha256: bundle.sha256.clone(),
        count: i32::try_from(bundle.certificates.len()).unwrap_or(i32::MAX),
        earliest_expiry: bundle.earliest_expiry().map(|c| Time(c.not_after)),
        certificates: bundle
            .certificates
            .iter()
            .map(|c| CertificateStatus {
                subject: c.subject.clone(),
                issuer: c.issuer.clone(),
                serial: c.serial.clone(),
                not_before: Time(c.not_before),
                not_after: Time(c.not_after),
                sha256: c.sha256.clone(),
                is_ca: c.is_ca,
                source: c.source.clone(),
            })
            .collect(),
        warnings: bundle
            .warnings
            .iter()
            .map(|w| bounded(&w.to_string()))
            .collect(),
    }
}

/// How long before the earliest expiry the `ExpiringSoon` condition turns True.
pub const EXPIRY_WARNING: jiff::SignedDuration = jiff::SignedDuration::from_hours(30 * 24);

/// The `ExpiringSoon` verdict for a bundle at `now`.
pub fn expiry_verdict(bundle: &Bundle, now: Timestamp) -> Verdict {
    match bundle.earliest_expiry() {
        Some(first) if first.not_after.duration_since(now) < EXPIRY_WARNING => Verdict::new(
            EXPIRING_SOON,
            true,
            "ExpiringSoon",
            format!(
                "{} expires at {} (source {})",
                first.subject, first.not_after, first.source
            ),
        ),
        Some(first) => Verdict::new(
            EXPIRING_SOON,
            false,
            "NotExpiringSoon",
            format!("the first certificate expires at {}", first.not_after),
        ),
        None => Verdict::new(EXPIRING_SOON, false, "NoCertificates", ""),
    }
}

/// `Ready` from the other verdicts: true only when every condition it depends on holds.
pub fn ready_verdict(verdicts: &[Verdict], wait_for_rollout: bool) -> Verdict {
    let needed = [BUNDLE_VALID, UPLOADED, ROLLOUT_COMPLETE];
    for type_ in needed {
        if type_ == ROLLOUT_COMPLETE && !wait_for_rollout {
            continue;
        }
        match verdicts.iter().find(|v| v.type_ == type_) {
            Some(v) if v.status => {}
            Some(v) => return Verdict::new(READY, false, v.reason.clone(), v.message.clone()),
            None => {
                return Verdict::new(
                    READY,
                    false,
                    "Progressing",
                    format!("{type_} not decided yet"),
                );
            }
        }
    }
    Verdict::new(
        READY,
        true,
        "Synced",
        "the API holds the bundle built from the sources",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn condition(type_: &str, status: &str, reason: &str, at: i64) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: String::new(),
            observed_generation: Some(1),
            last_transition_time: Time(Timestamp::from_second(at).expect("valid")),
        }
    }

    #[test]
    fn transition_time_moves_only_when_status_changes() {
        let old = vec![
            condition(BUNDLE_VALID, "True", "Valid", 100),
            condition(UPLOADED, "True", "UpToDate", 100),
        ];
        let now = Timestamp::from_second(500).expect("valid");
        let verdicts = [
            Verdict::new(BUNDLE_VALID, true, "Valid", "ok"),
            Verdict::new(UPLOADED, false, "Unauthorized", "login refused"),
        ];
        let merged = merge_conditions(&old, &verdicts, Some(2), now);
        assert_eq!(merged[0].last_transition_time.0.as_second(), 100);
        assert_eq!(merged[1].last_transition_time.0.as_second(), 500);
        assert!(merged.iter().all(|c| c.observed_generation == Some(2)));
    }

    #[test]
    fn unknown_is_a_status_of_its_own() {
        let old = vec![condition(API_HEALTHY, "True", "Connected", 100)];
        let verdicts = [Verdict::unknown(API_HEALTHY, "RateLimited", "429")];
        let now = Timestamp::from_second(500).expect("valid");
        let merged = merge_conditions(&old, &verdicts, Some(2), now);
        assert_eq!(merged[0].status, "Unknown");
        assert_eq!(merged[0].last_transition_time.0.as_second(), 500);
        assert_eq!(changed(&old, &verdicts).len(), 1);
        assert!(changed(&merged, &verdicts).is_empty());
        let health_only = [
            Verdict::new(BUNDLE_VALID, true, "Valid", ""),
            Verdict::new(UPLOADED, true, "UpToDate", ""),
            Verdict::new(ROLLOUT_COMPLETE, true, "RolloutComplete", ""),
            Verdict::new(API_HEALTHY, false, "NodeUnreachable", "wacore3"),
        ];
        assert!(
            ready_verdict(&health_only, true).status,
            "ApiHealthy never gates Ready"
        );
    }

    #[test]
    fn undecided_conditions_are_kept_as_they_were() {
        let old = vec![condition(ROLLOUT_COMPLETE, "True", "RolloutComplete", 100)];
        let verdicts = [Verdict::new(BUNDLE_VALID, false, "SourceNotFound", "x")];
        let merged = merge_conditions(&old, &verdicts, Some(3), Timestamp::UNIX_EPOCH);
        let kept = merged
            .iter()
            .find(|c| c.type_ == ROLLOUT_COMPLETE)
            .expect("kept");
        assert_eq!(kept.observed_generation, Some(1));
    }

    #[test]
    fn only_changed_verdicts_are_reported() {
        let old = vec![condition(UPLOADED, "True", "UpToDate", 1)];
        let same = [Verdict::new(UPLOADED, true, "UpToDate", "")];
        assert!(changed(&old, &same).is_empty());
        let other_reason = [Verdict::new(UPLOADED, true, "Uploaded", "")];
        assert_eq!(changed(&old, &other_reason).len(), 1);
    }

    #[test]
    fn ready_needs_every_dependency_and_names_the_first_failure() {
        let ok = |t| Verdict::new(t, true, "Ok", "");
        let all = [ok(BUNDLE_VALID), ok(UPLOADED), ok(ROLLOUT_COMPLETE)];
        assert!(ready_verdict(&all, true).status);
        let rolling = [
            ok(BUNDLE_VALID),
            ok(UPLOADED),
            Verdict::new(ROLLOUT_COMPLETE, false, "RolloutInProgress", "1/2"),
        ];
        let ready = ready_verdict(&rolling, true);
        assert!(!ready.status);
        assert_eq!(ready.reason, "RolloutInProgress");
        assert!(
            ready_verdict(&rolling, false).status,
            "waitForRollout: false"
        );
        let invalid = [Verdict::new(BUNDLE_VALID, false, "PrivateKeyRefused", "")];
        assert_eq!(ready_verdict(&invalid, true).reason, "PrivateKeyRefused");
    }

    #[test]
    fn long_messages_are_bounded_on_a_char_boundary() {
        let long = "é".repeat(MAX_MESSAGE);
        let b = bounded(&long);
        assert!(b.len() <= MAX_MESSAGE + "…".len());
        assert!(b.ends_with('…'));
    }
}
