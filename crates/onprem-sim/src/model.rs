//! The simulator's public data types: the response variants it can play, faults, health reports
//! and the request log. All are serde types so the HTTP control API speaks the same language as
//! the library API.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Which of the two documented behaviours of the webhook CA endpoints to play, where Meta's docs
/// and the webapp code disagree (see `shared/docs/onprem-api.md`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Variant {
    /// The developer docs: GET answers `Content-Type: text/plain`; nothing stored is a 404 with
    /// an empty body; success bodies are `null`.
    #[default]
    Docs,
    /// The webapp code: GET sets no Content-Type but `Content-Disposition: attachment`; nothing
    /// stored is a 404 with JSON error 1006; success bodies are `{"meta":{...}}`.
    Code,
}

impl Variant {
    /// The success body this variant answers POST and DELETE with unless one is chosen.
    pub fn default_success_body(self) -> SuccessBody {
        match self {
            Variant::Docs => SuccessBody::Null,
            Variant::Code => SuccessBody::Meta,
        }
    }
}

/// The body of a successful POST or DELETE on the webhook CA endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuccessBody {
    /// The JSON literal `null`.
    Null,
    /// The empty JSON object `{}`.
    Empty,
    /// `{"meta":{"version":...,"api_status":"stable"}}`.
    Meta,
}

/// What DELETE answers when no bundle is stored (undocumented upstream, so both are playable).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeleteMissing {
    /// 200 with the success body.
    #[default]
    Ok,
    /// 404, shaped like the GET 404 of the current variant.
    NotFound,
}

/// The response behaviour of the webhook CA endpoints, changeable while running.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Responses {
    pub variant: Variant,
    /// `None` follows [`Variant::default_success_body`].
    pub success_body: Option<SuccessBody>,
    pub delete_missing: DeleteMissing,
}

impl Responses {
    pub fn success_body(&self) -> SuccessBody {
        self.success_body
            .unwrap_or_else(|| self.variant.default_success_body())
    }
}

/// A partial update of [`Responses`]: absent fields keep their value (`PUT /_sim/variant`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponsesUpdate {
    #[serde(default)]
    pub variant: Option<Variant>,
    /// `Some(None)` (JSON `null`) returns to the variant's default.
    #[serde(
        default,
        with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub success_body: Option<Option<SuccessBody>>,
    #[serde(default)]
    pub delete_missing: Option<DeleteMissing>,
}

impl ResponsesUpdate {
    pub fn apply(self, to: &mut Responses) {
        if let Some(v) = self.variant {
            to.variant = v;
        }
        if let Some(b) = self.success_body {
            to.success_body = b;
        }
        if let Some(d) = self.delete_missing {
            to.delete_missing = d;
        }
    }
}

/// Lets a JSON field distinguish "absent" (outer `None`) from `null` (`Some(None)`).
mod double_option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(
        value: &Option<Option<T>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(inner) => inner.serialize(s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}

/// What an injected fault does to a matching request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultAction {
    /// Answer with this HTTP status; with a code, the body is the JSON error envelope, without
    /// one it is empty (as from a reverse proxy in front of the webapp).
    Error { status: u16, code: Option<u32> },
    /// Read the request, then drop the connection without answering.
    Disconnect,
    /// The stored bundle is lost, as when a restart of the coreapp nodes reset what the master
    /// held; then the endpoint answers as usual (a GET: nothing stored).
    LoseBundle,
}

/// A fault that fires on the next `times` matching requests, then disarms itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    #[serde(flatten)]
    pub action: FaultAction,
    #[serde(default = "one")]
    pub times: u32,
    /// Only requests for exactly this path (no query string) match; `None` matches every path.
    #[serde(default)]
    pub path: Option<String>,
    /// Only requests with this method match (case-insensitive); `None` matches every method.
    #[serde(default)]
    pub method: Option<String>,
    /// Sent as `Retry-After: <seconds>` with an error answer.
    #[serde(default)]
    pub retry_after_secs: Option<u64>,
    /// This many matching requests pass untouched before the fault fires (a read-back right
    /// after a first read, say).
    #[serde(default)]
    pub skip: u32,
}

fn one() -> u32 {
    1
}

impl Fault {
    /// Answer `status` with the JSON error envelope carrying `code`, once.
    pub fn error(status: u16, code: u32) -> Self {
        Self::with_action(FaultAction::Error {
            status,
            code: Some(code),
        })
    }

    /// Answer `status` with an empty body, once.
    pub fn bare_status(status: u16) -> Self {
        Self::with_action(FaultAction::Error { status, code: None })
    }

    /// Drop the connection without an answer, once.
    pub fn disconnect() -> Self {
        Self::with_action(FaultAction::Disconnect)
    }

