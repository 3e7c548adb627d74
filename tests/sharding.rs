//! Splitting a fleet: one operator serving a list of namespaces and nothing beyond it, two
//! operator processes with disjoint label selectors and their own Leases leading at once, each
//! doing the work of its shard only, and flags that cannot work refused at startup.

use std::collections::BTreeSet;
use std::future;
use std::process::Command;

use futures::{StreamExt, stream};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, watcher};
use kube::{Api, ResourceExt};
use onprem_sim::Simulator;
use serde_json::json;
use test_support::certs::ca_pem;
use test_support::controller::{Operator, quick_settings};
use test_support::operator::{
    Setup, apply_labelled_wcc, ca_requests, expected_bundle, operator_events, set_secret, setup,
    spec, uploads, wait_condition, wait_stored_bundle,
};
use test_support::operator_process::{OperatorProcess, lease_holder};
use test_support::{TestNamespace, wait_for};
use webhook_ca_operator::controller::scope::merge;
use webhook_ca_operator::controller::{Scope, Settings};
use webhook_ca_operator::crd::WebhookCaCertificate;

const BINARY: &str = env!("CARGO_BIN_EXE_webhook-ca-operator");

/// A namespace of [`setup`] with a CA in `internal-ca` and a resource `prod` (labelled
/// `labels`) for its simulator; returns the CA.
async fn fleet_member(setup: &Setup, ca_name: &str, labels: serde_json::Value) -> String {
    let ca = ca_pem(ca_name);
    set_secret(&setup.ns, "internal-ca", "ca.crt", &ca).await;
    apply_labelled_wcc(&setup.ns, labels, spec(&setup.sim, json!({}))).await;
    ca
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_list_is_served_and_nothing_beyond_it() {
    let a = setup("shard-list-a").await;
    let b = setup("shard-list-b").await;
    let outside = setup("shard-list-out").await;
    let ca_a = fleet_member(&a, "List Root A", json!({})).await;
    let ca_b = fleet_member(&b, "List Root B", json!({})).await;
    fleet_member(&outside, "List Root Outside", json!({})).await;

    let settings = Settings {
        scope: Scope::new([a.ns.name(), b.ns.name()], None).expect("valid names"),
        ..quick_settings(&a.ns)
    };
    let operator = Operator::start_with(&a.ns, settings);
    wait_condition(&a.ns, "Ready", "True", "Synced").await;
    wait_condition(&b.ns, "Ready", "True", "Synced").await;
    wait_stored_bundle(&a.sim, &expected_bundle(&[&ca_a])).await;
    wait_stored_bundle(&b.sim, &expected_bundle(&[&ca_b])).await;

    // A rotation in one listed namespace is followed (its Secret watch and the resource in the
    // shared cache), and the other listed namespace is left as it is.
    let rotated = ca_pem("List Root A2");
    set_secret(&a.ns, "internal-ca", "ca.crt", &format!("{ca_a}{rotated}")).await;
    wait_stored_bundle(&a.sim, &expected_bundle(&[&ca_a, &rotated])).await;
    assert_eq!(uploads(&a.sim), 2);
    assert_eq!(
        uploads(&b.sim),
        1,
        "namespace b had nothing to upload again"
    );

    // By now the operator has listed, reconciled and followed a change twice: a namespace it
    // served would have been reconciled long ago. The one outside the list was never touched.
    let untouched = outside
        .ns
        .api::<WebhookCaCertificate>()
        .get("prod")
        .await
        .expect("the resource outside the list");
    assert!(
        untouched.status.is_none(),
        "the operator wrote status outside its namespaces: {:?}",
        untouched.status
    );
    assert_eq!(
        ca_requests(&outside.sim, "GET") + ca_requests(&outside.sim, "POST"),
        0,
        "the operator called the API of a resource outside its namespaces"
    );
    assert!(operator_events(&outside.ns).await.is_empty());
    operator.shutdown().await;
}

/// The label of this test's ConfigMaps (the namespaces' own kube-root-ca.crt stays out).
const RELIST_LABEL: &str = "webhook-ca-operator.test/relist";

/// ConfigMap `name` in `ns` with [`RELIST_LABEL`], as a manifest for `kubectl apply`.
fn config_map(ns: &str, name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{ name: {name}, namespace: {ns}, labels: {{ {RELIST_LABEL}: \"yes\" }} }}\n"
    )
}

fn names_in(store: &Store<ConfigMap>) -> BTreeSet<String> {
    store
        .state()
        .iter()
        .map(|o| format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any()))
        .collect()
}

/// The store of a namespace list, fed by real watches through `scope::merge`, while one
/// namespace lists again from the apiserver (its watch replaced by a fresh one, which is what
/// kube's watcher does after a 410): the other namespace's objects stay in the cache, and what
/// changed in the re-listed one arrives as Delete and Apply. Fed to one store as they are, the
/// second list would have replaced the whole store with that one namespace's objects.
#[tokio::test]
async fn a_relist_of_one_namespace_keeps_the_others_in_the_cache() {
    let a = TestNamespace::new("shard-relist-a").await;
    let b = TestNamespace::new("shard-relist-b").await;
    let cluster = a.cluster();
    cluster.apply(&config_map(a.name(), "stays"));
    cluster.apply(&config_map(b.name(), "old"));
    let client = a.client();
    let config = watcher::Config::default().labels(RELIST_LABEL);
    // b's first watch ends right after its list, without being polled into its watch phase.
    let first_watch_of_b = watcher(
        Api::<ConfigMap>::namespaced(client.clone(), b.name()),
        config.clone(),
    )
    .boxed();
    let first_list_of_b = stream::unfold(Some(first_watch_of_b), |watch| async move {
        let mut watch = watch?;
        let item = watch.next().await?;
        let listed = matches!(item, Ok(watcher::Event::InitDone));
        Some((item, (!listed).then_some(watch)))
    });
    let (store, writer) = reflector::store();
    let change_b = {
        let client = client.clone();
        let b = b.name().to_owned();
        let listed = store.clone();
        stream::once(async move {
            // Once the store holds both namespaces' first lists, b changes and lists again.
            listed
                .wait_until_ready()
                .await
                .expect("the store's writer is alive");
            let api = Api::<ConfigMap>::namespaced(client, &b);
            api.delete("old", &Default::default())
                .await
                .expect("delete b/old");
            let new: ConfigMap = serde_json::from_value(
                json!({"metadata": {"name": "new", "labels": {RELIST_LABEL: "yes"}}}),
            )
            .expect("a literal ConfigMap");
            api.create(&Default::default(), &new)
                .await
                .expect("create b/new");
        })
        .filter_map(|()| future::ready(None))
    };
    let relist_of_b = watcher(
        Api::<ConfigMap>::namespaced(client.clone(), b.name()),
        config.clone(),
    );
    let watches = vec![
        watcher(
            Api::<ConfigMap>::namespaced(client.clone(), a.name()),
            config,
        )
        .boxed(),
        first_list_of_b.chain(change_b).chain(relist_of_b).boxed(),
    ];
    let mut events = reflector::reflector(writer, merge(watches, store.clone())).boxed();

    let a_stays = format!("{}/stays", a.name());
    let b_old = format!("{}/old", b.name());
    let b_new = format!("{}/new", b.name());
    let mut init_done = 0;
    let mut deleted = Vec::new();
    let mut missed_a = false;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    let relisted = |names: BTreeSet<String>| names.contains(&b_new) && !names.contains(&b_old);
    while !relisted(names_in(&store)) {
        let event = tokio::time::timeout_at(deadline, events.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "b's re-list never reached the store: {:?}",
                    names_in(&store)
                )
            })
            .expect("the watches do not end");
        match event.expect("no watch error") {
            watcher::Event::InitDone => init_done += 1,
            watcher::Event::Delete(gone) => deleted.push(gone.name_any()),
            _ => {}
        }
        if init_done > 0 && !names_in(&store).contains(&a_stays) {
            missed_a = true;
        }
    }
    assert_eq!(names_in(&store), BTreeSet::from([a_stays, b_new]));
    assert!(
        !missed_a,
        "namespace a's object left the cache during b's re-list"
    );
    assert_eq!(init_done, 1, "the store saw one full list");
    assert_eq!(
        deleted,
        ["old"],
        "the object gone from b is reported deleted"
    );
}

