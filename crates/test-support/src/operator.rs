//! What the operator works on in an end-to-end test: a namespace with the CRD installed, the
//! simulator with its admin and CA Secrets, a coreapp Deployment, a `WebhookCaCertificate`
//! named `prod`, and the checks a user would make on them.

use std::collections::BTreeSet;

use base64::Engine as _;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use onprem_sim::{self as sim, DEFAULT_ADMIN_PASSWORD, SimConfig, Simulator};
use serde_json::json;
use webhook_ca_operator::bundle::{self, Bundle, Policy, SourceInput};
use webhook_ca_operator::crd::WebhookCaCertificate;

use super::cluster::{cluster, repo};
use super::namespace::TestNamespace;
use super::process::run;
use super::rollout::rollout_status;
use super::test_logs;
use super::wait::wait_for;

/// The name the operator reports Events under.
const CONTROLLER: &str = "webhook-ca-operator";

/// The bundle the operator builds from these PEM texts now.
pub fn canonical_bundle(pems: &[&str]) -> Bundle {
    let inputs: Vec<SourceInput<'_>> = pems
        .iter()
        .map(|pem| SourceInput {
            source: "test",
            pem,
        })
        .collect();
    bundle::build(&inputs, &Policy::defaults_at(jiff::Timestamp::now()))
        .expect("test certificates build")
}

/// The canonical bundle the operator must upload for these PEM texts.
pub fn expected_bundle(pems: &[&str]) -> String {
    canonical_bundle(pems).pem
}

pub struct Setup {
    pub ns: TestNamespace,
    pub sim: Simulator,
}

/// A namespace with the CRD installed, a simulator, the admin and CA Secrets, and a 2-replica
/// coreapp Deployment that has rolled out.
pub async fn setup(prefix: &str) -> Setup {
    setup_with(prefix, SimConfig::default()).await
}

/// [`setup`] with a simulator started from `sim_config`.
pub async fn setup_with(prefix: &str, sim_config: SimConfig) -> Setup {
    let cluster = cluster().await;
    // Tests of one binary set up at once, and a cluster just started may still refuse a write
    // for a moment: an apply that fails is tried again until the wait gives up.
    wait_for("the CRD to apply", || async {
        run(cluster
            .kubectl()
            .args(["apply", "--server-side", "-f"])
            .arg(repo().join("crds")))
        .map(|_| ())
    })
    .await;
    // kubectl 1.30 fails at once, rather than waiting, while a just created CRD has no
    // conditions yet (".status.conditions accessor error: <nil>"): ask again.
    wait_for("the CRD to be Established", || async {
        run(cluster.kubectl().args([
            "wait",
            "--for=condition=Established",
            "crd/webhookcacertificates.webhookca.io",
        ]))
        .map(|_| ())
    })
    .await;
    let ns = TestNamespace::new(prefix).await;
    for user in &sim_config.users {
        test_logs::record_login(
            &format!("the password of simulator user {}", user.username),
            &user.username,
            &user.password,
        );
    }
    test_logs::record_login(
        "the password in Secret wa-admin",
        "admin",
        DEFAULT_ADMIN_PASSWORD,
    );
    let sim = sim::start(sim_config).await.expect("simulator");
    let secrets: Api<Secret> = ns.api();
    let admin = json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "wa-admin"},
        "stringData": {"username": "admin", "password": DEFAULT_ADMIN_PASSWORD}
    });
    let webapp = json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "webapp-tls"},
        "stringData": {"ca.crt": sim.ca_pem().expect("TLS")}
    });
    for secret in [admin, webapp] {
        let secret: Secret = serde_json::from_value(secret).expect("secret");
        secrets
            .create(&PostParams::default(), &secret)
            .await
            .expect("create secret");
    }
    create_coreapp(&ns, "coreapp").await;
    Setup { ns, sim }
}

/// Creates a 2-replica Deployment `name` labelled `type=coreapp` (what the operator's default
/// target selector picks), its pods labelled `app: <name>`, and waits until it has rolled out.
pub async fn create_coreapp(ns: &TestNamespace, name: &str) -> Deployment {
    let deployment: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"type": "coreapp"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}, "annotations": {"team": "wa"}},
                "spec": {"containers": [{"name": "coreapp", "image": "registry.invalid/coreapp:1"}]}
            }
        }
    }))
    .expect("deployment");
    ns.api::<Deployment>()
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap_or_else(|e| panic!("create Deployment {name}: {e}"));
    rolled_out_named(ns, name).await
}

