//! The Helm chart and the plain manifests as users get them: the chart lints and renders, its
//! generated copies (the CRD in the chart, `deploy/`) match their sources, `helm install` works in
//! a real cluster under the "restricted" Pod Security Standard, and the ServiceAccount it creates
//! holds exactly the access the operator needs: checked with that ServiceAccount's own token.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::{
    ResourceRule, SelfSubjectRulesReview, SelfSubjectRulesReviewSpec,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, EvictParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use test_support::certs::ca_pem;
use test_support::operator::{
    Setup, apply_wcc, expected_bundle, set_secret, setup, spec, wait_condition, wait_stored_bundle,
};
use test_support::operator_process::{OperatorProcess, token_kubeconfig};
use test_support::{DeleteOnDrop, TestNamespace, run, run_ok, token_for, wait_for};
use webhook_ca_operator::crd::WebhookCaCertificate;

const BINARY: &str = env!("CARGO_BIN_EXE_webhook-ca-operator");
const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/webhook-ca-operator");
const CHART_YAML: &str = include_str!("../charts/webhook-ca-operator/Chart.yaml");
const CHART_VALUES: &str = include_str!("../charts/webhook-ca-operator/values.yaml");
const CHART_README: &str = include_str!("../charts/webhook-ca-operator/README.md");
const CHART_CRD: &str =
    include_str!("../charts/webhook-ca-operator/crds/webhookcacertificates.yaml");
const GENERATED_CRD: &str = include_str!("../crds/webhookcacertificates.yaml");
const DEPLOY_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/webhook-ca-operator.yaml"
);
const DEPLOY: &str = include_str!("../deploy/webhook-ca-operator.yaml");
/// The release and namespace `hack/gen-deploy.sh` renders `deploy/` with.
const DEPLOY_NAMESPACE: &str = "webhook-ca-operator";
const CRD_NAME: &str = "webhookcacertificates.webhookca.io";
const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";

/// What the operator may do in every namespace it watches: (API group, resource, verbs).
const WATCH_ACCESS: &[(&str, &str, &[&str])] = &[
    (
        "webhookca.io",
        "webhookcacertificates",
        &["get", "list", "watch", "patch", "update"],
    ),
    (
        "webhookca.io",
        "webhookcacertificates/status",
        &["get", "patch", "update"],
    ),
    (
        "webhookca.io",
        "webhookcacertificates/finalizers",
        &["update"],
    ),
    ("", "secrets", &["get", "list", "watch"]),
    ("", "configmaps", &["get", "list", "watch"]),
    ("", "pods", &["get", "list", "watch"]),
    ("", "pods/eviction", &["create"]),
    ("apps", "deployments", &["get", "list", "watch", "patch"]),
    ("apps", "statefulsets", &["get", "list", "watch", "patch"]),
    ("apps", "daemonsets", &["get", "list", "watch", "patch"]),
    ("", "events", &["create", "patch"]),
    ("events.k8s.io", "events", &["create", "patch"]),
];

/// What the operator may do in its own namespace besides: hold its leader-election Lease.
const LEASE_ACCESS: &[(&str, &str, &[&str])] = &[(
    "coordination.k8s.io",
    "leases",
    &["get", "list", "watch", "create", "update", "patch"],
)];

/// Single permissions as (API group, resource, verb); a rule limited to resource names shows
/// them as `resource[name,...]`, so that it never counts as the unrestricted permission.
type Access = BTreeSet<(String, String, String)>;

fn access(tables: &[&[(&str, &str, &[&str])]]) -> Access {
    tables
        .iter()
        .flat_map(|table| table.iter())
        .flat_map(|(group, resource, verbs)| {
            verbs
                .iter()
                .map(|verb| (group.to_string(), resource.to_string(), verb.to_string()))
        })
        .collect()
}

fn expand(rules: &[ResourceRule]) -> Access {
    let mut out = Access::new();
    for rule in rules {
        let names = rule.resource_names.clone().unwrap_or_default();
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                let resource = if names.is_empty() {
                    resource.clone()
                } else {
                    format!("{resource}[{}]", names.join(","))
                };
                for verb in &rule.verbs {
                    out.insert((group.clone(), resource.clone(), verb.clone()));
                }
            }
        }
    }
    out
}

fn describe_difference(got: &Access, want: &Access) -> String {
    let extra: Vec<_> = got.difference(want).collect();
    let missing: Vec<_> = want.difference(got).collect();
    format!("granted beyond the list: {extra:?}; missing: {missing:?}")
}

// ---------------------------------------------------------------------------------------------
// Rendering, without a cluster

/// `helm` for commands that need no cluster, with its config, cache and data out of `$HOME`.
fn helm_offline() -> Command {
    let home = Path::new(env!("CARGO_TARGET_TMPDIR")).join("helm-offline");
    let mut cmd = Command::new(test_support::bin("helm"));
    cmd.env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"));
    cmd
}

fn parse_documents(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(yaml).unwrap_or_else(|e| panic!("YAML: {e}\n{yaml}"))
}

/// `helm template` of the chart as release `release` in namespace `ns`, parsed.
fn template(release: &str, ns: &str, args: &[&str]) -> Vec<Value> {
    let out = run_ok(
        helm_offline()
            .args(["template", release, CHART, "--namespace", ns])
            .args(args),
    );
    parse_documents(&out)
}

