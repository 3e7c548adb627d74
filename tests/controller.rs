//! The controller end to end: a real apiserver with kwok nodes, the simulator over TLS, and the
//! controller running in-process against one test namespace, checked the way a user would check
//! it: `kubectl get wcc`, what the API holds, which ReplicaSets exist, which Events were written.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use test_support::TestNamespace;
use test_support::certs::{base64_body, ca_pem, key_pem};
use test_support::controller::{Operator, synced};
use test_support::operator::{
    Setup, apply_wcc, ca_requests, condition, event_reasons, expected_bundle, operator_events,
    replica_sets, rolled_out, set_secret, setup, spec, template_annotation, uploads,
    wait_condition, wait_stored_bundle,
};
use test_support::wait_for;
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
    wait_gone(&ns, "prod").await;
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
    let pods_before = live_coreapp_pods(&ns).await;
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
    let pods_after = live_coreapp_pods(&ns).await;
    assert!(
        pods_after.is_disjoint(&pods_before),
        "every old pod was replaced: {pods_before:?} -> {pods_after:?}"
    );
    // Evictions count as restarts under their own method, and the rollout's duration is kept.
    let text = operator.scrape().await;
    let evicted = format!(
        r#"webhookca_restarts_total{{namespace="{}",kind="Deployment",method="Evict",result="success"}} 1"#,
        ns.name()
    );
    assert!(text.lines().any(|l| l == evicted), "{evicted}:\n{text}");
    assert!(
        text.lines()
            .any(|l| l == r#"webhookca_rollout_duration_seconds_count{kind="Deployment"} 1"#),
        "{text}"
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

/// Waits until resource `name` is gone from the cluster (finalizers done).
async fn wait_gone(ns: &TestNamespace, name: &str) {
    let api: Api<WebhookCaCertificate> = ns.api();
    wait_for("the resource to be gone", || async {
        match api.get_opt(name).await {
            Ok(None) => Ok(()),
            other => Err(format!(
                "{:?}",
                other.map(|o| o.map(|w| w.finalizers().to_vec()))
            )),
        }
    })
    .await;
}

/// The coreapp pods that are not terminating.
async fn live_coreapp_pods(ns: &TestNamespace) -> BTreeSet<String> {
    ns.api::<Pod>()
        .list(&ListParams::default().labels("app=coreapp"))
        .await
        .expect("pods")
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(ResourceExt::name_any)
        .collect()
}

/// Applies a WebhookCaCertificate named `name` (the support helpers all use `prod`).
async fn apply_named(ns: &TestNamespace, name: &str, spec: serde_json::Value) {
    let object = json!({
        "apiVersion": "webhookca.io/v1alpha1", "kind": "WebhookCaCertificate",
        "metadata": {"name": name}, "spec": spec
    });
    ns.api::<WebhookCaCertificate>()
        .patch(
            name,
            &PatchParams::apply("test").force(),
            &Patch::Apply(&object),
        )
        .await
        .expect("apply the WebhookCaCertificate");
}

/// Waits until resource `name` has condition `type_` at `status`/`reason`; returns its message.
async fn wait_named(
    ns: &TestNamespace,
    name: &str,
    type_: &str,
    status: &str,
    reason: &str,
) -> String {
    let api: Api<WebhookCaCertificate> = ns.api();
    wait_for(&format!("{name}: {type_}={status}/{reason}"), || async {
        let wcc = api.get(name).await.map_err(|e| e.to_string())?;
        let found = wcc
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_).cloned());
        match found {
            Some(c) if c.status == status && c.reason == reason => Ok(c.message),
            other => Err(format!("{other:?}")),
        }
    })
    .await
}

