//! `GET /v1/health`, single instance and multi-node answers.

use std::fmt;

use reqwest::Method;
use serde_json::{Map, Value};

use super::client::{Answer, Call, OnPremClient};
use super::error::{ApiError, EnvelopeError, envelope_errors};

pub const HEALTH_PATH: &str = "/v1/health";

/// A node's connection to the WhatsApp servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayStatus {
    Connected,
    Connecting,
    Disconnected,
    Uninitialized,
    Unregistered,
    /// A value this client does not know, kept verbatim.
    Other(String),
}

impl GatewayStatus {
    fn parse(value: &str) -> Self {
        match value {
            "connected" => GatewayStatus::Connected,
            "connecting" => GatewayStatus::Connecting,
            "disconnected" => GatewayStatus::Disconnected,
            "uninitialized" => GatewayStatus::Uninitialized,
            "unregistered" => GatewayStatus::Unregistered,
            other => GatewayStatus::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            GatewayStatus::Connected => "connected",
            GatewayStatus::Connecting => "connecting",
            GatewayStatus::Disconnected => "disconnected",
            GatewayStatus::Uninitialized => "uninitialized",
            GatewayStatus::Unregistered => "unregistered",
            GatewayStatus::Other(other) => other,
        }
    }
}

impl fmt::Display for GatewayStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A node's role in a high-availability or multiconnect setup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeRole {
    PrimaryMaster,
    SecondaryMaster,
    Coreapp,
    Other(String),
}

impl NodeRole {
    fn parse(value: &str) -> Self {
        match value {
            "primary_master" => NodeRole::PrimaryMaster,
            "secondary_master" => NodeRole::SecondaryMaster,
            "coreapp" => NodeRole::Coreapp,
            other => NodeRole::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            NodeRole::PrimaryMaster => "primary_master",
            NodeRole::SecondaryMaster => "secondary_master",
            NodeRole::Coreapp => "coreapp",
            NodeRole::Other(other) => other,
        }
    }
}

impl fmt::Display for NodeRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One node of a multi-node answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeHealth {
    /// `"<hostname>:<container_name>"`.
    pub name: String,
    /// `None` for a node the webapp could not reach (it then has `errors`).
    pub gateway_status: Option<GatewayStatus>,
    pub role: Option<NodeRole>,
    pub errors: Vec<EnvelopeError>,
}

/// What `GET /v1/health` reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// A single-instance installation.
    Single { gateway_status: GatewayStatus },
    /// High availability or multiconnect: one entry per node, sorted by name.
    Nodes(Vec<NodeHealth>),
}

impl Health {
    /// Whether the installation can send: the single instance, or at least one node, is
    /// connected (in HA only one coreapp is connected and the others report `disconnected`).
    pub fn is_connected(&self) -> bool {
        match self {
            Health::Single { gateway_status } => *gateway_status == GatewayStatus::Connected,
            Health::Nodes(nodes) => nodes
                .iter()
                .any(|n| n.gateway_status == Some(GatewayStatus::Connected)),
        }
    }
}

/// Parses the health answer; the error names what was missing, never quotes the body.
pub fn parse_health(body: &[u8]) -> Result<Health, &'static str> {
    let value: Value = serde_json::from_slice(body).map_err(|_| "health answer is not JSON")?;
    let health = value
        .get("health")
        .and_then(Value::as_object)
        .ok_or("health answer has no \"health\" object")?;
    if let Some(status) = health.get("gateway_status") {
        let status = status
            .as_str()
            .ok_or("health.gateway_status is not a string")?;
        return Ok(Health::Single {
            gateway_status: GatewayStatus::parse(status),
        });
    }
    let mut nodes: Vec<NodeHealth> = health
        .iter()
        .map(|(name, node)| parse_node(name, node))
        .collect::<Result<_, _>>()?;
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Health::Nodes(nodes))
}

fn parse_node(name: &str, node: &Value) -> Result<NodeHealth, &'static str> {
    let node: &Map<String, Value> = node
        .as_object()
        .ok_or("a health node entry is not an object")?;
    let text = |key: &str| node.get(key).and_then(Value::as_str);
    Ok(NodeHealth {
        name: name.to_owned(),
        gateway_status: text("gateway_status").map(GatewayStatus::parse),
        role: text("role").map(NodeRole::parse),
        errors: envelope_errors(node.get("errors")),
    })
}

impl OnPremClient {
    /// `GET /v1/health`. The API allows 10 calls a minute; a 429 is retried after its
    /// `Retry-After` like any other transient answer.
    pub async fn health(&self) -> Result<Health, ApiError> {
        let call = health_call();
        let answer = self.call(&call).await?;
        read_health(&call, answer)
    }

    /// `GET /v1/health` sent once: a 429 or any other failure is returned, not retried, so a
    /// caller that asks at fixed moments (the operator: after a rollout, at drift checks) spends
    /// one of the API's 10 calls a minute per question.
    pub async fn health_once(&self) -> Result<Health, ApiError> {
        let call = health_call();
        let answer = self.call_once(&call).await?;
        read_health(&call, answer)
    }
}

fn health_call() -> Call {
    Call {
        method: Method::GET,
        path: HEALTH_PATH,
        body: None,
        accept_not_found: false,
    }
}

fn read_health(call: &Call, answer: Answer) -> Result<Health, ApiError> {
    match parse_health(&answer.body) {
        Ok(health) => Ok(health),
        Err(message) => Err(answer.invalid(call, message)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_instance() {
        let body = br#"{"health":{"gateway_status":"connected"},"meta":{"version":"v2.41"}}"#;
        let health = parse_health(body).unwrap();
        assert_eq!(
            health,
            Health::Single {
                gateway_status: GatewayStatus::Connected
            }
        );
        assert!(health.is_connected());
        let unregistered =
            parse_health(br#"{"health":{"gateway_status":"unregistered"}}"#).unwrap();
        assert!(!unregistered.is_connected());
    }

    #[test]
    fn multi_node_with_an_unreachable_node() {
        let body = br#"{"health":{
            "wacore2:wacore2":{"gateway_status":"disconnected","role":"coreapp"},
            "wacore1:wacore1":{"gateway_status":"connected","role":"coreapp"},
            "master1:master1":{"gateway_status":"connected","role":"primary_master"},
            "master2:master2":{"errors":[{"code":1011,"title":"Service not ready"}]}
        },"meta":{"version":"v2"}}"#;
        let Health::Nodes(nodes) = parse_health(body).unwrap() else {
            panic!("expected nodes");
        };
        let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "master1:master1",
                "master2:master2",
                "wacore1:wacore1",
                "wacore2:wacore2"
            ]
        );
        assert_eq!(nodes[0].role, Some(NodeRole::PrimaryMaster));
        assert_eq!(nodes[1].gateway_status, None);
        assert_eq!(nodes[1].errors[0].code, Some(1011));
        assert_eq!(nodes[3].gateway_status, Some(GatewayStatus::Disconnected));
        assert!(Health::Nodes(nodes).is_connected());
    }

    #[test]
    fn unknown_values_are_kept_and_garbage_refused() {
        let health = parse_health(br#"{"health":{"gateway_status":"sleepy"}}"#).unwrap();
        assert_eq!(
            health,
            Health::Single {
                gateway_status: GatewayStatus::Other("sleepy".into())
            }
        );
        assert!(parse_health(b"").is_err());
        assert!(parse_health(br#"{"meta":{}}"#).is_err());
        assert!(parse_health(br#"{"health":{"n1":"connected"}}"#).is_err());
    }
}
