//! The controller end to end: a real apiserver with kwok nodes, the simulator over TLS, and the
//! controller running in-process against one test namespace, checked the way a user would check
//! it: `kubectl get wcc`, what the API holds, which ReplicaSets exist, which Events were written.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{DeleteParams, ListParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use test_support::TestNamespace;
use test_support::certs::{base64_body, ca_pem, key_pem};
use test_support::operator::{
    Setup, apply_wcc, ca_requests, condition, event_reasons, expected_bundle, operator_events,
    replica_sets, rolled_out, set_secret, setup, spec, template_annotation, uploads,
    wait_condition, wait_stored_bundle,
};
use test_support::wait_for;
use tokio::sync::oneshot;
use webhook_ca_operator::controller::{self, Context, Settings};
use webhook_ca_operator::crd::WebhookCaCertificate;
use webhook_ca_operator::http::Health;
use webhook_ca_operator::metrics::Metrics;
use webhook_ca_operator::onprem::RetryPolicy;

/// A controller running in this process, scoped to one namespace; stopped on drop.
struct Operator {
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Operator {
    fn start(ns: &TestNamespace) -> Self {
        let settings = Settings {
            namespace: Some(ns.name().to_owned()),
            progress_interval: Duration::from_millis(500),
            retry_interval: Duration::from_secs(1),
            api_retry: RetryPolicy {
                base_delay: Duration::from_millis(20),
                max_delay: Duration::from_millis(100),
                ..RetryPolicy::default()
            },
            instance: None,
        };
        let metrics = Arc::new(Metrics::default());
        let health = Arc::new(Health {
            metrics: Arc::clone(&metrics),
            ready: AtomicBool::new(false),
        });
        let ctx = Arc::new(Context::new(ns.client(), metrics, settings));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(controller::run(ctx, health, async move {
            let _ = stopped.await;
        }));
        Self {
            stop: Some(stop),
            task: Some(task),
        }
    }

    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(20), task).await;
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A namespace whose `internal-ca` Secret holds one CA named `ca_name`, the operator running,
/// and the resource (`spec` plus `extra`) Ready.
async fn synced(
    prefix: &str,
    ca_name: &str,
    extra: serde_json::Value,
) -> (Setup, Operator, String) {
    let setup = setup(prefix).await;
    let ca = ca_pem(ca_name);
    set_secret(&setup.ns, "internal-ca", "ca.crt", &ca).await;
    let operator = Operator::start(&setup.ns);
    apply_wcc(&setup.ns, spec(&setup.sim, extra)).await;
    wait_condition(&setup.ns, "Ready", "True", "Synced").await;
    (setup, operator, ca)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_restarts_and_follows_source_changes() {
    let Setup { ns, sim } = setup("ctl-flow").await;
    let first = ca_pem("Internal Root CA 1");
    set_secret(&ns, "internal-ca", "ca.crt", &first).await;
    let before = replica_sets(&ns).await;
    let operator = Operator::start(&ns);
    apply_wcc(&ns, spec(&sim, json!({}))).await;

    let wcc = wait_condition(&ns, "Ready", "True", "Synced").await;
    assert_eq!(
        sim.stored_bundle().as_deref(),
        Some(expected_bundle(&[&first]).as_str())
    );
    let bundle = wcc
        .status
        .as_ref()
        .and_then(|s| s.bundle.clone())
        .expect("bundle status");
    assert_eq!(bundle.count, 1);
    assert_eq!(bundle.certificates[0].subject, "CN=Internal Root CA 1");
    let deployment = rolled_out(&ns).await;
    assert_eq!(
        template_annotation(&deployment, "webhookca.io/bundle-sha256").as_deref(),
        Some(bundle.sha256.as_str())
    );
    assert_eq!(
        template_annotation(&deployment, "team").as_deref(),
        Some("wa"),
        "foreign annotation kept"
    );
    let after_first = replica_sets(&ns).await;
    assert_eq!(
        after_first.difference(&before).count(),
        1,
        "one new ReplicaSet: {after_first:?}"
    );
    assert_eq!(uploads(&sim), 1);
    for reason in ["Uploaded", "RolloutStarted", "RolloutComplete"] {
        assert!(
            event_reasons(&ns).await.iter().any(|r| r == reason),
            "no {reason} Event"
        );
    }

    // A rotation: the Secret gains a second CA; the API gets both, the coreapps restart once more.
    let second = ca_pem("Internal Root CA 2");
    set_secret(&ns, "internal-ca", "ca.crt", &format!("{first}{second}")).await;
    wait_stored_bundle(&sim, &expected_bundle(&[&first, &second])).await;
    wait_condition(&ns, "Ready", "True", "Synced").await;
    let after_rotation = replica_sets(&ns).await;
    assert_eq!(
        after_rotation.difference(&after_first).count(),
        1,
        "{after_rotation:?}"
    );
    // Each upload has its own Event naming its own bundle.
    let upload_notes: BTreeSet<String> = operator_events(&ns)
        .await
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("Uploaded"))
        .filter_map(|e| e.note)
        .collect();
    assert_eq!(upload_notes.len(), 2, "{upload_notes:?}");

    // A restarted operator finds everything in place: no upload, no restart.
    operator.shutdown().await;
    sim.clear_requests();
    let operator = Operator::start(&ns);
    wait_for("the new operator to check the API", || async {
        if ca_requests(&sim, "GET") > 0 {
            Ok(())
        } else {
            Err("no GET yet".to_owned())
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(uploads(&sim), 0, "an operator restart must not re-upload");
    assert_eq!(
        replica_sets(&ns).await,
        after_rotation,
        "an operator restart must not restart workloads"
    );
    operator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_source_never_replaces_the_good_bundle() {
    let (Setup { ns, sim }, operator, good) = synced("ctl-invalid", "Good Root", json!({})).await;
    let uploaded = sim.stored_bundle();
    let sets = replica_sets(&ns).await;

    let key = key_pem();
    set_secret(&ns, "internal-ca", "ca.crt", &format!("{good}{key}")).await;
    let wcc = wait_condition(&ns, "BundleValid", "False", "PrivateKeyRefused").await;
    assert_eq!(
        condition(&wcc, "Ready").map(|c| c.0).as_deref(),
        Some("False")
    );
    let status_text = serde_json::to_string(&wcc.status).expect("json");
    let key_body = base64_body(&key);
    assert!(
        !status_text.contains(&key_body[..40]),
        "key material in status"
    );
    assert!(
        event_reasons(&ns)
            .await
            .iter()
            .any(|r| r == "PrivateKeyRefused")
    );

    // A missing Secret is no better.
    ns.api::<Secret>()
        .delete("internal-ca", &DeleteParams::default())
        .await
        .expect("delete");
    wait_condition(&ns, "BundleValid", "False", "SourceNotFound").await;

    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        sim.stored_bundle(),
        uploaded,
        "the good bundle stays on the API"
    );
    assert_eq!(
        replica_sets(&ns).await,
        sets,
        "no restart for a refused bundle"
    );
    let deletes = sim
        .requests()
        .iter()
        .filter(|r| r.method == "DELETE")
        .count();
    assert_eq!(deletes, 0);
    operator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_on_the_api_is_corrected() {
    let (Setup { ns, sim }, operator, ca) = synced(
        "ctl-drift",
        "Drift Root",
        json!({"driftCheckInterval": "1s"}),
    )
    .await;
    let sets = replica_sets(&ns).await;

    // Someone uploads another bundle by hand.
    sim.set_stored_bundle(Some(ca_pem("Someone Else")));
    wait_stored_bundle(&sim, &expected_bundle(&[&ca])).await;
    // The coreapps already run with this bundle's hash: no second restart for a re-upload.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(replica_sets(&ns).await, sets);
    operator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_policy_delete_removes_the_bundle_and_retain_keeps_it() {
    let (Setup { ns, sim }, operator, _) = synced(
        "ctl-delete",
        "Deleted Root",
        json!({"deletionPolicy": "Delete"}),
    )
    .await;
    let wcc = ns
        .api::<WebhookCaCertificate>()
        .get("prod")
        .await
        .expect("get");
    assert!(wcc.finalizers().iter().any(|f| f == "webhookca.io/cleanup"));

    let api: Api<WebhookCaCertificate> = ns.api();
    api.delete("prod", &DeleteParams::default())
        .await
        .expect("delete");
    wait_for("the resource to be gone", || async {
        match api.get_opt("prod").await {
            Ok(None) => Ok(()),
            other => Err(format!(
                "{:?}",
                other.map(|o| o.map(|w| w.finalizers().to_vec()))
            )),
        }
    })
    .await;
    assert_eq!(
        sim.stored_bundle(),
        None,
        "Delete removes the bundle from the API"
    );

    // Retain (the default) leaves it, and holds no finalizer.
    apply_wcc(&ns, spec(&sim, json!({}))).await;
    let wcc = wait_condition(&ns, "Ready", "True", "Synced").await;
    assert!(wcc.finalizers().is_empty(), "{:?}", wcc.finalizers());
    api.delete("prod", &DeleteParams::default())
        .await
        .expect("delete");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(sim.stored_bundle().is_some(), "Retain keeps the bundle");
    operator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evict_restarts_pods_without_editing_the_workload() {
    let Setup { ns, sim } = setup("ctl-evict").await;
    set_secret(&ns, "internal-ca", "ca.crt", &ca_pem("Evict Root")).await;
    let generation = ns
        .api::<Deployment>()
        .get("coreapp")
        .await
        .expect("get")
        .metadata
        .generation;
    let pods_before: BTreeSet<String> = ns
        .api::<Pod>()
        .list(&ListParams::default().labels("app=coreapp"))
        .await
        .expect("pods")
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    let operator = Operator::start(&ns);
    apply_wcc(
        &ns,
        spec(
            &sim,
            json!({"restart": {"targets": [{"kind": "Deployment", "name": "coreapp"}], "method": "Evict", "minInterval": "0s"}}),
        ),
    )
    .await;
    wait_condition(&ns, "Ready", "True", "Synced").await;
    let deployment = rolled_out(&ns).await;
    assert_eq!(
        deployment.metadata.generation, generation,
        "Evict must not edit the Deployment"
    );
    let pods_after: BTreeSet<String> = ns
        .api::<Pod>()
        .list(&ListParams::default().labels("app=coreapp"))
        .await
        .expect("pods")
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(ResourceExt::name_any)
        .collect();
    assert!(
        pods_after.is_disjoint(&pods_before),
        "every old pod was replaced: {pods_before:?} -> {pods_after:?}"
    );
    operator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_and_insecure_tls_are_reported() {
    let Setup { ns, sim } = setup("ctl-suspend").await;
    set_secret(&ns, "internal-ca", "ca.crt", &ca_pem("Suspended Root")).await;
    let operator = Operator::start(&ns);
    apply_wcc(&ns, spec(&sim, json!({"suspend": true}))).await;
    let wcc = wait_condition(&ns, "Ready", "False", "Suspended").await;
    assert_eq!(
        condition(&wcc, "BundleValid").map(|c| c.0).as_deref(),
        Some("True")
    );
    assert_eq!(
        sim.stored_bundle(),
        None,
        "nothing is uploaded while suspended"
    );

    let mut insecure = spec(&sim, json!({}));
    insecure["api"]["tls"] = json!({"insecureSkipVerify": true});
    apply_wcc(&ns, insecure).await;
    wait_condition(&ns, "Ready", "True", "Synced").await;
    let wcc = wait_condition(&ns, "InsecureTls", "True", "InsecureSkipVerify").await;
    assert!(wcc.status.is_some());
    assert!(
        event_reasons(&ns)
            .await
            .iter()
            .any(|r| r == "InsecureSkipVerify")
    );
    operator.shutdown().await;
}
