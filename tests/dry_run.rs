//! `webhook-ca-operator run --dry-run` end to end, as a team adopting the operator on an
//! existing installation would use it: the dry run reports what it would do and changes
//! nothing outside the resource's status and Events; a live operator afterwards does exactly that.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::ResourceExt;
use kube::api::DeleteParams;
use serde_json::json;
use test_support::TestNamespace;
use test_support::certs::ca_pem;
use test_support::controller::Operator;
use test_support::operator::{
    Setup, apply_wcc, ca_requests, canonical_bundle, condition, operator_events, replica_sets,
    rolled_out, set_secret, setup, spec, template_annotation, uploads, wait_condition,
};
use test_support::wait_for;
use webhook_ca_operator::crd::WebhookCaCertificate;

const HASH_ANNOTATION: &str = "webhookca.io/bundle-sha256";
const FINALIZER: &str = "webhookca.io/cleanup";

fn message(wcc: &WebhookCaCertificate, type_: &str) -> String {
    wcc.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

/// The notes of the operator's `DryRun` Events, all Normal.
async fn dry_run_notes(ns: &TestNamespace) -> Vec<String> {
    operator_events(ns)
        .await
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("DryRun"))
        .inspect(|e| assert_eq!(e.type_.as_deref(), Some("Normal"), "{e:?}"))
        .filter_map(|e| e.note)
        .collect()
}

