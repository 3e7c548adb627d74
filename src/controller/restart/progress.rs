//! Whether a workload has finished rolling out, decided from its object alone by the rules of
//! `kubectl rollout status` (k8s.io/kubectl `pkg/polymorphichelpers/rollout_status.go`), with
//! the observedGeneration check that kube-runtime's `is_deployment_completed` lacks: right after a
//! patch the status still describes the previous template and would read as done.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};

/// Where a rollout stands. Messages are short sentences for status conditions and Events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Rolled out, or not trackable (an `OnDelete` update strategy): `message` says which.
    Complete { message: String },
    /// Still rolling: `updated` of `replicas` pods run the current template.
    InProgress {
        updated: i32,
        replicas: i32,
        message: String,
    },
    /// The Deployment controller gave up (`ProgressDeadlineExceeded`).
    Failed { message: String },
}

impl Progress {
    pub fn is_complete(&self) -> bool {
        matches!(self, Progress::Complete { .. })
    }

    pub fn message(&self) -> &str {
        match self {
            Progress::Complete { message }
            | Progress::InProgress { message, .. }
            | Progress::Failed { message } => message,
        }
    }
}

/// A controller that has not yet written an observedGeneration has not seen the object at all.
fn spec_observed(generation: Option<i64>, observed: Option<i64>) -> bool {
    observed.is_some_and(|o| o >= generation.unwrap_or(0))
}

fn in_progress(updated: i32, replicas: i32, message: String) -> Progress {
    Progress::InProgress {
        updated,
        replicas,
        message,
    }
}

pub fn deployment_progress(d: &Deployment) -> Progress {
    let status = d.status.clone().unwrap_or_default();
    let updated = status.updated_replicas.unwrap_or(0);
    // The apiserver defaults spec.replicas to 1; kubectl skips the check when it is absent,
    // which only happens for objects that never went through the apiserver.
    let desired = d.spec.replicas;
    let replicas = desired.unwrap_or(updated);
    if !spec_observed(d.metadata.generation, status.observed_generation) {
        return in_progress(
            updated,
            replicas,
            "waiting for the Deployment controller to observe the new template".to_owned(),
        );
    }
    let timed_out = status.conditions.iter().flatten().find(|c| {
        c.type_.as_deref() == Some("Progressing")
            && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    });
    if let Some(cond) = timed_out {
        let detail = cond.message.as_deref().unwrap_or("no message");
        return Progress::Failed {
            message: format!("progress deadline exceeded: {detail}"),
        };
    }
    if let Some(desired) = desired
        && updated < desired
    {
        return in_progress(
            updated,
            replicas,
            format!("{updated} of {desired} new replicas updated"),
        );
    }
    let total = status.replicas.unwrap_or(0);
    if total > updated {
        return in_progress(
            updated,
            replicas,
            format!("{} old replicas pending termination", total - updated),
        );
    }
    let available = status.available_replicas.unwrap_or(0);
    if available < updated {
        return in_progress(
            updated,
            replicas,
            format!("{available} of {updated} updated replicas available"),
        );
    }
    Progress::Complete {
        message: format!("{updated} of {replicas} replicas updated and available"),
    }
}

pub fn statefulset_progress(s: &StatefulSet) -> Progress {
    let spec = &s.spec;
    let status = s.status.clone().unwrap_or_default();
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    if strategy.type_.as_deref().unwrap_or("RollingUpdate") != "RollingUpdate" {
        return untrackable("StatefulSet", strategy.type_.as_deref());
    }
    let updated = status.updated_replicas.unwrap_or(0);
    let desired = spec.replicas.unwrap_or(1);
    if !spec_observed(s.metadata.generation, status.observed_generation) {
        return in_progress(
            updated,
            desired,
            "waiting for the StatefulSet controller to observe the new template".to_owned(),
        );
    }
    let ready = status.ready_replicas.unwrap_or(0);
    if ready < desired {
        return in_progress(
            updated,
            desired,
            format!("{} of {desired} pods not ready", desired - ready),
        );
    }
    let partition = strategy
        .rolling_update
        .and_then(|r| r.partition)
        .unwrap_or(0)
        .clamp(0, desired);
    let wanted = desired - partition;
    if updated < wanted {
        return in_progress(
            updated,
            desired,
            format!("{updated} of {wanted} pods updated"),
        );
    }
    // With a partition the pods below it stay at the old revision on purpose: the revisions
    // never converge, and kubectl calls the partitioned rollout complete.
    if partition > 0 {
        return Progress::Complete {
            message: format!(
                "partitioned rollout complete: {updated} pods updated, {partition} held by the partition"
            ),
        };
    }
    let current = status.current_revision.as_deref().unwrap_or_default();
    let target = status.update_revision.as_deref().unwrap_or_default();
    if current != target {
        return in_progress(
            updated,
            desired,
            format!("{updated} pods at revision {target}, waiting for the update to complete"),
        );
    }
    Progress::Complete {
        message: format!("{desired} pods at revision {current}"),
    }
}

