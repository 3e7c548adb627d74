//! The On-Premises API that receives the bundle, and how to reach it.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use std::time::Duration;

use crate::duration::GoDuration;

/// The webapp of an On-Premises API installation.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.url.startsWith('https://') || (self.url.startsWith('http://') && self.allowPlainHttp)")
    .message("url must use https:// (plain http:// only with allowPlainHttp: true)"))]
pub struct ApiTarget {
    /// Base URL of the webapp, for example `https://webapp.whatsapp.svc:443`.
    #[schemars(length(min = 8, max = 2048))]
    pub url: String,
    /// How the operator authenticates: exactly one of `loginSecret` or `tokenSecret`.
    pub credentials: ApiCredentials,
    /// How the webapp's TLS certificate is verified.
    #[serde(default)]
    pub tls: ApiTls,
    /// Allows an `http://` URL. Tokens and passwords then cross the network in clear text; meant
    /// for a webapp reached over a sidecar or a mesh that adds TLS.
    #[serde(default)]
    pub allow_plain_http: bool,
    /// Timeout of one API request, a Go-style duration. Defaults to `30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<GoDuration>,
}

impl ApiTarget {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

    /// `timeout`, or its documented default.
    pub fn timeout(&self) -> Duration {
        self.timeout.map_or(Self::DEFAULT_TIMEOUT, GoDuration::get)
    }
}

/// Credentials of an admin user of the API. The Secrets are read at each login, so a rotated
/// Secret is picked up without a restart.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.loginSecret) != has(self.tokenSecret)")
    .message("exactly one of loginSecret or tokenSecret must be set"))]
pub struct ApiCredentials {
    /// A Secret with the username and password of an admin user. The operator logs in with
    /// `POST /v1/users/login` and reuses the token until shortly before it expires. Preferred:
    /// it outlives the 7-day token lifetime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_secret: Option<LoginSecretRef>,
    /// A Secret holding a bearer token. Simpler, but the token expires after 7 days unless it
    /// is rotated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret: Option<SecretKeyRef>,
}

/// A Secret with a username and a password.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LoginSecretRef {
    /// The Secret's name, in the resource's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The key holding the username. Defaults to `username`.
    #[serde(default = "default_username_key")]
    pub username_key: String,
    /// The key holding the password. Defaults to `password`.
    #[serde(default = "default_password_key")]
    pub password_key: String,
}

fn default_username_key() -> String {
    "username".to_owned()
}
fn default_password_key() -> String {
    "password".to_owned()
}

/// One key of a Secret in the resource's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The data key. Defaults to `token` for a token and `ca.crt` for a CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// Verification of the webapp's certificate. Without `caSecret` the system's roots are trusted;
/// the webapp usually serves a self-signed or internal-CA certificate, so set one of the two.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.caSecret) && self.insecureSkipVerify)")
    .message("caSecret and insecureSkipVerify are mutually exclusive"))]
pub struct ApiTls {
    /// A Secret key holding the PEM CA bundle that signed the webapp's certificate (key defaults
    /// to `ca.crt`). Only these CAs are trusted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret: Option<SecretKeyRef>,
    /// Skips verification of the webapp's certificate, like `curl -k`. Anyone on the path can
    /// then read the credentials. Reported by the `InsecureTls` condition and a Warning Event.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}
