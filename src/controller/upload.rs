//! The upload step: compare the bundle with what the API holds (the drift check), wait out the
//! debounce, upload, and read back.

use std::time::Duration;

use super::Context;
use super::status::{UPLOADED, short};
use super::step::{Requeue, StepFailure};
use crate::bundle::Bundle;
use crate::metrics::ResourceLabels;
use crate::onprem::OnPremClient;

/// What the API holds now, read at every pass.
pub async fn observe(client: &OnPremClient) -> Result<Option<String>, StepFailure> {
    client
        .get_webhook_ca()
        .await
        .map_err(StepFailure::mapper(UPLOADED))
}

/// The API holds the bundle after this step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Synced {
    /// It already did.
    UpToDate,
    /// This pass uploaded it; `message` says what it replaced.
    Uploaded { message: String },
}

/// Uploads `bundle` unless `remote` already matches it, once the sources have been quiet for
/// `debounce`. The upload is read back: the webapp stores what it is given, but a proxy or a
/// failover may not.
pub async fn sync(
    ctx: &Context,
    client: &OnPremClient,
    resource: &ResourceLabels,
    key: &str,
    bundle: &Bundle,
    remote: Option<&str>,
    debounce: Duration,
) -> Result<Synced, StepFailure> {
    if remote.is_some_and(|r| bundle.matches(r)) {
        ctx.settle(key);
        return Ok(Synced::UpToDate);
    }
    let wait = ctx.debounce(key, &bundle.sha256, debounce);
    if !wait.is_zero() {
        return Err(StepFailure::halt(
            UPLOADED,
            "Pending",
            format!(
                "waiting {}s for further source changes before uploading",
                wait.as_secs_f64().ceil()
            ),
            Requeue::After(wait),
        ));
    }
    if let Err(e) = client.upload_webhook_ca(&bundle.pem).await {
        ctx.metrics.upload(resource, Some(e.metric_label()));
        return Err(StepFailure::of(UPLOADED, &e));
    }
    match client.get_webhook_ca().await {
        Ok(Some(stored)) if bundle.matches(&stored) => {}
        Ok(_) => {
            let reason = "ReadBackMismatch";
            ctx.metrics.upload(resource, Some(reason));
            return Err(StepFailure::halt(
                UPLOADED,
                reason,
                "the API accepted the upload but holds a different bundle when read back",
                Requeue::Retry,
            ));
        }
        Err(e) => return Err(StepFailure::of(UPLOADED, &e)),
    }
    ctx.settle(key);
    ctx.metrics.upload(resource, None);
    let replaced = if remote.is_some() {
        "replacing a different bundle"
    } else {
        "none was stored"
    };
    Ok(Synced::Uploaded {
        message: format!(
            "uploaded {} certificate(s), sha256 {} ({replaced})",
            bundle.certificates.len(),
            short(&bundle.sha256)
        ),
    })
}
