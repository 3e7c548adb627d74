//! Prometheus metrics. Labels stay bounded: a resource's namespace and name, workload kinds,
//! results and reasons; never certificate fingerprints.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabels {
    pub namespace: String,
    pub name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub namespace: String,
    pub name: String,
    /// `success`, or the failure's reason (a CamelCase condition reason).
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RestartLabels {
    pub namespace: String,
    pub kind: String,
    pub method: String,
    pub result: String,
}

/// Reconcile durations from 10 ms to about 20 s.
#[derive(Clone, Debug)]
pub struct DurationBuckets;

impl MetricConstructor<Histogram> for DurationBuckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(exponential_buckets(0.01, 2.0, 12))
    }
}

/// Every metric the operator exports.
pub struct Metrics {
    registry: Registry,
    pub reconciles: Family<ResultLabels, Counter>,
    pub reconcile_duration: Family<ResourceLabels, Histogram, DurationBuckets>,
    pub uploads: Family<ResultLabels, Counter>,
    pub restarts: Family<RestartLabels, Counter>,
    pub certificates: Family<ResourceLabels, Gauge>,
    pub earliest_expiry: Family<ResourceLabels, Gauge>,
    pub ready: Family<ResourceLabels, Gauge>,
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

    pub fn observe_reconcile(&self, resource: &ResourceLabels, result: &str, took: Duration) {
        self.reconciles
            .get_or_create(&ResultLabels {
                namespace: resource.namespace.clone(),
                name: resource.name.clone(),
                result: result.to_owned(),
            })
            .inc();
        self.reconcile_duration
            .get_or_create(resource)
            .observe(took.as_secs_f64());
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
        let resource = ResourceLabels {
            namespace: "wa".into(),
            name: "prod".into(),
        };
        metrics.observe_reconcile(&resource, "success", Duration::from_millis(20));
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
