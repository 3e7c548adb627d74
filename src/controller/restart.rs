//! Restarting the workloads that serve the webhook, so that they load the new bundle: finding
//! them, stamping their pod template, or evicting their pods one by one.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{EvictParams, ListParams, Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::rollout::{self, Progress};
use super::sources::selector::to_query;
use crate::crd::{RestartSpec, WorkloadKind};

/// The bundle hash the pod template was last restarted for; the controller restarts a workload
/// only when it differs from the uploaded bundle's, so an operator restart restarts nothing.
pub const BUNDLE_HASH_ANNOTATION: &str = "webhookca.io/bundle-sha256";
/// When the operator last restarted the workload, like kubectl's `restartedAt`.
pub const RESTARTED_AT_ANNOTATION: &str = "webhookca.io/restartedAt";
pub const FIELD_MANAGER: &str = crate::NAME;
/// What an empty `spec.targets` means: the coreapp Deployments of Meta's templates.
pub const DEFAULT_TARGET_SELECTOR: &str = "type=coreapp";

/// A workload to restart, as observed when it was resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    pub kind: WorkloadKind,
    pub name: String,
    /// [`BUNDLE_HASH_ANNOTATION`] on the pod template.
    pub template_hash: Option<String>,
    pub progress: Progress,
    pub pod_selector: Option<LabelSelector>,
}

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

#[derive(Debug, thiserror::Error)]
pub enum RestartError {
    #[error("{} {name} not found", kind_name(*kind))]
    NotFound { kind: WorkloadKind, name: String },
    #[error("no {} matches the selector {selector:?}", kind_name(*kind))]
    NoMatch {
        kind: WorkloadKind,
        selector: String,
    },
    #[error("not allowed to {action} {} {name}: {}", kind_name(*kind), api_message(source))]
    Forbidden {
        kind: WorkloadKind,
        name: String,
        action: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("could not {action} {} {name}: {}", kind_name(*kind), api_message(source))]
    Api {
        kind: WorkloadKind,
        name: String,
        action: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("{} {name}: {message}", kind_name(*kind))]
    InvalidSelector {
        kind: WorkloadKind,
        name: String,
        message: String,
    },
}

impl RestartError {
    /// CamelCase, used as condition and Event reason.
    pub fn reason(&self) -> &'static str {
        match self {
            RestartError::NotFound { .. } | RestartError::NoMatch { .. } => "TargetNotFound",
            RestartError::Forbidden { .. } => "RestartForbidden",
            RestartError::Api { .. } | RestartError::InvalidSelector { .. } => "RestartFailed",
        }
    }

    fn from_kube(kind: WorkloadKind, name: &str, action: &'static str, e: kube::Error) -> Self {
        let name = name.to_owned();
        if status_code(&e) == Some(403) {
            RestartError::Forbidden {
                kind,
                name,
                action,
                source: e,
            }
        } else {
            RestartError::Api {
                kind,
                name,
                action,
                source: e,
            }
        }
    }
}

pub fn kind_name(kind: WorkloadKind) -> &'static str {
    match kind {
        WorkloadKind::Deployment => "Deployment",
        WorkloadKind::StatefulSet => "StatefulSet",
        WorkloadKind::DaemonSet => "DaemonSet",
    }
}

fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// The apiserver's own sentence, not kube's Debug dump of the whole Status.
fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) => format!("{} ({})", status.message, status.code),
        other => other.to_string(),
    }
}

/// What the three workload kinds share, so that each operation is written once.
trait WorkloadObject:
    Resource<Scope = NamespaceResourceScope, DynamicType = ()>
    + Clone
    + Debug
    + DeserializeOwned
    + serde::Serialize
{
    const KIND: WorkloadKind;
    fn template(&self) -> &PodTemplateSpec;
    fn selector(&self) -> &LabelSelector;
    fn progress(&self) -> Progress;
    /// How many pods should be running.
    fn desired_pods(&self) -> i32;
}

impl WorkloadObject for Deployment {
    const KIND: WorkloadKind = WorkloadKind::Deployment;
    fn template(&self) -> &PodTemplateSpec {
        &self.spec.template
    }
    fn selector(&self) -> &LabelSelector {
        &self.spec.selector
    }
    fn progress(&self) -> Progress {
        rollout::deployment_progress(self)
    }
    fn desired_pods(&self) -> i32 {
        self.spec.replicas.unwrap_or(1)
    }
}

impl WorkloadObject for StatefulSet {
    const KIND: WorkloadKind = WorkloadKind::StatefulSet;
    fn template(&self) -> &PodTemplateSpec {
        &self.spec.template
    }
    fn selector(&self) -> &LabelSelector {
        &self.spec.selector
    }
    fn progress(&self) -> Progress {
        rollout::statefulset_progress(self)
    }
    fn desired_pods(&self) -> i32 {
        self.spec.replicas.unwrap_or(1)
    }
}