/// `helm template` that must fail; returns what helm said.
fn template_refused(args: &[&str]) -> String {
    match run(helm_offline()
        .args(["template", "x", CHART, "--namespace", "ops"])
        .args(args))
    {
        Ok(out) => panic!(
            "helm template {args:?} rendered:\n{}",
            String::from_utf8_lossy(&out.stdout)
        ),
        Err(msg) => msg,
    }
}

fn kinds(objects: &[Value]) -> BTreeSet<String> {
    objects
        .iter()
        .map(|o| format!("{}/{}", o["kind"].as_str().unwrap_or("?"), name_of(o)))
        .collect()
}

fn name_of(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or("?")
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && name_of(o) == name)
        .unwrap_or_else(|| panic!("no {kind} {name} among {:?}", kinds(objects)))
}

fn rules_of(role: &Value) -> Access {
    let rules: Vec<ResourceRule> =
        serde_json::from_value(role["rules"].clone()).expect("rules of a rendered role");
    expand(&rules)
}

fn operator_container(objects: &[Value], deployment: &str) -> Value {
    find(objects, "Deployment", deployment)["spec"]["template"]["spec"]["containers"][0].clone()
}

fn args_of(container: &Value) -> Vec<&str> {
    container["args"]
        .as_array()
        .expect("container args")
        .iter()
        .filter_map(Value::as_str)
        .collect()
}

#[test]
fn the_chart_carries_the_generated_crd() {
    assert!(
        CHART_CRD == GENERATED_CRD,
        "charts/webhook-ca-operator/crds/ is stale: run hack/gen-deploy.sh"
    );
}

#[test]
fn chart_metadata_matches_the_crate() {
    let chart: Value = serde_saphyr::from_str(CHART_YAML).expect("Chart.yaml");
    assert_eq!(chart["appVersion"], env!("CARGO_PKG_VERSION"));
    assert_eq!(chart["name"], "webhook-ca-operator");
    assert_eq!(chart["kubeVersion"], ">=1.30.0-0");
}

#[test]
fn the_chart_lints_strictly() {
    let shards = [
        "--set",
        "watchNamespaces={team-a,team-b}",
        "--set",
        "selector=shard=eu",
        "--set",
        "leaderElection.leaseName=wco-eu",
    ];
    for extra in [
        &[][..],
        &["--set", "watchNamespace=team-a"][..],
        &[
            "--set",
            "prometheusRule.enabled=true",
            "--set",
            "metrics.serviceMonitor.enabled=true",
        ][..],
        &shards[..],
    ] {
        let out = run_ok(helm_offline().args(["lint", "--strict", CHART]).args(extra));
        assert!(out.contains("0 chart(s) failed"), "{out}");
        assert!(
            !out.contains("[WARNING]") && !out.contains("[ERROR]"),
            "helm lint {extra:?}:\n{out}"
        );
    }
}

#[test]
fn default_values_render_a_cluster_wide_operator() {
    let objects = template("wco", "ops", &["--include-crds"]);
    let name = "wco-webhook-ca-operator";
    let want: BTreeSet<String> = [
        format!("CustomResourceDefinition/{CRD_NAME}"),
        format!("ServiceAccount/{name}"),
        format!("ClusterRole/{name}"),
        format!("ClusterRoleBinding/{name}"),
        format!("Role/{name}-leader-election"),
        format!("RoleBinding/{name}-leader-election"),
        format!("Service/{name}-metrics"),
        format!("Deployment/{name}"),
    ]
    .into();
    assert_eq!(kinds(&objects), want);

    assert_eq!(
        rules_of(find(&objects, "ClusterRole", name)),
        access(&[WATCH_ACCESS])
    );
    let lease_role = find(&objects, "Role", &format!("{name}-leader-election"));
    assert_eq!(lease_role["metadata"]["namespace"], "ops");
    assert_eq!(rules_of(lease_role), access(&[LEASE_ACCESS]));
    let binding = find(&objects, "ClusterRoleBinding", name);
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": name, "namespace": "ops"}])
    );

    let deployment = find(&objects, "Deployment", name);
    assert_eq!(deployment["spec"]["replicas"], 1);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], name);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let container = operator_container(&objects, name);
    assert_eq!(
        container["image"],
        format!(
            "ghcr.io/webhook-ca-operator/webhook-ca-operator:{}",
            env!("CARGO_PKG_VERSION")
        )
    );
    assert_eq!(
        args_of(&container),
        [
            "run",
            "--metrics-bind=0.0.0.0:8080",
            "--log-format=json",
            "--leader-elect"
        ]
    );
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(container["ports"][0]["containerPort"], 8080);
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["port"], "metrics");
    for limit in ["cpu", "memory"] {
        assert!(container["resources"]["requests"][limit].is_string());
        assert!(container["resources"]["limits"][limit].is_string());
    }
    let env: BTreeMap<&str, &Value> = container["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| (e["name"].as_str().unwrap_or("?"), e))
        .collect();
    assert_eq!(
        env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );
    assert_eq!(env["RUST_LOG"]["value"], "info");
    // The controller's knobs, as `run` reads them from the environment, at their defaults.
    for (name, value) in [
        ("DRY_RUN", "false"),
        ("API_CONCURRENCY", "16"),
        ("API_CONCURRENCY_PER_HOST", "2"),
        ("RETRY_INTERVAL", "30s"),
    ] {
        assert_eq!(env[name]["value"], value, "{name}");
    }

    let service = find(&objects, "Service", &format!("{name}-metrics"));
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "metrics");
    assert_eq!(
        service["spec"]["selector"],
        deployment["spec"]["selector"]["matchLabels"]
    );
}

