//! kubectl's rule for "this Deployment has rolled out", for tests that roll workloads.

use k8s_openapi::api::apps::v1::Deployment;

/// `Ok` when `kubectl rollout status` would report success, otherwise what it still waits for:
/// the controller has seen the latest spec, every desired replica is updated, no old replica is
/// left, and every updated replica is available.
pub fn rollout_status(deployment: &Deployment) -> Result<(), String> {
    let generation = deployment.metadata.generation.unwrap_or(0);
    let status = deployment.status.clone().unwrap_or_default();
    let observed = status.observed_generation.unwrap_or(0);
    if observed < generation {
        return Err(format!(
            "observedGeneration {observed} behind generation {generation}"
        ));
    }
    let deadline_exceeded = status.conditions.iter().flatten().any(|c| {
        c.type_.as_deref() == Some("Progressing")
            && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    });
    if deadline_exceeded {
        return Err("progress deadline exceeded".to_owned());
    }
    let desired = deployment.spec.replicas.unwrap_or(1);
    let updated = status.updated_replicas.unwrap_or(0);
    let total = status.replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    if updated < desired {
        return Err(format!("{updated} of {desired} replicas updated"));
    }
    if total > updated {
        return Err(format!(
            "{} old replicas pending termination",
            total - updated
        ));
    }
    if available < updated {
        return Err(format!(
            "{available} of {updated} updated replicas available"
        ));
    }
    Ok(())
}
