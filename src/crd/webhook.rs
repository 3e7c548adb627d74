//! The webhook trust check: before an upload, and at every drift check, the operator connects to
//! the webhook URL and verifies the certificate chain its server presents against the bundle.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Whether the bundle trusts the webhook server, checked the way the coreapps (the TLS clients of
/// the webhooks) will: the bundle as the only trust roots, the URL's host name, the current time.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.url) || self.url.startsWith('https://')")
    .message("webhookTrust.url must be an https:// URL"))]
pub struct WebhookTrustSpec {
    /// What a definite "this bundle would not trust the webhook server's certificate chain"
    /// does. `Refuse` (default) uploads nothing: the API keeps its bundle, a Warning Event names
    /// the issuer no bundle certificate anchors. `Warn` uploads anyway and reports it. `Ignore`
    /// does not check at all. A check without a definite answer (no webhook URL, unreachable,
    /// timeout) never blocks an upload.
    #[serde(default)]
    pub policy: WebhookTrustPolicy,
    /// The webhook URL to check, instead of the one in the API's application settings
    /// (`GET /v1/settings/application`, `webhooks.url`). Only its host and port are used: the
    /// check is a TLS handshake, no HTTP request is sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 9, max = 2048))]
    pub url: Option<String>,
}

/// What an untrusted webhook server certificate chain does to an upload.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WebhookTrustPolicy {
    /// No upload; the API keeps its bundle.
    #[default]
    Refuse,
    /// Upload, and report the untrusted webhook server with a Warning.
    Warn,
    /// Do not check.
    Ignore,
}