/// Waits until the simulator has answered at least `n` GETs of the bundle: the operator has
/// made that many passes.
async fn wait_gets(sim: &onprem_sim::Simulator, n: usize) {
    wait_for(&format!("{n} GETs of the bundle"), || async {
        let gets = ca_requests(sim, "GET");
        if gets >= n {
            Ok(())
        } else {
            Err(format!("{gets} so far"))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_reports_the_first_sync_and_changes_nothing() {
    let Setup { ns, sim } = setup("dry-run").await;
    // The installation as the team found it: a bundle uploaded by hand, two CAs in the Secret.
    let by_hand = ca_pem("Uploaded By Hand");
    sim.set_stored_bundle(Some(by_hand.clone()));
    let (first, second) = (ca_pem("Internal Root 1"), ca_pem("Internal Root 2"));
    set_secret(&ns, "internal-ca", "ca.crt", &format!("{first}{second}")).await;
    let deployment = rolled_out(&ns).await;
    let generation = deployment.metadata.generation;
    let sets = replica_sets(&ns).await;
    sim.clear_requests();

    let operator = Operator::start_dry_run(&ns);
    apply_wcc(&ns, spec(&sim, json!({"deletionPolicy": "Delete"}))).await;
    let wcc = wait_condition(&ns, "Ready", "False", "DryRun").await;

    let bundle = canonical_bundle(&[&first, &second]);
    let replaced = canonical_bundle(&[&by_hand]);
    let would_upload = format!(
        "would upload 2 certificate(s), sha256 {}, replacing sha256 {}",
        &bundle.sha256[..16],
        &replaced.sha256[..16]
    );
    let would_restart = "would restart Deployment/coreapp by RolloutRestart";
    let would_finalize = format!("would add the finalizer {FINALIZER}");
    let ready = message(&wcc, "Ready");
    for part in [&would_upload, would_restart, &would_finalize] {
        assert!(ready.contains(part), "Ready says {ready:?}, not {part:?}");
    }
    assert_eq!(
        condition(&wcc, "Uploaded"),
        Some(("False".into(), "DryRun".into()))
    );
    assert!(message(&wcc, "Uploaded").contains(&would_upload));
    assert_eq!(
        condition(&wcc, "RolloutComplete"),
        Some(("False".into(), "DryRun".into()))
    );
    assert!(message(&wcc, "RolloutComplete").contains(would_restart));
    let status = wcc.status.as_ref().expect("status");
    assert_eq!(
        status.bundle.as_ref().map(|b| b.sha256.as_str()),
        Some(bundle.sha256.as_str()),
        "status shows the bundle the sources give"
    );
    assert_eq!(status.uploaded_sha256, None, "nothing was uploaded");
    assert!(
        wait_for("the DryRun Event", || async {
            let notes = dry_run_notes(&ns).await;
            if notes.is_empty() {
                Err("none yet".to_owned())
            } else {
                Ok(notes)
            }
        })
        .await
        .iter()
        .any(|n| n.contains(&would_upload) && n.contains(would_restart))
    );

    // More passes (a spec change brings one) change nothing either, and repeat no Event.
    let gets = ca_requests(&sim, "GET");
    apply_wcc(
        &ns,
        spec(
            &sim,
            json!({"deletionPolicy": "Delete", "driftCheckInterval": "9m"}),
        ),
    )
    .await;
    wait_gets(&sim, gets + 1).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Reading the stored bundle needs a token: logins are the only POSTs, nothing is changed.
    let writes: Vec<String> = sim
        .requests()
        .iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(
        writes.iter().all(|w| w == "POST /v1/users/login"),
        "the request log holds more than logins and GETs: {writes:?}"
    );
    assert_eq!(uploads(&sim), 0, "no POST of the bundle");
    assert_eq!(ca_requests(&sim, "DELETE"), 0, "no DELETE");
    assert_eq!(sim.stored_bundle(), Some(by_hand.clone()));
    let deployment: Deployment = ns.api().get("coreapp").await.expect("get");
    assert_eq!(
        deployment.metadata.generation, generation,
        "the Deployment was not patched"
    );
    assert_eq!(template_annotation(&deployment, HASH_ANNOTATION), None);
    assert_eq!(replica_sets(&ns).await, sets, "no rollout");
    let wcc: WebhookCaCertificate = ns.api().get("prod").await.expect("get");
    assert!(wcc.finalizers().is_empty(), "{:?}", wcc.finalizers());
    assert_eq!(
        dry_run_notes(&ns).await.len(),
        1,
        "the same plan, one Event"
    );
    operator.shutdown().await;

    // The live operator does what the dry run said, and nothing else.
    let operator = Operator::start(&ns);
    let wcc = wait_condition(&ns, "Ready", "True", "Synced").await;
    assert_eq!(sim.stored_bundle(), Some(bundle.pem.clone()));
    assert_eq!(uploads(&sim), 1);
    assert_eq!(
        template_annotation(&rolled_out(&ns).await, HASH_ANNOTATION),
        Some(bundle.sha256.clone())
    );
    assert!(wcc.finalizers().iter().any(|f| f == FINALIZER));
    operator.shutdown().await;

    // Deleted under a dry run: the Event says what cleanup would do; no DELETE, the finalizer
    // holds the resource for a live operator, which then cleans up.
    let operator = Operator::start_dry_run(&ns);
    ns.api::<WebhookCaCertificate>()
        .delete("prod", &DeleteParams::default())
        .await
        .expect("delete");
    wait_for("the DryRun cleanup Event", || async {
        let notes = dry_run_notes(&ns).await;
        if notes.iter().any(|n| n.contains("would delete")) {
            Ok(())
        } else {
            Err(format!("{notes:?}"))
        }
    })
    .await;
    assert_eq!(ca_requests(&sim, "DELETE"), 0);
    assert!(sim.stored_bundle().is_some());
    let held: WebhookCaCertificate = ns.api().get("prod").await.expect("still there");
    assert!(held.finalizers().iter().any(|f| f == FINALIZER));
    operator.shutdown().await;

    let operator = Operator::start(&ns);
    wait_for("the live cleanup", || async {
        match ns.api::<WebhookCaCertificate>().get_opt("prod").await {
            Ok(None) => Ok(()),
            other => Err(format!(
                "{:?}",
                other.map(|w| w.map(|w| w.finalizers().to_vec()))
            )),
        }
    })
    .await;
    assert_eq!(ca_requests(&sim, "DELETE"), 1);
    assert_eq!(sim.stored_bundle(), None);
    operator.shutdown().await;
}

/// With a static token there is no login: a dry run's request log holds nothing but GETs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_secret_a_dry_run_sends_only_gets() {
    let Setup { ns, sim } = setup("dry-run-token").await;
    let token = sim.issue_token("admin").expect("token");
    set_secret(&ns, "wa-token", "token", &token).await;
    set_secret(&ns, "internal-ca", "ca.crt", &ca_pem("Token Root")).await;
    let generation = rolled_out(&ns).await.metadata.generation;
    sim.clear_requests();
    let operator = Operator::start_dry_run(&ns);
    let mut spec = spec(&sim, json!({}));
    spec["api"]["credentials"] = json!({"tokenSecret": {"name": "wa-token", "key": "token"}});
    apply_wcc(&ns, spec).await;
    let wcc = wait_condition(&ns, "Ready", "False", "DryRun").await;
    assert!(
        message(&wcc, "Ready").contains("replacing none stored"),
        "{}",
        message(&wcc, "Ready")
    );
    wait_gets(&sim, 1).await;
    let methods: Vec<String> = sim.requests().iter().map(|r| r.method.clone()).collect();
    assert!(methods.iter().all(|m| m == "GET"), "{methods:?}");
    let deployment: Deployment = ns.api().get("coreapp").await.expect("get");
    assert_eq!(deployment.metadata.generation, generation);
    assert_eq!(sim.stored_bundle(), None);
    operator.shutdown().await;
}