impl WorkloadObject for DaemonSet {
    const KIND: WorkloadKind = WorkloadKind::DaemonSet;
    fn template(&self) -> &PodTemplateSpec {
        &self.spec.template
    }
    fn selector(&self) -> &LabelSelector {
        &self.spec.selector
    }
    fn progress(&self) -> Progress {
        rollout::daemonset_progress(self)
    }
    fn desired_pods(&self) -> i32 {
        self.status
            .as_ref()
            .map_or(0, |s| s.desired_number_scheduled)
    }
}

fn to_workload<K: WorkloadObject>(obj: &K) -> Workload {
    let template_hash = obj
        .template()
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get(BUNDLE_HASH_ANNOTATION))
        .cloned();
    Workload {
        kind: K::KIND,
        name: obj.name_any(),
        template_hash,
        progress: obj.progress(),
        pod_selector: Some(obj.selector().clone()),
    }
}

async fn get<K: WorkloadObject>(client: &Client, ns: &str, name: &str) -> Result<K, RestartError> {
    Api::<K>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .map_err(|e| RestartError::from_kube(K::KIND, name, "read", e))?
        .ok_or_else(|| RestartError::NotFound {
            kind: K::KIND,
            name: name.to_owned(),
        })
}

/// Matches in name order, so that restarts and status entries are stable.
async fn list<K: WorkloadObject>(
    client: &Client,
    ns: &str,
    selector: &str,
) -> Result<Vec<Workload>, RestartError> {
    let found = Api::<K>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(|e| {
            RestartError::from_kube(K::KIND, &format!("labelled {selector:?}"), "list", e)
        })?;
    let mut workloads: Vec<Workload> = found.items.iter().map(to_workload).collect();
    if workloads.is_empty() {
        return Err(RestartError::NoMatch {
            kind: K::KIND,
            selector: selector.to_owned(),
        });
    }
    workloads.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(workloads)
}

async fn get_workload(
    client: &Client,
    ns: &str,
    kind: WorkloadKind,
    name: &str,
) -> Result<Workload, RestartError> {
    Ok(match kind {
        WorkloadKind::Deployment => to_workload(&get::<Deployment>(client, ns, name).await?),
        WorkloadKind::StatefulSet => to_workload(&get::<StatefulSet>(client, ns, name).await?),
        WorkloadKind::DaemonSet => to_workload(&get::<DaemonSet>(client, ns, name).await?),
    })
}

async fn list_workloads(
    client: &Client,
    ns: &str,
    kind: WorkloadKind,
    selector: &str,
) -> Result<Vec<Workload>, RestartError> {
    match kind {
        WorkloadKind::Deployment => list::<Deployment>(client, ns, selector).await,
        WorkloadKind::StatefulSet => list::<StatefulSet>(client, ns, selector).await,
        WorkloadKind::DaemonSet => list::<DaemonSet>(client, ns, selector).await,
    }
}

/// The workloads `spec` names, in the order of its targets, each once. An empty target list
/// means the Deployments labelled `type=coreapp`. A named workload that does not exist, or a
/// selector (the default one included) that matches nothing, is an error: restarting nothing
/// would leave the old bundle loaded without anyone noticing.
pub async fn resolve_targets(
    client: &Client,
    ns: &str,
    spec: &RestartSpec,
) -> Result<Vec<Workload>, RestartError> {
    if spec.targets.is_empty() {
        return list_workloads(
            client,
            ns,
            WorkloadKind::Deployment,
            DEFAULT_TARGET_SELECTOR,
        )
        .await;
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for target in &spec.targets {
        let found = match (&target.name, &target.selector) {
            (Some(name), _) => vec![get_workload(client, ns, target.kind, name).await?],
            (None, Some(selector)) => {
                let query = to_query(selector).map_err(|e| RestartError::InvalidSelector {
                    kind: target.kind,
                    name: "target selector".to_owned(),
                    message: e.to_string(),
                })?;
                list_workloads(client, ns, target.kind, &query).await?
            }
            // The CRD's CEL rule requires exactly one of the two; an object written before
            // that rule existed still must not restart everything.
            (None, None) => {
                return Err(RestartError::InvalidSelector {
                    kind: target.kind,
                    name: "target".to_owned(),
                    message: "neither name nor selector is set".to_owned(),
                });
            }
        };
        for w in found {
            if seen.insert((w.kind, w.name.clone())) {
                out.push(w);
            }
        }
    }
    Ok(out)
}

async fn apply_template_annotations<K: WorkloadObject>(
    client: &Client,
    ns: &str,
    name: &str,
    sha: &str,
    now: jiff::Timestamp,
) -> Result<(), RestartError> {
    // Only these two fields are in the applied configuration, so the operator's field manager
    // owns only them: every other annotation, and the rest of the spec, stays with its owner.
    let body = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": { "name": name },
        "spec": { "template": { "metadata": { "annotations": {
            BUNDLE_HASH_ANNOTATION: sha,
            // Whole seconds, as kubectl's restartedAt.
            RESTARTED_AT_ANNOTATION: now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        } } } }
    });
    Api::<K>::namespaced(client.clone(), ns)
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .map_err(|e| RestartError::from_kube(K::KIND, name, "restart", e))?;
    Ok(())
}

