//! Proof that the test cluster behaves like a real one where the operator's tests depend on it:
//! Deployments schedule and roll, RBAC confines ServiceAccount tokens, CRDs become Established.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::PostParams;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams};
use kube::{Api, Resource};
use serde_json::json;
use test_support::{DeleteOnDrop, TestNamespace, rollout_status, wait_for};

/// A Deployment whose pods kwok "runs"; the image is never pulled (`.invalid` cannot resolve).
fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": name },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [{ "name": "app", "image": "registry.invalid/app:1" }] }
            }
        }
    }))
    .expect("a literal Deployment")
}

async fn create_rolled_out(ns: &TestNamespace, name: &str, replicas: i32) -> Deployment {
    let api: Api<Deployment> = ns.api();
    api.create(&PostParams::default(), &deployment(name, replicas))
        .await
        .expect("create deployment");
    wait_rolled_out(&api, name).await
}

async fn wait_rolled_out(api: &Api<Deployment>, name: &str) -> Deployment {
    wait_for(&format!("deployment {name} to roll out"), || async {
        let d = api.get(name).await.map_err(|e| e.to_string())?;
        rollout_status(&d).map(|()| d)
    })
    .await
}

/// ReplicaSets owned by the Deployment with uid `owner`.
async fn owned_replica_sets(ns: &TestNamespace, owner: &str) -> Vec<ReplicaSet> {
    let all = ns
        .api::<ReplicaSet>()
        .list(&ListParams::default())
        .await
        .expect("list replicasets");
    all.items
        .into_iter()
        .filter(|rs| {
            rs.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.uid == owner)
        })
        .collect()
}

fn is_running_and_ready(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    let running = status.and_then(|s| s.phase.as_deref()) == Some("Running");
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    running && ready
}

#[tokio::test]
async fn deployment_pods_get_scheduled_and_become_available() {
    let ns = TestNamespace::new("deploy").await;
    let d = create_rolled_out(&ns, "web", 2).await;
    let status = d.status.expect("status of a rolled-out deployment");
    assert_eq!(status.available_replicas, Some(2));
    assert_eq!(status.ready_replicas, Some(2));

    let pods = ns
        .api::<Pod>()
        .list(&ListParams::default().labels("app=web"))
        .await
        .expect("list pods");
    assert_eq!(pods.items.len(), 2, "pods of web: {:?}", pods.items);
    for pod in &pods.items {
        let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
        assert!(
            node.is_some_and(|n| n.starts_with("kwok-node-")),
            "pod {:?} bound to {node:?}",
            pod.metadata.name
        );
        assert!(is_running_and_ready(pod), "pod not running: {pod:?}");
    }
}

#[tokio::test]
async fn restarting_a_deployment_rolls_out_a_new_replica_set() {
    let ns = TestNamespace::new("restart").await;
    let api: Api<Deployment> = ns.api();
    let before = create_rolled_out(&ns, "coreapp", 2).await;
    let uid = before.meta().uid.clone().expect("uid of a created object");
    let old: BTreeSet<String> = owned_replica_sets(&ns, &uid)
        .await
        .into_iter()
        .filter_map(|rs| rs.metadata.name)
        .collect();
    assert_eq!(old.len(), 1, "replica sets before the restart: {old:?}");

    // The patch `kubectl rollout restart` sends.
    let restart = json!({ "spec": { "template": { "metadata": { "annotations": {
        "kubectl.kubernetes.io/restartedAt": jiff::Timestamp::now().to_string()
    } } } } });
    let patched = api
        .patch(
            "coreapp",
            &PatchParams::default(),
            &Patch::Strategic(&restart),
        )
        .await
        .expect("patch pod template");
    assert!(patched.metadata.generation > before.metadata.generation);

    let after = wait_rolled_out(&api, "coreapp").await;
    assert_eq!(after.status.and_then(|s| s.updated_replicas), Some(2));
    let sets = owned_replica_sets(&ns, &uid).await;
    let new: Vec<&ReplicaSet> = sets
        .iter()
        .filter(|rs| !old.contains(rs.metadata.name.as_deref().unwrap_or_default()))
        .collect();
    assert_eq!(new.len(), 1, "replica sets after the restart: {sets:?}");
    let new_status = new[0].status.as_ref();
    assert_eq!(new_status.and_then(|s| s.available_replicas), Some(2));
    for rs in sets
        .iter()
        .filter(|rs| rs.metadata.name.as_ref().is_some_and(|n| old.contains(n)))
    {
        assert_eq!(
            rs.spec.replicas,
            Some(0),
            "old replica set {:?} still scaled up",
            rs.metadata.name
        );
    }

    // Every remaining pod comes from the new template (old pods are gone, not just unready).
    let hash = new[0]
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("pod-template-hash"))
        .expect("pod-template-hash label on the new replica set")
        .clone();
    wait_for("only new pods to remain", || async {
        let pods = ns
            .api::<Pod>()
            .list(&ListParams::default().labels("app=coreapp"))
            .await
            .map_err(|e| e.to_string())?;
        let hashes: Vec<Option<&String>> = pods
            .items
            .iter()
            .map(|p| {
                p.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("pod-template-hash"))
            })
            .collect();
        if pods.items.len() == 2 && hashes.iter().all(|h| *h == Some(&hash)) {
            Ok(())
        } else {
            Err(format!("pod template hashes {hashes:?}, want 2 x {hash}"))
        }
    })
    .await;
}

