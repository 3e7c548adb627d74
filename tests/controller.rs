//! The controller end to end: a real apiserver with kwok nodes, the simulator over TLS, and the
//! controller running in-process against one test namespace, checked the way a user would check
//! it: `kubectl get wcc`, what the API holds, which ReplicaSets exist, which Events were written.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{DeleteParams, ListParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use support::controller::{Operator, synced};
use support::operator::{
    Setup, apply_wcc, ca_pem, condition, event_reasons, expected_bundle, key_pem, operator_events,
    replica_sets, rolled_out, set_secret, setup, spec, template_annotation, wait_condition,
};
use support::wait_for;
use webhook_ca_operator::crd::WebhookCaCertificate;

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
    let posts = sim
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/ca"))
        .count();
    assert_eq!(posts, 1);
    for reason in ["Uploaded", "RolloutStarted", "RolloutComplete"] {
        assert!(
            event_reasons(&ns).await.iter().any(|r| r == reason),
            "no {reason} Event"
        );
    }

    // A rotation: the Secret gains a second CA; the API gets both, the coreapps restart once more.
    let second = ca_pem("Internal Root CA 2");
    set_secret(&ns, "internal-ca", "ca.crt", &format!("{first}{second}")).await;
    let expected = expected_bundle(&[&first, &second]);
    wait_for("the rotated bundle on the API", || async {
        match sim.stored_bundle() {
            Some(b) if b == expected => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
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
        let gets = sim
            .requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path.ends_with("/ca"))
            .count();
        if gets > 0 {
            Ok(())
        } else {
            Err("no GET yet".to_owned())
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let uploads = sim
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/ca"))
        .count();
    assert_eq!(uploads, 0, "an operator restart must not re-upload");
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
    let key_body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
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
    let expected = expected_bundle(&[&ca]);
    wait_for("the drift to be corrected", || async {
        match sim.stored_bundle() {
            Some(b) if b == expected => Ok(()),
            other => Err(format!("{:?}", other.map(|b| b.len()))),
        }
    })
    .await;
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
