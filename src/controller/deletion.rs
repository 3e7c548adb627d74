//! `deletionPolicy: Delete`: the bundle leaves the API with the resource, and the coreapps
//! restart without it. Held by the finalizer, so it may take several passes (evictions go one
//! pod at a time), but never longer than bounded: a missing credential, an unreachable API or
//! a rollout that does not finish becomes a Warning Event, and the resource goes.

use std::time::Duration;

use jiff::Timestamp;
use kube::runtime::events::EventType;

use super::effects::{DRY_RUN, Live};
use super::report::publish;
use super::restart::restart_without_bundle;
use super::step::Pass;
use super::{api, conflict};
use crate::reason::ConditionReason;

/// How long the DELETE on the API may take in all, retries included: past it, the bundle stays
/// and the resource is released with a Warning.
pub const DELETE_DEADLINE: Duration = Duration::from_secs(60);

/// Whether the finalizer may go.
#[derive(Debug, PartialEq, Eq)]
pub enum Cleanup {
    Done,
    /// Evictions are still to come: look again after this long.
    Again(Duration),
}

pub async fn clean_up(pass: &Pass<'_>, live: Live) -> Cleanup {
    let Pass {
        wcc,
        ctx,
        namespace,
        ..
    } = *pass;
    let since = wcc
        .metadata
        .deletion_timestamp
        .as_ref()
        .map_or_else(Timestamp::now, |t| t.0);
    let first = ctx.begin_cleanup(&pass.key);
    if first && !delete_bundle(pass, live).await {
        return Cleanup::Done;
    }
    let warn = |reason: &'static str, note: String| async move {
        publish(ctx, wcc, EventType::Warning, reason, note).await;
        Cleanup::Done
    };
    match restart_without_bundle(live, ctx, wcc, namespace, since, first).await {
        Ok(false) => Cleanup::Done,
        Ok(true) => {
            let elapsed = Duration::try_from(Timestamp::now().duration_since(since))
                .unwrap_or(Duration::ZERO);
            if elapsed > wcc.spec.restart.rollout_timeout() {
                let note = "the restart without the bundle did not finish within \
                            restart.rolloutTimeout; releasing the resource"
                    .to_owned();
                warn("RolloutTimeout", note).await
            } else {
                Cleanup::Again(ctx.settings.progress_interval)
            }
        }
        // Workloads that no longer exist need no restart.
        Err(e) if e.reason() == "TargetNotFound" => Cleanup::Done,
        Err(e) => warn(e.reason(), e.to_string()).await,
    }
}

/// The DELETE, unless the resource must leave the API alone. Returns whether the bundle was
/// deleted (so that the coreapps restart without it).
async fn delete_bundle(pass: &Pass<'_>, live: Live) -> bool {
    let Pass { wcc, ctx, .. } = *pass;
    let release = |note: String| async move {
        publish(ctx, wcc, EventType::Normal, "Released", note).await;
        false
    };
    if wcc.spec.suspend {
        return release(
            "suspended: released without deleting the bundle from the API or restarting".into(),
        )
        .await;
    }
    if let Err(conflict) = conflict::own_api(wcc, &ctx.resources()) {
        return release(format!("released without a DELETE: {}", conflict.message)).await;
    }
    let delete = async {
        let (client, _) = api::connect(pass)
            .await
            .map_err(|failure| failure.message)?;
        live.delete(&client).await.map_err(|e| e.to_string())
    };
    let outcome = match tokio::time::timeout(DELETE_DEADLINE, delete).await {
        Ok(outcome) => outcome,
        Err(_) => Err(format!("no answer within {}s", DELETE_DEADLINE.as_secs())),
    };
    if let Err(e) = outcome {
        let note = format!("could not delete the bundle from the API; it stays there: {e}");
        publish(ctx, wcc, EventType::Warning, "CleanupFailed", note).await;
        return false;
    }
    let note = "deleted the webhook CA bundle from the API (deletionPolicy: Delete)".to_owned();
    publish(ctx, wcc, EventType::Normal, "Deleted", note).await;
    true
}

/// A dry run's cleanup: one Event (per process) that says what a live operator would do; the
/// finalizer stays, so that the cleanup still happens once the operator runs without
/// `--dry-run`.
pub async fn would_clean_up(pass: &Pass<'_>) {
    let Pass { wcc, ctx, .. } = *pass;
    if !ctx.begin_cleanup(&pass.key) {
        return;
    }
    let what = if wcc.spec.suspend {
        "would release the resource without deleting the bundle (suspended)"
    } else {
        "would delete the webhook CA bundle from the API and restart the targets without it \
         (deletionPolicy: Delete)"
    };
    let note = format!("{what}; the finalizer stays until an operator without --dry-run acts");
    publish(ctx, wcc, EventType::Normal, DRY_RUN, note).await;
}
