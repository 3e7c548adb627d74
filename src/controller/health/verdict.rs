//! The `ApiHealthy` decisions from plain values: whether to ask `GET /v1/health` now, what its
//! answer means, and what status records of it. No I/O; the step in `health.rs` acts on them.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::controller::status::{API_HEALTHY, Verdict};
use crate::crd::{ApiHealthStatus, NodeHealthStatus};
use crate::onprem::{ApiError, GatewayStatus, Health, NodeHealth, NodeRole, Reason};

/// The API answers 10 health calls a minute, shared with whoever else watches it: drift checks
/// ask at most once a minute, however short `driftCheckInterval` is.
pub const MIN_INTERVAL: Duration = Duration::from_secs(60);

/// Nodes recorded in status; a multiconnect installation has a handful, this bounds a freak one.
const MAX_NODES: usize = 64;

/// Whether this pass asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    Now,
    /// Not before this long: the last answer is recent enough.
    After(Duration),
}

/// How often drift checks ask.
pub fn interval(drift_check: Duration) -> Duration {
    drift_check.max(MIN_INTERVAL)
}

/// A rollout that just completed asks at once (the restarted nodes must have come back);
/// otherwise the drift check asks when the last answer is `interval` old, or was never had.
pub fn when(
    just_rolled: bool,
    last: Option<Timestamp>,
    drift_check: Duration,
    now: Timestamp,
) -> When {
    let Some(last) = last.filter(|_| !just_rolled) else {
        return When::Now;
    };
    // A check in the future (clock skew between replicas) counts as just now.
    let since = Duration::try_from(now.duration_since(last)).unwrap_or(Duration::ZERO);
    match interval(drift_check).checked_sub(since) {
        Some(wait) if !wait.is_zero() => When::After(wait),
        _ => When::Now,
    }
}

/// What an answer means. Multiconnect: every node must answer, and at least one coreapp must be
/// connected (in high availability the other coreapps report `disconnected`, which is normal).
pub fn judge(health: &Health) -> Verdict {
    match health {
        Health::Single { gateway_status } if *gateway_status == GatewayStatus::Connected => {
            Verdict::new(
                API_HEALTHY,
                true,
                "Connected",
                "the instance's gateway_status is connected",
            )
        }
        Health::Single { gateway_status } => Verdict::new(
            API_HEALTHY,
            false,
            "NotConnected",
            format!(
                "the instance's gateway_status is {gateway_status} (a coreapp that has just \
                 restarted reports connecting for a while); asked again at the next drift check"
            ),
        ),
        Health::Nodes(nodes) => judge_nodes(nodes),
    }
}

fn unreachable(node: &NodeHealth) -> bool {
    node.gateway_status.is_none() || !node.errors.is_empty()
}

fn judge_nodes(nodes: &[NodeHealth]) -> Verdict {
    let silent: Vec<String> = nodes
        .iter()
        .filter(|n| unreachable(n))
        .map(|n| format!("{} ({})", n.name, node_error(n)))
        .collect();
    if !silent.is_empty() {
        return Verdict::new(
            API_HEALTHY,
            false,
            "NodeUnreachable",
            format!(
                "{} of {} node(s) did not answer: {}",
                silent.len(),
                nodes.len(),
                silent.join(", ")
            ),
        );
    }
    let coreapps: Vec<&NodeHealth> = nodes
        .iter()
        .filter(|n| n.role == Some(NodeRole::Coreapp))
        .collect();
    let connected: Vec<&str> = coreapps
        .iter()
        .filter(|n| n.gateway_status == Some(GatewayStatus::Connected))
        .map(|n| n.name.as_str())
        .collect();
    if connected.is_empty() {
        let message = if coreapps.is_empty() {
            format!("none of the {} node(s) is a coreapp", nodes.len())
        } else {
            let states: Vec<String> = coreapps
                .iter()
                .map(|n| format!("{} {}", n.name, status_text(n)))
                .collect();
            format!("no coreapp node is connected: {}", states.join(", "))
        };
        return Verdict::new(API_HEALTHY, false, "NoCoreappConnected", message);
    }
    Verdict::new(
        API_HEALTHY,
        true,
        "Connected",
        format!(
            "all {} node(s) answered; connected coreapp(s): {}",
            nodes.len(),
            connected.join(", ")
        ),
    )
}

fn status_text(node: &NodeHealth) -> &str {
    node.gateway_status
        .as_ref()
        .map_or("without gateway_status", GatewayStatus::as_str)
}

/// The API's own words for a node that did not answer: its first error's title and code.
fn node_error(node: &NodeHealth) -> String {
    match node.errors.first() {
        Some(e) => {
            let title = e.title.as_deref().unwrap_or("error");
            match e.code {
                Some(code) => format!("{title}, code {code}"),
                None => title.to_owned(),
            }
        }
        None => "no gateway_status".to_owned(),
    }
}

