//! The upload step: compare the bundle with what the API holds (the drift check), wait out the
//! debounce, upload, and read back.

use std::time::Duration;

use jiff::Timestamp;

use super::status::{UPLOADED, short};
use super::step::{Pass, Requeue, StepFailure};
use crate::bundle::Bundle;
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
    /// This pass uploaded it; `message` says what it replaced. `drift_since` is set when it put
    /// back the same bundle over one someone else stored: coreapps that started after that time
    /// may run with the foreign bundle.
    Uploaded {
        message: String,
        drift_since: Option<Timestamp>,
    },
    /// Dry run: the API does not hold the bundle, and `message` says what upload would fix it.
    WouldUpload { message: String },
}

impl Synced {
    pub fn drift_since(&self) -> Option<Timestamp> {
        match self {
            Synced::UpToDate | Synced::WouldUpload { .. } => None,
            Synced::Uploaded { drift_since, .. } => *drift_since,
        }
    }
}

/// What [`plan`] decided: nothing to send, or an upload now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    UpToDate,
    Upload,
}

/// Whether `bundle` is to be uploaded now: not when `remote` already matches it, and only once
/// the sources have been quiet for `debounce` (but no longer than `max_delay`; not at all when
/// the API holds no bundle). A wait stops the pass.
pub fn plan(pass: &Pass<'_>, bundle: &Bundle, remote: Option<&str>) -> Result<Plan, StepFailure> {
    let Pass { ctx, key, .. } = pass;
    let spec = &pass.wcc.spec;
    if remote.is_some_and(|r| bundle.matches(r)) {
        ctx.settle(key);
        return Ok(Plan::UpToDate);
    }
    // A dry run reports at once: nothing is sent, so there is nothing to debounce.
    let wait = if remote.is_none() || ctx.live().is_none() {
        Duration::ZERO
    } else {
        ctx.debounce(key, &bundle.sha256, spec.debounce(), spec.max_delay())
    };
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
    Ok(Plan::Upload)
}

/// Carries out `plan`. The upload is read back: the webapp stores what it is given, but a
/// proxy or a failover may not.
pub async fn sync(
    pass: &Pass<'_>,
    client: &OnPremClient,
    bundle: &Bundle,
    remote: Option<&str>,
    plan: Plan,
) -> Result<Synced, StepFailure> {
    let Pass {
        ctx, resource, key, ..
    } = pass;
    if plan == Plan::UpToDate {
        return Ok(Synced::UpToDate);
    }
    let Some(live) = ctx.live() else {
        return Ok(Synced::WouldUpload {
            message: format!(
                "would upload {} certificate(s), sha256 {}, replacing {}",
                bundle.certificates.len(),
                short(&bundle.sha256),
                describe_remote(remote)
            ),
        });
    };
    if let Err(e) = live.upload(client, &bundle.pem).await {
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
    let status = pass.wcc.status.as_ref();
    let drift_since = status
        .filter(|s| remote.is_some() && s.uploaded_sha256.as_deref() == Some(&bundle.sha256))
        .and_then(|s| s.last_in_sync_time.as_ref())
        .map(|t| t.0);
    Ok(Synced::Uploaded {
        message: format!(
            "uploaded {} certificate(s), sha256 {} ({replaced})",
            bundle.certificates.len(),
            short(&bundle.sha256)
        ),
        drift_since,
    })
}

/// What the API holds, as a dry run names it: the hash of its canonical form.
fn describe_remote(remote: Option<&str>) -> String {
    match remote.map(crate::bundle::canonicalize) {
        None => "none stored".to_owned(),
        Some(Ok(stored)) => format!("sha256 {}", short(&stored.sha256)),
        Some(Err(_)) => "a stored bundle that is not valid PEM".to_owned(),
    }
}