#[test]
fn watch_namespace_renders_roles_in_that_namespace_only() {
    let objects = template("wco", "ops", &["--set", "watchNamespace=team-a"]);
    let name = "wco-webhook-ca-operator";
    let all = kinds(&objects);
    assert!(
        !all.iter().any(|k| k.starts_with("ClusterRole")),
        "cluster-wide RBAC in namespaced mode: {all:?}"
    );
    let role = find(&objects, "Role", name);
    assert_eq!(role["metadata"]["namespace"], "team-a");
    assert_eq!(rules_of(role), access(&[WATCH_ACCESS]));
    let binding = find(&objects, "RoleBinding", name);
    assert_eq!(binding["metadata"]["namespace"], "team-a");
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": name, "namespace": "ops"}])
    );
    let lease_role = find(&objects, "Role", &format!("{name}-leader-election"));
    assert_eq!(lease_role["metadata"]["namespace"], "ops");
    assert!(args_of(&operator_container(&objects, name)).contains(&"--namespace=team-a"));
}

#[test]
fn watch_namespaces_render_a_role_in_each_and_nothing_cluster_wide() {
    let objects = template("wco", "ops", &["--set", "watchNamespaces={team-a,team-b}"]);
    let name = "wco-webhook-ca-operator";
    let all = kinds(&objects);
    assert!(
        !all.iter().any(|k| k.starts_with("ClusterRole")),
        "cluster-wide RBAC with a namespace list: {all:?}"
    );
    let namespaces_of = |kind: &str| -> BTreeSet<String> {
        objects
            .iter()
            .filter(|o| o["kind"] == kind && name_of(o) == name)
            .map(|o| {
                o["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or("?")
                    .to_owned()
            })
            .collect()
    };
    let listed: BTreeSet<String> = ["team-a".to_owned(), "team-b".to_owned()].into();
    assert_eq!(namespaces_of("Role"), listed);
    assert_eq!(namespaces_of("RoleBinding"), listed);
    for object in objects.iter().filter(|o| name_of(o) == name) {
        match object["kind"].as_str() {
            Some("Role") => assert_eq!(rules_of(object), access(&[WATCH_ACCESS])),
            Some("RoleBinding") => assert_eq!(
                object["subjects"],
                json!([{"kind": "ServiceAccount", "name": name, "namespace": "ops"}])
            ),
            _ => {}
        }
    }
    let lease_role = find(&objects, "Role", &format!("{name}-leader-election"));
    assert_eq!(lease_role["metadata"]["namespace"], "ops");
    let args = args_of(&operator_container(&objects, name)).join(" ");
    assert!(args.contains("--namespace=team-a,team-b"), "{args}");
    assert!(!args.contains("--selector"), "{args}");

    // The deprecated single namespace renders the same as a list of one.
    let single = template("wco", "ops", &["--set", "watchNamespace=team-a"]);
    let listed = template("wco", "ops", &["--set", "watchNamespaces={team-a}"]);
    assert_eq!(single, listed);
}

#[test]
fn selector_and_lease_values_render_their_flags() {
    let objects = template(
        "wco",
        "ops",
        &[
            "--set-json",
            r#"selector="tier in (a,b),!legacy""#,
            "--set",
            "leaderElection.leaseName=wco-eu",
            "--set",
            "leaderElection.leaseDuration=30s",
            "--set",
            "leaderElection.renewPeriod=20s",
        ],
    );
    let args = args_of(&operator_container(&objects, "wco-webhook-ca-operator"))
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
    for want in [
        "--selector=tier in (a,b),!legacy",
        "--leader-elect",
        "--leader-election-lease-name=wco-eu",
        "--leader-election-lease-duration=30s",
        "--leader-election-renew-period=20s",
    ] {
        assert!(
            args.iter().any(|a| a == want),
            "{want} missing from {args:?}"
        );
    }
    // Without leader election there is no Lease to name.
    let without = template(
        "wco",
        "ops",
        &[
            "--set",
            "leaderElection.enabled=false",
            "--set",
            "leaderElection.leaseName=wco-eu",
        ],
    );
    let args = args_of(&operator_container(&without, "wco-webhook-ca-operator")).join(" ");
    assert!(!args.contains("--leader-election"), "{args}");
}

#[test]
fn optional_objects_and_overrides_render() {
    let digest = format!("sha256:{}", "ab".repeat(32));
    let objects = template(
        "webhook-ca-operator",
        "ops",
        &[
            "--set",
            "metrics.serviceMonitor.enabled=true",
            "--set",
            "podDisruptionBudget.enabled=true",
            "--set",
            "replicaCount=2",
            "--set",
            &format!("image.digest={digest}"),
            "--set",
            "logFormat=text",
            "--set",
            "leaderElection.enabled=true",
            "--set",
            "prometheusRule.enabled=true",
            "--set",
            "controller.dryRun=true",
        ],
    );
    // The release name already holds the chart's name: no doubled prefix.
    let name = "webhook-ca-operator";
    let monitor = find(&objects, "ServiceMonitor", name);
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    // The operator's series carry the resource's namespace in `namespace`: kept, not renamed.
    assert_eq!(monitor["spec"]["endpoints"][0]["honorLabels"], true);
    let rule = find(&objects, "PrometheusRule", name);
    let alerts: Vec<&str> = rule["spec"]["groups"][0]["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .filter_map(|r| r["alert"].as_str())
        .collect();
    assert_eq!(
        alerts,
        [
            "WebhookCaCertificateExpiringSoon",
            "WebhookCaCertificateExpiryCritical",
            "WebhookCaCertificateNotReady",
            "WebhookCaUploadsFailing",
            "WebhookCaRolloutFailed",
            "WebhookCaOperatorAbsent",
        ]
    );
    let dry_run = operator_container(&objects, name)["env"]
        .as_array()
        .expect("env")
        .iter()
        .find(|e| e["name"] == "DRY_RUN")
        .map(|e| e["value"].clone());
    assert_eq!(dry_run, Some(json!("true")));
    let pdb = find(&objects, "PodDisruptionBudget", name);
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    let deployment = find(&objects, "Deployment", name);
    assert_eq!(deployment["spec"]["replicas"], 2);
    let container = operator_container(&objects, name);
    assert_eq!(
        container["image"],
        format!("ghcr.io/webhook-ca-operator/webhook-ca-operator@{digest}")
    );
    assert!(args_of(&container).contains(&"--log-format=text"));

    let tagged = template("wco", "ops", &["--set", "image.tag=1.2.3"]);
    assert_eq!(
        operator_container(&tagged, "wco-webhook-ca-operator")["image"],
        "ghcr.io/webhook-ca-operator/webhook-ca-operator:1.2.3"
    );

    let without_election = template("wco", "ops", &["--set", "leaderElection.enabled=false"]);
    assert!(
        !args_of(&operator_container(
            &without_election,
            "wco-webhook-ca-operator"
        ))
        .contains(&"--leader-elect")
    );
    assert!(
        !kinds(&without_election)
            .iter()
            .any(|k| k.contains("leader-election")),
        "lease RBAC without leader election: {:?}",
        kinds(&without_election)
    );
}

#[test]
fn invalid_values_are_refused() {
    let refused = template_refused(&[
        "--set",
        "replicaCount=2",
        "--set",
        "leaderElection.enabled=false",
    ]);
    assert!(
        refused.contains("needs leaderElection.enabled"),
        "{refused}"
    );
    let refused = template_refused(&["--set", "logFormat=xml"]);
    assert!(refused.contains("/logFormat"), "{refused}");
    let refused = template_refused(&["--set", "replicaCont=2"]);
    assert!(refused.contains("replicaCont"), "{refused}");
    let refused = template_refused(&["--set", "watchNamespace=Not_A_Namespace"]);
    assert!(refused.contains("/watchNamespace"), "{refused}");
    let refused = template_refused(&[
        "--set",
        "prometheusRule.enabled=true",
        "--set",
        "prometheusRule.expiryCriticalDays=30",
    ]);
    assert!(refused.contains("expiryCriticalDays"), "{refused}");
    let refused = template_refused(&["--set", "controller.apiConcurrency=0"]);
    assert!(refused.contains("/controller/apiConcurrency"), "{refused}");
    for list in [
        "watchNamespaces={team-a,Not_A_Namespace}",
        "watchNamespaces={a,a}",
    ] {
        let refused = template_refused(&["--set", list]);
        assert!(refused.contains("/watchNamespaces"), "{list}: {refused}");
    }
    let refused = template_refused(&[
        "--set",
        "watchNamespace=team-a",
        "--set",
        "watchNamespaces={team-b}",
    ]);
    assert!(
        refused.contains("list that namespace in watchNamespaces"),
        "{refused}"
    );
    // A Lease counts whole seconds.
    for duration in ["15", "1500ms", "2.5s"] {
        let refused = template_refused(&[
            "--set-string",
            &format!("leaderElection.leaseDuration={duration}"),
        ]);
        assert!(
            refused.contains("/leaderElection/leaseDuration"),
            "{duration}: {refused}"
        );
    }
    let refused = template_refused(&["--set", "leaderElection.leaseName=Shard_EU"]);
    assert!(refused.contains("/leaderElection/leaseName"), "{refused}");
}

/// Values that are Kubernetes objects passed through whole; the README documents them as one.
const WHOLE_VALUES: &[&str] = &[
    "podSecurityContext",
    "securityContext",
    "resources",
    "livenessProbe",
    "readinessProbe",
];

/// Dotted paths of values.yaml's leaves (an empty map counts as a leaf, as do [`WHOLE_VALUES`]).
fn leaf_paths(prefix: &str, value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) if !map.is_empty() && !WHOLE_VALUES.contains(&prefix) => {
            for (key, child) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                leaf_paths(&path, child, out);
            }
        }
        _ => out.push(prefix.to_owned()),
    }
}

