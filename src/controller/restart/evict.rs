//! Restarting without a spec edit: pods evicted one at a time through the Eviction API, so
//! that PodDisruptionBudgets hold, and only while the workload is fully rolled out.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{EvictParams, ListParams};
use kube::{Api, Client, ResourceExt};

use super::progress::Progress;
use super::workload::{Fresh, fresh};
use super::{RestartError, Workload, kind_name};
use crate::controller::sources::selector::to_query;

/// One call of [`evict_step`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EvictStep {
    /// This pod was evicted; its controller replaces it.
    Evicted { pod: String },
    /// Nothing evicted now; call again later.
    Waiting { reason: String },
    /// No pod created before `since` is left.
    Done,
}

/// kube's default client retries 429 answers up to 15 times, waiting the Retry-After the
/// apiserver sends (10 s for an eviction a PodDisruptionBudget refuses), so such a refusal would
/// hold the reconcile for minutes. An eviction not accepted within this time counts as refused
/// for now; dropping the request stops the retries, and a later step tries again. If the
/// apiserver was merely slow and did evict, the next step sees the pod terminating and waits.
const EVICTION_ANSWER: Duration = Duration::from_secs(3);

/// One step of a restart without a spec edit: evicts at most one pod of `w` created before
/// `since`, through the Eviction API so that PodDisruptionBudgets are honoured (a refusal, 429,
/// is `Waiting`). Evicts only while the workload is fully rolled out and every one of its pods
/// is ready and none is terminating, so that at most one pod is down at any time. The workload
/// is read again: `w` may be older than the last eviction. Pods have creation times in whole
/// seconds, so nothing is evicted in the second of `since`: a replacement created then would
/// look as old as the pods it replaces.
pub async fn evict_step(
    client: &Client,
    ns: &str,
    w: &Workload,
    since: jiff::Timestamp,
) -> Result<EvictStep, RestartError> {
    if jiff::Timestamp::now().as_second() <= since.as_second() {
        return Ok(EvictStep::Waiting {
            reason: "eviction begins in the second after the restart started".to_owned(),
        });
    }
    let Fresh { desired, workload } = fresh(client, ns, w.kind, &w.name).await?;
    let pods = pods_of(client, ns, &workload).await?;
    let pods_api = Api::<Pod>::namespaced(client.clone(), ns);
    let plan = plan_eviction(&pods, desired, since);
    let pod = match plan {
        Plan::Done => return Ok(EvictStep::Done),
        Plan::Wait(reason) => return Ok(EvictStep::Waiting { reason }),
        Plan::Evict(pod) => pod,
    };
    if let Progress::InProgress { message, .. } | Progress::Failed { message } = &workload.progress
    {
        return Ok(EvictStep::Waiting {
            reason: format!(
                "{} {} is not rolled out: {message}",
                kind_name(w.kind),
                w.name
            ),
        });
    }
    let params = EvictParams::default();
    let eviction = pods_api.evict(&pod, &params);
    let Ok(answer) = tokio::time::timeout(EVICTION_ANSWER, eviction).await else {
        return Ok(EvictStep::Waiting {
            reason: format!(
                "eviction of pod {pod} not accepted within {}s: a PodDisruptionBudget allows no \
                 disruption now, or the API server is throttling",
                EVICTION_ANSWER.as_secs()
            ),
        });
    };
    match answer {
        Ok(_) => Ok(EvictStep::Evicted { pod }),
        Err(kube::Error::Api(status)) if status.code == 429 => Ok(EvictStep::Waiting {
            reason: format!(
                "eviction of pod {pod} refused, a PodDisruptionBudget allows no disruption now: {}",
                status.message
            ),
        }),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(EvictStep::Waiting {
            reason: format!("pod {pod} is already gone"),
        }),
        Err(e) => Err(RestartError::from_kube(
            w.kind,
            &w.name,
            "evict a pod of",
            e,
        )),
    }
}

