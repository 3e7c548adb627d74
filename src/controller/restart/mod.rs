//! Restarting the workloads that serve the webhook, so that they load the new bundle, and
//! following the rollout. [`step`] is the reconcile's restart step: it gathers the inputs, asks
//! the pure planners in `plan` what to do, and acts through the method arms in `method`.

mod evict;
mod method;
mod plan;
pub mod progress;
mod workload;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};

pub use evict::{EvictStep, evict_step};
pub use workload::{resolve_targets, rollout_restart};

use super::status::{ROLLOUT_COMPLETE, Verdict, short};
use super::step::{Pass, Requeue, StepFailure};
use super::{Context, conflict};
use crate::crd::{
    RestartMethod, RolloutState, RolloutStatus, TargetRollout, WebhookCaCertificate, WorkloadKind,
};
use crate::reason::ConditionReason;
use progress::Progress;

/// The bundle hash the pod template was last restarted for; the controller restarts a workload
/// only when it differs from the uploaded bundle's, so an operator restart restarts nothing.
pub const BUNDLE_HASH_ANNOTATION: &str = "webhookca.io/bundle-sha256";
/// When the operator last restarted the workload, like kubectl's `restartedAt`.
pub const RESTARTED_AT_ANNOTATION: &str = "webhookca.io/restartedAt";
pub const FIELD_MANAGER: &str = crate::NAME;
/// What an empty `spec.targets` means: the coreapp Deployments of Meta's templates.
pub const DEFAULT_TARGET_SELECTOR: &str = "type=coreapp";

/// A workload to restart, as observed when it was resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    pub kind: WorkloadKind,
    pub name: String,
    /// [`BUNDLE_HASH_ANNOTATION`] on the pod template.
    pub template_hash: Option<String>,
    pub progress: Progress,
    pub pod_selector: Option<LabelSelector>,
}

#[derive(Debug, thiserror::Error)]
pub enum RestartError {
    #[error("{} {name} not found", kind_name(*kind))]
    NotFound { kind: WorkloadKind, name: String },
    #[error("no {} matches the selector {selector:?}", kind_name(*kind))]
    NoMatch {
        kind: WorkloadKind,
        selector: String,
    },
    #[error("not allowed to {action} {} {name}: {}", kind_name(*kind), api_message(source))]
    Forbidden {
        kind: WorkloadKind,
        name: String,
        action: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("could not {action} {} {name}: {}", kind_name(*kind), api_message(source))]
    Api {
        kind: WorkloadKind,
        name: String,
        action: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("{} {name}: {message}", kind_name(*kind))]
    InvalidSelector {
        kind: WorkloadKind,
        name: String,
        message: String,
    },
}

/// Workloads are not watched, so every restart failure is retried.
impl ConditionReason for RestartError {
    fn reason(&self) -> &'static str {
        match self {
            RestartError::NotFound { .. } | RestartError::NoMatch { .. } => "TargetNotFound",
            RestartError::Forbidden { .. } => "RestartForbidden",
            RestartError::Api { .. } | RestartError::InvalidSelector { .. } => "RestartFailed",
        }
    }
}

impl RestartError {
    fn from_kube(kind: WorkloadKind, name: &str, action: &'static str, e: kube::Error) -> Self {
        let name = name.to_owned();
        if status_code(&e) == Some(403) {
            RestartError::Forbidden {
                kind,
                name,
                action,
                source: e,
            }
        } else {
            RestartError::Api {
                kind,
                name,
                action,
                source: e,
            }
        }
    }
}

pub fn kind_name(kind: WorkloadKind) -> &'static str {
    match kind {
        WorkloadKind::Deployment => "Deployment",
        WorkloadKind::StatefulSet => "StatefulSet",
        WorkloadKind::DaemonSet => "DaemonSet",
    }
}

fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// The apiserver's own sentence, not kube's Debug dump of the whole Status.
fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) => format!("{} ({})", status.message, status.code),
        other => other.to_string(),
    }
}

