//! `kubectl apply -k deploy/`: the kustomization renders exactly the plain manifests, and applying
//! it for real on the test cluster installs an operator Deployment that rolls out in its namespace
//! (which enforces the "restricted" Pod Security Standard, so the pods must meet it).

use std::collections::BTreeMap;
use std::process::Command;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use serde_json::Value;
use test_support::{DeleteOnDrop, bin, cluster, rollout_status, run_ok, wait_for};

const DEPLOY_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy");
const DEPLOY: &str = include_str!("../deploy/webhook-ca-operator.yaml");
const NAMESPACE: &str = "webhook-ca-operator";

/// The objects of a multi-document YAML stream by `kind/namespace/name`.
fn objects(yaml: &str) -> BTreeMap<String, Value> {
    serde_saphyr::from_multiple::<Value>(yaml)
        .unwrap_or_else(|e| panic!("YAML: {e}\n{yaml}"))
        .into_iter()
        .filter(|o| !o.is_null())
        .map(|o| {
            let key = format!(
                "{}/{}/{}",
                o["kind"].as_str().unwrap_or("?"),
                o["metadata"]["namespace"].as_str().unwrap_or(""),
                o["metadata"]["name"].as_str().unwrap_or("?"),
            );
            (key, o)
        })
        .collect()
}

#[test]
fn kustomize_renders_the_plain_manifests() {
    let rendered = run_ok(Command::new(bin("kubectl")).args(["kustomize", DEPLOY_DIR]));
    let rendered = objects(&rendered);
    let plain = objects(DEPLOY);
    assert_eq!(
        rendered.keys().collect::<Vec<_>>(),
        plain.keys().collect::<Vec<_>>()
    );
    for (key, object) in &plain {
        assert_eq!(&rendered[key], object, "kustomize changed {key}");
    }
}

#[tokio::test]
async fn apply_k_installs_an_operator_that_rolls_out() {
    let cluster = cluster().await;
    // An earlier test may have left the namespace terminating: objects cannot be created in it.
    let namespaces: Api<Namespace> = Api::all(cluster.client());
    wait_for("the deploy namespace to be absent or active", || async {
        match namespaces.get_opt(NAMESPACE).await {
            Ok(Some(ns)) if ns.metadata.deletion_timestamp.is_some() => {
                Err("namespace is terminating".to_owned())
            }
            Ok(_) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    // Everything cluster-scoped that the apply creates, deleted at the end; the namespace takes
    // its contents along. Not the CRD: other tests' resources may live in the cluster meanwhile.
    let _cleanup: Vec<DeleteOnDrop> = objects(DEPLOY)
        .values()
        .filter(|o| o["metadata"]["namespace"].is_null())
        .filter(|o| o["kind"] != "CustomResourceDefinition")
        .map(|o| {
            DeleteOnDrop::cluster_scoped(
                cluster,
                o["kind"].as_str().unwrap_or("?"),
                o["metadata"]["name"].as_str().unwrap_or("?"),
            )
        })
        .collect();

    let out = run_ok(
        cluster
            .kubectl()
            .args(["apply", "--server-side", "-k", DEPLOY_DIR]),
    );
    assert_eq!(
        out.lines().count(),
        objects(DEPLOY).len(),
        "one line per object applied; kubectl said: {out}"
    );

    let deployments: Api<Deployment> = Api::namespaced(cluster.client(), NAMESPACE);
    let deployment = wait_for("the operator Deployment to roll out", || async {
        let deployment = deployments
            .get(NAMESPACE)
            .await
            .map_err(|e| e.to_string())?;
        rollout_status(&deployment).map(|()| deployment)
    })
    .await;
    let image = deployment
        .spec
        .template
        .spec
        .and_then(|p| p.containers.into_iter().next())
        .and_then(|c| c.image);
    assert_eq!(
        image.as_deref(),
        Some(concat!(
            "ghcr.io/webhook-ca-operator/webhook-ca-operator:",
            env!("CARGO_PKG_VERSION")
        ))
    );
}