#[tokio::test]
async fn service_account_token_reads_only_what_its_role_allows() {
    let ns = TestNamespace::new("rbac").await;
    let cluster = ns.cluster();
    cluster.apply(&format!(
        r#"
apiVersion: v1
kind: Secret
metadata: {{ name: allowed, namespace: {ns} }}
stringData: {{ value: readable }}
---
apiVersion: v1
kind: Secret
metadata: {{ name: other, namespace: {ns} }}
stringData: {{ value: hidden }}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{ name: reader, namespace: {ns} }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{ name: read-allowed, namespace: {ns} }}
rules:
- apiGroups: [""]
  resources: [secrets]
  resourceNames: [allowed]
  verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{ name: reader-reads-allowed, namespace: {ns} }}
roleRef: {{ apiGroup: rbac.authorization.k8s.io, kind: Role, name: read-allowed }}
subjects:
- {{ kind: ServiceAccount, name: reader, namespace: {ns} }}
"#,
        ns = ns.name()
    ));

    let token = test_support::token_for(&ns.client(), ns.name(), "reader").await;
    let as_reader: Api<Secret> = Api::namespaced(cluster.client_with_token(&token), ns.name());

    // RBAC reaches the authorizer through an informer: the binding may need a moment.
    let secret = wait_for("reader to be allowed to get secret allowed", || async {
        as_reader.get("allowed").await.map_err(|e| e.to_string())
    })
    .await;
    let value = secret.data.and_then(|d| d.get("value").cloned());
    assert_eq!(value.map(|v| v.0), Some(b"readable".to_vec()));

    let reader = format!("system:serviceaccount:{}:reader", ns.name());
    let listed = as_reader.list(&ListParams::default()).await;
    assert_forbidden(listed.map(|_| ()), "list secrets", &reader);
    let other = as_reader.get("other").await;
    assert_forbidden(other.map(|_| ()), "get secret other", &reader);
}

fn assert_forbidden(result: Result<(), kube::Error>, what: &str, user: &str) {
    match result {
        Err(kube::Error::Api(status)) if status.code == 403 => {
            assert!(
                status.message.contains(user),
                "refusal of {what} does not name {user}: {}",
                status.message
            );
        }
        other => panic!("{what} as reader: want 403 Forbidden, got {other:?}"),
    }
}

#[tokio::test]
async fn applied_crd_becomes_established_and_validates_objects() {
    let ns = TestNamespace::new("crd").await;
    let cluster = ns.cluster();
    // A group unique to this run, so an attached cluster that already saw this test is no obstacle.
    let group = format!("t{:08x}.wco-test.example.com", rand::random::<u32>());
    let crd_name = format!("widgets.{group}");
    cluster.apply(&format!(
        r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {{ name: "{crd_name}" }}
spec:
  group: "{group}"
  scope: Namespaced
  names: {{ plural: widgets, singular: widget, kind: Widget, listKind: WidgetList }}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: {{ type: integer, minimum: 1 }}
"#
    ));
    let crds: Api<CustomResourceDefinition> = Api::all(ns.client());
    let _cleanup = DeleteOnDrop::cluster_scoped(cluster, "customresourcedefinition", &crd_name);
    wait_for(&format!("CRD {crd_name} to be Established"), || async {
        let crd = crds.get(&crd_name).await.map_err(|e| e.to_string())?;
        let conditions = crd.status.and_then(|s| s.conditions).unwrap_or_default();
        let established = conditions
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        if established {
            Ok(())
        } else {
            Err(format!("conditions {conditions:?}"))
        }
    })
    .await;

    let widget = |size: &str| {
        format!(
            "apiVersion: {group}/v1\nkind: Widget\nmetadata: {{ name: w, namespace: {} }}\nspec: {{ size: {size} }}\n",
            ns.name()
        )
    };
    // Discovery of a new group can lag Established by a moment in kubectl's view.
    wait_for("a valid Widget to be accepted", || async {
        cluster.try_apply(&widget("3")).map(|_| ())
    })
    .await;
    let gvk = GroupVersionKind::gvk(&group, "v1", "Widget");
    let widgets: Api<DynamicObject> =
        Api::namespaced_with(ns.client(), ns.name(), &ApiResource::from_gvk(&gvk));
    let stored = widgets.get("w").await.expect("get the applied widget");
    assert_eq!(stored.data["spec"]["size"], json!(3));

    let refused = cluster
        .try_apply(&widget("0"))
        .expect_err("size 0 violates the schema's minimum");
    assert!(
        refused.contains("spec.size"),
        "refusal does not name the field: {refused}"
    );
}

/// kube (to the apiserver) and the On-Premises API client (to the simulator) speak TLS in one
/// process, as the operator will: both are built on the same rustls provider, so neither panics
/// for want of a process-wide default.
#[tokio::test]
async fn kube_and_the_api_client_share_one_tls_stack() {
    use onprem_sim::{self as sim, DEFAULT_ADMIN_PASSWORD, SimConfig};
    use std::sync::Arc;
    use webhook_ca_operator::onprem::{ClientConfig, Credentials, OnPremClient, TlsTrust};

    let ns = TestNamespace::new("tls-stack").await;
    let pods = ns.api::<Pod>().list(&ListParams::default()).await;
    assert!(pods.is_ok(), "kube over TLS: {pods:?}");

    let simulator = sim::start(SimConfig::default()).await.expect("simulator");
    let ca = simulator.ca_pem().expect("simulator serves TLS").to_owned();
    let client = OnPremClient::new(
        ClientConfig::new(simulator.url(), TlsTrust::CaPem(ca)),
        Arc::new(Credentials::login("admin", DEFAULT_ADMIN_PASSWORD)),
    )
    .expect("api client");
    assert_eq!(client.get_webhook_ca().await.expect("GET over TLS"), None);

    let again = ns.api::<Pod>().list(&ListParams::default()).await;
    assert!(again.is_ok(), "kube after the API client: {again:?}");
}
