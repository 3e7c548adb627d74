//! Issue 12's fault matrix, end to end: the real control plane, the built operator binary as a
//! process, real SIGKILLs. The operator SIGKILLed at random points of a reconcile; the leader
//! SIGKILLed with a standby waiting; the On-Premises API down (connections refused, then 503s,
//! then 429 with Retry-After) during a rotation; a login token that dies mid-life. The fourth
//! fault, a kube-apiserver restart under a running operator, is in `tests/apiserver_restart.rs`
//! (it needs a cluster of its own).
//!
//! Every resource here acts at once (`debounce: 0s` and `restart.minInterval: 0s`, as
//! `operator::spec` sets; defaults 5 s and 1 m) and the operators retry a failed pass after 1 s
//! (`--retry-interval 1s`, default 30 s): the point is what survives a fault, not the pacing of
//! the defaults. The counts each test prints are the matrix's figures.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use onprem_sim::{Fault, SimConfig, Simulator};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::json;
use sha2::{Digest, Sha256};
use test_support::certs::ca_pem;
use test_support::operator::{
    Setup, apply_wcc, canonical_bundle, condition, create_coreapp, event_reasons, operator_events,
    set_secret, setup, setup_with, spec, template_annotation, uploads, wait_condition,
    wait_stored_bundle,
};
use test_support::operator_process::{OperatorProcess, lease_holder};
use test_support::{TestNamespace, rollout_status, wait_for};
use webhook_ca_operator::crd::WebhookCaCertificate;

const BINARY: &str = env!("CARGO_BIN_EXE_webhook-ca-operator");
/// The pod-template annotation that says which bundle a workload was restarted for.
const HASH: &str = "webhookca.io/bundle-sha256";
const CA_PATH: &str = "/v1/certificates/webhooks/ca";

/// `webhook-ca-operator run` for the test namespace only, retrying failed passes after 1 s.
fn operator(ns: &TestNamespace, instance: &str, extra: &[&str]) -> OperatorProcess {
    let mut args = vec!["--namespace", ns.name(), "--retry-interval", "1s"];
    args.extend_from_slice(extra);
    OperatorProcess::spawn(BINARY, instance, ns.cluster().kubeconfig(), &args)
}

/// A bundle the operator would build from these PEM texts: its canonical PEM, the hash it
/// stamps on pod templates, and the SHA-256 of the PEM as uploaded (the simulator logs that).
struct Expected {
    pem: String,
    hash: String,
    body_sha256: String,
}

fn expected(pems: &[&str]) -> Expected {
    let bundle = canonical_bundle(pems);
    Expected {
        body_sha256: hex::encode(Sha256::digest(bundle.pem.as_bytes())),
        hash: bundle.sha256,
        pem: bundle.pem,
    }
}

/// Uploads (`POST .../ca` that the API accepted) per body SHA-256.
fn uploads_by_body(sim: &Simulator) -> BTreeMap<String, usize> {
    let mut by_body = BTreeMap::new();
    for r in sim.requests() {
        if r.method == "POST" && r.path == CA_PATH && r.status == Some(200) {
            *by_body
                .entry(r.body_sha256.unwrap_or_default())
                .or_insert(0) += 1;
        }
    }
    by_body
}

/// ReplicaSets of Deployment `name` per bundle hash of their pod template (`-` for none): one
/// ReplicaSet is one rollout.
async fn rollouts_by_hash(ns: &TestNamespace, name: &str) -> BTreeMap<String, usize> {
    let mut by_hash = BTreeMap::new();
    let sets = ns
        .api::<ReplicaSet>()
        .list(&ListParams::default())
        .await
        .expect("list replicasets")
        .items;
    for rs in sets {
        let owned = rs
            .owner_references()
            .iter()
            .any(|o| o.kind == "Deployment" && o.name == name);
        if !owned {
            continue;
        }
        let hash = rs
            .spec
            .template
            .as_ref()
            .and_then(|t| t.metadata.as_ref())
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get(HASH).cloned())
            .unwrap_or_else(|| "-".to_owned());
        *by_hash.entry(hash).or_insert(0) += 1;
    }
    by_hash
}

