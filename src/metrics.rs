//! Prometheus metrics. Labels stay bounded: a resource's namespace and name, workload kinds,
//! restart methods, results and reasons, the API's fixed endpoint paths, HTTP methods and status
//! codes; never certificate fingerprints, API hosts or request ids.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::bundle::Bundle;
use kube::ResourceExt;

use crate::crd::{
    ApiHealthStatus, NodeHealthStatus, RestartMethod, WebhookCaCertificate, WorkloadKind,
};
use crate::onprem::{RequestObserver, RequestOutcome};

/// The resource a series belongs to.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabels {
    pub namespace: String,
    pub name: String,
}

impl ResourceLabels {
    pub fn new(namespace: &str, name: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }

    pub fn of(wcc: &WebhookCaCertificate) -> Self {
        Self::new(&wcc.namespace().unwrap_or_default(), &wcc.name_any())
    }

    /// `namespace/name`, the key of the controller's per-resource state.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// The result label: `success`, or the failure's reason (a CamelCase condition reason).
const SUCCESS: &str = "success";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    namespace: String,
    name: String,
    result: String,
}

impl ResultLabels {
    fn new(resource: &ResourceLabels, result: &str) -> Self {
        Self {
            namespace: resource.namespace.clone(),
            name: resource.name.clone(),
            result: result.to_owned(),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RestartLabels {
    namespace: String,
    kind: String,
    method: String,
    result: String,
}

/// A count of the API's nodes: `role` and `gateway_status` are the API's documented values,
/// `other` for anything else, `single` for a single instance's one node, `unknown` for a role
/// not reported and `unreachable` for a node that answered with errors; so a resource has at
/// most a few dozen series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    namespace: String,
    name: String,
    role: String,
    gateway_status: String,
}

fn role_label(role: Option<&str>) -> &'static str {
    match role {
        Some("primary_master") => "primary_master",
        Some("secondary_master") => "secondary_master",
        Some("coreapp") => "coreapp",
        Some(_) => "other",
        // An unreachable node answers `{"errors":[...]}` alone: its role is not known.
        None => "unknown",
    }
}

fn gateway_label(status: &str) -> &'static str {
    match status {
        "connected" => "connected",
        "connecting" => "connecting",
        "disconnected" => "disconnected",
        "uninitialized" => "uninitialized",
        "unregistered" => "unregistered",
        _ => "other",
    }
}

fn node_label(node: &NodeHealthStatus) -> (&'static str, &'static str) {
    let status = match (&node.error, &node.gateway_status) {
        (None, Some(status)) => gateway_label(status),
        _ => "unreachable",
    };
    (role_label(node.role.as_deref()), status)
}

/// One On-Premises API request: which endpoint (a fixed path), how, and what came back: the
/// HTTP status code, or the transport failure's reason (`Connect`, `Timeout`, `Tls`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiRequestLabels {
    endpoint: String,
    method: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLatencyLabels {
    endpoint: String,
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

/// Exponential histogram buckets: `count` upper bounds from `start`, each `factor` times the last.
#[derive(Clone, Debug)]
pub struct Buckets {
    start: f64,
    factor: f64,
    count: u16,
}

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(exponential_buckets(self.start, self.factor, self.count))
    }
}

/// Reconcile durations from 10 ms to about 20 s.
const RECONCILE_BUCKETS: Buckets = Buckets {
    start: 0.01,
    factor: 2.0,
    count: 12,
};
/// API request latencies from 5 ms to about 40 s (the client's request timeout is 30 s).
const API_BUCKETS: Buckets = Buckets {
    start: 0.005,
    factor: 2.0,
    count: 14,
};
/// Rollouts from 1 s to about 2.3 h (`restart.rolloutTimeout` defaults to 10 minutes).
const ROLLOUT_BUCKETS: Buckets = Buckets {
    start: 1.0,
    factor: 2.0,
    count: 14,
};

