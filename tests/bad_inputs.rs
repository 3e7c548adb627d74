//! Bad inputs through the controller (issue 12), and a workload that never comes up after its
//! restart, end to end: the real control plane, the
//! simulator over TLS and the controller in-process. A good bundle is uploaded and rolled first;
//! then the source Secret's content is swapped for each bad input of a table, and each must end
//! in a clear condition (reason, and a message naming the Secret and key) while the API keeps the
//! good bundle, nothing is uploaded, no workload restarts, and neither the status nor an Event
//! shows the bad content. Restoring the Secret brings the resource back to Ready with no upload.
//!
//! Cases covered elsewhere and not repeated here: a deleted Secret (`tests/controller.rs`), a
//! named key overwritten with prose and `optional: true` (`tests/correctness.rs`), `expired:
//! Drop` with a rotation next to the expired CA (`tests/correctness.rs`), every key of a
//! `kubernetes.io/tls` Secret (`tests/sources.rs`).
//!
//! The table runs with `debounce: 0s` to stay fast: a refused source never reaches the debounce
//! (it stops before any upload), so the debounce changes nothing but how long an upload waits.
//! The last case runs with the default debounce (5s) all the same.

use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use test_support::certs::{CertSpec, base64_lines, ca_pem, expired_ca_pem, key_pem};
use test_support::controller::Operator;
use test_support::operator::{
    Setup, apply_wcc, bundle_sha256, bundle_warnings, condition, expected_bundle, message,
    operator_events, replica_sets, rolled_out, set_secret, set_secret_bytes, setup, spec,
    template_annotation, uploads, wait_condition, wait_stored_bundle, wait_warning_event,
};
use test_support::{TestNamespace, wait_for};
use webhook_ca_operator::crd::WebhookCaCertificate;

const SECRET: &str = "internal-ca";
const KEY: &str = "ca.crt";

async fn get_prod(ns: &TestNamespace) -> Result<WebhookCaCertificate, String> {
    let api = ns.api::<WebhookCaCertificate>();
    api.get("prod").await.map_err(|e| e.to_string())
}

/// One bad input: what the Secret's key holds, the `BundleValid` reason, what the message must
/// say, and text that must never be shown (in status or an Event).
struct Case {
    name: &'static str,
    content: Vec<u8>,
    reason: &'static str,
    says: Vec<String>,
    never_shown: Vec<String>,
}

/// Deterministic bytes that are not UTF-8 (a stray `0xff` every few bytes).
fn binary_junk(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            if i % 7 == 0 {
                0xff
            } else {
                (i * 31 % 251) as u8
            }
        })
        .collect()
}

/// About 900 KB of text that looks like a log file pasted by mistake (a Secret holds 1 MiB).
fn huge_log() -> String {
    (0..16_500)
        .map(|i| {
            format!(
                "2026-05-01T12:00:{:02}Z INFO request {i} served in 12ms\n",
                i % 60
            )
        })
        .collect()
}