/// Request ids the simulator saw from clients that set one (the operator does, on every call).
fn request_ids(sim: &Simulator) -> BTreeSet<String> {
    sim.requests()
        .into_iter()
        .filter(|r| r.request_id_from_client)
        .map(|r| r.request_id)
        .collect()
}

/// Waits until every request `sim` saw is in `operator`'s log (it logs each call's id once the
/// answer is in), and checks that none is in `other`'s.
async fn assert_served_only_by(
    sim: &Simulator,
    operator: &OperatorProcess,
    other: &OperatorProcess,
) {
    let ids = request_ids(sim);
    assert!(!ids.is_empty(), "the simulator saw no request");
    wait_for(
        &format!("{}'s log to hold every request id", operator.instance),
        || async {
            let log = operator.log_lines().join("\n");
            let missing: Vec<&String> = ids.iter().filter(|id| !log.contains(*id)).collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!("not logged: {missing:?}"))
            }
        },
    )
    .await;
    let log = other.log_lines().join("\n");
    let stray: Vec<&String> = ids.iter().filter(|id| log.contains(*id)).collect();
    assert!(
        stray.is_empty(),
        "{} called an API of the other shard: {stray:?}",
        other.instance
    );
}

/// Instances that reported Events in `ns`.
async fn reporting_instances(ns: &TestNamespace) -> BTreeSet<String> {
    operator_events(ns)
        .await
        .into_iter()
        .filter_map(|e| e.reporting_instance)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shards_lead_at_once_and_each_serves_only_its_own() {
    let eu = setup("shard-eu").await;
    let us = setup("shard-us").await;
    let leases_ns = TestNamespace::new("shard-leases").await;
    let ca_eu = fleet_member(&eu, "Shard Root EU", json!({"shard": "eu"})).await;
    let ca_us = fleet_member(&us, "Shard Root US", json!({"shard": "us"})).await;

    // Both watch both namespaces: the selector alone tells their work apart.
    let namespaces = format!("{},{}", eu.ns.name(), us.ns.name());
    let kubeconfig = eu.ns.cluster().kubeconfig();
    let shard = |name: &str| {
        OperatorProcess::spawn(
            BINARY,
            name,
            kubeconfig,
            &[
                "--namespace",
                &namespaces,
                "--selector",
                &format!("shard={name}"),
                "--leader-elect",
                "--lease-namespace",
                leases_ns.name(),
                "--leader-election-lease-name",
                &format!("wco-{name}"),
            ],
        )
    };
    let eu_operator = shard("eu");
    let us_operator = shard("us");

    let leases: Api<Lease> = leases_ns.api();
    wait_for("each shard to hold its own Lease, both at once", || async {
        let holders = (
            lease_holder(&leases, "wco-eu").await?,
            lease_holder(&leases, "wco-us").await?,
        );
        if holders == ("eu".to_owned(), "us".to_owned()) {
            Ok(())
        } else {
            Err(format!("held by {holders:?}"))
        }
    })
    .await;
    eu_operator.wait_ready().await;
    us_operator.wait_ready().await;

    wait_condition(&eu.ns, "Ready", "True", "Synced").await;
    wait_condition(&us.ns, "Ready", "True", "Synced").await;
    wait_stored_bundle(&eu.sim, &expected_bundle(&[&ca_eu])).await;
    wait_stored_bundle(&us.sim, &expected_bundle(&[&ca_us])).await;
    assert_eq!(uploads(&eu.sim), 1);
    assert_eq!(uploads(&us.sim), 1);
    assert_served_only_by(&eu.sim, &eu_operator, &us_operator).await;
    assert_served_only_by(&us.sim, &us_operator, &eu_operator).await;
    assert_eq!(
        reporting_instances(&eu.ns).await,
        BTreeSet::from(["eu".to_owned()])
    );
    assert_eq!(
        reporting_instances(&us.ns).await,
        BTreeSet::from(["us".to_owned()])
    );

    // Relabelling moves a resource to the other shard: it leaves the eu operator's cache (which
    // forgets its metric series) and enters the us operator's, which follows the next rotation.
    apply_labelled_wcc(&eu.ns, json!({"shard": "us"}), spec(&eu.sim, json!({}))).await;
    let series = format!(
        "webhookca_ready{{namespace=\"{}\",name=\"prod\"}}",
        eu.ns.name()
    );
    wait_for("the resource to move to the us shard", || async {
        let (old, new) = (eu_operator.scrape().await, us_operator.scrape().await);
        match (old.contains(&series), new.contains(&format!("{series} 1"))) {
            (false, true) => Ok(()),
            seen => Err(format!("(in eu's metrics, Ready in us's): {seen:?}")),
        }
    })
    .await;
    eu.sim.clear_requests();
    let rotated = ca_pem("Shard Root EU2");
    set_secret(
        &eu.ns,
        "internal-ca",
        "ca.crt",
        &format!("{ca_eu}{rotated}"),
    )
    .await;
    wait_stored_bundle(&eu.sim, &expected_bundle(&[&ca_eu, &rotated])).await;
    assert_served_only_by(&eu.sim, &us_operator, &eu_operator).await;
}

/// `run` with `args` (and `WATCH_NAMESPACE` when given) and a kubeconfig that leads nowhere:
/// what it printed; it must have failed before connecting.
fn run_refused(args: &[&str], watch_namespace: Option<&str>) -> String {
    let mut cmd = Command::new(BINARY);
    cmd.args([
        "run",
        "--log-format",
        "text",
        "--metrics-bind",
        "127.0.0.1:0",
    ])
    .args(args)
    .env("KUBECONFIG", "/nonexistent/kubeconfig")
    .env_remove("WATCH_NAMESPACE")
    .env_remove("POD_NAMESPACE");
    if let Some(namespaces) = watch_namespace {
        cmd.env("WATCH_NAMESPACE", namespaces);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("starting {BINARY}: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{args:?} started:\n{stderr}");
    assert!(
        !stderr.contains("cannot reach the Kubernetes API"),
        "{args:?} was checked only after connecting:\n{stderr}"
    );
    stderr
}

#[test]
fn flags_that_cannot_work_stop_the_operator_before_it_connects() {
    let cases: [(&[&str], &str); 5] = [
        (
            &["--selector", "shard in eu"],
            "label selector \"shard in eu\"",
        ),
        (
            &["--namespace", "team-a,Team_B"],
            "\"Team_B\" is not a valid namespace name",
        ),
        (
            &["--leader-election-renew-period", "20s"],
            "--leader-election-renew-period (20s) must be shorter than \
             --leader-election-lease-duration (15s)",
        ),
        (
            &["--leader-election-lease-name", "Shard_EU"],
            "\"Shard_EU\" is not a valid object name",
        ),
        (
            &["--leader-election-lease-duration", "2.5s"],
            "not a whole number of seconds",
        ),
    ];
    for (args, want) in cases {
        let stderr = run_refused(args, None);
        assert!(stderr.contains(want), "{args:?}:\n{stderr}");
    }
    // WATCH_NAMESPACE is split like the flag: only the bad name is named.
    let stderr = run_refused(&[], Some("team-a,Team_B"));
    assert!(
        stderr.contains("\"Team_B\" is not a valid namespace name"),
        "{stderr}"
    );
}