/// Issue 8, item 1: two resources naming one API (the URL spelt differently) do not fight. The
/// younger one steps back with `Conflict` naming the owner and calls the API not at all; when
/// the owner goes, it takes over without a manual step. The same for a workload two resources
/// would restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_resources_naming_one_api_the_younger_steps_back() {
    let (Setup { ns, sim }, operator, owner_ca) =
        synced("ctl-conflict", "Owner Root", json!({})).await;
    let owner_bundle = expected_bundle(&[&owner_ca]);
    let sets = replica_sets(&ns).await;
    let twin_ca = ca_pem("Twin Root");
    set_secret(&ns, "twin-ca", "ca.crt", &twin_ca).await;
    sim.clear_requests();

    let mut twin = spec(&sim, json!({}));
    twin["sources"] = json!([{"secret": {"name": "twin-ca", "key": "ca.crt"}}]);
    // The same API: a trailing slash and the host upper-cased do not make another one.
    twin["api"]["url"] = json!(format!(
        "{}/",
        sim.url().to_uppercase().replace("HTTPS://", "https://")
    ));
    apply_named(&ns, "twin", twin).await;
    let message = wait_named(&ns, "twin", "Ready", "False", "Conflict").await;
    assert!(
        message.contains(&format!("{}/prod", ns.name())),
        "{message}"
    );
    // A change of the twin's own source brings a pass; it still does nothing.
    set_secret(
        &ns,
        "twin-ca",
        "ca.crt",
        &format!("{twin_ca}{}", ca_pem("Twin Root 2")),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        ca_requests(&sim, "POST"),
        0,
        "the younger resource uploads nothing"
    );
    assert_eq!(
        ca_requests(&sim, "GET"),
        0,
        "and does not even read the API"
    );
    assert!(
        !sim.requests().iter().any(|r| r.path.ends_with("/login")),
        "nor logs in"
    );
    assert_eq!(sim.stored_bundle().as_deref(), Some(owner_bundle.as_str()));
    assert_eq!(
        replica_sets(&ns).await,
        sets,
        "no restart by the younger one"
    );
    assert!(event_reasons(&ns).await.iter().any(|r| r == "Conflict"));

    // The owner goes (Retain: its bundle stays); the twin takes over by itself.
    ns.api::<WebhookCaCertificate>()
        .delete("prod", &DeleteParams::default())
        .await
        .expect("delete the owner");
    wait_named(&ns, "twin", "Ready", "True", "Synced").await;
    let twin_secret = ns.api::<Secret>().get("twin-ca").await.expect("twin-ca");
    let twin_pem =
        String::from_utf8(twin_secret.data.expect("data")["ca.crt"].0.clone()).expect("utf-8");
    assert_eq!(
        sim.stored_bundle().as_deref(),
        Some(expected_bundle(&[&twin_pem]).as_str()),
        "the API now holds the twin's bundle"
    );

    // A resource with its own API but the twin's coreapp Deployment restarts nothing.
    let other = onprem_sim::start(onprem_sim::SimConfig::default())
        .await
        .expect("a second simulator");
    set_secret(&ns, "other-tls", "ca.crt", other.ca_pem().expect("TLS")).await;
    let mut third = spec(&other, json!({}));
    third["api"]["tls"] = json!({"caSecret": {"name": "other-tls"}});
    apply_named(&ns, "third", third).await;
    let message = wait_named(&ns, "third", "Ready", "False", "Conflict").await;
    assert!(message.contains("Deployment/coreapp"), "{message}");
    assert!(message.contains("/twin"), "{message}");
    operator.shutdown().await;
}

/// Issue 8, item 2: a resource deleted under `deletionPolicy: Retain` leaves no metric series
/// behind (an expiry alert would otherwise fire forever for a resource that no longer exists).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_resource_leaves_no_metric_series() {
    let (Setup { ns, sim: _sim }, operator, _) =
        synced("ctl-forget", "Forgotten Root", json!({})).await;
    let series = format!(r#"{{namespace="{}",name="prod"}}"#, ns.name());
    let text = operator.scrape().await;
    for family in [
        "webhookca_ready",
        "webhookca_bundle_certificates",
        "webhookca_bundle_earliest_expiry_timestamp_seconds",
    ] {
        assert!(
            text.contains(&format!("{family}{series}")),
            "{family} missing:\n{text}"
        );
    }
    ns.api::<WebhookCaCertificate>()
        .delete("prod", &DeleteParams::default())
        .await
        .expect("delete");
    wait_for("the resource's gauges to leave /metrics", || async {
        let text = operator.scrape().await;
        let left: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#') && l.contains(&series) && !l.contains("_total"))
            .collect();
        if left.is_empty() {
            Ok(())
        } else {
            Err(left.join("\n"))
        }
    })
    .await;
    operator.shutdown().await;
}