/// Every metric the operator exports. Call sites record through the methods, which build the
/// labels, so a label set is spelt in one place.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ResultLabels, Counter>,
    reconcile_duration: Family<ResourceLabels, Histogram, Buckets>,
    uploads: Family<ResultLabels, Counter>,
    restarts: Family<RestartLabels, Counter>,
    certificates: Family<ResourceLabels, Gauge>,
    earliest_expiry: Family<ResourceLabels, Gauge>,
    ready: Family<ResourceLabels, Gauge>,
    api_nodes: Family<NodeLabels, Gauge>,
    /// The node series each resource has now, so that a count that went away is removed.
    api_node_series: Mutex<HashMap<ResourceLabels, Vec<NodeLabels>>>,
    last_sync: Family<ResourceLabels, Gauge>,
    rollout_failed: Family<ResourceLabels, Gauge>,
    api_requests: Family<ApiRequestLabels, Counter>,
    api_duration: Family<ApiLatencyLabels, Histogram, Buckets>,
    rollout_duration: Family<KindLabels, Histogram, Buckets>,
    dry_run: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("webhookca");
        let reconciles = Family::<ResultLabels, Counter>::default();
        registry.register(
            "reconcile",
            "Reconciles of WebhookCaCertificate resources, by result",
            reconciles.clone(),
        );
        let reconcile_duration = Family::new_with_constructor(RECONCILE_BUCKETS);
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile took",
            reconcile_duration.clone(),
        );
        let uploads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "uploads",
            "Bundle uploads to the On-Premises API, by result",
            uploads.clone(),
        );
        let restarts = Family::<RestartLabels, Counter>::default();
        registry.register(
            "restarts",
            "Workload restarts started after an upload, by kind, method and result",
            restarts.clone(),
        );
        let certificates = Family::<ResourceLabels, Gauge>::default();
        registry.register(
            "bundle_certificates",
            "Certificates in the bundle built from the sources",
            certificates.clone(),
        );
        let earliest_expiry = Family::<ResourceLabels, Gauge>::default();
        registry.register(
            "bundle_earliest_expiry_timestamp_seconds",
            "Unix time at which the first certificate of the bundle, or the webhook server's certificate, expires",
            earliest_expiry.clone(),
        );
        let ready = Family::<ResourceLabels, Gauge>::default();
        registry.register(
            "ready",
            "1 when the resource's Ready condition is True, else 0",
            ready.clone(),
        );
        let api_nodes = Family::<NodeLabels, Gauge>::default();
        registry.register(
            "api_nodes",
            "Nodes in the last GET /v1/health answer, by role and gateway_status",
            api_nodes.clone(),
        );
        let last_sync = Family::<ResourceLabels, Gauge>::default();
        registry.register(
            "last_sync_timestamp_seconds",
            "Unix time of the resource's last pass that ended Ready (API in step, targets rolled)",
            last_sync.clone(),
        );
        let rollout_failed = Family::<ResourceLabels, Gauge>::default();
        registry.register(
            "rollout_failed",
            "1 while the resource's last restart failed or timed out (RolloutFailed, RolloutTimeout)",
            rollout_failed.clone(),
        );
        let api_requests = Family::<ApiRequestLabels, Counter>::default();
        registry.register(
            "api_requests",
            "HTTP requests to On-Premises APIs, by endpoint, method and status code (or transport \
             failure: Connect, Timeout, Tls)",
            api_requests.clone(),
        );
        let api_duration = Family::new_with_constructor(API_BUCKETS);
        registry.register(
            "api_request_duration_seconds",
            "Latency of HTTP requests to On-Premises APIs, by endpoint and method",
            api_duration.clone(),
        );
        let rollout_duration = Family::new_with_constructor(ROLLOUT_BUCKETS);
        registry.register(
            "rollout_duration_seconds",
            "Time from the start of a restart to the workload's completed rollout, by workload kind",
            rollout_duration.clone(),
        );
        let dry_run = Gauge::default();
        registry.register(
            "dry_run",
            "1 when the operator runs with --dry-run and changes nothing but status and Events",
            dry_run.clone(),
        );
        Self {
            registry,
            reconciles,
            reconcile_duration,
            uploads,
            restarts,
            certificates,
            earliest_expiry,
            ready,
            api_nodes,
            api_node_series: Mutex::default(),
            last_sync,
            rollout_failed,
            api_requests,
            api_duration,
            rollout_duration,
            dry_run,
        }
    }
}