#[test]
fn the_chart_readme_documents_every_value() {
    let values: Value = serde_saphyr::from_str(CHART_VALUES).expect("values.yaml");
    let mut paths = Vec::new();
    leaf_paths("", &values, &mut paths);
    let undocumented: Vec<&String> = paths
        .iter()
        .filter(|p| !CHART_README.contains(&format!("`{p}`")))
        .collect();
    assert!(
        undocumented.is_empty(),
        "values missing from charts/webhook-ca-operator/README.md: {undocumented:?}"
    );
}

#[test]
fn deploy_manifests_are_the_rendered_chart() {
    let rendered = run_ok(helm_offline().args([
        "template",
        DEPLOY_NAMESPACE,
        CHART,
        "--namespace",
        DEPLOY_NAMESPACE,
        "--include-crds",
    ]));
    assert!(
        DEPLOY.ends_with(&rendered),
        "deploy/webhook-ca-operator.yaml is stale: run hack/gen-deploy.sh"
    );
    // Before the rendered chart: the Namespace it installs into, and nothing else.
    let head = parse_documents(&DEPLOY[..DEPLOY.len() - rendered.len()]);
    assert_eq!(
        kinds(&head),
        [format!("Namespace/{DEPLOY_NAMESPACE}")].into()
    );
    assert_eq!(
        head[0]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
}

// ---------------------------------------------------------------------------------------------
// In the cluster

/// What the token behind `client` may do in `namespace`, by SelfSubjectRulesReview.
async fn granted(client: &Client, namespace: &str) -> Result<Access, String> {
    let review = SelfSubjectRulesReview {
        spec: SelfSubjectRulesReviewSpec {
            namespace: Some(namespace.to_owned()),
        },
        ..SelfSubjectRulesReview::default()
    };
    let reviewed = Api::<SelfSubjectRulesReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .map_err(|e| e.to_string())?;
    let status = reviewed.status.ok_or("a rules review without status")?;
    Ok(expand(&status.resource_rules))
}

/// The operator's and a bare ServiceAccount's identities; the bare one's access (what every
/// authenticated ServiceAccount may do, such as reviewing itself) is subtracted from the
/// operator's, so that only what the chart grants is compared.
struct Identities {
    operator: Client,
    bare: Client,
}

impl Identities {
    async fn new(ns: &TestNamespace, operator_sa: &str) -> Self {
        let cluster = ns.cluster();
        let admin = ns.client();
        cluster.apply(&format!(
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{ name: bare, namespace: {} }}\n",
            ns.name()
        ));
        Self {
            operator: cluster.client_with_token(&token_for(&admin, ns.name(), operator_sa).await),
            bare: cluster.client_with_token(&token_for(&admin, ns.name(), "bare").await),
        }
    }

    /// Waits until what the chart grants in `namespace` is exactly `want`: RBAC reaches the
    /// authorizer through an informer, so a fresh binding may take a moment.
    async fn assert_grants(&self, namespace: &str, want: Access) {
        wait_for(&format!("the chart's grants in {namespace}"), || async {
            let baseline = granted(&self.bare, namespace).await?;
            let got: Access = granted(&self.operator, namespace)
                .await?
                .difference(&baseline)
                .cloned()
                .collect();
            if got == want {
                Ok(())
            } else {
                Err(describe_difference(&got, &want))
            }
        })
        .await;
    }
}