/// Issue 8, item 3: deletion under `Delete` honours `suspend` (released without a DELETE),
/// evicts the pods of Evict targets, and ends in bounded time with a Warning when the
/// credentials Secret is already gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_cleanup_honours_suspend_evicts_and_is_bounded() {
    let Setup { ns, sim } = setup("ctl-cleanup").await;
    set_secret(&ns, "internal-ca", "ca.crt", &ca_pem("Cleanup Root")).await;
    let operator = Operator::start(&ns);
    let api: Api<WebhookCaCertificate> = ns.api();
    // Suspended: released, the bundle stays, no DELETE.
    apply_wcc(&ns, spec(&sim, json!({"deletionPolicy": "Delete"}))).await;
    wait_condition(&ns, "Ready", "True", "Synced").await;
    apply_wcc(
        &ns,
        spec(&sim, json!({"deletionPolicy": "Delete", "suspend": true})),
    )
    .await;
    wait_condition(&ns, "Ready", "False", "Suspended").await;
    api.delete("prod", &DeleteParams::default())
        .await
        .expect("delete");
    wait_gone(&ns, "prod").await;
    assert!(
        sim.stored_bundle().is_some(),
        "a suspended resource deletes nothing"
    );
    assert_eq!(ca_requests(&sim, "DELETE"), 0);
    assert!(event_reasons(&ns).await.iter().any(|r| r == "Released"));

    // Evict: the bundle is deleted and every old coreapp pod is evicted.
    let evict = json!({"deletionPolicy": "Delete", "restart": {
        "targets": [{"kind": "Deployment", "name": "coreapp"}], "method": "Evict", "minInterval": "0s"}});
    apply_wcc(&ns, spec(&sim, evict)).await;
    wait_condition(&ns, "Ready", "True", "Synced").await;
    let before = live_coreapp_pods(&ns).await;
    api.delete("prod", &DeleteParams::default())
        .await
        .expect("delete");
    wait_gone(&ns, "prod").await;
    assert_eq!(sim.stored_bundle(), None, "Delete removed the bundle");
    let after = live_coreapp_pods(&ns).await;
    assert!(
        after.is_disjoint(&before),
        "every old pod evicted: {before:?} -> {after:?}"
    );

    // The credentials Secret already gone: the cleanup gives up at once, with a Warning.
    apply_wcc(&ns, spec(&sim, json!({"deletionPolicy": "Delete"}))).await;
    wait_condition(&ns, "Ready", "True", "Synced").await;
    ns.api::<Secret>()
        .delete("wa-admin", &DeleteParams::default())
        .await
        .expect("delete the credentials");
    let started = std::time::Instant::now();
    api.delete("prod", &DeleteParams::default())
        .await
        .expect("delete");
    wait_gone(&ns, "prod").await;
    println!(
        "cleanup without credentials ended after {:?}",
        started.elapsed()
    );
    let warnings: Vec<String> = operator_events(&ns)
        .await
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("CleanupFailed"))
        .filter_map(|e| e.note)
        .collect();
    assert!(
        warnings.iter().any(|n| n.contains("wa-admin")),
        "a Warning names the missing Secret: {warnings:?}"
    );
    assert!(
        sim.stored_bundle().is_some(),
        "the bundle stays where it could not be deleted"
    );
    operator.shutdown().await;
}