impl Metrics {
    /// The text exposition format, for `/metrics`.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }

    /// One reconcile of `resource`; `failure` is the reason it did not complete.
    pub fn reconcile(&self, resource: &ResourceLabels, failure: Option<&str>, took: Duration) {
        self.reconciles
            .get_or_create(&ResultLabels::new(resource, failure.unwrap_or(SUCCESS)))
            .inc();
        self.reconcile_duration
            .get_or_create(resource)
            .observe(took.as_secs_f64());
    }

    /// One upload attempt; `failure` is the reason it failed.
    pub fn upload(&self, resource: &ResourceLabels, failure: Option<&str>) {
        self.uploads
            .get_or_create(&ResultLabels::new(resource, failure.unwrap_or(SUCCESS)))
            .inc();
    }

    /// One workload restart begun (or refused, with the error).
    pub fn restart(
        &self,
        namespace: &str,
        kind: WorkloadKind,
        method: RestartMethod,
        failure: Option<&str>,
    ) {
        // The CRD's own spellings (`Deployment`, `RolloutRestart`): bounded by the enums.
        let labels = RestartLabels {
            namespace: namespace.to_owned(),
            kind: format!("{kind:?}"),
            method: format!("{method:?}"),
            result: failure.unwrap_or(SUCCESS).to_owned(),
        };
        self.restarts.get_or_create(&labels).inc();
    }

    /// The bundle currently built for `resource`.
    pub fn bundle(&self, resource: &ResourceLabels, bundle: &Bundle) {
        self.certificates
            .get_or_create(resource)
            .set(i64::try_from(bundle.certificates.len()).unwrap_or(i64::MAX));
        if let Some(first) = bundle.earliest_expiry() {
            self.earliest_expiry
                .get_or_create(resource)
                .set(first.not_after.as_second());
        }
    }

    /// The first expiry that matters for `resource`: the bundle's first certificate or the
    /// webhook server's certificate, whichever comes first.
    pub fn earliest_expiry(&self, resource: &ResourceLabels, at: jiff::Timestamp) {
        self.earliest_expiry
            .get_or_create(resource)
            .set(at.as_second());
    }

    /// Whether the pass ended Ready; a Ready pass at `now` is the resource's last sync.
    pub fn ready(&self, resource: &ResourceLabels, ready: bool, now: jiff::Timestamp) {
        self.ready.get_or_create(resource).set(i64::from(ready));
        if ready {
            self.last_sync.get_or_create(resource).set(now.as_second());
        }
    }

    /// Whether the resource's restart failed or timed out, as this pass found it.
    pub fn rollout_failed(&self, resource: &ResourceLabels, failed: bool) {
        self.rollout_failed
            .get_or_create(resource)
            .set(i64::from(failed));
    }

    /// A restart of a `kind` workload completed `took` after it began.
    pub fn rollout_completed(&self, kind: WorkloadKind, took: Duration) {
        self.rollout_duration
            .get_or_create(&KindLabels {
                kind: format!("{kind:?}"),
            })
            .observe(took.as_secs_f64());
    }

    /// Whether the operator runs in dry-run mode.
    pub fn set_dry_run(&self, dry_run: bool) {
        self.dry_run.set(i64::from(dry_run));
    }