/// Server-side applies key `key` of Secret `name`; a credential or private key in it is
/// recorded for the secret scan.
pub async fn set_secret(ns: &TestNamespace, name: &str, key: &str, value: &str) {
    test_logs::record_secret_entry(name, key, value);
    apply_secret(ns, name, json!({"stringData": {key: value}})).await;
}

/// [`set_secret`] with raw bytes (`data`): for content that is not text.
pub async fn set_secret_bytes(ns: &TestNamespace, name: &str, key: &str, value: &[u8]) {
    test_logs::record_secret_entry(name, key, &String::from_utf8_lossy(value));
    let encoded = base64::engine::general_purpose::STANDARD.encode(value);
    apply_secret(ns, name, json!({"data": {key: encoded}})).await;
}

/// Server-side applies the Secret `name` with `fields` (`data` or `stringData`), as the test.
async fn apply_secret(ns: &TestNamespace, name: &str, fields: serde_json::Value) {
    let mut patch = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}});
    if let (Some(patch), Some(fields)) = (patch.as_object_mut(), fields.as_object()) {
        patch.extend(fields.clone());
    }
    ns.api::<Secret>()
        .patch(
            name,
            &PatchParams::apply("test").force(),
            &Patch::Apply(&patch),
        )
        .await
        .expect("apply secret");
}

pub async fn apply_wcc(ns: &TestNamespace, spec: serde_json::Value) {
    apply_labelled_wcc(ns, json!({}), spec).await;
}

/// [`apply_wcc`] with `labels` on the resource (what `--selector` picks by).
pub async fn apply_labelled_wcc(
    ns: &TestNamespace,
    labels: serde_json::Value,
    spec: serde_json::Value,
) {
    apply_wcc_object(ns, "prod", labels, spec).await;
}

/// [`apply_wcc`] for a resource named `name` instead of `prod`.
pub async fn apply_named_wcc(ns: &TestNamespace, name: &str, spec: serde_json::Value) {
    apply_wcc_object(ns, name, json!({}), spec).await;
}