    /// Lose the stored bundle, then answer as usual, once.
    pub fn lose_bundle() -> Self {
        Self::with_action(FaultAction::LoseBundle)
    }

    fn with_action(action: FaultAction) -> Self {
        Self {
            action,
            times: 1,
            path: None,
            method: None,
            retry_after_secs: None,
            skip: 0,
        }
    }

    pub fn times(mut self, n: u32) -> Self {
        self.times = n;
        self
    }

    pub fn on_path(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }

    pub fn on_method(mut self, method: impl Into<String>) -> Self {
        self.method = Some(method.into());
        self
    }

    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    /// Let the first `n` matching requests through.
    pub fn after(mut self, n: u32) -> Self {
        self.skip = n;
        self
    }

    pub(crate) fn matches(&self, method: &str, path: &str) -> bool {
        self.times > 0
            && self.path.as_deref().is_none_or(|p| p == path)
            && self
                .method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method))
    }
}

/// A rate limit: at most `calls` within any window of `per`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub calls: u32,
    pub per: Duration,
}

/// What `GET /v1/health` reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum HealthReport {
    /// `{"health":{"gateway_status":"..."}}`.
    Single { gateway_status: String },
    /// High availability / multiconnect: one entry per node, keyed `"<hostname>:<container>"`.
    Multi { nodes: Vec<HealthNode> },
}

impl Default for HealthReport {
    fn default() -> Self {
        HealthReport::Single {
            gateway_status: "connected".to_owned(),
        }
    }
}

/// One node of a multi-node health report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthNode {
    /// `"<hostname>:<container_name>"`, e.g. `"wacore1:wacore1"`.
    pub name: String,
    #[serde(default = "connected")]
    pub gateway_status: String,
    /// `primary_master`, `secondary_master` or `coreapp`.
    pub role: String,
    /// Reported as `{"errors":[...]}` instead of a status.
    #[serde(default)]
    pub unreachable: bool,
}

fn connected() -> String {
    "connected".to_owned()
}

impl HealthNode {
    pub fn new(name: impl Into<String>, role: impl Into<String>, gateway_status: &str) -> Self {
        Self {
            name: name.into(),
            gateway_status: gateway_status.to_owned(),
            role: role.into(),
            unreachable: false,
        }
    }

    pub fn unreachable(name: impl Into<String>, role: impl Into<String>) -> Self {
        Self {
            unreachable: true,
            ..Self::new(name, role, "disconnected")
        }
    }
}

/// One API request as the simulator saw it. Holds no credential: of the Authorization header
/// only its presence and scheme are kept, and login bodies (which may carry a new password) are
/// not hashed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub at: jiff::Timestamp,
    pub method: String,
    /// Without the query string.
    pub path: String,
    pub content_type: Option<String>,
    pub body_len: usize,
    /// Hex SHA-256 of the request body; `None` for login requests.
    pub body_sha256: Option<String>,
    /// The `X-Request-ID` answered with: the client's own, or one the simulator made.
    pub request_id: String,
    pub request_id_from_client: bool,
    pub authorization_present: bool,
    /// `basic`, `bearer`, `apikey`, or `other`: never the credential.
    pub auth_scheme: Option<String>,
    /// `None` when a fault dropped the connection instead of answering.
    pub status: Option<u16>,
    /// Whether an injected fault answered instead of the endpoint.
    pub fault: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variant_update_tells_absent_from_null() {
        let mut r = Responses {
            variant: Variant::Docs,
            success_body: Some(SuccessBody::Empty),
            delete_missing: DeleteMissing::Ok,
        };
        let keep: ResponsesUpdate = serde_json::from_str(r#"{"variant":"code"}"#).expect("json");
        keep.apply(&mut r);
        assert_eq!(r.variant, Variant::Code);
        assert_eq!(
            r.success_body(),
            SuccessBody::Empty,
            "absent keeps the choice"
        );
        let reset: ResponsesUpdate =
            serde_json::from_str(r#"{"success_body":null}"#).expect("json");
        reset.apply(&mut r);
        assert_eq!(r.success_body, None);
        assert_eq!(
            r.success_body(),
            SuccessBody::Meta,
            "null follows the variant"
        );
        assert!(serde_json::from_str::<ResponsesUpdate>(r#"{"varient":"code"}"#).is_err());
    }

    #[test]
    fn fault_json_defaults_to_one_use_on_every_path() {
        let f: Fault =
            serde_json::from_str(r#"{"kind":"error","status":500,"code":1011}"#).expect("json");
        assert_eq!(f, Fault::error(500, 1011));
        let back: Fault =
            serde_json::from_value(serde_json::to_value(&f).expect("ser")).expect("round trip");
        assert_eq!(back, f);
        assert!(f.matches("DELETE", "/anything"));
    }
}