async fn deployment(ns: &TestNamespace, name: &str) -> Deployment {
    ns.api::<Deployment>()
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("get Deployment {name}: {e}"))
}

/// Waits until every Deployment in `targets` carries `hash` and has rolled out.
async fn wait_rolled(ns: &TestNamespace, targets: &[&str], hash: &str) {
    wait_for(&format!("{targets:?} to run bundle {hash}"), || async {
        for name in targets {
            let d = deployment(ns, name).await;
            let seen = template_annotation(&d, HASH);
            if seen.as_deref() != Some(hash) {
                return Err(format!("{name} carries {seen:?}"));
            }
            rollout_status(&d).map_err(|e| format!("{name}: {e}"))?;
        }
        Ok(())
    })
    .await;
}

/// Makes Deployment `name`'s rollouts last a few seconds: a new pod counts as available only
/// after 1 s of readiness (kwok makes pods ready at once), so a kill can land mid-rollout.
async fn slow_rollouts(ns: &TestNamespace, name: &str) {
    ns.api::<Deployment>()
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"minReadySeconds": 1}})),
        )
        .await
        .unwrap_or_else(|e| panic!("patch Deployment {name}: {e}"));
}

/// Rotates `internal-ca` to `first` and a new CA named `name`, and waits until the API holds
/// the bundle, coreapp runs it and the resource is Ready again.
async fn rotate(setup: &Setup, first: &str, name: &str) -> Expected {
    let added = ca_pem(name);
    let want = expected(&[first, &added]);
    set_secret(
        &setup.ns,
        "internal-ca",
        "ca.crt",
        &format!("{first}{added}"),
    )
    .await;
    wait_stored_bundle(&setup.sim, &want.pem).await;
    wait_rolled(&setup.ns, &["coreapp"], &want.hash).await;
    wait_condition(&setup.ns, "Ready", "True", "Synced").await;
    want
}

/// Where a reconcile stood when its operator was killed, judged from what a user sees after
/// the kill: the API's bundle, the targets' pod templates and rollouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    BeforeUpload,
    /// Some target's pod template does not carry the bundle yet.
    BetweenUploadAndRestart,
    /// Every target restarted, but the status does not record the rollout yet: a window of
    /// milliseconds, aimed at by killing as soon as the first target carries the bundle.
    RestartedStatusUnwritten,
    DuringRollout,
    AfterRollout,
}

async fn phase(sim: &Simulator, ns: &TestNamespace, targets: &[&str], want: &Expected) -> Phase {
    if sim.stored_bundle().as_deref() != Some(want.pem.as_str()) {
        return Phase::BeforeUpload;
    }
    let mut rolled = true;
    for name in targets {
        let d = deployment(ns, name).await;
        if template_annotation(&d, HASH).as_deref() != Some(want.hash.as_str()) {
            return Phase::BetweenUploadAndRestart;
        }
        rolled &= rollout_status(&d).is_ok();
    }
    let wcc = ns
        .api::<WebhookCaCertificate>()
        .get("prod")
        .await
        .expect("get the resource");
    let recorded = wcc
        .status
        .and_then(|s| s.rollout)
        .is_some_and(|r| r.bundle_sha256 == want.hash);
    if !recorded {
        Phase::RestartedStatusUnwritten
    } else if rolled {
        Phase::AfterRollout
    } else {
        Phase::DuringRollout
    }
}

/// Polls `check` every 5 ms (phases last a few hundred ms) for up to a minute.
async fn poll_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Kills per target phase: every target phase is aimed at this often (12 kills in all).
/// `WCO_FAULTS_KILLS_PER_PHASE` makes a longer soak of it.
const KILLS_PER_PHASE: usize = 3;