/// A release of the chart in a fresh namespace; the cluster-scoped objects it may create are
/// deleted when the test ends, also if it fails before `helm uninstall`.
struct Release {
    ns: TestNamespace,
    name: String,
    fullname: String,
    _cluster_role: DeleteOnDrop,
    _cluster_role_binding: DeleteOnDrop,
}

impl Release {
    /// Installs into a new namespace that enforces the "restricted" Pod Security Standard, and
    /// waits until the Deployment is available (kwok plays the pod; no container runs).
    async fn install(prefix: &str, args: &[&str]) -> Self {
        let ns = TestNamespace::new(prefix).await;
        let cluster = ns.cluster();
        let restricted = json!({"metadata": {"labels": {
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "latest",
        }}});
        Api::<Namespace>::all(ns.client())
            .patch(
                ns.name(),
                &PatchParams::default(),
                &Patch::Merge(&restricted),
            )
            .await
            .expect("label the namespace restricted");
        // Unique per test and run: cluster-scoped names derive from it.
        let name = ns.name().to_owned();
        let fullname = format!("{name}-webhook-ca-operator");
        let release = Self {
            _cluster_role: DeleteOnDrop::cluster_scoped(cluster, "clusterrole", &fullname),
            _cluster_role_binding: DeleteOnDrop::cluster_scoped(
                cluster,
                "clusterrolebinding",
                &fullname,
            ),
            ns,
            name,
            fullname,
        };
        let installed = run(cluster
            .helm()
            .args(["install", &release.name, CHART])
            .args([
                "--namespace",
                release.ns.name(),
                "--wait",
                "--timeout",
                "3m",
            ])
            .args(args))
        .unwrap_or_else(|e| panic!("{e}"));
        // The apiserver warns about a pod template that breaks the namespace's Pod Security
        // level before the ReplicaSet's pods are refused, which --wait reports only as a timeout.
        let warnings = String::from_utf8_lossy(&installed.stderr);
        assert!(
            !warnings.contains("PodSecurity"),
            "helm install: {warnings}"
        );
        release
    }

    fn uninstall(&self) {
        run_ok(self.ns.cluster().helm().args([
            "uninstall",
            &self.name,
            "--namespace",
            self.ns.name(),
            "--wait",
        ]));
    }