fn cases(good: &str) -> Vec<Case> {
    let source = format!("secret {SECRET} key {KEY}");
    let key = key_pem();
    let truncated: String = {
        let lines: Vec<&str> = good.lines().collect();
        // BEGIN and half the body, no END line: a copy-paste cut short.
        lines[..lines.len() / 2].join("\n") + "\n"
    };
    let bad_base64 = good.replacen(
        base64_lines(good)[1],
        "this is not base64 at all!!!$$$$$$$$$$$$$$$$$$$$$$$$$$$$$$$$$$$$$",
        1,
    );
    let leaf = CertSpec::leaf("webapp.example").self_signed();
    let expired = expired_ca_pem("Expired Root 2021");
    // A pasted binary blob inside a CERTIFICATE block: valid base64, ~900 KB, not X.509.
    let blob = base64::engine::general_purpose::STANDARD.encode(binary_junk(660_000));
    let blob_pem = {
        let body: Vec<&str> = blob
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
            .collect();
        format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            body.join("\n")
        )
    };
    let huge = huge_log();
    let with_blob = format!("{good}{blob_pem}");
    for text in [&huge, &with_blob] {
        assert!((850_000..1_000_000).contains(&text.len()), "{}", text.len());
    }
    vec![
        Case {
            name: "malformed PEM: a block cut short",
            content: truncated.clone().into_bytes(),
            reason: "InvalidPem",
            says: vec![source.clone(), "no END line".to_owned()],
            never_shown: base64_lines(&truncated)
                .iter()
                .map(|l| l.to_string())
                .collect(),
        },
        Case {
            name: "malformed PEM: a line that is not base64",
            content: bad_base64.into_bytes(),
            reason: "InvalidPem",
            says: vec![
                source.clone(),
                "block 1".to_owned(),
                "invalid base64".to_owned(),
            ],
            never_shown: vec![],
        },
        Case {
            name: "a private key next to the CA",
            content: format!("{good}{key}").into_bytes(),
            reason: "PrivateKeyRefused",
            says: vec![source.clone(), "private key".to_owned()],
            never_shown: base64_lines(&key).iter().map(|l| l.to_string()).collect(),
        },
        Case {
            name: "the named key emptied",
            content: Vec::new(),
            reason: "SourceInvalid",
            says: vec![format!(
                "Secret \"{SECRET}\" key \"{KEY}\" holds no certificate"
            )],
            never_shown: vec![],
        },
        Case {
            name: "a huge Secret: 900 KB of pasted log",
            content: huge.into_bytes(),
            reason: "SourceInvalid",
            says: vec![format!(
                "Secret \"{SECRET}\" key \"{KEY}\" holds no certificate"
            )],
            never_shown: vec!["INFO request".to_owned()],
        },
        Case {
            name: "a huge Secret: the CA and a 900 KB blob in a CERTIFICATE block",
            content: with_blob.into_bytes(),
            reason: "InvalidCertificate",
            says: vec![source.clone(), "block 2".to_owned()],
            never_shown: vec![blob[..64].to_owned()],
        },
        Case {
            name: "binary junk",
            content: binary_junk(4096),
            reason: "SourceInvalid",
            says: vec![format!(
                "Secret \"{SECRET}\" key \"{KEY}\" is not UTF-8 text"
            )],
            never_shown: vec![],
        },
        Case {
            name: "a non-CA certificate (policy nonCa: Refuse)",
            content: format!("{good}{}", leaf.pem).into_bytes(),
            reason: "CertificateRefused",
            says: vec![source.clone(), "webapp.example".to_owned(), "CA".to_owned()],
            never_shown: vec![],
        },
        Case {
            name: "an expired certificate (policy expired: Refuse, the default)",
            content: format!("{good}{expired}").into_bytes(),
            reason: "CertificateRefused",
            says: vec![
                source.clone(),
                "Expired Root 2021".to_owned(),
                "expired".to_owned(),
            ],
            never_shown: vec![],
        },
    ]
}

/// Everything a user sees of the resource: its status and the operator's Events.
async fn shown(ns: &TestNamespace) -> String {
    let wcc = ns
        .api::<WebhookCaCertificate>()
        .get("prod")
        .await
        .expect("get wcc");
    let events: Vec<String> = operator_events(ns)
        .await
        .into_iter()
        .filter_map(|e| e.note)
        .collect();
    format!(
        "{}\n{}",
        serde_json::to_string(&wcc.status).expect("json"),
        events.join("\n")
    )
}