fn kills_per_phase() -> usize {
    std::env::var("WCO_FAULTS_KILLS_PER_PHASE")
        .ok()
        .and_then(|n| n.parse().ok())
        .filter(|n| *n >= 1)
        .unwrap_or(KILLS_PER_PHASE)
}

/// The random source of a kill schedule: seeded from `WCO_FAULTS_SEED` when set (to repeat a
/// run), else at random; the seed is printed.
fn seeded(what: &str) -> (u64, StdRng) {
    let seed: u64 = std::env::var("WCO_FAULTS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    test_support::figure!("{what} seed: {seed} (rerun with WCO_FAULTS_SEED={seed})");
    (seed, StdRng::seed_from_u64(seed))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkills_at_random_points_lose_no_change_and_roll_each_bundle_at_most_once() {
    let (seed, mut rng) = seeded("fault matrix");

    let Setup { ns, sim } = setup("faults-kill").await;
    create_coreapp(&ns, "coreapp-b").await;
    let targets = ["coreapp", "coreapp-b"];
    for t in targets {
        slow_rollouts(&ns, t).await;
    }
    let base = ca_pem("Kill Base Root");
    set_secret(&ns, "internal-ca", "ca.crt", &base).await;
    // Each API call takes 150 ms more, so that the read-back after an upload leaves a window
    // between the upload and the restart that a kill can land in.
    sim.set_latency(Duration::from_millis(150));
    apply_wcc(
        &ns,
        spec(
            &sim,
            json!({"restart": {
                "targets": [{"kind": "Deployment", "name": "coreapp"},
                            {"kind": "Deployment", "name": "coreapp-b"}],
                "minInterval": "0s"
            }}),
        ),
    )
    .await;
    let mut running = operator(&ns, "kill-0", &[]);
    let first = expected(&[&base]);
    wait_rolled(&ns, &targets, &first.hash).await;
    wait_condition(&ns, "Ready", "True", "Synced").await;
    let rollouts_before: BTreeMap<&str, usize> = {
        let mut m = BTreeMap::new();
        for t in targets {
            m.insert(t, rollouts_by_hash(&ns, t).await.values().sum());
        }
        m
    };
    sim.clear_requests();

    let mut aims: Vec<Phase> = [
        Phase::BeforeUpload,
        Phase::BetweenUploadAndRestart,
        Phase::RestartedStatusUnwritten,
        Phase::DuringRollout,
    ]
    .iter()
    .flat_map(|p| std::iter::repeat_n(*p, kills_per_phase()))
    .collect();
    aims.shuffle(&mut rng);

    let mut killed_in: BTreeMap<Phase, usize> = BTreeMap::new();
    let mut resumed = 0;
    let mut bundles = Vec::new();
    let mut latest = first;
    for (i, aim) in aims.iter().enumerate() {
        let rotated = ca_pem(&format!("Kill Root {i}"));
        latest = expected(&[&base, &rotated]);
        set_secret(&ns, "internal-ca", "ca.crt", &format!("{base}{rotated}")).await;
        bundles.push(latest.hash.clone());
        let delay = match aim {
            Phase::BeforeUpload => Duration::from_millis(rng.random_range(0..200)),
            Phase::BetweenUploadAndRestart => {
                poll_until("the upload", || async {
                    uploads_by_body(&sim).contains_key(&latest.body_sha256)
                })
                .await;
                Duration::from_millis(rng.random_range(0..100))
            }
            Phase::RestartedStatusUnwritten | Phase::DuringRollout | Phase::AfterRollout => {
                poll_until("the restart", || async {
                    template_annotation(&deployment(&ns, "coreapp").await, HASH).as_deref()
                        == Some(latest.hash.as_str())
                })
                .await;
                if *aim == Phase::RestartedStatusUnwritten {
                    Duration::ZERO
                } else {
                    Duration::from_millis(rng.random_range(0..1000))
                }
            }
        };
        tokio::time::sleep(delay).await;
        running.kill();
        let at = phase(&sim, &ns, &targets, &latest).await;
        test_support::figure!("kill {i}: aimed {aim:?} after {delay:?}, landed {at:?}");
        *killed_in.entry(at).or_insert(0) += 1;
        running = operator(&ns, &format!("kill-{}", i + 1), &[]);
        // Half the time the next operator finishes what the killed one left (the restart it
        // owed, the rollout to follow) before the next change; else the change comes at once.
        if rng.random_bool(0.5) {
            wait_stored_bundle(&sim, &latest.pem).await;
            wait_rolled(&ns, &targets, &latest.hash).await;
            resumed += 1;
        }
    }

    // The last operator settles everything.
    wait_stored_bundle(&sim, &latest.pem).await;
    wait_rolled(&ns, &targets, &latest.hash).await;
    let wcc = wait_condition(&ns, "Ready", "True", "Synced").await;
    assert_eq!(
        wcc.status
            .as_ref()
            .and_then(|s| s.bundle.as_ref())
            .map(|b| b.sha256.clone()),
        Some(latest.hash.clone()),
        "the status reports the latest bundle"
    );

    let by_body = uploads_by_body(&sim);
    let uploads_total: usize = by_body.values().sum();
    let mut rollouts = BTreeMap::new();
    let mut per_hash = BTreeMap::new();
    for t in targets {
        let by_hash = rollouts_by_hash(&ns, t).await;
        let total: usize = by_hash.values().sum();
        rollouts.insert(t, total - rollouts_before[t]);
        per_hash.insert(t, by_hash);
    }
    test_support::figure!(
        "fault matrix (seed {seed}): {} changes, {} kills by phase {killed_in:?} ({resumed} \
         left to settle before the next change), {uploads_total} uploads ({} distinct bundles), \
         rollouts per target {rollouts:?}",
        bundles.len(),
        aims.len(),
        by_body.len()
    );
    for (body, n) in &by_body {
        assert_eq!(
            *n, 1,
            "bundle with body sha256 {body} was uploaded {n} times"
        );
    }
    assert!(uploads_total <= bundles.len());
    for (t, by_hash) in &per_hash {
        for (hash, n) in by_hash {
            assert_eq!(
                *n, 1,
                "{t} rolled out {n} times for bundle {hash}: {by_hash:?}"
            );
        }
        assert!(
            rollouts[t] <= bundles.len(),
            "{t}: {} rollouts for {} changes",
            rollouts[t],
            bundles.len()
        );
        assert!(by_hash.contains_key(&latest.hash));
    }
    // Every kill aimed at a phase; the ones that landed where they aimed make the matrix. The
    // window between the restart and the status write is too short to be sure of a landing.
    for p in [
        Phase::BeforeUpload,
        Phase::BetweenUploadAndRestart,
        Phase::DuringRollout,
    ] {
        assert!(
            killed_in.get(&p).copied().unwrap_or(0) >= 1,
            "no kill landed {p:?}: {killed_in:?} (seed {seed})"
        );
    }
    drop(running);
}

/// Names of the pods of Deployment `app` seen so far: listed every 100 ms in the background
/// (an evicted pod's replacement lives for seconds before the next eviction).
fn track_pods(
    ns: &TestNamespace,
    app: &str,
) -> (Arc<Mutex<BTreeSet<String>>>, tokio::task::JoinHandle<()>) {
    let seen = Arc::new(Mutex::new(BTreeSet::new()));
    let pods: Api<Pod> = ns.api();
    let params = ListParams::default().labels(&format!("app={app}"));
    let into = Arc::clone(&seen);
    let task = tokio::spawn(async move {
        loop {
            if let Ok(list) = pods.list(&params).await {
                let mut seen = into.lock().unwrap_or_else(PoisonError::into_inner);
                seen.extend(list.items.iter().map(ResourceExt::name_any));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    (seen, task)
}

/// Kills during a restart by eviction (no mark on the pod template: only status records it).
const EVICT_KILLS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkills_during_evictions_evict_each_pod_once_per_bundle() {
    let (seed, mut rng) = seeded("eviction kills");
    let Setup { ns, sim } = setup("faults-evict").await;
    let base = ca_pem("Evict Base Root");
    set_secret(&ns, "internal-ca", "ca.crt", &base).await;
    apply_wcc(
        &ns,
        spec(
            &sim,
            json!({"restart": {
                "targets": [{"kind": "Deployment", "name": "coreapp"}],
                "method": "Evict",
                "minInterval": "0s"
            }}),
        ),
    )
    .await;
    let mut running = operator(&ns, "evict-0", &[]);
    wait_condition(&ns, "Ready", "True", "Synced").await;
    let (seen, poller) = track_pods(&ns, "coreapp");
    let seen_now = || seen.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let pods: Api<Pod> = ns.api();
    let current = || async {
        pods.list(&ListParams::default().labels("app=coreapp"))
            .await
            .expect("list pods")
            .items
    };
    // Let the poller see the pods of the first rollout.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut evicted_before_kill = Vec::new();
    let mut latest = String::new();
    for i in 0..EVICT_KILLS {
        let before = seen_now();
        let rotated = ca_pem(&format!("Evict Root {i}"));
        let want = expected(&[&base, &rotated]);
        latest.clone_from(&want.pem);
        set_secret(&ns, "internal-ca", "ca.crt", &format!("{base}{rotated}")).await;
        poll_until("the upload", || async {
            uploads_by_body(&sim).contains_key(&want.body_sha256)
        })
        .await;
        // One pod is evicted per pass, passes 3 s apart: this spreads the kills over the
        // first pass (nothing evicted yet), the first eviction and the second.
        let delay = Duration::from_millis(rng.random_range(0..7000));
        tokio::time::sleep(delay).await;
        running.kill();
        let evicted = seen_now().difference(&before).count();
        test_support::figure!(
            "eviction kill {i}: {delay:?} after the upload, {evicted} pod(s) replaced"
        );
        evicted_before_kill.push(evicted);
        running = operator(&ns, &format!("evict-{}", i + 1), &[]);

        let api: Api<WebhookCaCertificate> = ns.api();
        wait_for("the eviction rollout to complete", || async {
            let wcc = api.get("prod").await.map_err(|e| e.to_string())?;
            let rollout = wcc.status.as_ref().and_then(|s| s.rollout.as_ref());
            match rollout {
                Some(r) if r.bundle_sha256 == want.hash && r.completed_at.is_some() => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        let upload_second = sim
            .requests()
            .iter()
            .find(|r| r.method == "POST" && r.body_sha256.as_deref() == Some(&want.body_sha256))
            .map(|r| r.at.as_second())
            .expect("the upload in the log");
        wait_for("every pod to be a new one, ready", || async {
            let pods = current().await;
            let old: Vec<String> = pods
                .iter()
                .map(ResourceExt::name_any)
                .filter(|n| before.contains(n))
                .collect();
            let ready = pods.iter().filter(|p| pod_ready(p)).count();
            if old.is_empty() && ready == 2 {
                Ok(())
            } else {
                Err(format!("old pods {old:?}, {ready} ready"))
            }
        })
        .await;
        for p in current().await {
            let created = p.creation_timestamp().map(|t| t.0.as_second());
            assert!(
                created >= Some(upload_second),
                "pod {} predates the upload of the bundle it should run",
                p.name_any()
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let replaced: BTreeSet<String> = seen_now().difference(&before).cloned().collect();
        assert_eq!(
            replaced.len(),
            2,
            "change {i}: each of the 2 pods evicted once, not {replaced:?}"
        );
    }
    poller.abort();
    assert_eq!(
        sim.stored_bundle(),
        Some(latest),
        "the API holds the latest bundle"
    );
    assert_eq!(uploads(&sim), 1 + EVICT_KILLS, "each bundle uploaded once");
    test_support::figure!(
        "eviction kills (seed {seed}): {EVICT_KILLS} changes, pods replaced before each kill \
         {evicted_before_kill:?}, {} pods replaced in all (2 per change), {} uploads",
        seen_now().len() - 2,
        uploads(&sim) - 1
    );
    drop(running);
}

/// Whether the pod is Ready.
fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Lease timings for this test: a 6 s Lease renewed every 2 s (defaults 15 s and 10 s), so the
/// takeover is quick to wait for; the mechanism is the same.
const LEASE_SECS: u64 = 6;
/// kube-lease-manager's standby sleeps until the Lease it saw expires, then releases it and
/// sleeps up to 1 s at random before it locks it; then two API calls on a busy machine.
/// Measured 0.3-1.0 s after the Lease ran out.
const TAKEOVER_SLACK: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_leader_is_replaced_within_the_lease_and_nothing_is_done_twice() {
    let fixture = setup("faults-leader").await;
    let (ns, sim) = (&fixture.ns, &fixture.sim);
    let first = ca_pem("Leader Root A");
    set_secret(ns, "internal-ca", "ca.crt", &first).await;
    apply_wcc(ns, spec(sim, json!({}))).await;
    let lease_flags = [
        "--leader-elect",
        "--lease-namespace",
        ns.name(),
        "--leader-election-lease-name",
        "wco-faults",
        "--leader-election-lease-duration",
        "6s",
        "--leader-election-renew-period",
        "2s",
    ];
    let leases: Api<Lease> = ns.api();
    let holder_is = |who: &'static str| {
        let leases = leases.clone();
        move || {
            let leases = leases.clone();
            async move {
                match lease_holder(&leases, "wco-faults").await {
                    Ok(h) if h == who => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            }
        }
    };
    let leader = operator(ns, "leader", &lease_flags);
    wait_for("the first operator to lead", holder_is("leader")).await;
    let standby = operator(ns, "standby", &lease_flags);
    standby.wait_ready().await;
    wait_condition(ns, "Ready", "True", "Synced").await;
    let a = expected(&[&first]);
    wait_stored_bundle(sim, &a.pem).await;
    wait_rolled(ns, &["coreapp"], &a.hash).await;

    // A rotation; the leader dies right after its upload, before anything else of it is done.
    // The read-back after the upload takes 200 ms more, which leaves the restart to the standby.
    sim.set_latency(Duration::from_millis(200));
    let second = ca_pem("Leader Root B");
    let b = expected(&[&first, &second]);
    set_secret(ns, "internal-ca", "ca.crt", &format!("{first}{second}")).await;
    poll_until("the leader's upload", || async {
        uploads_by_body(sim).contains_key(&b.body_sha256)
    })
    .await;
    leader.kill();
    let killed = Instant::now();
    let at = phase(sim, ns, &["coreapp"], &b).await;
    // When the dead leader's Lease runs out: its last renewal plus the duration.
    let lease = leases.get("wco-faults").await.expect("the Lease");
    let lease_spec = lease.spec.expect("a Lease spec");
    let expiry = lease_spec
        .renew_time
        .expect("a renewed Lease")
        .0
        .checked_add(jiff::SignedDuration::from_secs(
            lease_spec
                .lease_duration_seconds
                .expect("a duration")
                .into(),
        ))
        .expect("a time");
    let check = holder_is("standby");
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Err(holder) = check().await {
        assert!(
            Instant::now() < deadline,
            "the Lease is still held by {holder}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let takeover = killed.elapsed();
    let after_expiry = jiff::Timestamp::now().duration_since(expiry);
    test_support::figure!(
        "leader SIGKILLed ({at:?}); the standby leads {takeover:?} after the kill, \
         {after_expiry:#} after the Lease ran out (Lease {LEASE_SECS} s)"
    );
    assert!(
        takeover <= Duration::from_secs(LEASE_SECS) + TAKEOVER_SLACK,
        "the standby took {takeover:?} to take over a {LEASE_SECS} s Lease"
    );
    wait_rolled(ns, &["coreapp"], &b.hash).await;
    wait_condition(ns, "Ready", "True", "Synced").await;

    // A change after the takeover is handled once, by the new leader.
    let c = rotate(&fixture, &first, "Leader Root C").await;

    let by_body = uploads_by_body(sim);
    let by_hash = rollouts_by_hash(ns, "coreapp").await;
    test_support::figure!("leader kill: uploads {by_body:?}, rollouts by bundle {by_hash:?}");
    for want in [&a, &b, &c] {
        assert_eq!(
            by_body.get(&want.body_sha256),
            Some(&1),
            "uploads of {}",
            want.hash
        );
        assert_eq!(
            by_hash.get(&want.hash),
            Some(&1),
            "rollouts for {}",
            want.hash
        );
    }
    assert_eq!(uploads(sim), 3, "no upload beside the three bundles");
    assert_eq!(
        by_hash.values().sum::<usize>(),
        4,
        "the initial ReplicaSet and one per bundle: {by_hash:?}"
    );
    drop(standby);
}

/// The `Uploaded` condition's reason and message now.
async fn uploaded(ns: &TestNamespace) -> Option<(String, String)> {
    let wcc = ns
        .api::<WebhookCaCertificate>()
        .get("prod")
        .await
        .expect("get the resource");
    let status = condition(&wcc, "Uploaded")?;
    let message = wcc
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Uploaded")
        .map(|c| c.message.clone())?;
    Some((format!("{}/{}", status.0, status.1), message))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_waits_out_refused_connections_503s_and_429s_then_completes() {
    let Setup { ns, sim } = setup("faults-api-down").await;
    let first = ca_pem("Down Root A");
    set_secret(&ns, "internal-ca", "ca.crt", &first).await;
    apply_wcc(&ns, spec(&sim, json!({}))).await;
    let running = operator(&ns, "api-down", &[]);
    let a = expected(&[&first]);
    wait_stored_bundle(&sim, &a.pem).await;
    wait_rolled(&ns, &["coreapp"], &a.hash).await;
    wait_condition(&ns, "Ready", "True", "Synced").await;
    sim.clear_requests();

    // The webapp goes down, then the CA rotates.
    sim.close_port().await;
    let second = ca_pem("Down Root B");
    let b = expected(&[&first, &second]);
    set_secret(&ns, "internal-ca", "ca.crt", &format!("{first}{second}")).await;
    let mut seen = Vec::new();
    for (reason, fault) in [
        ("Connect", None),
        (
            "Unavailable",
            Some(Fault::error(503, 1016).times(10_000).on_path(CA_PATH)),
        ),
        (
            "RateLimited",
            Some(
                Fault::error(429, 1015)
                    .times(10_000)
                    .on_path(CA_PATH)
                    .retry_after(1),
            ),
        ),
    ] {
        if let Some(fault) = fault {
            sim.clear_faults();
            sim.inject(fault);
            sim.reopen_port().await.expect("the simulator's port again");
        }
        let wcc = wait_condition(&ns, "Uploaded", "False", reason).await;
        assert_eq!(
            condition(&wcc, "Ready"),
            Some(("False".into(), reason.into()))
        );
        let (_, message) = uploaded(&ns).await.expect("Uploaded");
        test_support::figure!("API {reason}: Uploaded=False/{reason}: {message}");
        seen.push(reason);
        // Meanwhile the API keeps the old bundle and nothing restarts.
        assert_eq!(sim.stored_bundle().as_deref(), Some(a.pem.as_str()));
        assert_eq!(
            template_annotation(&deployment(&ns, "coreapp").await, HASH).as_deref(),
            Some(a.hash.as_str())
        );
    }

    // The API recovers: the rotation completes by itself.
    sim.clear_faults();
    wait_stored_bundle(&sim, &b.pem).await;
    wait_rolled(&ns, &["coreapp"], &b.hash).await;
    wait_condition(&ns, "Ready", "True", "Synced").await;
    let reasons = event_reasons(&ns).await;
    for reason in &seen {
        assert!(
            reasons.iter().any(|r| r == reason),
            "no {reason} Event: {reasons:?}"
        );
    }
    // Each 429 asked for 1 s: no request came sooner after one (retries within a pass and
    // the passes after it alike).
    let limited: Vec<jiff::Timestamp> = sim
        .requests()
        .iter()
        .filter(|r| r.status == Some(429))
        .map(|r| r.at)
        .collect();
    let gaps: Vec<jiff::SignedDuration> = limited
        .windows(2)
        .map(|w| w[1].duration_since(w[0]))
        .collect();
    test_support::figure!("429s answered {} time(s), {gaps:?} apart", limited.len());
    assert!(limited.len() >= 2, "the operator retried after a 429");
    assert!(
        gaps.iter()
            .all(|g| *g >= jiff::SignedDuration::from_millis(950)),
        "a request came sooner than Retry-After allowed: {gaps:?}"
    );
    let faulted = sim.requests().iter().filter(|r| r.fault).count();
    test_support::figure!(
        "API down: {faulted} faulted requests, {} upload(s), Events {reasons:?}",
        uploads(&sim)
    );
    assert_eq!(uploads(&sim), 1, "one upload once the API answered");
    assert_eq!(
        rollouts_by_hash(&ns, "coreapp").await.get(&b.hash),
        Some(&1),
        "one rollout for the rotated bundle"
    );
    drop(running);
}

/// Requests refused with 401 and logins since the simulator's log was cleared, printed under
/// `what` with the uploads.
fn token_calls(sim: &Simulator, what: &str) -> (usize, usize) {
    let log = sim.requests();
    let refused = log.iter().filter(|r| r.status == Some(401)).count();
    let logins = log.iter().filter(|r| r.path == "/v1/users/login").count();
    test_support::figure!(
        "{what}: {refused} request(s) refused with 401, {logins} login(s), {} upload(s)",
        uploads(sim)
    );
    (refused, logins)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_dies_mid_life_costs_one_login_and_no_error() {
    // Expired tokens are refused at once (the webapp's default grace is 10 minutes).
    let fixture = setup_with(
        "faults-token",
        SimConfig {
            token_grace: Duration::ZERO,
            ..SimConfig::default()
        },
    )
    .await;
    let (ns, sim) = (&fixture.ns, &fixture.sim);
    let first = ca_pem("Token Root A");
    set_secret(ns, "internal-ca", "ca.crt", &first).await;
    apply_wcc(ns, spec(sim, json!({}))).await;
    let running = operator(ns, "token", &[]);
    wait_condition(ns, "Ready", "True", "Synced").await;

    // The webapp forgets every token (its restart, an admin's logout everywhere) while the
    // operator's is half-way through its week; from now on tokens live 5 s.
    sim.set_token_lifetime(Duration::from_secs(5));
    sim.revoke_tokens();
    sim.clear_requests();
    rotate(&fixture, &first, "Token Root B").await;
    let (refused, logins) = token_calls(sim, "revoked token");
    assert_eq!(refused, 1, "one refusal, then a fresh token");
    assert!(logins >= 1);
    assert_eq!(uploads(sim), 1);

    // That token expires on the server's clock; the next rotation logs in again before it
    // calls with an expired token.
    tokio::time::sleep(Duration::from_secs(6)).await;
    sim.clear_requests();
    rotate(&fixture, &first, "Token Root C").await;
    let (refused, logins) = token_calls(sim, "expired token");
    assert_eq!(refused, 0, "no call with the expired token");
    assert!(logins >= 1, "a fresh login");
    assert_eq!(uploads(sim), 1);

    // Neither cost an error a user would see.
    let bad: Vec<String> = operator_events(ns)
        .await
        .into_iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .filter_map(|e| e.reason)
        .collect();
    assert!(bad.is_empty(), "Warning Events: {bad:?}");
    let reasons: BTreeSet<String> = event_reasons(ns).await.into_iter().collect();
    assert!(!reasons.contains("Unauthorized"), "{reasons:?}");
    drop(running);
}