    /// The nodes of the last health answer (as status records it) by role and state; no
    /// answer removes the resource's series rather than report stale counts. Fed from status,
    /// so a restarted operator reports the counts again before it next asks.
    pub fn api_nodes(&self, resource: &ResourceLabels, health: Option<&ApiHealthStatus>) {
        let mut counts: BTreeMap<(&str, &str), i64> = BTreeMap::new();
        if let Some(health) = health {
            if let Some(status) = &health.gateway_status {
                counts.insert(("single", gateway_label(status)), 1);
            }
            for node in &health.nodes {
                *counts.entry(node_label(node)).or_default() += 1;
            }
        }
        let series: Vec<(NodeLabels, i64)> = counts
            .into_iter()
            .map(|((role, gateway_status), count)| {
                let labels = NodeLabels {
                    namespace: resource.namespace.clone(),
                    name: resource.name.clone(),
                    role: role.to_owned(),
                    gateway_status: gateway_status.to_owned(),
                };
                (labels, count)
            })
            .collect();
        let mut known = self
            .api_node_series
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for old in known.remove(resource).unwrap_or_default() {
            if !series.iter().any(|(labels, _)| *labels == old) {
                self.api_nodes.remove(&old);
            }
        }
        for (labels, count) in &series {
            self.api_nodes.get_or_create(labels).set(*count);
        }
        known.insert(
            resource.clone(),
            series.into_iter().map(|(labels, _)| labels).collect(),
        );
    }

    /// Drops the series of a deleted resource, so that gauges do not report it forever.
    pub fn forget(&self, resource: &ResourceLabels) {
        self.api_nodes(resource, None);
        self.api_node_series
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(resource);
        self.certificates.remove(resource);
        self.earliest_expiry.remove(resource);
        self.ready.remove(resource);
        self.last_sync.remove(resource);
        self.rollout_failed.remove(resource);
        self.reconcile_duration.remove(resource);
    }
}

