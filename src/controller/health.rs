//! The look after a rollout and at drift checks: read the bundle back once when a rollout has
//! just completed (a restart must not have lost it), and ask `GET /v1/health` then and at drift
//! checks, never in a loop (the API answers 10 health calls a minute). `ApiHealthy` reports what
//! it said; it never blocks an upload and never rolls anything back.

mod verdict;

use std::time::Duration;

use super::status::{UPLOADED, Verdict, short};
use super::step::{Pass, Requeue, StepFailure};
use super::upload;
use crate::bundle::Bundle;
use crate::crd::ApiHealthStatus;
use crate::onprem::OnPremClient;
use verdict::When;

/// What the look found.
pub struct Checked {
    /// The read-back after a rollout did not find the bundle: `Uploaded` turns False.
    pub read_back: Option<StepFailure>,
    /// The `ApiHealthy` verdict and its status, when this pass asked.
    pub health: Option<(Verdict, ApiHealthStatus)>,
    /// When the next drift check may ask.
    pub next: Duration,
}

/// `just_rolled`: the restart for this bundle completed in this pass. Call only when the
/// targets are settled (rollout complete, or restarts disabled): mid-rollout answers would
/// report nodes that are restarting on purpose.
pub async fn check(
    pass: &Pass<'_>,
    client: &OnPremClient,
    bundle: &Bundle,
    just_rolled: bool,
) -> Checked {
    let Pass {
        wcc,
        ctx,
        resource,
        now,
        ..
    } = *pass;
    let read_back = if just_rolled {
        read_back(client, bundle).await
    } else {
        None
    };
    let drift_check = wcc.spec.drift_check_interval();
    let recorded = wcc.status.as_ref().and_then(|s| s.health.as_ref());
    let last = recorded.and_then(|h| h.checked_at.as_ref()).map(|t| t.0);
    let health = match verdict::when(just_rolled, last, drift_check, now) {
        When::After(wait) => {
            ctx.metrics.api_nodes(resource, recorded);
            return Checked {
                read_back,
                health: None,
                next: wait,
            };
        }
        When::Now => match client.health_once().await {
            Ok(answer) => (
                verdict::judge(&answer),
                verdict::summary(Some(&answer), now),
            ),
            Err(e) => (verdict::unknown(&e), verdict::summary(None, now)),
        },
    };
    ctx.metrics.api_nodes(resource, Some(&health.1));
    tracing::info!(
        namespace = %resource.namespace,
        name = %resource.name,
        after_rollout = just_rolled,
        status = health.0.status_str(),
        reason = %health.0.reason,
        "asked GET /v1/health"
    );
    Checked {
        read_back,
        health: Some(health),
        next: verdict::interval(drift_check),
    }
}

/// `None` when the API still holds `bundle`. A loss is put right by the next pass's drift
/// check, which uploads again; the coreapps are not restarted once more for it, as a restart
/// that loses the bundle would lose it again.
async fn read_back(client: &OnPremClient, bundle: &Bundle) -> Option<StepFailure> {
    let held = match upload::observe(client).await {
        Ok(Some(stored)) if bundle.matches(&stored) => return None,
        Ok(Some(_)) => "a different bundle",
        Ok(None) => "no bundle",
        Err(failure) => return Some(failure),
    };
    Some(StepFailure::halt(
        UPLOADED,
        "LostAfterRestart",
        format!(
            "the API held bundle sha256 {} when the coreapps restarted and holds {held} after \
             the rollout; uploading it again. Coreapps that started without it load it at \
             their next restart",
            short(&bundle.sha256)
        ),
        Requeue::Retry,
    ))
}
