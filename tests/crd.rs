//! The WebhookCaCertificate CRD as users get it: the committed YAML matches the Rust types, a
//! real apiserver accepts it as a structural schema, its CEL rules refuse what the schema cannot
//! say, its defaults apply, `kubectl explain` documents it and `kubectl get` shows the columns.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use test_support::{TestNamespace, cluster, run, run_ok, wait_for};
use webhook_ca_operator::crd::{
    BundleOrder, DeletionPolicy, PolicyAction, RestartMethod, WebhookCaCertificate,
};

const COMMITTED: &str = include_str!("../crds/webhookcacertificates.yaml");
const CRD_NAME: &str = "webhookcacertificates.webhookca.io";
const EXAMPLE: &str = include_str!("../examples/webhookcacertificate.yaml");

#[test]
fn committed_crd_matches_the_rust_types() {
    let generated = WebhookCaCertificate::crd_yaml().expect("CRD serializes");
    assert!(
        generated == COMMITTED,
        "crds/webhookcacertificates.yaml is stale: regenerate it with \
         `cargo run -- crd > crds/webhookcacertificates.yaml`"
    );
}

/// Applies `crds/` exactly as a user would and waits until the apiserver serves the kind.
async fn install_crd() -> &'static test_support::Cluster {
    let cluster = cluster().await;
    let crds = concat!(env!("CARGO_MANIFEST_DIR"), "/crds");
    run_ok(
        cluster
            .kubectl()
            .args(["apply", "--server-side", "-f", crds]),
    );
    let api: Api<CustomResourceDefinition> = Api::all(cluster.client());
    wait_for("the WebhookCaCertificate CRD to be Established", || async {
        let crd = api.get(CRD_NAME).await.map_err(|e| e.to_string())?;
        let conditions = crd.status.and_then(|s| s.conditions).unwrap_or_default();
        let established = conditions
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        let problems: Vec<_> = conditions
            .iter()
            .filter(|c| c.type_ == "NonStructuralSchema" && c.status == "True")
            .map(|c| c.message.clone().unwrap_or_default())
            .collect();
        if !problems.is_empty() {
            // Not a wait: the schema itself is wrong and will stay wrong.
            panic!("the apiserver found the schema non-structural: {problems:?}");
        }
        if established {
            Ok(())
        } else {
            Err(format!("conditions: {conditions:?}"))
        }
    })
    .await;
    // kubectl's discovery of a new group can lag Established by a moment.
    wait_for("kubectl to discover wcc", || async {
        run(cluster.kubectl().args(["get", "wcc", "-A"]))
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await;
    cluster
}

/// A minimal valid resource; tests break one rule at a time on top of it.
fn valid() -> serde_json::Value {
    json!({
        "apiVersion": "webhookca.io/v1alpha1",
        "kind": "WebhookCaCertificate",
        "metadata": {"name": "x"},
        "spec": {
            "sources": [{"secret": {"name": "internal-ca", "key": "ca.crt"}}],
            "api": {
                "url": "https://webapp:443",
                "credentials": {"loginSecret": {"name": "wa-admin"}}
            }
        }
    })
}

fn apply_in(ns: &TestNamespace, object: &serde_json::Value) -> Result<String, String> {
    let manifest = serde_json::to_string(object).expect("json");
    test_support::run_with_input(
        ns.cluster()
            .kubectl()
            .args(["apply", "-n", ns.name(), "-f", "-"]),
        &manifest,
    )
    .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test]
async fn the_example_is_accepted_and_defaults_apply() {
    install_crd().await;
    let ns = TestNamespace::new("crd-example").await;
    test_support::run_with_input(
        ns.cluster()
            .kubectl()
            .args(["apply", "-n", ns.name(), "-f", "-"]),
        EXAMPLE,
    )
    .unwrap_or_else(|e| panic!("the example was refused: {e}"));
    apply_in(&ns, &valid()).unwrap_or_else(|e| panic!("a minimal resource was refused: {e}"));

    let api: Api<WebhookCaCertificate> = ns.api();
    let minimal = api.get("x").await.expect("get x");
    assert_eq!(minimal.spec.restart.method, RestartMethod::RolloutRestart);
    assert!(minimal.spec.restart.wait_for_rollout);
    assert!(minimal.spec.restart.targets.is_empty());
    assert_eq!(minimal.spec.deletion_policy, DeletionPolicy::Retain);
    assert_eq!(minimal.spec.policy.expired, PolicyAction::Refuse);
    assert_eq!(minimal.spec.policy.non_ca, PolicyAction::Warn);
    assert_eq!(minimal.spec.policy.order, BundleOrder::Source);
    assert!(!minimal.spec.suspend);
    assert!(!minimal.spec.api.tls.insecure_skip_verify);
    assert_eq!(minimal.spec.expiry_warning, None);
    assert_eq!(
        minimal.spec.expiry_warning(),
        std::time::Duration::from_secs(720 * 3600),
        "ExpiringSoon's window defaults to 720h"
    );
    assert_eq!(
        minimal.spec.webhook_trust.policy,
        webhook_ca_operator::crd::WebhookTrustPolicy::Refuse,
        "the webhook trust check refuses by default"
    );
    assert_eq!(minimal.spec.webhook_trust.url, None);

    let prod = api.get("prod").await.expect("get prod");
    assert_eq!(prod.spec.sources.len(), 3);
    assert_eq!(
        prod.spec
            .drift_check_interval
            .map(|d| d.to_string())
            .as_deref(),
        Some("10m0s")
    );
    assert_eq!(
        prod.spec.expiry_warning.map(|d| d.to_string()).as_deref(),
        Some("720h0m0s")
    );
}

#[tokio::test]
async fn cel_rules_refuse_what_the_schema_cannot_say() {
    install_crd().await;
    let ns = TestNamespace::new("crd-cel").await;
    let cases: Vec<(&str, serde_json::Value, &str)> = vec![
        (
            "two credential kinds",
            json!({"loginSecret": {"name": "a"}, "tokenSecret": {"name": "b"}}),
            "exactly one of loginSecret or tokenSecret",
        ),
        (
            "no credential",
            json!({}),
            "exactly one of loginSecret or tokenSecret",
        ),
    ];
    for (what, credentials, message) in cases {
        let mut object = valid();
        object["spec"]["api"]["credentials"] = credentials;
        expect_refused(&ns, what, &object, message);
    }

    let mut plain = valid();
    plain["spec"]["api"]["url"] = json!("http://webapp:80");
    expect_refused(&ns, "plain http", &plain, "url must use https://");
    plain["spec"]["api"]["allowPlainHttp"] = json!(true);
    apply_in(&ns, &plain).unwrap_or_else(|e| panic!("http with allowPlainHttp was refused: {e}"));

    let mut both_sources = valid();
    both_sources["spec"]["sources"] =
        json!([{"secret": {"name": "a"}, "inline": "-----BEGIN CERTIFICATE-----"}]);
    expect_refused(
        &ns,
        "secret and inline in one source",
        &both_sources,
        "exactly one of secret, configMap or inline",
    );

    let mut empty_source = valid();
    empty_source["spec"]["sources"] = json!([{}]);
    expect_refused(
        &ns,
        "a source of no kind",
        &empty_source,
        "exactly one of secret, configMap or inline",
    );

    let mut no_sources = valid();
    no_sources["spec"]["sources"] = json!([]);
    expect_refused(&ns, "no sources", &no_sources, "spec.sources");

    let mut name_and_selector = valid();
    name_and_selector["spec"]["sources"] =
        json!([{"configMap": {"name": "a", "selector": {"matchLabels": {"x": "y"}}}}]);
    expect_refused(
        &ns,
        "name and selector",
        &name_and_selector,
        "exactly one of name or selector",
    );

    let mut target = valid();
    target["spec"]["restart"] = json!({"targets": [{"kind": "Deployment"}]});
    expect_refused(
        &ns,
        "target without name",
        &target,
        "exactly one of name or selector",
    );

    let mut tls = valid();
    tls["spec"]["api"]["tls"] = json!({"caSecret": {"name": "ca"}, "insecureSkipVerify": true});
    expect_refused(&ns, "CA and insecure", &tls, "mutually exclusive");

    let mut duration = valid();
    duration["spec"]["driftCheckInterval"] = json!("10 minutes");
    expect_refused(&ns, "malformed duration", &duration, "driftCheckInterval");

    let mut kind = valid();
    kind["spec"]["restart"] = json!({"targets": [{"kind": "Pod", "name": "coreapp"}]});
    expect_refused(&ns, "unsupported workload kind", &kind, "Unsupported value");

    let mut webhook = valid();
    webhook["spec"]["webhookTrust"] = json!({"url": "http://hooks.example/wa"});
    expect_refused(
        &ns,
        "an http webhook URL to check",
        &webhook,
        "webhookTrust.url must be an https:// URL",
    );
    webhook["spec"]["webhookTrust"] = json!({"policy": "Sometimes"});
    expect_refused(
        &ns,
        "an unknown webhook trust policy",
        &webhook,
        "Unsupported value",
    );
    webhook["spec"]["webhookTrust"] = json!({"policy": "Warn", "url": "https://hooks.example/wa"});
    apply_in(&ns, &webhook).unwrap_or_else(|e| panic!("a valid webhookTrust was refused: {e}"));
}

fn expect_refused(ns: &TestNamespace, what: &str, object: &serde_json::Value, message: &str) {
    match apply_in(ns, object) {
        Ok(out) => panic!("{what}: the apiserver accepted an invalid resource: {out}"),
        Err(err) => assert!(
            err.contains(message),
            "{what}: refused, but without {message:?}:\n{err}"
        ),
    }
}

#[tokio::test]
async fn kubectl_explain_documents_the_fields() {
    let cluster = install_crd().await;
    // The apiserver publishes a new CRD's OpenAPI a moment after it is Established.
    let explain = |field: &'static str| async move {
        run(cluster.kubectl().args(["explain", field]))
            .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let out = wait_for("kubectl explain to know wcc", || {
        explain("wcc.spec.api.credentials")
    })
    .await;
    assert!(out.contains("loginSecret"), "{out}");
    assert!(out.contains("POST /v1/users/login"), "{out}");
    let out = wait_for("kubectl explain wcc.spec.restart.method", || {
        explain("wcc.spec.restart.method")
    })
    .await;
    assert!(out.contains("PodDisruptionBudgets"), "{out}");
}

#[tokio::test]
async fn status_subresource_feeds_the_printer_columns() {
    install_crd().await;
    let ns = TestNamespace::new("crd-status").await;
    apply_in(&ns, &valid()).unwrap_or_else(|e| panic!("{e}"));
    let api: Api<WebhookCaCertificate> = ns.api();

    let status = json!({
        "apiVersion": "webhookca.io/v1alpha1",
        "kind": "WebhookCaCertificate",
        "status": {
            "observedGeneration": 1,
            "conditions": [{
                "type": "Ready", "status": "True", "reason": "Synced",
                "message": "bundle uploaded", "lastTransitionTime": "2026-11-24T10:00:00Z",
                "observedGeneration": 1
            }],
            "bundle": {
                "sha256": "ab".repeat(32), "count": 2,
                "earliestExpiry": "2031-01-01T00:00:00Z", "certificates": []
            }
        }
    });
    api.patch_status(
        "x",
        &PatchParams::apply("crd-test").force(),
        &Patch::Apply(&status),
    )
    .await
    .expect("server-side apply of status");

    let got = api.get("x").await.expect("get");
    let st = got.status.as_ref().expect("status written");
    assert_eq!(st.bundle.as_ref().map(|b| b.count), Some(2));
    assert_eq!(
        got.metadata.generation,
        Some(1),
        "a status write must not bump generation"
    );
    assert_eq!(got.name_any(), "x");

    let table = run_ok(
        ns.cluster()
            .kubectl()
            .args(["get", "wcc", "x", "-n", ns.name()]),
    );
    let mut lines = table.lines();
    let header: Vec<_> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "READY", "CERTS", "EXPIRES", "AGE"],
        "{table}"
    );
    let row: Vec<_> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        &row[..4],
        ["x", "True", "2", "2031-01-01T00:00:00Z"],
        "{table}"
    );

    let wide =
        run_ok(
            ns.cluster()
                .kubectl()
                .args(["get", "wcc", "x", "-o", "wide", "-n", ns.name()]),
        );
    assert!(wide.contains("REASON") && wide.contains("Synced"), "{wide}");
}