pub fn daemonset_progress(d: &DaemonSet) -> Progress {
    let strategy = d.spec.update_strategy.clone().unwrap_or_default();
    if strategy.type_.as_deref().unwrap_or("RollingUpdate") != "RollingUpdate" {
        return untrackable("DaemonSet", strategy.type_.as_deref());
    }
    let status = d.status.clone().unwrap_or_default();
    let desired = status.desired_number_scheduled;
    let updated = status.updated_number_scheduled.unwrap_or(0);
    if !spec_observed(d.metadata.generation, status.observed_generation) {
        return in_progress(
            updated,
            desired,
            "waiting for the DaemonSet controller to observe the new template".to_owned(),
        );
    }
    if updated < desired {
        return in_progress(
            updated,
            desired,
            format!("{updated} of {desired} new pods updated"),
        );
    }
    let available = status.number_available.unwrap_or(0);
    if available < desired {
        return in_progress(
            updated,
            desired,
            format!("{available} of {desired} updated pods available"),
        );
    }
    Progress::Complete {
        message: format!("{desired} pods updated and available"),
    }
}

/// kubectl refuses to follow anything but RollingUpdate and reports it as done: pods of an
/// `OnDelete` workload change only when someone deletes them.
fn untrackable(kind: &str, strategy: Option<&str>) -> Progress {
    Progress::Complete {
        message: format!(
            "{kind} uses the {} update strategy: its rollout cannot be tracked",
            strategy.unwrap_or("unknown")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn from<T: serde::de::DeserializeOwned>(v: Value) -> T {
        serde_json::from_value(v).expect("a literal workload")
    }

    fn deployment(generation: i64, replicas: i32, status: Value) -> Deployment {
        from(json!({
            "metadata": { "name": "coreapp", "generation": generation },
            "spec": {
                "replicas": replicas,
                "selector": { "matchLabels": { "app": "coreapp" } },
                "template": { "metadata": { "labels": { "app": "coreapp" } } }
            },
            "status": status
        }))
    }

    fn assert_in_progress(p: &Progress, updated: i32, replicas: i32, needle: &str) {
        match p {
            Progress::InProgress {
                updated: u,
                replicas: r,
                message,
            } => {
                assert_eq!((*u, *r), (updated, replicas), "{message}");
                assert!(message.contains(needle), "{message:?} lacks {needle:?}");
            }
            other => panic!("expected InProgress ({needle}), got {other:?}"),
        }
    }

    #[test]
    fn deployment_done_when_every_replica_is_updated_and_available() {
        let d = deployment(
            3,
            2,
            json!({ "observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2 }),
        );
        let p = deployment_progress(&d);
        assert!(p.is_complete(), "{p:?}");
        assert!(p.message().contains("2 of 2"), "{p:?}");
    }

    #[test]
    fn deployment_with_an_unobserved_generation_is_not_done_even_if_the_counts_are() {
        // Right after a template patch: the counts still describe the previous ReplicaSet.
        let d = deployment(
            4,
            2,
            json!({ "observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2 }),
        );
        assert_in_progress(&deployment_progress(&d), 2, 2, "observe");
    }

    #[test]
    fn deployment_without_status_is_not_done() {
        let d = deployment(1, 1, Value::Null);
        assert_in_progress(&deployment_progress(&d), 0, 1, "observe");
    }

    #[test]
    fn deployment_waits_for_updated_replicas() {
        let d = deployment(
            2,
            3,
            json!({ "observedGeneration": 2, "replicas": 4, "updatedReplicas": 1, "availableReplicas": 3 }),
        );
        assert_in_progress(&deployment_progress(&d), 1, 3, "1 of 3 new replicas");
    }

    #[test]
    fn deployment_waits_for_old_replicas_to_terminate() {
        let d = deployment(
            2,
            2,
            json!({ "observedGeneration": 2, "replicas": 3, "updatedReplicas": 2, "availableReplicas": 2 }),
        );
        assert_in_progress(&deployment_progress(&d), 2, 2, "1 old replicas pending");
    }

    #[test]
    fn deployment_waits_for_updated_replicas_to_become_available() {
        let d = deployment(
            2,
            2,
            json!({ "observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 1 }),
        );
        assert_in_progress(
            &deployment_progress(&d),
            2,
            2,
            "1 of 2 updated replicas available",
        );
    }

    #[test]
    fn deployment_past_its_progress_deadline_has_failed() {
        let d = deployment(
            2,
            2,
            json!({
                "observedGeneration": 2, "replicas": 3, "updatedReplicas": 1, "availableReplicas": 2,
                "conditions": [
                    { "type": "Available", "status": "True", "reason": "MinimumReplicasAvailable" },
                    { "type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                      "message": "ReplicaSet \"coreapp-7d\" has timed out progressing." }
                ]
            }),
        );
        match deployment_progress(&d) {
            Progress::Failed { message } => {
                assert!(message.contains("deadline"), "{message}");
                assert!(message.contains("coreapp-7d"), "{message}");
            }
            other => panic!("expected Failed, got {other:?}"),
        }
    }

    #[test]
    fn deployment_progressing_normally_is_not_failed() {
        let d = deployment(
            2,
            2,
            json!({
                "observedGeneration": 2, "replicas": 3, "updatedReplicas": 1, "availableReplicas": 2,
                "conditions": [{ "type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated" }]
            }),
        );
        assert_in_progress(&deployment_progress(&d), 1, 2, "1 of 2");
    }

    fn statefulset(generation: i64, replicas: i32, strategy: Value, status: Value) -> StatefulSet {
        from(json!({
            "metadata": { "name": "db", "generation": generation },
            "spec": {
                "replicas": replicas,
                "serviceName": "db",
                "selector": { "matchLabels": { "app": "db" } },
                "template": { "metadata": { "labels": { "app": "db" } } },
                "updateStrategy": strategy
            },
            "status": status
        }))
    }

    fn rolling(partition: i32) -> Value {
        json!({ "type": "RollingUpdate", "rollingUpdate": { "partition": partition } })
    }

    #[test]
    fn statefulset_done_when_ready_and_revisions_agree() {
        let s = statefulset(
            2,
            3,
            rolling(0),
            json!({ "observedGeneration": 2, "replicas": 3, "readyReplicas": 3, "updatedReplicas": 3,
                    "currentRevision": "db-2", "updateRevision": "db-2" }),
        );
        let p = statefulset_progress(&s);
        assert!(p.is_complete(), "{p:?}");
        assert!(p.message().contains("db-2"), "{p:?}");
    }

    #[test]
    fn statefulset_with_an_unobserved_generation_is_not_done() {
        let s = statefulset(
            3,
            3,
            rolling(0),
            json!({ "observedGeneration": 2, "replicas": 3, "readyReplicas": 3, "updatedReplicas": 3,
                    "currentRevision": "db-2", "updateRevision": "db-2" }),
        );
        assert_in_progress(&statefulset_progress(&s), 3, 3, "observe");
    }

    #[test]
    fn statefulset_waits_for_ready_replicas() {
        let s = statefulset(
            2,
            3,
            rolling(0),
            json!({ "observedGeneration": 2, "replicas": 3, "readyReplicas": 2, "updatedReplicas": 3,
                    "currentRevision": "db-2", "updateRevision": "db-2" }),
        );
        assert_in_progress(&statefulset_progress(&s), 3, 3, "1 of 3 pods not ready");
    }

    #[test]
    fn statefulset_waits_until_the_revisions_agree() {
        let s = statefulset(
            2,
            3,
            rolling(0),
            json!({ "observedGeneration": 2, "replicas": 3, "readyReplicas": 3, "updatedReplicas": 3,
                    "currentRevision": "db-1", "updateRevision": "db-2" }),
        );
        assert_in_progress(&statefulset_progress(&s), 3, 3, "db-2");
    }

    #[test]
    fn statefulset_waits_for_updated_pods_above_the_partition() {
        let s = statefulset(
            2,
            4,
            rolling(1),
            json!({ "observedGeneration": 2, "replicas": 4, "readyReplicas": 4, "updatedReplicas": 2,
                    "currentRevision": "db-1", "updateRevision": "db-2" }),
        );
        assert_in_progress(&statefulset_progress(&s), 2, 4, "2 of 3 pods updated");
    }

    #[test]
    fn statefulset_partitioned_rollout_is_done_with_old_revisions_below_the_partition() {
        let s = statefulset(
            2,
            4,
            rolling(1),
            json!({ "observedGeneration": 2, "replicas": 4, "readyReplicas": 4, "updatedReplicas": 3,
                    "currentRevision": "db-1", "updateRevision": "db-2" }),
        );
        let p = statefulset_progress(&s);
        assert!(p.is_complete(), "{p:?}");
        assert!(p.message().contains("partition"), "{p:?}");
    }

    #[test]
    fn statefulset_on_delete_cannot_be_tracked_and_counts_as_complete() {
        let s = statefulset(
            2,
            3,
            json!({ "type": "OnDelete" }),
            json!({ "observedGeneration": 1, "replicas": 3, "readyReplicas": 0,
                    "currentRevision": "db-1", "updateRevision": "db-2" }),
        );
        let p = statefulset_progress(&s);
        assert!(p.is_complete(), "{p:?}");
        assert!(p.message().contains("OnDelete"), "{p:?}");
    }

    fn daemonset(generation: i64, strategy: Value, status: Value) -> DaemonSet {
        from(json!({
            "metadata": { "name": "agent", "generation": generation },
            "spec": {
                "selector": { "matchLabels": { "app": "agent" } },
                "template": { "metadata": { "labels": { "app": "agent" } } },
                "updateStrategy": strategy
            },
            "status": status
        }))
    }

    fn ds_status(observed: i64, desired: i32, updated: i32, available: i32) -> Value {
        json!({
            "observedGeneration": observed, "desiredNumberScheduled": desired,
            "currentNumberScheduled": desired, "numberMisscheduled": 0, "numberReady": available,
            "updatedNumberScheduled": updated, "numberAvailable": available
        })
    }

    #[test]
    fn daemonset_done_when_every_node_runs_an_available_updated_pod() {
        let d = daemonset(5, json!({ "type": "RollingUpdate" }), ds_status(5, 2, 2, 2));
        let p = daemonset_progress(&d);
        assert!(p.is_complete(), "{p:?}");
        assert!(p.message().contains('2'), "{p:?}");
    }

    #[test]
    fn daemonset_with_an_unobserved_generation_is_not_done() {
        let d = daemonset(6, json!({ "type": "RollingUpdate" }), ds_status(5, 2, 2, 2));
        assert_in_progress(&daemonset_progress(&d), 2, 2, "observe");
    }

    #[test]
    fn daemonset_waits_for_updated_pods() {
        let d = daemonset(5, json!({ "type": "RollingUpdate" }), ds_status(5, 3, 1, 3));
        assert_in_progress(&daemonset_progress(&d), 1, 3, "1 of 3 new pods");
    }

    #[test]
    fn daemonset_waits_for_available_pods() {
        let d = daemonset(5, json!({ "type": "RollingUpdate" }), ds_status(5, 3, 3, 2));
        assert_in_progress(
            &daemonset_progress(&d),
            3,
            3,
            "2 of 3 updated pods available",
        );
    }

    #[test]
    fn daemonset_on_delete_cannot_be_tracked_and_counts_as_complete() {
        let d = daemonset(5, json!({ "type": "OnDelete" }), ds_status(4, 3, 0, 0));
        let p = daemonset_progress(&d);
        assert!(p.is_complete(), "{p:?}");
        assert!(p.message().contains("OnDelete"), "{p:?}");
    }
}
