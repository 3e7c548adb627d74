//! One reconcile of a `WebhookCaCertificate`, as a list of typed steps: sources -> bundle ->
//! API client -> drift check -> upload -> restart and rollout -> read-back and health -> status.
//! Level-based: every step looks at what is, not at what happened, so a crash anywhere is
//! repaired by the next pass. A step that cannot go on returns a [`StepFailure`]; its condition,
//! reason and requeue are recorded in one place (`Report::stopped`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};

use super::deletion::Cleanup;
use super::error::ReconcileError;
use super::finalizer::{FINALIZER, align_finalizer, remove_finalizer};
use super::report::Report;
use super::sources::resolve_sources;
use super::status::{BUNDLE_VALID, READY};
use super::step::{Pass, Requeue, StepFailure};
use super::{Context, api, conflict, deletion, health, restart, upload};
use crate::bundle::{self, SourceInput};
use crate::crd::WebhookCaCertificate;
use crate::metrics::ResourceLabels;
use crate::reason::ConditionReason;

pub async fn reconcile(
    wcc: Arc<WebhookCaCertificate>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let started = Instant::now();
    let namespace = wcc.namespace().ok_or(ReconcileError::NoNamespace)?;
    let resource = ResourceLabels::new(&namespace, &wcc.name_any());
    let wcc = ctx.with_written_status(&resource.key(), &wcc);
    let result = run(&wcc, &ctx, &namespace, &resource).await;
    if wcc.metadata.deletion_timestamp.is_none() {
        let failure = result.as_ref().err().map(ConditionReason::reason);
        ctx.metrics.reconcile(&resource, failure, started.elapsed());
        ctx.track(&resource);
    }
    // Deleted while this pass ran: its Delete event may already have been handled.
    if !ctx.holds(&resource) {
        ctx.forget(&resource);
    }
    result
}

pub fn error_policy(
    wcc: Arc<WebhookCaCertificate>,
    error: &ReconcileError,
    ctx: Arc<Context>,
) -> Action {
    tracing::warn!(
        namespace = wcc.namespace().unwrap_or_default(),
        name = wcc.name_any(),
        error = %error,
        "reconcile failed; retrying"
    );
    Action::requeue(ctx.settings.retry_interval.min(Duration::from_secs(15)))
}

async fn run(
    wcc: &WebhookCaCertificate,
    ctx: &Context,
    namespace: &str,
    resource: &ResourceLabels,
) -> Result<Action, ReconcileError> {
    let pass = Pass {
        wcc,
        ctx,
        namespace,
        resource,
        key: resource.key(),
        now: Timestamp::now(),
    };
    let api: Api<WebhookCaCertificate> = Api::namespaced(ctx.client.clone(), namespace);
    let finalizer_error = |source| ReconcileError::Finalizer {
        key: pass.key.clone(),
        source,
    };
    if wcc.metadata.deletion_timestamp.is_some() {
        if wcc.finalizers().iter().any(|f| f == FINALIZER) {
            if let Cleanup::Again(after) = deletion::clean_up(&pass).await {
                return Ok(Action::requeue(after));
            }
            remove_finalizer(&api, wcc).await.map_err(finalizer_error)?;
        }
        return Ok(Action::await_change());
    }
    if align_finalizer(&api, wcc).await.map_err(finalizer_error)? {
        // The patch bumps resourceVersion; the next pass starts from the new object.
        return Ok(Action::requeue(Duration::ZERO));
    }

    let mut report = Report::new(ctx.settings.retry_interval);
    if let Err(failure) = steps(&pass, &mut report).await {
        report.stopped(failure);
    }
    let ready = report.decide_ready(wcc.spec.restart.wait_for_rollout);
    ctx.metrics.ready(resource, ready);
    report.publish_events(ctx, wcc).await;
    let written = report
        .write_status(&api, wcc, pass.now)
        .await
        .map_err(|source| ReconcileError::Status {
            key: pass.key.clone(),
            source,
        })?;
    ctx.wrote_status(&pass.key, wcc, written);
    Ok(Action::requeue(
        report.requeue_after(wcc.spec.drift_check_interval()),
    ))
}

/// The pipeline. Each step either hands its result to the next or stops the pass: nothing
/// later runs on a bundle that is not good.
async fn steps(pass: &Pass<'_>, report: &mut Report) -> Result<(), StepFailure> {
    let Pass { wcc, ctx, now, .. } = *pass;
    let spec = &wcc.spec;
    let sources = resolve_sources(&ctx.client, pass.namespace, &spec.sources)
        .await
        .map_err(StepFailure::mapper(BUNDLE_VALID))?;
    let inputs: Vec<SourceInput<'_>> = sources
        .iter()
        .map(|s| SourceInput {
            source: &s.name,
            pem: &s.pem,
        })
        .collect();
    let bundle =
        bundle::build(&inputs, &spec.policy.at(now)).map_err(StepFailure::mapper(BUNDLE_VALID))?;
    report.bundle_built(wcc, &bundle, inputs.len(), now);
    ctx.metrics.bundle(pass.resource, &bundle);

    if spec.suspend {
        return Err(StepFailure::halt(
            READY,
            "Suspended",
            "spec.suspend is true: no uploads, deletions or restarts",
            Requeue::OnChange,
        ));
    }

    conflict::own_api(wcc, &ctx.resources())?;
    let (client, tls) = api::connect(pass).await?;
    report.verdict(tls);
    let remote = upload::observe(&client).await?;
    report.drift_checked(now);
    let synced = upload::sync(pass, &client, &bundle, remote.as_deref()).await?;
    let drift_since = synced.drift_since();
    report.synced(&bundle.sha256, synced, now);

    let rollout = restart::step(pass, &bundle.sha256, drift_since).await?;
    // Mid-rollout, nodes restart on purpose: the look waits for the targets to settle.
    let settled = rollout.verdict.status;
    let just_rolled = rollout.completed_now;
    report.rolled(rollout);
    if settled {
        report.checked(health::check(pass, &client, &bundle, just_rolled).await);
    }
    Ok(())
}
