//! The finalizer, held only while `deletionPolicy: Delete` asks for cleanup on the API.

use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use super::effects::Live;
use crate::crd::{DeletionPolicy, WebhookCaCertificate};

/// Added for `deletionPolicy: Delete`, removed again when the policy changes to `Retain`, so a
/// finalizer never outlives the reason for it.
pub const FINALIZER: &str = "webhookca.io/cleanup";

/// The change the finalizer needs to match the deletion policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Add,
    Remove,
}

impl Change {
    /// What a dry run reports instead of making the change.
    pub fn would(self) -> String {
        match self {
            Change::Add => format!("would add the finalizer {FINALIZER} (deletionPolicy: Delete)"),
            Change::Remove => {
                format!("would remove the finalizer {FINALIZER} (deletionPolicy: Retain)")
            }
        }
    }
}

/// Whether the finalizer must be added or removed to match the deletion policy.
pub fn needed_change(wcc: &WebhookCaCertificate) -> Option<Change> {
    let has = wcc.finalizers().iter().any(|f| f == FINALIZER);
    let wants = wcc.spec.deletion_policy == DeletionPolicy::Delete;
    match (has, wants) {
        (false, true) => Some(Change::Add),
        (true, false) => Some(Change::Remove),
        _ => None,
    }
}

/// Adds or removes the finalizer so that it matches the deletion policy. Returns whether it
/// changed anything.
pub async fn align_finalizer(
    api: &Api<WebhookCaCertificate>,
    wcc: &WebhookCaCertificate,
    live: Live,
) -> Result<bool, kube::Error> {
    match needed_change(wcc) {
        Some(Change::Add) => {
            let mut finalizers = wcc.finalizers().to_vec();
            finalizers.push(FINALIZER.to_owned());
            patch_finalizers(api, wcc, finalizers).await.map(|()| true)
        }
        Some(Change::Remove) => remove_finalizer(api, wcc, live).await.map(|()| true),
        None => Ok(false),
    }
}

/// Removes only this operator's finalizer, keeping any other.
pub async fn remove_finalizer(
    api: &Api<WebhookCaCertificate>,
    wcc: &WebhookCaCertificate,
    _live: Live,
) -> Result<(), kube::Error> {
    let finalizers: Vec<String> = wcc
        .finalizers()
        .iter()
        .filter(|f| f.as_str() != FINALIZER)
        .cloned()
        .collect();
    patch_finalizers(api, wcc, finalizers).await
}

/// A merge patch that carries the resourceVersion it was computed from, which makes the write
/// conditional: a concurrent change to the finalizers makes it fail (and the reconcile retry)
/// instead of dropping someone else's entry.
async fn patch_finalizers(
    api: &Api<WebhookCaCertificate>,
    wcc: &WebhookCaCertificate,
    finalizers: Vec<String>,
) -> Result<(), kube::Error> {
    let patch = json!({
        "metadata": {"resourceVersion": wcc.resource_version(), "finalizers": finalizers}
    });
    api.patch(
        &wcc.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map(|_| ())
}