impl RequestObserver for Metrics {
    fn observe(
        &self,
        endpoint: &'static str,
        method: &reqwest::Method,
        outcome: RequestOutcome,
        took: Duration,
    ) {
        let code = match outcome {
            RequestOutcome::Status(status) => status.to_string(),
            RequestOutcome::Failed(reason) => reason.to_owned(),
        };
        self.api_requests
            .get_or_create(&ApiRequestLabels {
                endpoint: endpoint.to_owned(),
                method: method.as_str().to_owned(),
                code,
            })
            .inc();
        self.api_duration
            .get_or_create(&ApiLatencyLabels {
                endpoint: endpoint.to_owned(),
                method: method.as_str().to_owned(),
            })
            .observe(took.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_the_families_with_the_prefix() {
        let metrics = Metrics::default();
        let resource = ResourceLabels::new("wa", "prod");
        metrics.reconcile(&resource, None, Duration::from_millis(20));
        metrics.certificates.get_or_create(&resource).set(3);
        let text = metrics.encode().expect("encodes");
        assert!(
            text.contains(
                r#"webhookca_reconcile_total{namespace="wa",name="prod",result="success"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"webhookca_bundle_certificates{namespace="wa",name="prod"} 3"#),
            "{text}"
        );
        metrics.forget(&resource);
        let text = metrics.encode().expect("encodes");
        assert!(!text.contains("webhookca_bundle_certificates{"), "{text}");
    }

    #[test]
    fn api_nodes_count_by_role_and_state_and_drop_what_went_away() {
        let metrics = Metrics::default();
        let resource = ResourceLabels::new("wa", "prod");
        let node = |name: &str, role: Option<&str>, status: Option<&str>| NodeHealthStatus {
            name: name.to_owned(),
            role: role.map(str::to_owned),
            gateway_status: status.map(str::to_owned),
            error: status
                .is_none()
                .then(|| "node unreachable, code 1014".to_owned()),
        };
        let health = ApiHealthStatus {
            nodes: vec![
                node("m1:m1", Some("primary_master"), Some("connected")),
                node("w1:w1", Some("coreapp"), Some("connected")),
                node("w2:w2", Some("coreapp"), Some("disconnected")),
                node("w4:w4", Some("coreapp"), Some("disconnected")),
                node("x:x", Some("arbiter"), Some("sleepy")),
                node("w3:w3", None, None),
            ],
            ..ApiHealthStatus::default()
        };
        metrics.api_nodes(&resource, Some(&health));
        let text = metrics.encode().expect("encodes");
        let series = |role: &str, status: &str| {
            format!(
                r#"webhookca_api_nodes{{namespace="wa",name="prod",role="{role}",gateway_status="{status}"}}"#
            )
        };
        for (role, status, count) in [
            ("primary_master", "connected", 1),
            ("coreapp", "connected", 1),
            ("coreapp", "disconnected", 2),
            ("unknown", "unreachable", 1),
            ("other", "other", 1),
        ] {
            let line = format!("{} {count}", series(role, status));
            assert!(text.contains(&line), "{line} in {text}");
        }
        let single = ApiHealthStatus {
            gateway_status: Some("connected".to_owned()),
            ..ApiHealthStatus::default()
        };
        metrics.api_nodes(&resource, Some(&single));
        let text = metrics.encode().expect("encodes");
        assert!(
            text.contains(&format!("{} 1", series("single", "connected"))),
            "{text}"
        );
        assert!(!text.contains(&series("coreapp", "disconnected")), "{text}");
        metrics.forget(&resource);
        let text = metrics.encode().expect("encodes");
        assert!(!text.contains("webhookca_api_nodes{"), "{text}");
    }

    #[test]
    fn api_requests_are_counted_by_endpoint_method_and_code() {
        let metrics = Metrics::default();
        let path = "/v1/certificates/webhooks/ca";
        let observe = |outcome| {
            metrics.observe(
                path,
                &reqwest::Method::POST,
                outcome,
                Duration::from_millis(30),
            );
        };
        observe(RequestOutcome::Status(503));
        observe(RequestOutcome::Status(200));
        observe(RequestOutcome::Failed("Connect"));
        let text = metrics.encode().expect("encodes");
        for code in ["503", "200", "Connect"] {
            let line = format!(
                r#"webhookca_api_requests_total{{endpoint="{path}",method="POST",code="{code}"}} 1"#
            );
            assert!(text.lines().any(|l| l == line), "{line}\n{text}");
        }
        let count = format!(
            r#"webhookca_api_request_duration_seconds_count{{endpoint="{path}",method="POST"}} 3"#
        );
        assert!(text.lines().any(|l| l == count), "{text}");
    }

    #[test]
    fn per_resource_gauges_are_forgotten_and_last_sync_moves_only_when_ready() {
        let metrics = Metrics::default();
        let resource = ResourceLabels::new("wa", "prod");
        let at = |s| jiff::Timestamp::from_second(s).expect("valid");
        metrics.ready(&resource, true, at(1_000));
        metrics.ready(&resource, false, at(2_000));
        metrics.rollout_failed(&resource, true);
        metrics.rollout_completed(WorkloadKind::StatefulSet, Duration::from_secs(42));
        let text = metrics.encode().expect("encodes");
        for line in [
            r#"webhookca_last_sync_timestamp_seconds{namespace="wa",name="prod"} 1000"#,
            r#"webhookca_ready{namespace="wa",name="prod"} 0"#,
            r#"webhookca_rollout_failed{namespace="wa",name="prod"} 1"#,
            r#"webhookca_rollout_duration_seconds_count{kind="StatefulSet"} 1"#,
            "webhookca_dry_run 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line}\n{text}");
        }
        metrics.forget(&resource);
        let text = metrics.encode().expect("encodes");
        assert!(!text.contains(r#"name="prod""#), "{text}");
    }
}