/// Waits for the case's condition and checks it, then that the good bundle stayed and nothing
/// went out or restarted; restores the Secret and waits for Ready again.
async fn run_case(setup: &Setup, case: &Case, good: &str, stored: &str) {
    let Setup { ns, sim } = setup;
    let sets = replica_sets(ns).await;
    sim.clear_requests();
    set_secret_bytes(ns, SECRET, KEY, &case.content).await;

    let wcc = wait_condition(ns, "BundleValid", "False", case.reason).await;
    let said = message(&wcc, "BundleValid");
    test_support::figure!("{}: BundleValid=False/{}: {said}", case.name, case.reason);
    for part in &case.says {
        assert!(said.contains(part.as_str()), "{}: {said:?}", case.name);
    }
    assert_eq!(
        condition(&wcc, "Ready"),
        Some(("False".to_owned(), case.reason.to_owned())),
        "{}: Ready names the reason",
        case.name
    );
    wait_warning_event(ns, case.reason, SECRET).await;
    let seen = shown(ns).await;
    for secret in &case.never_shown {
        assert!(
            !seen.contains(secret.as_str()),
            "{}: the bad content shows in status or an Event",
            case.name
        );
    }

    // A few passes later (retry interval 1 s): the API holds the good bundle, no POST, no
    // DELETE, no new ReplicaSet.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        sim.stored_bundle().as_deref(),
        Some(stored),
        "{}: the API keeps the good bundle",
        case.name
    );
    assert_eq!(uploads(sim), 0, "{}: nothing uploaded", case.name);
    assert!(
        !sim.requests().iter().any(|r| r.method == "DELETE"),
        "{}: nothing deleted",
        case.name
    );
    assert_eq!(replica_sets(ns).await, sets, "{}: no restart", case.name);

    set_secret_bytes(ns, SECRET, KEY, good.as_bytes()).await;
    wait_condition(ns, "Ready", "True", "Synced").await;
    assert_eq!(uploads(sim), 0, "{}: restoring uploads nothing", case.name);
    assert_eq!(
        replica_sets(ns).await,
        sets,
        "{}: restoring restarts nothing",
        case.name
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_input_is_refused_and_the_good_bundle_kept() {
    let setup = setup("bad-inputs").await;
    let good = ca_pem("Good Root");
    set_secret(&setup.ns, SECRET, KEY, &good).await;
    let operator = Operator::start(&setup.ns);
    let policy = json!({"policy": {"nonCa": "Refuse"}});
    apply_wcc(&setup.ns, spec(&setup.sim, policy)).await;
    wait_condition(&setup.ns, "Ready", "True", "Synced").await;
    let stored = expected_bundle(&[&good]);
    wait_stored_bundle(&setup.sim, &stored).await;

    let mut cases = cases(&good);
    let last = cases.pop().expect("a case");
    for case in &cases {
        run_case(&setup, case, &good, &stored).await;
    }

    // The default debounce (5s): the refusal is as immediate, and nothing is uploaded after it.
    let mut defaults = spec(&setup.sim, json!({"policy": {"nonCa": "Refuse"}}));
    defaults
        .as_object_mut()
        .expect("spec object")
        .remove("debounce");
    apply_wcc(&setup.ns, defaults).await;
    wait_condition(&setup.ns, "Ready", "True", "Synced").await;
    run_case(&setup, &last, &good, &stored).await;
    operator.shutdown().await;
}

/// `spec.policy.expired` and `nonCa` when the certificate is uploaded: `Warn` uploads the expired
/// CA and says so (status warnings, `ExpiringSoon`); the default `nonCa: Warn` uploads a leaf
/// with a warning. (`Refuse` is in the table above; `Drop` in `tests/correctness.rs`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_warn_and_non_ca_warn_upload_with_a_warning() {
    let setup = setup("bad-warn").await;
    let Setup { ns, sim } = &setup;
    let good = ca_pem("Good Root");
    set_secret(ns, SECRET, KEY, &good).await;
    let operator = Operator::start(ns);
    apply_wcc(ns, spec(sim, json!({"policy": {"expired": "Warn"}}))).await;
    wait_stored_bundle(sim, &expected_bundle(&[&good])).await;
    wait_condition(ns, "Ready", "True", "Synced").await;

    let expired = expired_ca_pem("Expired Root 2021");
    set_secret(ns, SECRET, KEY, &format!("{good}{expired}")).await;
    // Uploaded as is, the expired CA included, and rolled.
    let with_expired = format!("{good}{expired}");
    wait_for("the bundle with the expired CA on the API", || async {
        match sim.stored_bundle() {
            Some(b) if b == with_expired => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let wcc = wait_for("the warning in status and ExpiringSoon", || async {
        let wcc = get_prod(ns).await?;
        let warnings = bundle_warnings(&wcc);
        let expiring = condition(&wcc, "ExpiringSoon");
        let ready = condition(&wcc, "Ready");
        match (warnings.as_slice(), &expiring, &ready) {
            ([one], Some((s, _)), Some((r, _)))
                if one.contains("Expired Root 2021") && s == "True" && r == "True" =>
            {
                Ok(wcc)
            }
            _ => Err(format!(
                "warnings {warnings:?}, ExpiringSoon {expiring:?}, Ready {ready:?}"
            )),
        }
    })
    .await;
    assert!(
        message(&wcc, "ExpiringSoon").contains("Expired Root 2021"),
        "{}",
        message(&wcc, "ExpiringSoon")
    );
    let warned = operator_events(ns).await.into_iter().any(|e| {
        e.type_.as_deref() == Some("Warning")
            && e.reason.as_deref() == Some("ExpiringSoon")
            && e.note
                .as_deref()
                .is_some_and(|n| n.contains("Expired Root 2021"))
    });
    assert!(warned, "a Warning Event names the expired CA");

    // The default nonCa policy is Warn: a leaf next to the CA is uploaded and reported.
    apply_wcc(ns, spec(sim, json!({}))).await;
    let leaf = CertSpec::leaf("webapp.example").self_signed();
    set_secret(ns, SECRET, KEY, &format!("{good}{}", leaf.pem)).await;
    wait_stored_bundle(sim, &format!("{good}{}", leaf.pem)).await;
    wait_for("the non-CA warning in status", || async {
        let wcc = get_prod(ns).await?;
        let warnings = bundle_warnings(&wcc);
        match warnings.as_slice() {
            [one] if one.contains("webapp.example") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    wait_condition(ns, "Ready", "True", "Synced").await;
    operator.shutdown().await;
}

/// A Deployment whose pods never become ready: the test cluster's kwok stage
/// `wco-pod-never-ready` (hack/cluster/stages/) runs Pods labelled `wco.test/never-ready=true`
/// but never marks them Ready, as a coreapp that cannot start.
fn never_ready_deployment(name: &str) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "progressDeadlineSeconds": 4,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name, "wco.test/never-ready": "true"}},
                "spec": {"containers": [{"name": "coreapp", "image": "registry.invalid/coreapp:1"}]}
            }
        }
    }))
    .expect("deployment")
}