/// What one restart pass found: the `RolloutComplete` condition and the rollout to record.
pub struct RolloutReport {
    pub verdict: Verdict,
    /// `None` when nothing restarts (`method: None`).
    pub rollout: Option<RolloutStatus>,
    /// `None` waits for the next drift check.
    pub requeue: Option<Requeue>,
    /// The Event note when this pass began a restart.
    pub started: Option<String>,
    /// The rollout for this bundle completed in this pass (it was not recorded complete
    /// before): the moment to read the bundle back and ask the API's health.
    pub completed_now: bool,
}

/// Restarts what does not run bundle `sha` yet, then reports where the rollout stands. Never
/// blocks on a rollout: an unfinished one asks to be looked at again soon.
/// `drift_since`: the API held someone else's bundle, and the coreapps that started after this
/// time may have loaded it; their workloads restart too.
pub async fn step(
    pass: &Pass<'_>,
    sha: &str,
    drift_since: Option<Timestamp>,
) -> Result<RolloutReport, StepFailure> {
    let Pass {
        wcc,
        ctx,
        namespace,
        now,
        ..
    } = *pass;
    let spec = &wcc.spec.restart;
    if spec.method == RestartMethod::None {
        return Ok(RolloutReport {
            verdict: Verdict::new(
                ROLLOUT_COMPLETE,
                true,
                "RestartDisabled",
                "restart.method is None: the bundle takes effect when the coreapp nodes next restart",
            ),
            rollout: None,
            requeue: None,
            started: None,
            completed_now: false,
        });
    }
    let failure = StepFailure::mapper(ROLLOUT_COMPLETE);
    let targets = resolve_targets(&ctx.client, namespace, spec)
        .await
        .map_err(&failure)?;
    let names: Vec<(WorkloadKind, &str)> =
        targets.iter().map(|w| (w.kind, w.name.as_str())).collect();
    conflict::own_workloads(wcc, &ctx.resources(), &names)?;
    let previous = wcc.status.as_ref().and_then(|s| s.rollout.as_ref());
    let mut stale = Vec::new();
    if let Some(since) = drift_since {
        for (i, w) in targets.iter().enumerate() {
            let pods = evict::pods_of(&ctx.client, namespace, w)
                .await
                .map_err(&failure)?;
            if evict::started_after(&pods, since) {
                stale.push(i);
            }
        }
    }
    let (started_at, begun, started) = match plan::start(
        spec.method,
        &targets,
        &stale,
        previous,
        sha,
        spec.min_interval(),
        now,
    ) {
        plan::Start::Continue { started_at } => (started_at, Vec::new(), None),
        plan::Start::Throttled { wait } => {
            return Err(StepFailure::halt(
                ROLLOUT_COMPLETE,
                "RestartThrottled",
                format!(
                    "the last restart began less than restart.minInterval ago; next one in {}s",
                    wait.as_secs()
                ),
                Requeue::After(wait),
            ));
        }
        plan::Start::Begin { owed } => {
            let owed_targets: Vec<&Workload> = owed.iter().map(|&i| &targets[i]).collect();
            method::begin(spec.method, ctx, namespace, &owed_targets, sha, now)
                .await
                .map_err(&failure)?;
            let names: Vec<String> = owed_targets
                .iter()
                .map(|w| format!("{}/{}", kind_name(w.kind), w.name))
                .collect();
            let note = format!(
                "restarting {} for bundle sha256 {}",
                names.join(", "),
                short(sha)
            );
            (now, owed, Some(note))
        }
    };

    let mut rollout = RolloutStatus {
        bundle_sha256: sha.to_owned(),
        started_at: Some(Time(started_at)),
        completed_at: None,
        targets: Vec::with_capacity(targets.len()),
    };
    let mut waiting_on_evictions = false;
    for (i, w) in targets.iter().enumerate() {
        let advance = method::advance(
            spec.method,
            ctx,
            namespace,
            w,
            begun.contains(&i),
            started_at,
        )
        .await
        .map_err(&failure)?;
        waiting_on_evictions |= advance.waiting;
        rollout.targets.push(target_rollout(w, &advance.progress));
    }

    let verdict = plan::verdict(
        &rollout.targets,
        waiting_on_evictions,
        started_at,
        spec.rollout_timeout(),
        now,
    );
    let mut completed_now = false;
    let (verdict, requeue) = match verdict {
        plan::Verdict::Failed { message } => (
            Verdict::new(ROLLOUT_COMPLETE, false, "RolloutFailed", message),
            Some(Requeue::Retry),
        ),
        plan::Verdict::Complete => {
            // The same rollout, not merely the same bundle: a drift correction restarts again
            // for a bundle whose first rollout completed long ago.
            let same_rollout = previous.filter(|r| {
                r.bundle_sha256 == sha && r.started_at.as_ref().map(|t| t.0) == Some(started_at)
            });
            let recorded = same_rollout.and_then(|r| r.completed_at.clone());
            completed_now = recorded.is_none();
            rollout.completed_at = recorded.or(Some(Time(now)));
            let message = format!(
                "{} workload(s) run with bundle sha256 {}",
                rollout.targets.len(),
                short(sha)
            );
            (
                Verdict::new(ROLLOUT_COMPLETE, true, "RolloutComplete", message),
                None,
            )
        }
        plan::Verdict::Overdue => (
            Verdict::new(
                ROLLOUT_COMPLETE,
                false,
                "RolloutTimeout",
                "the restart did not finish within restart.rolloutTimeout",
            ),
            Some(Requeue::Retry),
        ),
        plan::Verdict::Progressing { pending } => (
            Verdict::new(
                ROLLOUT_COMPLETE,
                false,
                "RolloutInProgress",
                format!("rolling: {}", pending.join(", ")),
            ),
            Some(Requeue::After(ctx.settings.progress_interval)),
        ),
    };
    Ok(RolloutReport {
        verdict,
        rollout: Some(rollout),
        requeue,
        started,
        completed_now,
    })
}