async fn apply_wcc_object(
    ns: &TestNamespace,
    name: &str,
    labels: serde_json::Value,
    spec: serde_json::Value,
) {
    let object = json!({
        "apiVersion": "webhookca.io/v1alpha1", "kind": "WebhookCaCertificate",
        "metadata": {"name": name, "labels": labels}, "spec": spec
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

/// A spec for the Secret `internal-ca`, the simulator and the coreapp Deployment, acting at once
/// (no debounce, no restart throttle); `extra`'s top-level fields replace the defaults.
pub fn spec(sim: &Simulator, extra: serde_json::Value) -> serde_json::Value {
    let mut spec = json!({
        "sources": [{"secret": {"name": "internal-ca", "key": "ca.crt"}}],
        "api": {
            "url": sim.url(),
            "credentials": {"loginSecret": {"name": "wa-admin"}},
            "tls": {"caSecret": {"name": "webapp-tls"}}
        },
        "debounce": "0s",
        "restart": {"targets": [{"kind": "Deployment", "name": "coreapp"}], "minInterval": "0s"}
    });
    if let (Some(base), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            base.insert(k.clone(), v.clone());
        }
    }
    spec
}

pub fn condition(wcc: &WebhookCaCertificate, type_: &str) -> Option<(String, String)> {
    wcc.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

/// The message of the resource's condition `type_` (empty when it has none).
pub fn message(wcc: &WebhookCaCertificate, type_: &str) -> String {
    wcc.status
        .iter()
        .flat_map(|s| &s.conditions)
        .find(|c| c.type_ == type_)
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

/// The warnings `status.bundle` reports (findings the policy let through).
pub fn bundle_warnings(wcc: &WebhookCaCertificate) -> Vec<String> {
    wcc.status
        .as_ref()
        .and_then(|s| s.bundle.as_ref())
        .map(|b| b.warnings.clone())
        .unwrap_or_default()
}

/// Waits until the resource has a condition of `type_` with `status` and `reason`.
pub async fn wait_condition(
    ns: &TestNamespace,
    type_: &str,
    status: &str,
    reason: &str,
) -> WebhookCaCertificate {
    wait_named_condition(ns, "prod", type_, status, reason).await
}

/// [`wait_condition`] for the resource named `name`.
pub async fn wait_named_condition(
    ns: &TestNamespace,
    name: &str,
    type_: &str,
    status: &str,
    reason: &str,
) -> WebhookCaCertificate {
    let api: Api<WebhookCaCertificate> = ns.api();
    wait_for(&format!("{name}: {type_}={status}/{reason}"), || async {
        let wcc = api.get(name).await.map_err(|e| e.to_string())?;
        match condition(&wcc, type_) {
            Some((s, r)) if s == status && r == reason => Ok(wcc),
            other => Err(format!(
                "{type_} is {other:?}; status: {:?}",
                wcc.status.as_ref().map(|s| &s.conditions)
            )),
        }
    })
    .await
}

/// Waits until the simulator holds exactly `expected`.
pub async fn wait_stored_bundle(sim: &Simulator, expected: &str) {
    wait_for("the expected bundle on the API", || async {
        match sim.stored_bundle() {
            Some(b) if b == expected => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

/// How many bundles were uploaded (`POST .../ca`) since the simulator's requests were cleared.
pub fn uploads(sim: &Simulator) -> usize {
    ca_requests(sim, "POST")
}

/// How many `method` requests on the webhook CA endpoint (`.../ca`) the simulator saw since its
/// requests were cleared.
pub fn ca_requests(sim: &Simulator, method: &str) -> usize {
    sim.requests()
        .iter()
        .filter(|r| r.method == method && r.path.ends_with("/ca"))
        .count()
}

/// How many `GET /v1/health` the simulator saw since its requests were cleared.
pub fn health_requests(sim: &Simulator) -> usize {
    sim.requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path == "/v1/health")
        .count()
}

pub async fn rolled_out(ns: &TestNamespace) -> Deployment {
    rolled_out_named(ns, "coreapp").await
}

/// Waits until Deployment `name` has rolled out.
pub async fn rolled_out_named(ns: &TestNamespace, name: &str) -> Deployment {
    let api: Api<Deployment> = ns.api();
    wait_for(&format!("{name} to roll out"), || async {
        let d = api.get(name).await.map_err(|e| e.to_string())?;
        rollout_status(&d).map(|()| d)
    })
    .await
}

/// The SHA-256 of the bundle `wcc`'s status reports.
pub fn bundle_sha256(wcc: &WebhookCaCertificate) -> String {
    wcc.status
        .as_ref()
        .and_then(|s| s.bundle.as_ref())
        .map(|b| b.sha256.clone())
        .expect("bundle status")
}

/// Waits for coreapp to roll out and checks that its pod template carries the hash of the
/// bundle `wcc`'s status reports.
pub async fn assert_rolled_with_bundle(ns: &TestNamespace, wcc: &WebhookCaCertificate) {
    let sha = bundle_sha256(wcc);
    assert_eq!(
        template_annotation(&rolled_out(ns).await, "webhookca.io/bundle-sha256"),
        Some(sha),
        "the coreapp Deployment rolled with the new bundle"
    );
}

pub async fn replica_sets(ns: &TestNamespace) -> BTreeSet<String> {
    ns.api::<ReplicaSet>()
        .list(&ListParams::default())
        .await
        .expect("list replicasets")
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect()
}

/// The Events the operator wrote in the namespace.
pub async fn operator_events(ns: &TestNamespace) -> Vec<Event> {
    ns.api::<Event>()
        .list(&ListParams::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| e.reporting_controller.as_deref() == Some(CONTROLLER))
        .collect()
}

/// Waits for a Warning Event of the operator with `reason` whose note contains `needle`.
pub async fn wait_warning_event(ns: &TestNamespace, reason: &str, needle: &str) -> Event {
    wait_for(
        &format!("a Warning Event {reason} naming {needle}"),
        || async {
            let events = operator_events(ns).await;
            let reasons: Vec<_> = events.iter().map(|e| e.reason.clone()).collect();
            events
                .into_iter()
                .find(|e| {
                    e.type_.as_deref() == Some("Warning")
                        && e.reason.as_deref() == Some(reason)
                        && e.note.as_deref().is_some_and(|n| n.contains(needle))
                })
                .ok_or_else(|| format!("the operator's Events: {reasons:?}"))
        },
    )
    .await
}

pub async fn event_reasons(ns: &TestNamespace) -> Vec<String> {
    operator_events(ns)
        .await
        .into_iter()
        .filter_map(|e| e.reason)
        .collect()
}

pub fn template_annotation(d: &Deployment, key: &str) -> Option<String> {
    d.spec
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(key)
        .cloned()
}