/// Issue 8, item 4, with the defaults users run (debounce 5s, minInterval 1m): a burst of 20
/// source updates within a second is one upload and one rollout; a change inside minInterval
/// waits for the throttle and then restarts once. And a source that never rests is uploaded
/// after maxDelay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debounce_and_restart_throttle_with_default_values() {
    let defaults = json!({
        "debounce": "5s",
        "restart": {"targets": [{"kind": "Deployment", "name": "coreapp"}], "minInterval": "1m"}
    });
    let Setup { ns, sim } = setup("ctl-burst").await;
    let first = ca_pem("Burst Root 0");
    set_secret(&ns, "internal-ca", "ca.crt", &first).await;
    let operator = Operator::start(&ns);
    apply_wcc(&ns, spec(&sim, defaults.clone())).await;
    // The first upload to an API that holds nothing is not debounced.
    wait_condition(&ns, "Ready", "True", "Synced").await;
    assert_eq!(ca_requests(&sim, "POST"), 1);
    let after_first = replica_sets(&ns).await;
    sim.clear_requests();

    // 20 updates within one second.
    let mut last = String::new();
    for i in 1..=20 {
        last = ca_pem(&format!("Burst Root {i}"));
        set_secret(&ns, "internal-ca", "ca.crt", &last).await;
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let expected = expected_bundle(&[&last]);
    wait_for("the last bundle of the burst on the API", || async {
        match sim.stored_bundle() {
            Some(b) if b == expected => Ok(()),
            _ => Err("not yet".to_owned()),
        }
    })
    .await;
    // The restart waits for the throttle: the first restart began less than a minute ago.
    wait_condition(&ns, "Ready", "True", "Synced").await;
    let after_burst = replica_sets(&ns).await;
    assert_eq!(ca_requests(&sim, "POST"), 1, "one upload for the burst");
    assert_eq!(
        after_burst.difference(&after_first).count(),
        1,
        "one rollout for the burst: {after_burst:?}"
    );
    assert!(
        event_reasons(&ns)
            .await
            .iter()
            .any(|r| r == "RestartThrottled"),
        "the burst's restart waited for minInterval"
    );

    // Another change right away: uploaded after the debounce, restarted once the minute since
    // the burst's restart has passed.
    let next = ca_pem("After Burst Root");
    set_secret(&ns, "internal-ca", "ca.crt", &next).await;
    wait_condition(&ns, "RolloutComplete", "False", "RestartThrottled").await;
    assert_eq!(
        replica_sets(&ns).await,
        after_burst,
        "no restart inside minInterval"
    );
    wait_for("the throttled restart", || async {
        let sets = replica_sets(&ns).await;
        if sets.difference(&after_burst).count() == 1 {
            Ok(())
        } else {
            Err(format!("{sets:?}"))
        }
    })
    .await;
    wait_condition(&ns, "Ready", "True", "Synced").await;
    assert_eq!(ca_requests(&sim, "POST"), 2);
    assert_eq!(
        replica_sets(&ns).await.difference(&after_burst).count(),
        1,
        "restarted once"
    );

    // A source that changes every second never rests for the 5s debounce; maxDelay (3s here)
    // uploads it anyway while it is still changing.
    let mut restless = spec(&sim, defaults);
    restless["maxDelay"] = json!("3s");
    restless["restart"]["method"] = json!("None");
    apply_wcc(&ns, restless).await;
    sim.clear_requests();
    let mut uploaded_while_changing = false;
    for i in 0..10 {
        set_secret(
            &ns,
            "internal-ca",
            "ca.crt",
            &ca_pem(&format!("Restless Root {i}")),
        )
        .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        if ca_requests(&sim, "POST") > 0 {
            uploaded_while_changing = true;
            break;
        }
    }
    assert!(uploaded_while_changing, "maxDelay must bound the debounce");
    operator.shutdown().await;
}

/// Issue 8, item 7: a ConfigMap that loses the label a selector matches triggers the resource
/// that read it, at once (not at the next drift check, 10 minutes away by default).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_stops_matching_triggers_the_resource() {
    let Setup { ns, sim } = setup("ctl-unmatch").await;
    let (a, b) = (ca_pem("Labelled Root A"), ca_pem("Labelled Root B"));
    let config_maps: Api<k8s_openapi::api::core::v1::ConfigMap> = ns.api();
    for (name, pem) in [("ca-a", &a), ("ca-b", &b)] {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "labels": {"webhookca.io/bundle": "prod"}},
            "data": {"ca.crt": pem}});
        config_maps
            .patch(
                name,
                &PatchParams::apply("test").force(),
                &Patch::Apply(&cm),
            )
            .await
            .expect("apply configmap");
    }
    let operator = Operator::start(&ns);
    let mut selecting = spec(&sim, json!({}));
    selecting["sources"] =
        json!([{"configMap": {"selector": {"matchLabels": {"webhookca.io/bundle": "prod"}}}}]);
    apply_wcc(&ns, selecting).await;
    wait_condition(&ns, "Ready", "True", "Synced").await;
    assert_eq!(
        sim.stored_bundle().as_deref(),
        Some(expected_bundle(&[&a, &b]).as_str())
    );

    // ca-b loses the label (kubectl label configmap ca-b webhookca.io/bundle-).
    let unlabel = json!({"metadata": {"labels": {"webhookca.io/bundle": null}}});
    config_maps
        .patch("ca-b", &PatchParams::default(), &Patch::Merge(&unlabel))
        .await
        .expect("remove the label");
    let expected = expected_bundle(&[&a]);
    wait_for("the bundle without ca-b on the API", || async {
        match sim.stored_bundle() {
            Some(s) if s == expected => Ok(()),
            other => Err(format!("{:?}", other.map(|s| s.len()))),
        }
    })
    .await;
    operator.shutdown().await;
}

