//! Prometheus metrics. Labels stay bounded: a resource's namespace and name, workload kinds,
//! results and reasons; never certificate fingerprints.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::bundle::Bundle;
use kube::ResourceExt;

use crate::crd::{RestartMethod, WebhookCaCertificate, WorkloadKind};

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
            "Unix time at which the first certificate of the bundle, or the webhook server's certificate, expires",
            earliest_expiry.clone(),
        );
        let ready = Family::<ResourceLabels, Gauge>::default();
        registry.register(
            "ready",
            "1 when the resource's Ready condition is True, else 0",
            ready.clone(),
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

    pub fn ready(&self, resource: &ResourceLabels, ready: bool) {
        self.ready.get_or_create(resource).set(i64::from(ready));
    }

    /// Drops the series of a deleted resource, so that gauges do not report it forever.
    pub fn forget(&self, resource: &ResourceLabels) {
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
}