    /// RBAC objects of this release anywhere in the cluster, found by the instance label.
    async fn rbac_left(&self) -> Vec<String> {
        let client = self.ns.client();
        let labels = ListParams::default().labels(&format!("{INSTANCE_LABEL}={}", self.name));
        let mut left = Vec::new();
        for (kind, names) in [
            (
                "ClusterRole",
                names(Api::<ClusterRole>::all(client.clone()), &labels).await,
            ),
            (
                "ClusterRoleBinding",
                names(Api::<ClusterRoleBinding>::all(client.clone()), &labels).await,
            ),
            (
                "Role",
                names(Api::<Role>::all(client.clone()), &labels).await,
            ),
            (
                "RoleBinding",
                names(Api::<RoleBinding>::all(client.clone()), &labels).await,
            ),
        ] {
            left.extend(names.into_iter().map(|n| format!("{kind}/{n}")));
        }
        left
    }
}

async fn names<K>(api: Api<K>, params: &ListParams) -> Vec<String>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.list_metadata(params)
        .await
        .expect("list RBAC objects")
        .items
        .into_iter()
        .filter_map(|o| o.metadata.name)
        .collect()
}

fn assert_forbidden<T: std::fmt::Debug>(result: Result<T, kube::Error>, what: &str) {
    match result {
        Err(kube::Error::Api(status)) if status.code == 403 => {}
        other => panic!("{what} as the operator: want 403 Forbidden, got {other:?}"),
    }
}

async fn assert_crd_established(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    wait_for("the WebhookCaCertificate CRD to be Established", || async {
        let crd = crds.get(CRD_NAME).await.map_err(|e| e.to_string())?;
        let conditions = crd.status.and_then(|s| s.conditions).unwrap_or_default();
        if conditions
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
        {
            Ok(())
        } else {
            Err(format!("conditions {conditions:?}"))
        }
    })
    .await;
}

#[tokio::test]
async fn cluster_wide_install_grants_exactly_what_the_operator_needs() {
    let release = Release::install("helm-cluster", &[]).await;
    let ns = release.ns.name();
    let admin = release.ns.client();
    assert_crd_established(&admin).await;
    Api::<ServiceAccount>::namespaced(admin.clone(), ns)
        .get(&release.fullname)
        .await
        .expect("the chart's ServiceAccount");
    let deployment = Api::<Deployment>::namespaced(admin.clone(), ns)
        .get(&release.fullname)
        .await
        .expect("the operator's Deployment");
    assert_eq!(
        deployment.status.and_then(|s| s.available_replicas),
        Some(1),
        "the pod was admitted under the restricted Pod Security Standard"
    );

    let workloads = TestNamespace::new("helm-workloads").await;
    let who = Identities::new(&release.ns, &release.fullname).await;
    who.assert_grants(ns, access(&[WATCH_ACCESS, LEASE_ACCESS]))
        .await;
    who.assert_grants(workloads.name(), access(&[WATCH_ACCESS]))
        .await;

    // The same through real requests in a namespace of someone else's workloads.
    workloads.cluster().apply(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{ name: internal-ca, namespace: {} }}\nstringData: {{ ca.crt: x }}\n",
        workloads.name()
    ));
    let secrets: Api<Secret> = Api::namespaced(who.operator.clone(), workloads.name());
    let listed = secrets
        .list_metadata(&ListParams::default())
        .await
        .expect("list secrets by metadata as the operator");
    assert_eq!(listed.items.len(), 1);
    secrets
        .get("internal-ca")
        .await
        .expect("get a secret as the operator");
    assert_forbidden(
        secrets
            .delete("internal-ca", &DeleteParams::default())
            .await,
        "delete secret",
    );
    assert_forbidden(
        secrets
            .patch(
                "internal-ca",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
            )
            .await,
        "patch secret",
    );
    let deployments: Api<Deployment> = Api::namespaced(who.operator.clone(), workloads.name());
    let new_deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "sneaky"},
        "spec": {
            "selector": {"matchLabels": {"app": "sneaky"}},
            "template": {"metadata": {"labels": {"app": "sneaky"}},
                         "spec": {"containers": [{"name": "c", "image": "registry.invalid/c:1"}]}}
        }
    }))
    .expect("a literal Deployment");
    assert_forbidden(
        deployments
            .create(&PostParams::default(), &new_deployment)
            .await,
        "create deployment",
    );
    // Authorized but absent: the eviction reaches the pod lookup (404), not a 403.
    let pods: Api<Pod> = Api::namespaced(who.operator.clone(), workloads.name());
    match pods.evict("absent", &EvictParams::default()).await {
        Err(kube::Error::Api(status)) if status.code == 404 => {}
        other => panic!("evicting an absent pod as the operator: want 404, got {other:?}"),
    }
    let resources: Api<WebhookCaCertificate> =
        Api::namespaced(who.operator.clone(), workloads.name());
    resources
        .list(&ListParams::default())
        .await
        .expect("list WebhookCaCertificates as the operator");
    let lease: Lease = serde_json::from_value(json!({"metadata": {"name": "webhook-ca-operator"}}))
        .expect("a literal Lease");
    Api::<Lease>::namespaced(who.operator.clone(), ns)
        .create(&PostParams::default(), &lease)
        .await
        .expect("create the Lease in the release namespace as the operator");
    assert_forbidden(
        Api::<Lease>::namespaced(who.operator.clone(), workloads.name())
            .create(&PostParams::default(), &lease)
            .await,
        "create a Lease outside the release namespace",
    );

    release.uninstall();
    let left = release.rbac_left().await;
    assert!(left.is_empty(), "helm uninstall left RBAC behind: {left:?}");
    let sa = Api::<ServiceAccount>::namespaced(admin.clone(), ns)
        .get_opt(&release.fullname)
        .await
        .expect("look up the ServiceAccount");
    assert!(sa.is_none(), "helm uninstall left the ServiceAccount");
    // Helm never deletes what it installed from crds/: deleting the CRD would delete every
    // WebhookCaCertificate with it.
    assert_crd_established(&admin).await;
}

