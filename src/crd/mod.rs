//! The `WebhookCaCertificate` custom resource (`webhookca.io/v1alpha1`).
//!
//! The spec is split by concern: where certificates come from ([`source`]), which API receives
//! them ([`target`]), which workloads restart afterwards ([`restart`]), and what the operator
//! reports back ([`status`]). Everything a user can set is documented here, because these doc
//! comments become the schema descriptions that `kubectl explain` shows.

mod generate;
pub mod restart;
pub mod source;
pub mod status;
pub mod target;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::bundle::{Action as PolicyAction, Order as BundleOrder};
pub use crate::duration::{DurationParseError, GoDuration, parse_duration};

pub use restart::{RestartMethod, RestartSpec, RestartTarget, WorkloadKind};
pub use source::{ObjectSource, Source};
pub use status::{
    ApiHealthStatus, BundleStatus, CertificateStatus, NodeHealthStatus, RolloutState,
    RolloutStatus, TargetRollout, WebhookCaCertificateStatus,
};
use std::time::Duration;
pub use target::{ApiCredentials, ApiTarget, ApiTls, LoginSecretRef, SecretKeyRef};

/// The API group of every resource this operator defines.
pub const GROUP: &str = "webhookca.io";

/// Keeps the webhook CA certificate bundle of a WhatsApp Business On-Premises API installation in
/// step with Secrets, ConfigMaps and inline PEM, and restarts the coreapp nodes after an upload
/// so that the new bundle takes effect.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[allow(
    clippy::duplicated_attributes,
    reason = "each printcolumn(...) repeats type_ = ...; clippy reads them as one attribute list"
)]
#[kube(
    group = "webhookca.io",
    version = "v1alpha1",
    kind = "WebhookCaCertificate",
    plural = "webhookcacertificates",
    shortname = "wcc",
    category = "webhookca",
    namespaced,
    status = "WebhookCaCertificateStatus",
    doc = "WebhookCaCertificate keeps the webhook CA certificate bundle of a WhatsApp Business On-Premises API installation in step with Secrets, ConfigMaps and inline PEM, and restarts the coreapp nodes after an upload.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the API holds the bundle built from the sources and every restart target has rolled"
    ),
    printcolumn(
        name = "Certs",
        type_ = "integer",
        json_path = ".status.bundle.count",
        description = "Certificates in the bundle"
    ),
    printcolumn(
        name = "Expires",
        // Not "date": kubectl prints a date column as the time since it, and "<invalid>" for
        // every expiry in the future.
        type_ = "string",
        json_path = ".status.bundle.earliestExpiry",
        description = "When the first certificate in the bundle expires"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        priority = 1,
        description = "Why the resource is or is not ready"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct WebhookCaCertificateSpec {
    /// Where the certificates come from. Sources are merged in this order and deduplicated by the
    /// SHA-256 of each certificate's DER encoding; only CERTIFICATE blocks are kept, and any source
    /// holding a private key is refused. A missing or invalid source never leads to an upload of a
    /// partial bundle: the last good bundle stays on the API.
    #[schemars(length(min = 1, max = 64))]
    pub sources: Vec<Source>,

    /// The On-Premises API (webapp) that receives the bundle.
    pub api: ApiTarget,

    /// Which workloads restart after an upload. The API applies a new bundle only after every
    /// coreapp node restarts. Defaults to a rollout restart of the Deployments labelled
    /// `type=coreapp` in this namespace.
    #[serde(default)]
    pub restart: RestartSpec,

    /// How certificates that are expired, not yet valid or not a CA are treated.
    #[serde(default)]
    pub policy: BundlePolicy,

    /// What happens on the API when this resource is deleted. `Retain` (default) leaves the
    /// uploaded bundle in place. `Delete` removes it with `DELETE /v1/certificates/webhooks/ca`
    /// and then restarts the targets; a finalizer holds the resource until that is done.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// How often the bundle held by the API is read back and re-uploaded if someone changed it.
    /// A Go-style duration such as `10m` or `1h30m`. Defaults to `10m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift_check_interval: Option<GoDuration>,

    /// How long to wait after a source changes before acting, so that several changes landing
    /// close together cause one upload and one rollout. A Go-style duration; defaults to `5s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debounce: Option<GoDuration>,

    /// The longest the debounce may hold back an upload while the sources keep changing: past
    /// it, the bundle of the moment is uploaded anyway. A Go-style duration; defaults to `1m`.
    /// The first upload to an API that holds no bundle is never held back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_delay: Option<GoDuration>,

    /// Stops all uploads, deletions and restarts for this resource while true. Status still
    /// reports the bundle that the sources would produce.
    #[serde(default)]
    pub suspend: bool,
}

impl WebhookCaCertificateSpec {
    pub const DEFAULT_DRIFT_CHECK_INTERVAL: Duration = Duration::from_secs(600);
    pub const DEFAULT_DEBOUNCE: Duration = Duration::from_secs(5);
    pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(60);

    /// `maxDelay`, or its documented default.
    pub fn max_delay(&self) -> Duration {
        self.max_delay
            .map_or(Self::DEFAULT_MAX_DELAY, GoDuration::get)
    }

    /// `driftCheckInterval`, or its documented default.
    pub fn drift_check_interval(&self) -> Duration {
        self.drift_check_interval
            .map_or(Self::DEFAULT_DRIFT_CHECK_INTERVAL, GoDuration::get)
    }

    /// `debounce`, or its documented default.
    pub fn debounce(&self) -> Duration {
        self.debounce
            .map_or(Self::DEFAULT_DEBOUNCE, GoDuration::get)
    }
}

/// Treatment of certificates that would otherwise be accepted.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BundlePolicy {
    /// An expired certificate: `Refuse` (default) keeps the last good bundle and reports the
    /// error; `Drop` leaves the expired certificate out, uploads the rest and reports it with a
    /// Warning Event (a bundle left with no certificate is still refused); `Warn` keeps it in and
    /// reports a warning. `Drop` fits a Secret that keeps old CAs beside the current one.
    #[serde(default = "refuse")]
    pub expired: PolicyAction,
    /// A certificate whose notBefore lies in the future: `Refuse`, `Warn` (default) or `Drop`.
    #[serde(default = "warn")]
    pub not_yet_valid: PolicyAction,
    /// A certificate without the CA basic constraint (a leaf): `Refuse`, `Warn` (default) or
    /// `Drop`.
    #[serde(default = "warn")]
    pub non_ca: PolicyAction,
    /// Order of the certificates in the bundle: `Source` (default) keeps the order of the sources
    /// and of the certificates within each, which keeps chains intact; `Sorted` sorts by
    /// fingerprint, so the bundle does not change when sources are reordered.
    #[serde(default)]
    pub order: BundleOrder,
}

