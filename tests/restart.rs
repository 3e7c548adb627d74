//! Restarts against the real test cluster: which workloads a spec names, the pod-template stamp
//! by server-side apply, rollouts followed by kubectl's rules, and evictions honouring
//! PodDisruptionBudgets.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use test_support::{TestNamespace, run_with_input, wait_for};
use webhook_ca_operator::controller::restart::{
    BUNDLE_HASH_ANNOTATION, EvictStep, FIELD_MANAGER, RESTARTED_AT_ANNOTATION, Workload,
    evict_step, resolve_targets, rollout_restart,
};
use webhook_ca_operator::crd::{RestartSpec, RestartTarget, WorkloadKind};
use webhook_ca_operator::reason::ConditionReason;

const FOREIGN_ANNOTATION: &str = "example.com/owned-by";
const SHA: &str = "4f6c2b1e9a0d4c7e8b3f5a6d2c1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e";

/// A workload manifest whose pods kwok "runs"; the image is never pulled.
fn workload(kind: &str, ns: &str, name: &str, labels: Value, spec: Value) -> Value {
    let mut manifest = json!({
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": { "name": name, "namespace": ns, "labels": labels },
        "spec": {
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": {
                    "labels": { "app": name },
                    "annotations": { FOREIGN_ANNOTATION: "team-a" }
                },
                "spec": { "containers": [{ "name": "app", "image": "registry.invalid/app:1" }] }
            }
        }
    });
    if let (Some(base), Some(extra)) = (manifest["spec"].as_object_mut(), spec.as_object()) {
        base.extend(extra.clone());
    }
    manifest
}

fn deployment(ns: &str, name: &str, replicas: i32, labels: Value) -> Value {
    workload(
        "Deployment",
        ns,
        name,
        labels,
        json!({ "replicas": replicas }),
    )
}