/// Issue 8, item 8: when someone else's bundle was stored and the operator puts its own back,
/// the workloads with pods that started meanwhile restart; the others are left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_correction_restarts_coreapps_that_started_meanwhile() {
    let Setup { ns, sim } = setup("ctl-stale").await;
    let ca = ca_pem("Stale Root");
    set_secret(&ns, "internal-ca", "ca.crt", &ca).await;
    // A second coreapp Deployment whose pods all predate the foreign bundle.
    let other: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "coreapp-b"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "coreapp-b"}},
            "template": {
                "metadata": {"labels": {"app": "coreapp-b"}},
                "spec": {"containers": [{"name": "coreapp", "image": "registry.invalid/coreapp:1"}]}
            }
        }
    }))
    .expect("deployment");
    ns.api::<Deployment>()
        .create(&kube::api::PostParams::default(), &other)
        .await
        .expect("create coreapp-b");
    let operator = Operator::start(&ns);
    let targets = json!({"targets": [
        {"kind": "Deployment", "name": "coreapp"}, {"kind": "Deployment", "name": "coreapp-b"}],
        "minInterval": "0s"});
    apply_wcc(
        &ns,
        spec(
            &sim,
            json!({"driftCheckInterval": "1h", "restart": targets.clone()}),
        ),
    )
    .await;
    wait_condition(&ns, "Ready", "True", "Synced").await;
    rolled_out(&ns).await;
    let wcc = wait_for("coreapp-b rolled", || async {
        let w = ns
            .api::<WebhookCaCertificate>()
            .get("prod")
            .await
            .map_err(|e| e.to_string())?;
        let rolled = w
            .status
            .as_ref()
            .and_then(|s| s.rollout.as_ref())
            .is_some_and(|r| r.completed_at.is_some());
        if rolled {
            Ok(w)
        } else {
            Err("rollout not complete".into())
        }
    })
    .await;
    assert!(
        wcc.status
            .as_ref()
            .and_then(|s| s.last_in_sync_time.as_ref())
            .is_some()
    );
    // Creation times have whole seconds: start the foreign period in a later second.
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // Someone stores another bundle; meanwhile coreapp scales up, and its new pod loads it.
    sim.set_stored_bundle(Some(ca_pem("Someone Else")));
    let scale = json!({"spec": {"replicas": 3}});
    ns.api::<Deployment>()
        .patch("coreapp", &PatchParams::default(), &Patch::Merge(&scale))
        .await
        .expect("scale coreapp");
    let coreapp = rolled_out(&ns).await;
    assert_eq!(
        coreapp.status.as_ref().and_then(|s| s.ready_replicas),
        Some(3)
    );
    let sets = replica_sets(&ns).await;

    // The next drift check (brought forward by a spec edit) puts the bundle back.
    apply_wcc(
        &ns,
        spec(
            &sim,
            json!({"driftCheckInterval": "59m", "restart": targets}),
        ),
    )
    .await;
    let expected = expected_bundle(&[&ca]);
    wait_for("the operator's bundle back on the API", || async {
        match sim.stored_bundle() {
            Some(s) if s == expected => Ok(()),
            _ => Err("foreign".to_owned()),
        }
    })
    .await;
    wait_for("coreapp to restart", || async {
        let now = replica_sets(&ns).await;
        let new: Vec<&String> = now.difference(&sets).collect();
        match new.as_slice() {
            [one] if one.starts_with("coreapp-") && !one.starts_with("coreapp-b-") => Ok(()),
            other => Err(format!("new ReplicaSets: {other:?}")),
        }
    })
    .await;
    wait_condition(&ns, "Ready", "True", "Synced").await;
    let new: Vec<String> = replica_sets(&ns).await.difference(&sets).cloned().collect();
    assert!(
        new.iter().all(|rs| !rs.starts_with("coreapp-b-")),
        "coreapp-b, whose pods all predate the foreign bundle, is left alone: {new:?}"
    );
    operator.shutdown().await;
}