/// Rollout failure end to end: a coreapp Deployment that never becomes available. The
/// Deployment controller marks the operator's restart `ProgressDeadlineExceeded`; the resource
/// reports `RolloutComplete=False`/`RolloutFailed` naming the Deployment and Kubernetes' own
/// message, `Ready` follows, a Warning Event and `webhookca_rollout_failed` say so, and the API
/// keeps the uploaded bundle (a rollout failure is not an upload failure). Once the workload is
/// fixed (its pods become ready), the same rollout is reported complete without another
/// restart or upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_that_never_becomes_available_is_rollout_failed() {
    let Setup { ns, sim } = setup("rollout-fail").await;
    let deployments = ns.api::<Deployment>();
    deployments
        .create(
            &PostParams::default(),
            &never_ready_deployment("coreapp-stuck"),
        )
        .await
        .expect("create the stuck deployment");
    let ca = ca_pem("Rollout Root");
    set_secret(&ns, SECRET, KEY, &ca).await;
    let operator = Operator::start(&ns);
    let targets = json!({"restart": {
        "targets": [
            {"kind": "Deployment", "name": "coreapp"},
            {"kind": "Deployment", "name": "coreapp-stuck"},
        ],
        "minInterval": "0s",
    }});
    apply_wcc(&ns, spec(&sim, targets)).await;

    let wcc = wait_condition(&ns, "RolloutComplete", "False", "RolloutFailed").await;
    let failed = message(&wcc, "RolloutComplete");
    assert!(
        failed.contains("Deployment/coreapp-stuck")
            && failed.contains("progress deadline exceeded")
            && failed.contains("has timed out progressing"),
        "{failed}"
    );
    assert!(!failed.contains("Deployment/coreapp:"), "{failed}");
    assert_eq!(
        condition(&wcc, "Ready"),
        Some(("False".to_owned(), "RolloutFailed".to_owned()))
    );
    assert_eq!(
        condition(&wcc, "Uploaded").map(|c| c.0).as_deref(),
        Some("True")
    );
    let sha = bundle_sha256(&wcc);
    assert_eq!(
        sim.stored_bundle().as_deref(),
        Some(expected_bundle(&[&ca]).as_str())
    );
    // The failure is that of the operator's restart: the Deployment carries the bundle's hash,
    // the controller has observed it, and a ReplicaSet of that template exists.
    let stuck = deployments.get("coreapp-stuck").await.expect("get");
    assert_eq!(
        template_annotation(&stuck, "webhookca.io/bundle-sha256").as_deref(),
        Some(sha.as_str())
    );
    let status = stuck.status.clone().expect("status");
    assert_eq!(status.observed_generation, stuck.metadata.generation);
    let restarted = ns
        .api::<ReplicaSet>()
        .list(&ListParams::default().labels("app=coreapp-stuck"))
        .await
        .expect("list")
        .items
        .into_iter()
        .filter(|rs| {
            rs.spec
                .template
                .as_ref()
                .and_then(|t| t.metadata.as_ref())
                .and_then(|m| m.annotations.as_ref())
                .and_then(|a| a.get("webhookca.io/bundle-sha256"))
                == Some(&sha)
        })
        .count();
    assert_eq!(restarted, 1, "one ReplicaSet of the restarted template");
    // The healthy target rolled with the bundle all the same.
    assert_eq!(
        template_annotation(&rolled_out(&ns).await, "webhookca.io/bundle-sha256").as_deref(),
        Some(sha.as_str())
    );
    wait_warning_event(&ns, "RolloutFailed", "Deployment/coreapp-stuck").await;
    let failed_series = format!(
        "webhookca_rollout_failed{{namespace=\"{}\",name=\"prod\"}} 1",
        ns.name()
    );
    let metrics = operator.scrape().await;
    assert!(metrics.contains(&failed_series), "{metrics}");

    // The workload is fixed (its pods can become ready): the operator reports the rollout
    // complete, with no new restart by it and no upload.
    sim.clear_requests();
    let fix =
        json!({"spec": {"template": {"metadata": {"labels": {"wco.test/never-ready": null}}}}});
    deployments
        .patch(
            "coreapp-stuck",
            &PatchParams::default(),
            &Patch::Merge(&fix),
        )
        .await
        .expect("fix the deployment");
    let wcc = wait_condition(&ns, "RolloutComplete", "True", "RolloutComplete").await;
    assert_eq!(
        condition(&wcc, "Ready"),
        Some(("True".to_owned(), "Synced".to_owned()))
    );
    assert_eq!(uploads(&sim), 0);
    let fixed = deployments.get("coreapp-stuck").await.expect("get");
    assert_eq!(
        template_annotation(&fixed, "webhookca.io/bundle-sha256").as_deref(),
        Some(sha.as_str())
    );
    let cleared = format!(
        "webhookca_rollout_failed{{namespace=\"{}\",name=\"prod\"}} 0",
        ns.name()
    );
    wait_for("webhookca_rollout_failed back to 0", || async {
        let metrics = operator.scrape().await;
        if metrics.contains(&cleared) {
            Ok(())
        } else {
            Err(metrics)
        }
    })
    .await;
    operator.shutdown().await;
}