/// Rolls `w` by stamping its pod template with the bundle hash and the time, through
/// server-side apply with [`FIELD_MANAGER`] (forced: the operator owns these two keys). Applying
/// the same values again changes nothing, not even the generation.
pub async fn rollout_restart(
    client: &Client,
    ns: &str,
    w: &Workload,
    sha: &str,
    now: jiff::Timestamp,
) -> Result<(), RestartError> {
    match w.kind {
        WorkloadKind::Deployment => {
            apply_template_annotations::<Deployment>(client, ns, &w.name, sha, now).await
        }
        WorkloadKind::StatefulSet => {
            apply_template_annotations::<StatefulSet>(client, ns, &w.name, sha, now).await
        }
        WorkloadKind::DaemonSet => {
            apply_template_annotations::<DaemonSet>(client, ns, &w.name, sha, now).await
        }
    }
}

/// kube's default client retries 429 answers up to 15 times, waiting the Retry-After the
/// apiserver sends (10 s for an eviction a PodDisruptionBudget refuses), so such a refusal would
/// hold the reconcile for minutes. An eviction not accepted within this time counts as refused
/// for now; dropping the request stops the retries, and a later step tries again. If the
/// apiserver was merely slow and did evict, the next step sees the pod terminating and waits.
const EVICTION_ANSWER: Duration = Duration::from_secs(3);

/// What the workload looks like now: desired pod count, progress and pod selector.
struct Fresh {
    desired: i32,
    workload: Workload,
}

async fn fresh<K: WorkloadObject>(
    client: &Client,
    ns: &str,
    name: &str,
) -> Result<Fresh, RestartError> {
    let obj = get::<K>(client, ns, name).await?;
    Ok(Fresh {
        desired: obj.desired_pods(),
        workload: to_workload(&obj),
    })
}

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
    let Fresh { desired, workload } = match w.kind {
        WorkloadKind::Deployment => fresh::<Deployment>(client, ns, &w.name).await?,
        WorkloadKind::StatefulSet => fresh::<StatefulSet>(client, ns, &w.name).await?,
        WorkloadKind::DaemonSet => fresh::<DaemonSet>(client, ns, &w.name).await?,
    };
    let invalid = |message: String| RestartError::InvalidSelector {
        kind: w.kind,
        name: w.name.clone(),
        message,
    };
    let selector = workload
        .pod_selector
        .as_ref()
        .ok_or_else(|| invalid("has no pod selector".to_owned()))?;
    let query = to_query(selector).map_err(|e| invalid(format!("pod selector: {e}")))?;
    // An empty selector would select every pod of the namespace.
    if query.is_empty() {
        return Err(invalid("has an empty pod selector".to_owned()));
    }
    let pods_api = Api::<Pod>::namespaced(client.clone(), ns);
    let pods = pods_api
        .list(&ListParams::default().labels(&query))
        .await
        .map_err(|e| RestartError::from_kube(w.kind, &w.name, "list the pods of", e))?;
    let plan = plan_eviction(&pods.items, desired, since);
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
    let live: Vec<&Pod> = pods
        .iter()
        .filter(|p| {
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            !matches!(phase, Some("Succeeded" | "Failed"))
        })
        .collect();
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
    use serde_json::Value;

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

    #[test]
    fn reasons_name_the_failing_concern() {
        let nf = RestartError::NotFound {
            kind: WorkloadKind::StatefulSet,
            name: "db".into(),
        };
        assert_eq!(nf.reason(), "TargetNotFound");
        assert_eq!(nf.to_string(), "StatefulSet db not found");
        let nm = RestartError::NoMatch {
            kind: WorkloadKind::Deployment,
            selector: DEFAULT_TARGET_SELECTOR.into(),
        };
        assert_eq!(nm.reason(), "TargetNotFound");
        assert!(nm.to_string().contains("type=coreapp"), "{nm}");
    }
}