impl BundlePolicy {
    /// The bundle engine's policy for this spec, judged at `now`.
    pub fn at(&self, now: jiff::Timestamp) -> crate::bundle::Policy {
        crate::bundle::Policy {
            expired: self.expired,
            not_yet_valid: self.not_yet_valid,
            non_ca: self.non_ca,
            order: self.order,
            now,
        }
    }
}

impl Default for BundlePolicy {
    fn default() -> Self {
        Self {
            expired: refuse(),
            not_yet_valid: warn(),
            non_ca: warn(),
            order: BundleOrder::default(),
        }
    }
}

fn refuse() -> PolicyAction {
    PolicyAction::Refuse
}
fn warn() -> PolicyAction {
    PolicyAction::Warn
}

/// What happens on the API when the resource is deleted.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeletionPolicy {
    /// Leave the uploaded bundle on the API.
    #[default]
    Retain,
    /// Delete the bundle from the API and restart the targets.
    Delete,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_default_policy_is_the_engine_default() {
        let now = jiff::Timestamp::UNIX_EPOCH;
        assert_eq!(
            BundlePolicy::default().at(now),
            crate::bundle::Policy::defaults_at(now)
        );
    }

    #[test]
    fn an_empty_policy_in_yaml_gets_the_documented_defaults() {
        let policy: BundlePolicy = serde_json::from_str("{}").expect("empty policy parses");
        assert_eq!(policy, BundlePolicy::default());
        assert_eq!(policy.non_ca, PolicyAction::Warn);
    }
}