/// The condition when the question got no usable answer: `Unknown`, asked again at the next
/// drift check (never sooner: a 429 means the minute's calls are spent).
pub fn unknown(error: &ApiError) -> Verdict {
    if error.reason() == Reason::RateLimited {
        Verdict::unknown(
            API_HEALTHY,
            "RateLimited",
            "GET /v1/health answered 429 (the API allows 10 calls a minute); asked again at the \
             next drift check",
        )
    } else {
        Verdict::unknown(
            API_HEALTHY,
            "HealthUnknown",
            format!("GET /v1/health failed: {error}; asked again at the next drift check"),
        )
    }
}

/// What status records of an answer (`None`: no usable answer).
pub fn summary(health: Option<&Health>, now: Timestamp) -> ApiHealthStatus {
    let mut status = ApiHealthStatus {
        checked_at: Some(Time(now)),
        ..ApiHealthStatus::default()
    };
    match health {
        None => {}
        Some(Health::Single { gateway_status }) => {
            status.gateway_status = Some(gateway_status.as_str().to_owned());
        }
        Some(Health::Nodes(nodes)) => {
            status.nodes = nodes
                .iter()
                .take(MAX_NODES)
                .map(|n| NodeHealthStatus {
                    name: n.name.clone(),
                    role: n.role.as_ref().map(|r| r.as_str().to_owned()),
                    gateway_status: n.gateway_status.as_ref().map(|g| g.as_str().to_owned()),
                    error: unreachable(n).then(|| node_error(n)),
                })
                .collect();
        }
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onprem::EnvelopeError;

    fn node(name: &str, role: NodeRole, status: GatewayStatus) -> NodeHealth {
        NodeHealth {
            name: name.to_owned(),
            gateway_status: Some(status),
            role: Some(role),
            errors: Vec::new(),
        }
    }

    /// As the API reports a node it cannot reach: errors, no state, no role.
    fn errored(name: &str) -> NodeHealth {
        NodeHealth {
            name: name.to_owned(),
            gateway_status: None,
            role: None,
            errors: vec![EnvelopeError {
                code: Some(1014),
                title: Some("node unreachable".to_owned()),
                ..EnvelopeError::default()
            }],
        }
    }

    fn single(status: GatewayStatus) -> Health {
        Health::Single {
            gateway_status: status,
        }
    }

    #[test]
    fn judge_table() {
        use GatewayStatus::{Connected, Connecting, Disconnected, Unregistered};
        use NodeRole::{Coreapp, PrimaryMaster, SecondaryMaster};
        let masters = || {
            vec![
                node("master1:master1", PrimaryMaster, Connected),
                node("master2:master2", SecondaryMaster, Disconnected),
            ]
        };
        let with = |mut extra: Vec<NodeHealth>| {
            let mut nodes = masters();
            nodes.append(&mut extra);
            Health::Nodes(nodes)
        };
        // (case, answer, status, reason, the message names, the message does not name)
        type Case<'a> = (&'a str, Health, bool, &'a str, &'a [&'a str], &'a [&'a str]);
        let table: Vec<Case> = vec![
            (
                "single instance connected",
                single(Connected),
                true,
                "Connected",
                &[],
                &[],
            ),
            (
                "single instance still connecting",
                single(Connecting),
                false,
                "NotConnected",
                &["connecting"],
                &[],
            ),
            (
                "single instance unregistered",
                single(Unregistered),
                false,
                "NotConnected",
                &["unregistered"],
                &[],
            ),
            (
                "HA: one coreapp connected, the other disconnected as HA has it",
                with(vec![
                    node("wacore1:wacore1", Coreapp, Connected),
                    node("wacore2:wacore2", Coreapp, Disconnected),
                ]),
                true,
                "Connected",
                &["wacore1:wacore1", "4 node(s)"],
                &["wacore2"],
            ),
            (
                "multiconnect: an errored node is named, whatever the others say",
                with(vec![
                    node("wacore1:wacore1", Coreapp, Connected),
                    errored("wacore3:wacore3"),
                ]),
                false,
                "NodeUnreachable",
                &["wacore3:wacore3 (node unreachable, code 1014)", "1 of 4"],
                &["wacore1", "master1"],
            ),
            (
                "every node must answer, whatever it is",
                with(vec![
                    node("wacore1:wacore1", Coreapp, Connected),
                    errored("master3:master3"),
                ]),
                false,
                "NodeUnreachable",
                &["master3:master3"],
                &["wacore1"],
            ),
            (
                "every coreapp disconnected",
                with(vec![
                    node("wacore1:wacore1", Coreapp, Disconnected),
                    node("wacore2:wacore2", Coreapp, Connecting),
                ]),
                false,
                "NoCoreappConnected",
                &["wacore1:wacore1 disconnected", "wacore2:wacore2 connecting"],
                &["master"],
            ),
            (
                "a connected master is not a connected coreapp",
                with(vec![]),
                false,
                "NoCoreappConnected",
                &["none of the 2 node(s) is a coreapp"],
                &[],
            ),
            (
                "an empty node list",
                Health::Nodes(Vec::new()),
                false,
                "NoCoreappConnected",
                &["0 node(s)"],
                &[],
            ),
        ];
        for (case, health, status, reason, names, hides) in table {
            let v = judge(&health);
            assert_eq!(v.type_, API_HEALTHY, "{case}");
            assert_eq!((v.status, v.reason.as_str()), (status, reason), "{case}");
            assert!(!v.unknown, "{case}");
            for name in names {
                assert!(v.message.contains(name), "{case}: {name} in {}", v.message);
            }
            for name in hides {
                assert!(!v.message.contains(name), "{case}: {name} in {}", v.message);
            }
        }
    }

    fn at(s: &str) -> Timestamp {
        s.parse().expect("a literal timestamp")
    }

    #[test]
    fn when_table() {
        let now = at("2026-05-01T12:00:00Z");
        let ten_minutes = Duration::from_secs(600);
        // (case, just rolled, last asked, driftCheckInterval, want)
        let table = [
            ("never asked", false, None, ten_minutes, When::Now),
            (
                "asked 4 minutes ago: the drift check 6 minutes on asks",
                false,
                Some("2026-05-01T11:56:00Z"),
                ten_minutes,
                When::After(Duration::from_secs(360)),
            ),
            (
                "asked exactly one interval ago",
                false,
                Some("2026-05-01T11:50:00Z"),
                ten_minutes,
                When::Now,
            ),
            (
                "a rollout just completed asks whatever the clock says",
                true,
                Some("2026-05-01T11:59:59Z"),
                ten_minutes,
                When::Now,
            ),
            (
                "a 1s drift check still asks at most once a minute",
                false,
                Some("2026-05-01T11:59:30Z"),
                Duration::from_secs(1),
                When::After(Duration::from_secs(30)),
            ),
            (
                "an answer from the future counts as just now",
                false,
                Some("2026-05-01T12:00:30Z"),
                ten_minutes,
                When::After(ten_minutes),
            ),
        ];
        for (case, rolled, last, drift, want) in table {
            assert_eq!(when(rolled, last.map(at), drift, now), want, "{case}");
        }
    }

    #[test]
    fn no_answer_is_unknown_and_a_429_says_so() {
        use crate::onprem::error::{CallKind, StatusError};
        let limited = ApiError::from(StatusError::from_response(
            CallKind::Api,
            reqwest::Method::GET,
            "/v1/health",
            429,
            br#"{"errors":[{"code":1015,"title":"Too many requests"}]}"#,
            None,
            None,
        ));
        let v = unknown(&limited);
        assert_eq!(
            (v.status_str(), v.reason.as_str()),
            ("Unknown", "RateLimited")
        );
        let refused = ApiError::from(StatusError::from_response(
            CallKind::Api,
            reqwest::Method::GET,
            "/v1/health",
            503,
            b"",
            None,
            None,
        ));
        let v = unknown(&refused);
        assert_eq!(
            (v.status_str(), v.reason.as_str()),
            ("Unknown", "HealthUnknown")
        );
        assert!(v.message.contains("503"), "{}", v.message);
    }

    #[test]
    fn summary_records_nodes_and_the_errored_one() {
        let now = at("2026-05-01T12:00:00Z");
        let health = Health::Nodes(vec![
            node(
                "wacore1:wacore1",
                NodeRole::Coreapp,
                GatewayStatus::Connected,
            ),
            errored("wacore2:wacore2"),
        ]);
        let s = summary(Some(&health), now);
        assert_eq!(s.checked_at, Some(Time(now)));
        assert_eq!(s.gateway_status, None);
        assert_eq!(s.nodes.len(), 2);
        assert_eq!(s.nodes[0].gateway_status.as_deref(), Some("connected"));
        assert_eq!(s.nodes[0].error, None);
        assert_eq!(s.nodes[1].role, None);
        assert_eq!(
            s.nodes[1].error.as_deref(),
            Some("node unreachable, code 1014")
        );
        let one = summary(Some(&single(GatewayStatus::Disconnected)), now);
        assert_eq!(one.gateway_status.as_deref(), Some("disconnected"));
        assert!(one.nodes.is_empty());
        let none = summary(None, now);
        assert_eq!(none.checked_at, Some(Time(now)));
        assert!(none.gateway_status.is_none() && none.nodes.is_empty());
    }
}
