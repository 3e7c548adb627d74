//! Prometheus metrics. Labels stay bounded: a resource's namespace and name, workload kinds,
//! results and reasons; never certificate fingerprints.

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

/// Reconcile durations from 10 ms to about 20 s.
#[derive(Clone, Debug)]
pub struct DurationBuckets;

impl MetricConstructor<Histogram> for DurationBuckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(exponential_buckets(0.01, 2.0, 12))
    }
}

/// Every metric the operator exports. Call sites record through the methods, which build the
/// labels, so a label set is spelt in one place.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ResultLabels, Counter>,
    reconcile_duration: Family<ResourceLabels, Histogram, DurationBuckets>,
    uploads: Family<ResultLabels, Counter>,
    restarts: Family<RestartLabels, Counter>,
    certificates: Family<ResourceLabels, Gauge>,
    earliest_expiry: Family<ResourceLabels, Gauge>,
    ready: Family<ResourceLabels, Gauge>,
    api_nodes: Family<NodeLabels, Gauge>,
    /// The node series each resource has now, so that a count that went away is removed.
    api_node_series: Mutex<HashMap<ResourceLabels, Vec<NodeLabels>>>,
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
        let reconcile_duration =
            Family::<ResourceLabels, Histogram, DurationBuckets>::new_with_constructor(
                DurationBuckets,
            );
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
            "Unix time at which the first certificate of the bundle expires",
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

    pub fn ready(&self, resource: &ResourceLabels, ready: bool) {
        self.ready.get_or_create(resource).set(i64::from(ready));
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
        self.reconcile_duration.remove(resource);
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
}
