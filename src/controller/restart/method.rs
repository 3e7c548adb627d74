//! Everything that differs between restart methods, one arm per method: adding a method is a
//! change to this file and to the CRD's `RestartMethod`.

use jiff::Timestamp;

use super::evict::{EvictStep, evict_step};
use super::progress::Progress;
use super::workload::rollout_restart;
use super::{RestartError, Workload};
use crate::controller::Context;
use crate::controller::effects::Live;
use crate::crd::RestartMethod;
use crate::reason::ConditionReason;

/// Indices of the targets owed a restart for bundle `sha`. `recorded` says whether status
/// already records a rollout for this bundle.
pub fn owed(method: RestartMethod, targets: &[Workload], recorded: bool, sha: &str) -> Vec<usize> {
    match method {
        // The pod template carries the hash it was restarted for.
        RestartMethod::RolloutRestart => targets
            .iter()
            .enumerate()
            .filter(|(_, w)| w.template_hash.as_deref() != Some(sha))
            .map(|(i, _)| i)
            .collect(),
        // Evictions leave no mark on the spec: owed until status records the rollout.
        RestartMethod::Evict if recorded => Vec::new(),
        RestartMethod::Evict => (0..targets.len()).collect(),
        RestartMethod::None => Vec::new(),
    }
}

/// Starts the restart of `owed`: stamps pod templates, or nothing yet for evictions (they
/// happen one pod per pass in [`advance`]). Counted in the restart metric per target, whatever
/// the method.
pub async fn begin(
    _live: Live,
    method: RestartMethod,
    ctx: &Context,
    namespace: &str,
    owed: &[&Workload],
    sha: &str,
    now: Timestamp,
) -> Result<(), RestartError> {
    for w in owed {
        let result = match method {
            RestartMethod::RolloutRestart => {
                rollout_restart(&ctx.client, namespace, w, sha, now).await
            }
            RestartMethod::Evict | RestartMethod::None => Ok(()),
        };
        let failure = result.as_ref().err().map(ConditionReason::reason);
        ctx.metrics.restart(namespace, w.kind, method, failure);
        result?;
    }
    Ok(())
}

/// One look at a target's restart, and for evictions one push of it.
pub struct Advance {
    pub progress: Progress,
    /// Evictions still to come, whatever the workload's own status says.
    pub waiting: bool,
}

/// `live`: `None` in a dry run, which never evicts; the caller reports what would happen.
pub async fn advance(
    live: Option<Live>,
    method: RestartMethod,
    ctx: &Context,
    namespace: &str,
    w: &Workload,
    just_begun: bool,
    started_at: Timestamp,
) -> Result<Advance, RestartError> {
    let settled = |progress| Advance {
        progress,
        waiting: false,
    };
    let waiting = |message| Advance {
        progress: in_progress(message),
        waiting: true,
    };
    Ok(match method {
        // Just patched: the workload's status has not seen the new template yet.
        RestartMethod::RolloutRestart if just_begun => {
            settled(in_progress("restart requested".to_owned()))
        }
        RestartMethod::RolloutRestart | RestartMethod::None => settled(w.progress.clone()),
        RestartMethod::Evict if live.is_none() => settled(w.progress.clone()),
        RestartMethod::Evict => match evict_step(&ctx.client, namespace, w, started_at).await? {
            EvictStep::Done => settled(w.progress.clone()),
            EvictStep::Evicted { pod } => waiting(format!("evicted pod {pod}")),
            EvictStep::Waiting { reason } => waiting(reason),
        },
    })
}

fn in_progress(message: String) -> Progress {
    Progress::InProgress {
        updated: 0,
        replicas: 0,
        message,
    }
}