/// `kubectl <verb> -f -`, so that the objects are owned by kubectl's field managers.
fn kubectl(ns: &TestNamespace, verb: &str, manifest: &Value) -> String {
    let out = run_with_input(
        ns.cluster().kubectl().args([verb, "-f", "-"]),
        &manifest.to_string(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn by_name(kind: WorkloadKind, name: &str) -> RestartSpec {
    RestartSpec {
        targets: vec![RestartTarget {
            kind,
            name: Some(name.to_owned()),
            selector: None,
        }],
        ..RestartSpec::default()
    }
}

fn by_selector(kind: WorkloadKind, selector: Value) -> RestartTarget {
    RestartTarget {
        kind,
        name: None,
        selector: Some(serde_json::from_value(selector).expect("a literal selector")),
    }
}

async fn resolve_one(client: &Client, ns: &str, kind: WorkloadKind, name: &str) -> Workload {
    let mut found = resolve_targets(client, ns, &by_name(kind, name))
        .await
        .unwrap_or_else(|e| panic!("resolving {kind:?} {name}: {e}"));
    assert_eq!(found.len(), 1, "{found:?}");
    found.remove(0)
}

/// Waits until the workload's rollout is complete by the operator's own rules.
async fn wait_complete(client: &Client, ns: &str, kind: WorkloadKind, name: &str) -> Workload {
    wait_for(&format!("{kind:?} {name} to roll out"), || async {
        let w = resolve_one(client, ns, kind, name).await;
        if w.progress.is_complete() {
            Ok(w)
        } else {
            Err(format!("{:?}", w.progress))
        }
    })
    .await
}

fn names(workloads: &[Workload]) -> Vec<(WorkloadKind, &str)> {
    workloads
        .iter()
        .map(|w| (w.kind, w.name.as_str()))
        .collect()
}

fn template_annotations(template_meta: Option<&kube::api::ObjectMeta>) -> BTreeMap<String, String> {
    template_meta
        .and_then(|m| m.annotations.clone())
        .unwrap_or_default()
}

async fn pod_uids(ns: &TestNamespace, app: &str) -> BTreeSet<String> {
    ns.api::<Pod>()
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .expect("list pods")
        .items
        .iter()
        .filter_map(|p| p.metadata.uid.clone())
        .collect()
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

#[tokio::test]
async fn targets_resolve_by_name_by_selector_and_by_default() {
    let ns = TestNamespace::new("resolve").await;
    let client = ns.client();
    let coreapp = json!({ "type": "coreapp" });
    kubectl(
        &ns,
        "apply",
        &deployment(ns.name(), "coreapp-b", 1, coreapp.clone()),
    );
    kubectl(
        &ns,
        "apply",
        &deployment(ns.name(), "coreapp-a", 1, coreapp),
    );
    kubectl(
        &ns,
        "apply",
        &deployment(ns.name(), "web", 1, json!({ "tier": "web" })),
    );
    kubectl(
        &ns,
        "apply",
        &workload(
            "StatefulSet",
            ns.name(),
            "db",
            json!({ "tier": "db" }),
            json!({ "replicas": 1, "serviceName": "db" }),
        ),
    );

    let default = resolve_targets(&client, ns.name(), &RestartSpec::default())
        .await
        .expect("default targets");
    assert_eq!(
        names(&default),
        [
            (WorkloadKind::Deployment, "coreapp-a"),
            (WorkloadKind::Deployment, "coreapp-b")
        ]
    );

    let db = resolve_one(&client, ns.name(), WorkloadKind::StatefulSet, "db").await;
    assert_eq!(db.template_hash, None);
    let selector = db.pod_selector.expect("a StatefulSet has a pod selector");
    assert_eq!(
        selector.match_labels,
        Some(BTreeMap::from([("app".to_owned(), "db".to_owned())]))
    );

    let spec = RestartSpec {
        targets: vec![
            by_selector(
                WorkloadKind::Deployment,
                json!({ "matchExpressions": [{ "key": "tier", "operator": "In", "values": ["web", "db"] }] }),
            ),
            RestartTarget {
                kind: WorkloadKind::Deployment,
                name: Some("coreapp-b".to_owned()),
                selector: None,
            },
            // Names coreapp-b a second time: each workload is restarted once.
            by_selector(
                WorkloadKind::Deployment,
                json!({ "matchLabels": { "type": "coreapp" } }),
            ),
        ],
        ..RestartSpec::default()
    };
    let found = resolve_targets(&client, ns.name(), &spec)
        .await
        .expect("targets by selector and name");
    assert_eq!(
        names(&found),
        [
            (WorkloadKind::Deployment, "web"),
            (WorkloadKind::Deployment, "coreapp-b"),
            (WorkloadKind::Deployment, "coreapp-a")
        ]
    );
}

#[tokio::test]
async fn targets_that_do_not_exist_are_target_not_found() {
    let ns = TestNamespace::new("notfound").await;
    let client = ns.client();

    let err = resolve_targets(
        &client,
        ns.name(),
        &by_name(WorkloadKind::Deployment, "coreapp"),
    )
    .await
    .expect_err("a missing Deployment");
    assert_eq!(err.reason(), "TargetNotFound");
    assert_eq!(err.to_string(), "Deployment coreapp not found");

    let err = resolve_targets(&client, ns.name(), &RestartSpec::default())
        .await
        .expect_err("no Deployment labelled type=coreapp");
    assert_eq!(err.reason(), "TargetNotFound");
    assert!(err.to_string().contains("type=coreapp"), "{err}");

    let spec = RestartSpec {
        targets: vec![by_selector(
            WorkloadKind::DaemonSet,
            json!({ "matchLabels": { "app": "agent" } }),
        )],
        ..RestartSpec::default()
    };
    let err = resolve_targets(&client, ns.name(), &spec)
        .await
        .expect_err("no DaemonSet labelled app=agent");
    assert_eq!(err.reason(), "TargetNotFound");
    assert!(err.to_string().contains("DaemonSet"), "{err}");
}

#[tokio::test]
async fn rollout_restart_rolls_a_deployment_applied_by_kubectl_and_keeps_its_annotations() {
    let ns = TestNamespace::new("rollout").await;
    let client = ns.client();
    let manifest = deployment(ns.name(), "coreapp", 2, json!({ "type": "coreapp" }));
    kubectl(&ns, "apply", &manifest);
    let before = wait_complete(&client, ns.name(), WorkloadKind::Deployment, "coreapp").await;
    assert_eq!(before.template_hash, None);
    let api: Api<Deployment> = ns.api();
    let d0 = api.get("coreapp").await.expect("get deployment");
    let rs_api: Api<ReplicaSet> = ns.api();
    let rs_before = rs_api
        .list(&ListParams::default())
        .await
        .expect("list replicasets");
    assert_eq!(rs_before.items.len(), 1);

    let now = jiff::Timestamp::now();
    rollout_restart(&client, ns.name(), &before, SHA, now)
        .await
        .expect("rollout restart");

    let d1 = api.get("coreapp").await.expect("get deployment");
    assert!(d1.metadata.generation > d0.metadata.generation);
    let annotations = template_annotations(d1.spec.template.metadata.as_ref());
    assert_eq!(
        annotations.get(BUNDLE_HASH_ANNOTATION).map(String::as_str),
        Some(SHA)
    );
    let restarted_at = annotations
        .get(RESTARTED_AT_ANNOTATION)
        .expect("restartedAt annotation");
    assert!(
        restarted_at.ends_with('Z') && !restarted_at.contains('.'),
        "{restarted_at}"
    );
    let restarted_at: jiff::Timestamp = restarted_at.parse().expect("an RFC 3339 time");
    assert_eq!(restarted_at.as_second(), now.as_second());
    assert_eq!(
        annotations.get(FOREIGN_ANNOTATION).map(String::as_str),
        Some("team-a"),
        "{annotations:?}"
    );
    let managers: Vec<&str> = d1
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.manager.as_deref())
        .collect();
    assert!(managers.contains(&FIELD_MANAGER), "{managers:?}");
    assert!(
        managers.iter().any(|m| m.starts_with("kubectl")),
        "{managers:?}"
    );

    let after = wait_complete(&client, ns.name(), WorkloadKind::Deployment, "coreapp").await;
    assert_eq!(after.template_hash.as_deref(), Some(SHA));
    let rs_after = rs_api
        .list(&ListParams::default())
        .await
        .expect("list replicasets");
    assert_eq!(
        rs_after.items.len(),
        2,
        "a new ReplicaSet for the stamped template"
    );
    let new_rs = rs_after
        .items
        .iter()
        .find(|rs| rs.spec.replicas == Some(2))
        .expect("the ReplicaSet that now runs the pods");
    let rs_annotations = template_annotations(
        new_rs
            .spec
            .template
            .as_ref()
            .and_then(|t| t.metadata.as_ref()),
    );
    assert_eq!(
        rs_annotations
            .get(BUNDLE_HASH_ANNOTATION)
            .map(String::as_str),
        Some(SHA)
    );

    // The same values again: server-side apply sees no change, so nothing rolls.
    rollout_restart(&client, ns.name(), &before, SHA, now)
        .await
        .expect("repeated rollout restart");
    let d2 = api.get("coreapp").await.expect("get deployment");
    assert_eq!(d2.metadata.generation, d1.metadata.generation);
    let rs_again = rs_api
        .list(&ListParams::default())
        .await
        .expect("list replicasets");
    assert_eq!(rs_again.items.len(), 2);

    // The owner applies its manifest again (as a GitOps tool would): the stamp stays, no roll.
    kubectl(&ns, "apply", &manifest);
    let d3 = api.get("coreapp").await.expect("get deployment");
    assert_eq!(d3.metadata.generation, d1.metadata.generation);
    let annotations = template_annotations(d3.spec.template.metadata.as_ref());
    assert_eq!(
        annotations.get(BUNDLE_HASH_ANNOTATION).map(String::as_str),
        Some(SHA)
    );
}

#[tokio::test]
async fn rollout_restart_rolls_a_statefulset_and_a_daemonset_created_by_kubectl() {
    let ns = TestNamespace::new("sts-ds").await;
    let client = ns.client();
    kubectl(
        &ns,
        "create",
        &workload(
            "StatefulSet",
            ns.name(),
            "db",
            json!({}),
            json!({ "replicas": 2, "serviceName": "db" }),
        ),
    );
    kubectl(
        &ns,
        "create",
        &workload("DaemonSet", ns.name(), "agent", json!({}), json!({})),
    );
    let cases = [
        (WorkloadKind::StatefulSet, "db"),
        (WorkloadKind::DaemonSet, "agent"),
    ];
    for (kind, name) in cases {
        let before = wait_complete(&client, ns.name(), kind, name).await;
        let old_pods = pod_uids(&ns, name).await;
        assert_eq!(old_pods.len(), 2, "{kind:?} {name} pods: {old_pods:?}");
        rollout_restart(&client, ns.name(), &before, SHA, jiff::Timestamp::now())
            .await
            .unwrap_or_else(|e| panic!("restarting {kind:?} {name}: {e}"));
        let after = wait_for(&format!("{kind:?} {name} to replace its pods"), || async {
            let w = resolve_one(&client, ns.name(), kind, name).await;
            let pods = pod_uids(&ns, name).await;
            if w.progress.is_complete() && pods.len() == 2 && pods.is_disjoint(&old_pods) {
                Ok(w)
            } else {
                Err(format!("{:?}, pods {pods:?}", w.progress))
            }
        })
        .await;
        assert_eq!(after.template_hash.as_deref(), Some(SHA));
    }
    let sts: StatefulSet = ns.api().get("db").await.expect("get statefulset");
    let ds: DaemonSet = ns.api().get("agent").await.expect("get daemonset");
    for meta in [sts.spec.template.metadata, ds.spec.template.metadata] {
        let annotations = template_annotations(meta.as_ref());
        assert_eq!(
            annotations.get(FOREIGN_ANNOTATION).map(String::as_str),
            Some("team-a")
        );
    }
}

/// One `evict_step`, which must answer promptly: the reconcile awaits it.
async fn step(
    client: &Client,
    ns: &TestNamespace,
    w: &Workload,
    since: jiff::Timestamp,
) -> EvictStep {
    tokio::time::timeout(
        Duration::from_secs(30),
        evict_step(client, ns.name(), w, since),
    )
    .await
    .expect("evict_step answers within 30 s")
    .expect("evict step")
}

/// Pods of `app` that are ready and not terminating.
async fn serving_pods(ns: &TestNamespace, app: &str) -> Vec<Pod> {
    ns.api::<Pod>()
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .expect("list pods")
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && is_ready(p))
        .collect()
}

#[tokio::test]
async fn evict_step_replaces_old_pods_one_at_a_time() {
    let ns = TestNamespace::new("evict").await;
    let client = ns.client();
    kubectl(
        &ns,
        "apply",
        &deployment(ns.name(), "coreapp", 2, json!({})),
    );
    let w = wait_complete(&client, ns.name(), WorkloadKind::Deployment, "coreapp").await;
    let api: Api<Deployment> = ns.api();
    let generation = api.get("coreapp").await.expect("get").metadata.generation;
    let original: BTreeSet<String> = serving_pods(&ns, "coreapp")
        .await
        .iter()
        .map(|p| p.name_any())
        .collect();
    assert_eq!(original.len(), 2);
    let since = jiff::Timestamp::now();

    let mut evicted = Vec::new();
    let mut waits = 0;
    let mut done = false;
    for _ in 0..400 {
        match step(&client, &ns, &w, since).await {
            EvictStep::Evicted { pod } => {
                let serving = serving_pods(&ns, "coreapp").await;
                assert!(
                    !serving.is_empty(),
                    "after evicting {pod} nothing serves: {serving:?}"
                );
                assert!(
                    !serving.iter().any(|p| p.name_any() == pod),
                    "{pod} still serving"
                );
                evicted.push(pod);
            }
            EvictStep::Waiting { .. } => waits += 1,
            EvictStep::Done => {
                done = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        done,
        "not done after {evicted:?} evictions and {waits} waits"
    );
    assert_eq!(
        evicted.iter().cloned().collect::<BTreeSet<_>>(),
        original,
        "each original pod evicted once"
    );
    assert_eq!(evicted.len(), 2, "{evicted:?}");

    let after = wait_complete(&client, ns.name(), WorkloadKind::Deployment, "coreapp").await;
    assert_eq!(after.template_hash, None, "the spec is untouched");
    assert_eq!(
        api.get("coreapp").await.expect("get").metadata.generation,
        generation
    );
    let names: BTreeSet<String> = serving_pods(&ns, "coreapp")
        .await
        .iter()
        .map(|p| p.name_any())
        .collect();
    assert_eq!(names.len(), 2);
    assert!(names.is_disjoint(&original), "{names:?} vs {original:?}");
}

#[tokio::test]
async fn evict_step_waits_while_a_pod_disruption_budget_allows_no_disruption() {
    let ns = TestNamespace::new("pdb").await;
    let client = ns.client();
    kubectl(
        &ns,
        "apply",
        &deployment(ns.name(), "coreapp", 2, json!({})),
    );
    kubectl(
        &ns,
        "apply",
        &json!({
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": { "name": "coreapp", "namespace": ns.name() },
            "spec": { "maxUnavailable": 0, "selector": { "matchLabels": { "app": "coreapp" } } }
        }),
    );
    let w = wait_complete(&client, ns.name(), WorkloadKind::Deployment, "coreapp").await;
    // Until the disruption controller has counted the pods, a refusal would prove nothing.
    let pdbs: Api<PodDisruptionBudget> = ns.api();
    wait_for("the PodDisruptionBudget to count both pods", || async {
        let pdb = pdbs.get("coreapp").await.map_err(|e| e.to_string())?;
        let status = pdb.status.unwrap_or_default();
        let observed = status.observed_generation >= pdb.metadata.generation;
        if observed && status.current_healthy == Some(2) && status.expected_pods == Some(2) {
            Ok(())
        } else {
            Err(format!("{status:?}"))
        }
    })
    .await;
    let original: BTreeSet<String> = serving_pods(&ns, "coreapp")
        .await
        .iter()
        .map(|p| p.name_any())
        .collect();
    let since = jiff::Timestamp::now();
    // Past the second of `since`, in which evict_step never evicts.
    tokio::time::sleep(Duration::from_millis(1100)).await;

    for _ in 0..2 {
        match step(&client, &ns, &w, since).await {
            EvictStep::Waiting { reason } => {
                assert!(reason.contains("PodDisruptionBudget"), "{reason}");
            }
            other => panic!("expected Waiting, got {other:?}"),
        }
    }
    let still: BTreeSet<String> = serving_pods(&ns, "coreapp")
        .await
        .iter()
        .map(|p| p.name_any())
        .collect();
    assert_eq!(still, original, "no pod was disrupted");
}