/// The pods `w`'s selector selects.
pub(super) async fn pods_of(
    client: &Client,
    ns: &str,
    w: &Workload,
) -> Result<Vec<Pod>, RestartError> {
    let invalid = |message: String| RestartError::InvalidSelector {
        kind: w.kind,
        name: w.name.clone(),
        message,
    };
    let selector = w
        .pod_selector
        .as_ref()
        .ok_or_else(|| invalid("has no pod selector".to_owned()))?;
    let query = to_query(selector).map_err(|e| invalid(format!("pod selector: {e}")))?;
    // An empty selector would select every pod of the namespace.
    if query.is_empty() {
        return Err(invalid("has an empty pod selector".to_owned()));
    }
    Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&query))
        .await
        .map(|list| list.items)
        .map_err(|e| RestartError::from_kube(w.kind, &w.name, "list the pods of", e))
}

/// Whether a live pod among `pods` was created after `since` (in a later second: creation
/// times have whole seconds).
pub(super) fn started_after(pods: &[Pod], since: jiff::Timestamp) -> bool {
    pods.iter().filter(|p| !is_finished(p)).any(|p| {
        p.metadata
            .creation_timestamp
            .as_ref()
            .is_some_and(|t| t.0.as_second() > since.as_second())
    })
}

fn is_finished(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    matches!(phase, Some("Succeeded" | "Failed"))
}

#[derive(Debug, PartialEq, Eq)]
enum Plan {
    Done,
    Wait(String),
    Evict(String),
}