/// After `deletionPolicy: Delete` removed the bundle, the coreapps restart without it: one
/// pass of that restart, begun when `first` (the template's hash marker then names the empty
/// state) and followed from `since`. Returns whether evictions are still to come.
pub async fn restart_without_bundle(
    ctx: &Context,
    wcc: &WebhookCaCertificate,
    namespace: &str,
    since: Timestamp,
    first: bool,
) -> Result<bool, RestartError> {
    let spec = &wcc.spec.restart;
    if spec.method == RestartMethod::None {
        return Ok(false);
    }
    let targets = resolve_targets(&ctx.client, namespace, spec).await?;
    let mut more = false;
    for w in &targets {
        if first {
            method::begin(spec.method, ctx, namespace, &[w], "none", since).await?;
        }
        more |= method::advance(spec.method, ctx, namespace, w, first, since)
            .await?
            .waiting;
    }
    Ok(more)
}

fn target_rollout(w: &Workload, progress: &Progress) -> TargetRollout {
    let (state, updated, replicas) = match progress {
        Progress::Complete { .. } => (RolloutState::Complete, 0, 0),
        Progress::InProgress {
            updated, replicas, ..
        } => (RolloutState::InProgress, *updated, *replicas),
        Progress::Failed { .. } => (RolloutState::Failed, 0, 0),
    };
    TargetRollout {
        kind: w.kind,
        name: w.name.clone(),
        state,
        updated_replicas: updated,
        replicas,
        message: Some(progress.message().to_owned()).filter(|m| !m.is_empty()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_name_the_failing_concern() {
        let nf = RestartError::NotFound {
            kind: WorkloadKind::StatefulSet,
            name: "db".into(),
        };
        assert_eq!(nf.reason(), "TargetNotFound");
        assert_eq!(nf.to_string(), "StatefulSet db not found");
        let nm = RestartError::NoMatch {
            kind: WorkloadKind::Deployment,
            selector: DEFAULT_TARGET_SELECTOR.into(),
        };
        assert_eq!(nm.reason(), "TargetNotFound");
        assert!(nm.to_string().contains("type=coreapp"), "{nm}");
    }
}
