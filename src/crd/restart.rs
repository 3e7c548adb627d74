//! Which workloads restart after an upload, and how.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use std::time::Duration;

use crate::duration::GoDuration;

/// The restart that makes the coreapp nodes load the new bundle.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RestartSpec {
    /// The workloads to restart, in this namespace. Empty means the Deployments labelled
    /// `type=coreapp`, as in Meta's Kubernetes templates.
    #[serde(default)]
    #[schemars(length(max = 32))]
    pub targets: Vec<RestartTarget>,
    /// `RolloutRestart` (default) stamps the pod template with the bundle's hash, like
    /// `kubectl rollout restart`. `Evict` evicts the pods one by one through the Eviction API,
    /// honouring PodDisruptionBudgets and leaving the workload spec untouched (no GitOps drift).
    /// `None` restarts nothing.
    #[serde(default)]
    pub method: RestartMethod,
    /// Follow the rollout to completion and report it in status before calling the resource
    /// ready. Defaults to true.
    #[serde(default = "default_true")]
    pub wait_for_rollout: bool,
    /// How long a rollout may take before it is reported as failed, a Go-style duration.
    /// Defaults to `10m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_timeout: Option<GoDuration>,
    /// The shortest time between two restarts of the same targets, so that a flapping source
    /// cannot flood the cluster with ReplicaSets. A Go-style duration; defaults to `1m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_interval: Option<GoDuration>,
}

impl Default for RestartSpec {
    fn default() -> Self {
        Self {
            targets: Vec::new(),
            method: RestartMethod::default(),
            wait_for_rollout: true,
            rollout_timeout: None,
            min_interval: None,
        }
    }
}

impl RestartSpec {
    pub const DEFAULT_ROLLOUT_TIMEOUT: Duration = Duration::from_secs(600);
    pub const DEFAULT_MIN_INTERVAL: Duration = Duration::from_secs(60);

    /// `rolloutTimeout`, or its documented default.
    pub fn rollout_timeout(&self) -> Duration {
        self.rollout_timeout
            .map_or(Self::DEFAULT_ROLLOUT_TIMEOUT, GoDuration::get)
    }

    /// `minInterval`, or its documented default.
    pub fn min_interval(&self) -> Duration {
        self.min_interval
            .map_or(Self::DEFAULT_MIN_INTERVAL, GoDuration::get)
    }
}

fn default_true() -> bool {
    true
}

/// A workload to restart: exactly one of `name` or `selector`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.name) != has(self.selector)")
    .message("exactly one of name or selector must be set"))]
pub struct RestartTarget {
    /// The workload's kind.
    pub kind: WorkloadKind,
    /// The workload's name, in the resource's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub name: Option<String>,
    /// Every workload of this kind in the namespace whose labels match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

/// A kind of workload the operator can restart.
#[derive(
    JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
    DaemonSet,
}

/// How the targets are restarted.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RestartMethod {
    /// Annotate the pod template with the bundle hash (a rolling restart by the workload's own
    /// strategy).
    #[default]
    RolloutRestart,
    /// Evict the pods through the Eviction API, honouring PodDisruptionBudgets.
    Evict,
    /// Restart nothing; the bundle takes effect at the next restart someone else makes.
    None,
}
