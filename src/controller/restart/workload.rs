//! The three workload kinds behind one trait: finding the targets a spec names, reading their
//! state, and stamping their pod template.

use std::collections::BTreeSet;
use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::progress::{self, Progress};
use super::{
    BUNDLE_HASH_ANNOTATION, DEFAULT_TARGET_SELECTOR, FIELD_MANAGER, RESTARTED_AT_ANNOTATION,
    RestartError, Workload,
};
use crate::controller::sources::selector::to_query;
use crate::crd::{RestartSpec, WorkloadKind};

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
        progress::deployment_progress(self)
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
        progress::statefulset_progress(self)
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
        progress::daemonset_progress(self)
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

/// What the workload looks like now: desired pod count, progress and pod selector.
pub(super) struct Fresh {
    pub desired: i32,
    pub workload: Workload,
}

async fn fresh_of<K: WorkloadObject>(
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

/// [`Fresh`] for a workload of any kind.
pub(super) async fn fresh(
    client: &Client,
    ns: &str,
    kind: WorkloadKind,
    name: &str,
) -> Result<Fresh, RestartError> {
    match kind {
        WorkloadKind::Deployment => fresh_of::<Deployment>(client, ns, name).await,
        WorkloadKind::StatefulSet => fresh_of::<StatefulSet>(client, ns, name).await,
        WorkloadKind::DaemonSet => fresh_of::<DaemonSet>(client, ns, name).await,
    }
}
