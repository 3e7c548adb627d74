//! The finalizer, held only while `deletionPolicy: Delete` asks for cleanup on the API.

use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::crd::{DeletionPolicy, WebhookCaCertificate};

/// Added for `deletionPolicy: Delete`, removed again when the policy changes to `Retain`, so a
/// finalizer never outlives the reason for it.
pub const FINALIZER: &str = "webhookca.io/cleanup";

/// Adds or removes the finalizer so that it matches the deletion policy. Returns whether it
/// changed anything.
pub async fn align_finalizer(
    api: &Api<WebhookCaCertificate>,
    wcc: &WebhookCaCertificate,
) -> Result<bool, kube::Error> {
    let has = wcc.finalizers().iter().any(|f| f == FINALIZER);
    let wants = wcc.spec.deletion_policy == DeletionPolicy::Delete;
    match (has, wants) {
        (false, true) => {
            let mut finalizers = wcc.finalizers().to_vec();
            finalizers.push(FINALIZER.to_owned());
            patch_finalizers(api, wcc, finalizers).await.map(|()| true)
        }
        (true, false) => remove_finalizer(api, wcc).await.map(|()| true),
        _ => Ok(false),
    }
}

/// Removes only this operator's finalizer, keeping any other.
pub async fn remove_finalizer(
    api: &Api<WebhookCaCertificate>,
    wcc: &WebhookCaCertificate,
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
