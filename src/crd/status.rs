//! What the operator reports about a `WebhookCaCertificate`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::WorkloadKind;

/// The observed state of a `WebhookCaCertificate`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WebhookCaCertificateStatus {
    /// The generation of the spec that this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The current state, one entry per type: `Ready`, `BundleValid`, `Uploaded`,
    /// `RolloutComplete`, `ExpiringSoon`, `InsecureTls` and `ApiHealthy`.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The bundle built from the sources at the last reconcile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<BundleStatus>,
    /// The SHA-256 of the canonical bundle the API was last seen to hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploaded_sha256: Option<String>,
    /// When the operator last uploaded a bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_upload_time: Option<Time>,
    /// When the operator last compared the API's bundle with the sources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_drift_check_time: Option<Time>,
    /// When the API was last seen holding the bundle. A coreapp that started after it may have
    /// loaded a bundle someone else stored; the operator restarts those when it puts its own
    /// back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_in_sync_time: Option<Time>,
    /// Progress of the restart that follows an upload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutStatus>,
    /// What `GET /v1/health` answered after the last rollout or drift check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<ApiHealthStatus>,
}

/// The last answer of `GET /v1/health` (rate-limited to 10 calls a minute by the API, so it is
/// asked once after a rollout and at drift checks, never in a loop).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ApiHealthStatus {
    /// When the operator last asked. The next question comes at the first drift check at least
    /// `driftCheckInterval` (and at least one minute) later, or after the next rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_at: Option<Time>,
    /// A single instance's `gateway_status` (`connected`, `connecting`, `disconnected`,
    /// `uninitialized`, `unregistered`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_status: Option<String>,
    /// High availability or multiconnect: every node the API reported, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeHealthStatus>,
}

/// One node of a high-availability or multiconnect installation.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodeHealthStatus {
    /// `<hostname>:<container_name>`, as the API keys it.
    pub name: String,
    /// `primary_master`, `secondary_master` or `coreapp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The node's `gateway_status`; absent when the node did not answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_status: Option<String>,
    /// Why the node did not answer (the API's error title and code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Summary of a built bundle. Certificates are public; no private material is ever recorded.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BundleStatus {
    /// SHA-256 of the canonical PEM bundle (hex).
    pub sha256: String,
    /// Number of distinct certificates.
    pub count: i32,
    /// The earliest notAfter among the certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub earliest_expiry: Option<Time>,
    /// The certificates, in bundle order.
    #[serde(default)]
    pub certificates: Vec<CertificateStatus>,
    /// Findings that the policy lets through (for example a certificate that is not a CA).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// One certificate of the bundle.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CertificateStatus {
    /// Subject distinguished name.
    pub subject: String,
    /// Issuer distinguished name.
    pub issuer: String,
    /// Serial number (hex).
    pub serial: String,
    /// Start of validity.
    pub not_before: Time,
    /// End of validity.
    pub not_after: Time,
    /// SHA-256 fingerprint of the DER encoding (hex).
    pub sha256: String,
    /// Whether the certificate carries the CA basic constraint.
    pub is_ca: bool,
    /// The source the certificate was first found in.
    pub source: String,
}

/// Progress of a restart.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// The bundle hash the restart was made for.
    pub bundle_sha256: String,
    /// When the restart began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When every target finished rolling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
    /// Each target's progress.
    #[serde(default)]
    pub targets: Vec<TargetRollout>,
}

/// One workload's rollout.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TargetRollout {
    /// The workload's kind.
    pub kind: WorkloadKind,
    /// The workload's name.
    pub name: String,
    /// Where the rollout stands.
    pub state: RolloutState,
    /// Replicas already running the restarted template.
    #[serde(default)]
    pub updated_replicas: i32,
    /// Replicas wanted.
    #[serde(default)]
    pub replicas: i32,
    /// Detail, for example the reason a rollout failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Where one workload's rollout stands.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RolloutState {
    Pending,
    InProgress,
    Complete,
    Failed,
}