#[tokio::test]
async fn namespaced_install_grants_nothing_outside_the_watched_namespace() {
    let watched = TestNamespace::new("helm-watched").await;
    let elsewhere = TestNamespace::new("helm-elsewhere").await;
    let release = Release::install(
        "helm-namespaced",
        &["--set", &format!("watchNamespace={}", watched.name())],
    )
    .await;
    let who = Identities::new(&release.ns, &release.fullname).await;
    who.assert_grants(watched.name(), access(&[WATCH_ACCESS]))
        .await;
    who.assert_grants(release.ns.name(), access(&[LEASE_ACCESS]))
        .await;
    who.assert_grants(elsewhere.name(), Access::new()).await;

    let admin = release.ns.client();
    let cluster_roles = names(
        Api::<ClusterRole>::all(admin.clone()),
        &ListParams::default().labels(&format!("{INSTANCE_LABEL}={}", release.name)),
    )
    .await;
    assert!(
        cluster_roles.is_empty(),
        "cluster roles in namespaced mode: {cluster_roles:?}"
    );
    assert_forbidden(
        Api::<Secret>::namespaced(who.operator.clone(), elsewhere.name())
            .list_metadata(&ListParams::default())
            .await,
        "list secrets outside the watched namespace",
    );
    assert_forbidden(
        Api::<Secret>::all(who.operator.clone())
            .list_metadata(&ListParams::default())
            .await,
        "list secrets in all namespaces",
    );
    Api::<Secret>::namespaced(who.operator.clone(), watched.name())
        .list_metadata(&ListParams::default())
        .await
        .expect("list secrets in the watched namespace as the operator");

    release.uninstall();
    let left = release.rbac_left().await;
    assert!(left.is_empty(), "helm uninstall left RBAC behind: {left:?}");
}

