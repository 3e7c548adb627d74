//! `deletionPolicy: Delete`: the bundle leaves the API with the resource, and the coreapps
//! restart without it.

use kube::runtime::events::EventType;

use super::Context;
use super::api;
use super::report::publish;
use super::restart::restart_without_bundle;
use crate::crd::WebhookCaCertificate;
use crate::reason::ConditionReason;

/// Removes the bundle from the API and restarts the targets. Best effort by design: a missing
/// credential Secret or an unreachable API must not hold the resource forever, so failures
/// become a Warning Event and deletion goes on.
pub async fn clean_up(ctx: &Context, wcc: &WebhookCaCertificate, namespace: &str, key: &str) {
    let deleted = match api::connect(ctx, wcc, namespace, key).await {
        Ok((client, _)) => client.delete_webhook_ca().await.map_err(|e| e.to_string()),
        Err(failure) => Err(failure.message),
    };
    if let Err(e) = deleted {
        let note = format!("could not delete the bundle from the API; it stays there: {e}");
        publish(ctx, wcc, EventType::Warning, "CleanupFailed", note).await;
        return;
    }
    let note = "deleted the webhook CA bundle from the API (deletionPolicy: Delete)".to_owned();
    publish(ctx, wcc, EventType::Normal, "Deleted", note).await;
    // Workloads that no longer exist need no restart; any other failure is reported.
    if let Err(e) = restart_without_bundle(ctx, wcc, namespace).await
        && e.reason() != "TargetNotFound"
    {
        publish(ctx, wcc, EventType::Warning, e.reason(), e.to_string()).await;
    }
}
