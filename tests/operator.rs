//! `webhook-ca-operator run` as users run it: the built binary as a separate process, against
//! the real test cluster and the simulator (in this process, reached over loopback TLS). Two
//! replicas elect one leader and hand over on SIGTERM; and the operator does its whole job with
//! nothing but the Helm chart's ServiceAccount token.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::api::ListParams;
use serde_json::json;
use test_support::certs::ca_pem;
use test_support::operator::{
    Setup, apply_wcc, assert_rolled_with_bundle, expected_bundle, operator_events, set_secret,
    setup, spec, uploads, wait_condition, wait_stored_bundle,
};
use test_support::operator_process::{OperatorProcess, lease_holder, token_kubeconfig};
use test_support::{TestNamespace, run_ok, token_for, wait_for};
use webhook_ca_operator::crd::WebhookCaCertificate;

const BINARY: &str = env!("CARGO_BIN_EXE_webhook-ca-operator");
const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/webhook-ca-operator");
const LEASE: &str = "webhook-ca-operator";
/// A standby (kube-lease-manager) looks at the Lease again when the term it last saw ends, at
/// most 15 s on, whether or not the leader released it; the rest is slack for a busy machine.
const TAKEOVER: Duration = Duration::from_secs(30);

/// Instances that reported an Event of `reason`.
async fn reporters(ns: &TestNamespace, reason: &str) -> BTreeSet<String> {
    operator_events(ns)
        .await
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter_map(|e| e.reporting_instance)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_acts_and_a_standby_takes_over_on_sigterm() {
    let Setup { ns, sim } = setup("op-leader").await;
    let first = ca_pem("Leader Root 1");
    set_secret(&ns, "internal-ca", "ca.crt", &first).await;
    let kubeconfig = ns.cluster().kubeconfig();
    let args = [
        "--leader-elect",
        "--lease-namespace",
        ns.name(),
        "--namespace",
        ns.name(),
    ];
    let mut replicas = vec![
        OperatorProcess::spawn(BINARY, "a", kubeconfig, &args),
        OperatorProcess::spawn(BINARY, "b", kubeconfig, &args),
    ];

    let leases: Api<Lease> = ns.api();
    let leader = wait_for("a leader", || async {
        let who = lease_holder(&leases, LEASE).await?;
        if who == "a" || who == "b" {
            Ok(who)
        } else {
            Err(format!("held by {who}"))
        }
    })
    .await;
    for replica in &replicas {
        replica.wait_ready().await;
    }

    apply_wcc(&ns, spec(&sim, json!({}))).await;
    let wcc = wait_condition(&ns, "Ready", "True", "Synced").await;
    wait_stored_bundle(&sim, &expected_bundle(&[&first])).await;
    assert_eq!(uploads(&sim), 1, "one upload: the standby must not act");
    assert_rolled_with_bundle(&ns, &wcc).await;
    let instances: BTreeSet<String> = operator_events(&ns)
        .await
        .into_iter()
        .filter_map(|e| e.reporting_instance)
        .collect();
    assert_eq!(
        instances,
        BTreeSet::from([leader.clone()]),
        "only the leader writes Events"
    );

    let at = replicas
        .iter()
        .position(|r| r.instance == leader)
        .expect("the leader is one of ours");
    let mut old = replicas.remove(at);
    let standby = replicas.pop().expect("two replicas");
    old.terminate();
    let status = old.exit_status().await;
    assert!(status.success(), "the leader exited with {status}");
    // Its Lease had at least 5 s to run (renewed 5 s before expiry), so only a release can
    // have removed its name by now.
    let after_exit = lease_holder(&leases, LEASE).await;
    assert_ne!(
        after_exit.as_deref(),
        Ok(leader.as_str()),
        "the leader did not release the Lease on SIGTERM"
    );
    let took_over = tokio::time::timeout(
        TAKEOVER,
        wait_for("the standby to take the Lease", || async {
            let who = lease_holder(&leases, LEASE).await?;
            if who == standby.instance {
                Ok(())
            } else {
                Err(format!("held by {who}"))
            }
        }),
    )
    .await;
    assert!(
        took_over.is_ok(),
        "{} did not take the Lease within {TAKEOVER:?} of {leader} stopping",
        standby.instance
    );
    standby.wait_ready().await;

    // The new leader follows a rotation.
    let second = ca_pem("Leader Root 2");
    set_secret(&ns, "internal-ca", "ca.crt", &format!("{first}{second}")).await;
    wait_stored_bundle(&sim, &expected_bundle(&[&first, &second])).await;
    wait_condition(&ns, "Ready", "True", "Synced").await;
    assert_eq!(
        uploads(&sim),
        2,
        "the new leader uploads the rotation and does not re-upload what is in place"
    );
    assert!(
        reporters(&ns, "Uploaded").await.contains(&standby.instance),
        "no Uploaded Event from {}",
        standby.instance
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_with_only_the_charts_namespaced_rbac() {
    let Setup { ns, sim } = setup("op-chart").await;
    let ca = ca_pem("Chart Root");
    set_secret(&ns, "internal-ca", "ca.crt", &ca).await;
    let release_ns = TestNamespace::new("op-release").await;
    let cluster = ns.cluster();
    // The release is named after its namespace, unique per run.
    let release = release_ns.name();
    run_ok(cluster.helm().args(["install", release, CHART]).args([
        "--namespace",
        release,
        "--set",
        &format!("watchNamespace={}", ns.name()),
    ]));

    let sa = format!("{release}-webhook-ca-operator");
    let token = token_for(&release_ns.client(), release, &sa).await;
    // RBAC reaches the authorizer through an informer; start the operator once it applies.
    let as_operator = cluster.client_with_token(&token);
    wait_for("the chart's Roles to apply", || async {
        Api::<WebhookCaCertificate>::namespaced(as_operator.clone(), ns.name())
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        Api::<Lease>::namespaced(as_operator.clone(), release)
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    })
    .await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let kubeconfig = token_kubeconfig(cluster.kubeconfig(), &token, dir.path());
    let operator = OperatorProcess::spawn(
        BINARY,
        "chart",
        &kubeconfig,
        &[
            "--namespace",
            ns.name(),
            "--leader-elect",
            "--lease-namespace",
            release,
        ],
    );

    apply_wcc(&ns, spec(&sim, json!({}))).await;
    let wcc = wait_condition(&ns, "Ready", "True", "Synced").await;
    wait_stored_bundle(&sim, &expected_bundle(&[&ca])).await;
    assert_rolled_with_bundle(&ns, &wcc).await;
    let denied = operator.refused_requests();
    assert!(
        denied.is_empty(),
        "requests the chart's RBAC refused: {denied:?}"
    );
    for reason in ["Uploaded", "RolloutStarted", "RolloutComplete"] {
        let by = wait_for(&format!("a {reason} Event"), || async {
            let by = reporters(&ns, reason).await;
            if by.is_empty() {
                Err("none yet".to_owned())
            } else {
                Ok(by)
            }
        })
        .await;
        assert_eq!(by, BTreeSet::from(["chart".to_owned()]), "{reason}");
    }
    assert_eq!(
        lease_holder(&release_ns.api(), LEASE).await.as_deref(),
        Ok("chart"),
        "the Lease in the release namespace"
    );

    drop(operator);
    run_ok(
        cluster
            .helm()
            .args(["uninstall", release, "--namespace", release, "--wait"]),
    );
}