/// `kubectl auth can-i` with the credentials of `kubeconfig`: kubectl's "yes" or "no".
fn can_i(cluster: &test_support::Cluster, kubeconfig: &Path, args: &[&str]) -> String {
    // can-i exits 1 for "no": read the answer, not the status.
    let out = cluster
        .kubectl()
        .env("KUBECONFIG", kubeconfig)
        .args(["auth", "can-i"])
        .args(args)
        .output()
        .expect("run kubectl auth can-i");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The operator's arguments as the chart's Deployment gives them, for a process run here:
/// without the subcommand and the flags the test harness sets itself (metrics address, logs).
fn chart_args(deployment: &Deployment) -> Vec<String> {
    let container = deployment
        .spec
        .template
        .spec
        .as_ref()
        .map(|p| p.containers[0].clone())
        .expect("the operator container");
    container
        .args
        .unwrap_or_default()
        .into_iter()
        .filter(|a| {
            a != "run" && !a.starts_with("--metrics-bind") && !a.starts_with("--log-format")
        })
        .collect()
}

/// `watchNamespaces: [a, b]` as a user would check it: with the chart's own ServiceAccount token
/// and the chart's own arguments, the operator reconciles a resource in `a`; with the same token
/// a Secret in a third namespace is out of reach, and so is a cluster-wide list of Secrets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_list_install_works_with_its_token_and_reads_no_other_secrets() {
    let Setup { ns: a, sim } = setup("helm-list-a").await;
    let b = TestNamespace::new("helm-list-b").await;
    let c = TestNamespace::new("helm-list-c").await;
    let cluster = a.cluster();
    cluster.apply(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{ name: not-yours, namespace: {} }}\nstringData: {{ ca.crt: x }}\n",
        c.name()
    ));
    let release = Release::install(
        "helm-list",
        &[
            "--set",
            &format!("watchNamespaces={{{},{}}}", a.name(), b.name()),
        ],
    )
    .await;
    let who = Identities::new(&release.ns, &release.fullname).await;
    who.assert_grants(a.name(), access(&[WATCH_ACCESS])).await;
    who.assert_grants(b.name(), access(&[WATCH_ACCESS])).await;
    who.assert_grants(release.ns.name(), access(&[LEASE_ACCESS]))
        .await;
    who.assert_grants(c.name(), Access::new()).await;

    let admin = release.ns.client();
    let token = token_for(&admin, release.ns.name(), &release.fullname).await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let kubeconfig = token_kubeconfig(cluster.kubeconfig(), &token, dir.path());
    assert_eq!(
        can_i(cluster, &kubeconfig, &["get", "secrets", "-n", a.name()]),
        "yes"
    );
    assert_eq!(
        can_i(cluster, &kubeconfig, &["get", "secrets", "-n", c.name()]),
        "no"
    );
    assert_eq!(
        can_i(
            cluster,
            &kubeconfig,
            &["list", "secrets", "--all-namespaces"]
        ),
        "no"
    );
    let as_operator = cluster.client_with_token(&token);
    assert_forbidden(
        Api::<Secret>::namespaced(as_operator.clone(), c.name())
            .get("not-yours")
            .await,
        "get a secret in a namespace outside the list",
    );
    assert_forbidden(
        Api::<Secret>::all(as_operator.clone())
            .list_metadata(&ListParams::default())
            .await,
        "list secrets in all namespaces",
    );

    let deployment = Api::<Deployment>::namespaced(admin.clone(), release.ns.name())
        .get(&release.fullname)
        .await
        .expect("the operator's Deployment");
    let mut args = chart_args(&deployment);
    assert!(
        args.contains(&format!("--namespace={},{}", a.name(), b.name())),
        "{args:?}"
    );
    // In the pod, POD_NAMESPACE names the release namespace for the Lease.
    args.extend(["--lease-namespace".to_owned(), release.ns.name().to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    // Told to watch a namespace beyond the chart's list, the operator is refused there and stays
    // unready, serving none of its namespaces, rather than pretending to cover the third one.
    let beyond: Vec<&str> = args
        .iter()
        .copied()
        .filter(|a| *a != "--leader-elect")
        .chain(["--namespace", c.name()])
        .collect();
    let misconfigured = OperatorProcess::spawn(BINARY, "beyond-the-list", &kubeconfig, &beyond);
    let refused = wait_for("the refusal in the third namespace", || async {
        // kube's watcher warns about each refused list of the resources there.
        let refused: Vec<String> = misconfigured
            .refused_requests()
            .into_iter()
            .filter(|l| {
                l.contains(r#""level":"WARN""#)
                    && l.contains("webhookcacertificates.webhookca.io is forbidden")
                    && l.contains(c.name())
            })
            .collect();
        // The third refusal comes after two retries, each behind the watch's own backoff and
        // the controller's (which the refused Secret and ConfigMap watches there grow too):
        // seconds later, when the lists of a and b are long done and /readyz (which follows
        // the cache within a second) would say so if the cache counted as ready without c.
        if refused.len() < 3 {
            Err(format!("log: {:?}", misconfigured.log_lines()))
        } else {
            Ok(refused)
        }
    })
    .await;
    assert_ne!(
        misconfigured.readyz().await,
        Ok(reqwest::StatusCode::OK),
        "ready while refused in {}: {refused:?}",
        c.name()
    );
    drop(misconfigured);

    let ca = ca_pem("Namespace List Root");
    set_secret(&a, "internal-ca", "ca.crt", &ca).await;
    let operator = OperatorProcess::spawn(BINARY, "chart-list", &kubeconfig, &args);
    apply_wcc(&a, spec(&sim, json!({}))).await;
    wait_condition(&a, "Ready", "True", "Synced").await;
    wait_stored_bundle(&sim, &expected_bundle(&[&ca])).await;
    operator.wait_ready().await;
    let denied = operator.refused_requests();
    assert!(
        denied.is_empty(),
        "requests the chart's RBAC refused: {denied:?}"
    );

    drop(operator);
    release.uninstall();
    let left = release.rbac_left().await;
    assert!(left.is_empty(), "helm uninstall left RBAC behind: {left:?}");
}

/// The plain manifests as documented: `kubectl apply --server-side`, checked by the apiserver
/// (admission and schemas) without being stored.
#[tokio::test]
async fn deploy_manifests_pass_a_server_side_dry_run() {
    let cluster = test_support::cluster().await;
    let namespaces: Api<Namespace> = Api::all(cluster.client());
    // A dry run stores nothing, so the objects in the namespace need the namespace to exist.
    // Create it for real unless it exists; wait out a deletion by an earlier run.
    let created = wait_for("the deploy namespace to be usable", || async {
        match namespaces.get_opt(DEPLOY_NAMESPACE).await {
            Ok(Some(existing)) => {
                if existing.metadata.deletion_timestamp.is_some() {
                    Err("namespace is terminating".to_owned())
                } else {
                    Ok(false)
                }
            }
            Ok(None) => {
                let fresh: Namespace =
                    serde_json::from_value(json!({"metadata": {"name": DEPLOY_NAMESPACE}}))
                        .expect("a literal Namespace");
                namespaces
                    .create(&PostParams::default(), &fresh)
                    .await
                    .map(|_| true)
                    .map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    let _cleanup =
        created.then(|| DeleteOnDrop::cluster_scoped(cluster, "namespace", DEPLOY_NAMESPACE));

    let out = run_ok(cluster.kubectl().args([
        "apply",
        "--server-side",
        "--dry-run=server",
        "-f",
        DEPLOY_PATH,
    ]));
    let applied: BTreeSet<String> = out
        .lines()
        .map(|line| {
            assert!(line.ends_with("(server dry run)"), "kubectl said: {out}");
            line.split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    // kubectl names objects as <lowercase kind>[.<group>]/<name>.
    let want: BTreeSet<String> = parse_documents(DEPLOY)
        .iter()
        .map(|o| {
            let kind = o["kind"].as_str().unwrap_or("?").to_lowercase();
            let group = o["apiVersion"]
                .as_str()
                .and_then(|v| v.rsplit_once('/'))
                .map(|(group, _)| format!(".{group}"))
                .unwrap_or_default();
            format!("{kind}{group}/{}", name_of(o))
        })
        .collect();
    assert_eq!(applied, want, "kubectl said: {out}");
}
