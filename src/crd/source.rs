//! Where the certificates of a bundle come from.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// One source of certificates: exactly one of `secret`, `configMap` or `inline`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "[has(self.secret), has(self.configMap), has(self.inline)].filter(x, x).size() == 1"
).message("exactly one of secret, configMap or inline must be set"))]
pub struct Source {
    /// Secrets in this namespace. With `key`, that key of each Secret; without, every key whose
    /// value holds PEM. Every key of a `kubernetes.io/tls` Secret is never read: it holds the
    /// private key, so name `key: ca.crt` or `key: tls.crt` explicitly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<ObjectSource>,
    /// ConfigMaps in this namespace. With `key`, that key of each ConfigMap; without, every key
    /// whose value holds PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ObjectSource>,
    /// PEM text written into the resource itself, for example a partner's CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1048576))]
    pub inline: Option<String>,
}

/// Secrets or ConfigMaps selected by name or by labels: exactly one of `name` or `selector`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.name) != has(self.selector)")
    .message("exactly one of name or selector must be set"))]
pub struct ObjectSource {
    /// The object's name, in the resource's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub name: Option<String>,
    /// Every object in the resource's namespace whose labels match. Objects are read in name
    /// order, so the bundle does not depend on listing order. Matching no object is an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// The data key to read. Without it, every key whose value holds PEM is read, in key order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub key: Option<String>,
    /// When true, a missing object, a missing key, a named key that holds no certificate and a
    /// selector that matches nothing are skipped. When false (the default), each of them is an
    /// invalid source: the bundle is refused and the API keeps the last good one, so an emptied
    /// key never uploads a partial bundle. Without `key`, keys that hold no PEM are always skipped.
    #[serde(default)]
    pub optional: bool,
}