/// Which pod to evict, if any: the oldest created before `since`, but only while no pod is
/// terminating or unready and `desired` pods are ready. Finished pods (Succeeded, Failed) are
/// ignored: they serve nothing and their controller has already replaced them.
///
/// Creation timestamps have whole seconds, so a pod created in the second of `since` counts as
/// old: it may predate the restart. [`evict_step`] evicts only from the next second on, so no
/// replacement shares that second.
fn plan_eviction(pods: &[Pod], desired: i32, since: jiff::Timestamp) -> Plan {
    let since = since.as_second();
    let live: Vec<&Pod> = pods.iter().filter(|p| !is_finished(p)).collect();
    let created = |p: &Pod| {
        p.metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_second())
    };
    let mut old: Vec<&Pod> = live
        .iter()
        .copied()
        .filter(|p| created(p).is_none_or(|t| t <= since))
        .collect();
    if old.is_empty() {
        return Plan::Done;
    }
    if let Some(p) = live
        .iter()
        .find(|p| p.metadata.deletion_timestamp.is_some())
    {
        return Plan::Wait(format!("pod {} is terminating", p.name_any()));
    }
    if let Some(p) = live.iter().find(|p| !is_ready(p)) {
        return Plan::Wait(format!("pod {} is not ready", p.name_any()));
    }
    let ready = i32::try_from(live.len()).unwrap_or(i32::MAX);
    if ready < desired {
        return Plan::Wait(format!("{ready} of {desired} pods ready"));
    }
    old.sort_by_key(|p| (created(p), p.name_any()));
    Plan::Evict(old[0].name_any())
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn pod(name: &str, created: &str, ready: bool, extra: Value) -> Pod {
        let mut v = json!({
            "metadata": { "name": name, "creationTimestamp": created },
            "status": {
                "phase": "Running",
                "conditions": [{ "type": "Ready", "status": if ready { "True" } else { "False" } }]
            }
        });
        if let (Some(obj), Some(add)) = (v.as_object_mut(), extra.as_object()) {
            for (k, val) in add {
                obj.insert(k.clone(), val.clone());
            }
        }
        serde_json::from_value(v).expect("a literal pod")
    }

    fn at(s: &str) -> jiff::Timestamp {
        s.parse().expect("a literal timestamp")
    }

    const SINCE: &str = "2026-05-01T12:00:00Z";

    #[test]
    fn evicts_the_oldest_pod_created_before_since() {
        let pods = [
            pod("b", "2026-05-01T10:00:00Z", true, Value::Null),
            pod("a", "2026-05-01T11:00:00Z", true, Value::Null),
            pod("c", "2026-05-01T12:30:00Z", true, Value::Null),
        ];
        assert_eq!(plan_eviction(&pods, 3, at(SINCE)), Plan::Evict("b".into()));
    }

    /// creationTimestamp has whole seconds, so a pod from the second `since` falls in may
    /// predate the restart: it counts as old, lest a coreapp keep running without the bundle.
    /// (The reconcile evicts only from the next second on, so no replacement shares it.)
    #[test]
    fn a_pod_created_in_the_same_second_as_since_is_old() {
        let pods = [
            pod("same-second", "2026-05-01T12:00:00Z", true, Value::Null),
            pod("old", "2026-05-01T11:59:59Z", true, Value::Null),
        ];
        let since = at("2026-05-01T12:00:00.600Z");
        assert_eq!(plan_eviction(&pods, 2, since), Plan::Evict("old".into()));
        assert_eq!(
            plan_eviction(&pods[..1], 1, since),
            Plan::Evict("same-second".into())
        );
        let next_second = [pod(
            "replacement",
            "2026-05-01T12:00:01Z",
            true,
            Value::Null,
        )];
        assert_eq!(plan_eviction(&next_second, 1, since), Plan::Done);
    }

    #[test]
    fn done_when_every_pod_is_newer_than_since_even_if_one_is_not_ready() {
        let pods = [
            pod("a", "2026-05-01T12:01:00Z", true, Value::Null),
            pod("b", "2026-05-01T12:02:00Z", false, Value::Null),
        ];
        assert_eq!(plan_eviction(&pods, 2, at(SINCE)), Plan::Done);
    }

    #[test]
    fn waits_while_a_pod_terminates() {
        let pods = [
            pod("a", "2026-05-01T10:00:00Z", true, Value::Null),
            pod(
                "b",
                "2026-05-01T10:00:00Z",
                true,
                json!({ "metadata": { "name": "b", "creationTimestamp": "2026-05-01T10:00:00Z",
                                      "deletionTimestamp": "2026-05-01T12:10:00Z" } }),
            ),
        ];
        match plan_eviction(&pods, 2, at(SINCE)) {
            Plan::Wait(reason) => assert!(reason.contains("pod b is terminating"), "{reason}"),
            other => panic!("expected Wait, got {other:?}"),
        }
    }

    #[test]
    fn waits_while_a_replacement_is_not_ready() {
        let pods = [
            pod("old", "2026-05-01T10:00:00Z", true, Value::Null),
            pod("new", "2026-05-01T12:05:00Z", false, Value::Null),
        ];
        match plan_eviction(&pods, 2, at(SINCE)) {
            Plan::Wait(reason) => assert!(reason.contains("pod new is not ready"), "{reason}"),
            other => panic!("expected Wait, got {other:?}"),
        }
    }

    #[test]
    fn waits_while_a_replacement_is_not_yet_created() {
        let pods = [pod("old", "2026-05-01T10:00:00Z", true, Value::Null)];
        match plan_eviction(&pods, 2, at(SINCE)) {
            Plan::Wait(reason) => assert!(reason.contains("1 of 2 pods ready"), "{reason}"),
            other => panic!("expected Wait, got {other:?}"),
        }
    }

    #[test]
    fn finished_pods_are_neither_evicted_nor_waited_for() {
        let failed = json!({ "status": { "phase": "Failed" } });
        let pods = [
            pod("gone", "2026-05-01T09:00:00Z", false, failed),
            pod("new", "2026-05-01T12:05:00Z", true, Value::Null),
        ];
        assert_eq!(plan_eviction(&pods, 1, at(SINCE)), Plan::Done);
    }
}
