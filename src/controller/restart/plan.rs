//! Restart decisions from plain values (resolved targets, the previous status, the clock):
//! whether a restart begins, waits for the throttle or goes on, and where a rollout stands. The
//! step in `mod.rs` gathers the inputs and acts on the answers.

use std::time::Duration;

use jiff::Timestamp;

use super::method;
use super::{Workload, kind_name};
use crate::crd::{RestartMethod, RolloutState, RolloutStatus, TargetRollout};

/// How a pass begins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Start {
    /// Nothing owed: the rollout for this bundle goes on (or is done) since `started_at`.
    Continue { started_at: Timestamp },
    /// Restarts are owed, but the last one began less than `minInterval` ago.
    Throttled { wait: Duration },
    /// Restart these targets (indices into the resolved targets) now.
    Begin { owed: Vec<usize> },
}

/// `stale`: targets (indices) that must restart although they carry `sha`, because their pods
/// started while the API held someone else's bundle.
pub fn start(
    method: RestartMethod,
    targets: &[Workload],
    stale: &[usize],
    previous: Option<&RolloutStatus>,
    sha: &str,
    min_interval: Duration,
    now: Timestamp,
) -> Start {
    let same_bundle = previous.filter(|r| r.bundle_sha256 == sha);
    let mut owed = method::owed(method, targets, same_bundle.is_some(), sha);
    if method != RestartMethod::None {
        for &i in stale {
            if !owed.contains(&i) {
                owed.push(i);
            }
        }
        owed.sort_unstable();
    }
    if owed.is_empty() {
        let started_at = same_bundle
            .and_then(|r| r.started_at.as_ref())
            .map_or(now, |t| t.0);
        return Start::Continue { started_at };
    }
    match throttled(previous, min_interval, now) {
        Some(wait) => Start::Throttled { wait },
        None => Start::Begin { owed },
    }
}

/// Remaining wait when a restart began less than `min_interval` ago.
fn throttled(
    previous: Option<&RolloutStatus>,
    min_interval: Duration,
    now: Timestamp,
) -> Option<Duration> {
    let began = previous?.started_at.as_ref()?.0;
    // A start in the future (clock skew between replicas) counts as just now.
    let since = Duration::try_from(now.duration_since(began)).unwrap_or(Duration::ZERO);
    let wait = min_interval.saturating_sub(since);
    (!wait.is_zero()).then_some(wait)
}

/// Where a rollout stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Complete,
    /// Still rolling; one "Kind/name updated/replicas" entry per unfinished target.
    Progressing {
        pending: Vec<String>,
    },
    /// A target's controller gave up; the message names it.
    Failed {
        message: String,
    },
    /// Neither done nor failed within `rolloutTimeout`.
    Overdue,
}

/// A failed target wins over everything, then completion, then the timeout.
pub fn verdict(
    targets: &[TargetRollout],
    waiting_on_evictions: bool,
    started_at: Timestamp,
    timeout: Duration,
    now: Timestamp,
) -> Verdict {
    if let Some(f) = targets.iter().find(|t| t.state == RolloutState::Failed) {
        let message = format!(
            "{}/{}: {}",
            kind_name(f.kind),
            f.name,
            f.message.as_deref().unwrap_or_default()
        );
        return Verdict::Failed { message };
    }
    if !waiting_on_evictions && targets.iter().all(|t| t.state == RolloutState::Complete) {
        return Verdict::Complete;
    }
    let elapsed = Duration::try_from(now.duration_since(started_at)).unwrap_or(Duration::ZERO);
    if elapsed > timeout {
        return Verdict::Overdue;
    }
    let pending = targets
        .iter()
        .filter(|t| t.state != RolloutState::Complete)
        .map(|t| {
            format!(
                "{}/{} {}/{}",
                kind_name(t.kind),
                t.name,
                t.updated_replicas,
                t.replicas
            )
        })
        .collect();
    Verdict::Progressing { pending }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use crate::controller::restart::progress::Progress;
    use crate::crd::WorkloadKind;

    const SHA: &str = "b2";
    const MINUTE: Duration = Duration::from_secs(60);

    fn at(s: &str) -> Timestamp {
        s.parse().expect("a literal timestamp")
    }

    fn target(name: &str, hash: Option<&str>) -> Workload {
        Workload {
            kind: WorkloadKind::Deployment,
            name: name.to_owned(),
            template_hash: hash.map(str::to_owned),
            progress: Progress::Complete {
                message: String::new(),
            },
            pod_selector: None,
        }
    }

    fn previous(sha: &str, started: &str) -> RolloutStatus {
        RolloutStatus {
            bundle_sha256: sha.to_owned(),
            started_at: Some(Time(at(started))),
            completed_at: None,
            targets: Vec::new(),
        }
    }

    #[test]
    fn start_table() {
        let now = at("2026-05-01T12:00:00Z");
        let fresh = [target("a", Some("b1")), target("b", Some(SHA))];
        let stamped = [target("a", Some(SHA))];
        let long_ago = previous("b1", "2026-05-01T11:00:00Z");
        let just_now = previous("b1", "2026-05-01T11:59:30Z");
        let same = previous(SHA, "2026-05-01T11:59:30Z");
        let skewed = previous("b1", "2026-05-01T12:00:20Z");
        let both_stamped = [target("a", Some(SHA)), target("b", Some(SHA))];
        let long_ago_same = previous(SHA, "2026-05-01T11:00:00Z");
        // (case, method, targets, stale targets, previous, want)
        type Case<'a> = (
            &'a str,
            RestartMethod,
            &'a [Workload],
            &'a [usize],
            Option<&'a RolloutStatus>,
            Start,
        );
        let table: Vec<Case> = vec![
            (
                "first restart ever",
                RestartMethod::RolloutRestart,
                &fresh,
                &[],
                None,
                Start::Begin { owed: vec![0] },
            ),
            (
                "last restart long ago",
                RestartMethod::RolloutRestart,
                &fresh,
                &[],
                Some(&long_ago),
                Start::Begin { owed: vec![0] },
            ),
            (
                "last restart 30 s ago: throttled for the rest of the minute",
                RestartMethod::RolloutRestart,
                &fresh,
                &[],
                Some(&just_now),
                Start::Throttled {
                    wait: Duration::from_secs(30),
                },
            ),
            (
                "a start in the future counts as just now",
                RestartMethod::RolloutRestart,
                &fresh,
                &[],
                Some(&skewed),
                Start::Throttled { wait: MINUTE },
            ),
            (
                "every template stamped: the recorded rollout goes on",
                RestartMethod::RolloutRestart,
                &stamped,
                &[],
                Some(&same),
                Start::Continue {
                    started_at: at("2026-05-01T11:59:30Z"),
                },
            ),
            (
                "stamped but nothing recorded (status lost): goes on from now",
                RestartMethod::RolloutRestart,
                &stamped,
                &[],
                None,
                Start::Continue { started_at: now },
            ),
            (
                "evict: recorded for this bundle",
                RestartMethod::Evict,
                &fresh,
                &[],
                Some(&same),
                Start::Continue {
                    started_at: at("2026-05-01T11:59:30Z"),
                },
            ),
            (
                "evict: a new bundle owes every target",
                RestartMethod::Evict,
                &fresh,
                &[],
                Some(&long_ago),
                Start::Begin { owed: vec![0, 1] },
            ),
            (
                "drift corrected: a stamped target whose pods started meanwhile restarts",
                RestartMethod::RolloutRestart,
                &both_stamped,
                &[1],
                Some(&long_ago_same),
                Start::Begin { owed: vec![1] },
            ),
            (
                "drift corrected, but the throttle holds",
                RestartMethod::RolloutRestart,
                &both_stamped,
                &[0],
                Some(&same),
                Start::Throttled {
                    wait: Duration::from_secs(30),
                },
            ),
            (
                "drift corrected under method None: nothing restarts",
                RestartMethod::None,
                &both_stamped,
                &[0],
                Some(&long_ago_same),
                Start::Continue {
                    started_at: at("2026-05-01T11:00:00Z"),
                },
            ),
        ];
        for (case, method, targets, stale, prev, want) in table {
            assert_eq!(
                start(method, targets, stale, prev, SHA, MINUTE, now),
                want,
                "{case}"
            );
        }
    }

    fn rolled(
        name: &str,
        state: RolloutState,
        updated: i32,
        message: Option<&str>,
    ) -> TargetRollout {
        TargetRollout {
            kind: WorkloadKind::Deployment,
            name: name.to_owned(),
            state,
            updated_replicas: updated,
            replicas: 2,
            message: message.map(str::to_owned),
        }
    }

    #[test]
    fn verdict_table() {
        use RolloutState::{Complete, Failed, InProgress};
        let started = at("2026-05-01T12:00:00Z");
        let soon = at("2026-05-01T12:01:00Z");
        let late = at("2026-05-01T12:11:00Z");
        let timeout = Duration::from_secs(600);
        let done = rolled("a", Complete, 2, None);
        let rolling = rolled("b", InProgress, 1, None);
        let failed = rolled("c", Failed, 0, Some("progress deadline exceeded"));
        // (case, targets, waiting on evictions, now, want)
        let table: Vec<(&str, Vec<TargetRollout>, bool, Timestamp, Verdict)> = vec![
            (
                "all complete",
                vec![done.clone()],
                false,
                soon,
                Verdict::Complete,
            ),
            (
                "no targets at all is complete",
                vec![],
                false,
                soon,
                Verdict::Complete,
            ),
            (
                "complete workloads but evictions still to come",
                vec![done.clone()],
                true,
                soon,
                Verdict::Progressing {
                    pending: Vec::new(),
                },
            ),
            (
                "one still rolling",
                vec![done.clone(), rolling.clone()],
                false,
                soon,
                Verdict::Progressing {
                    pending: vec!["Deployment/b 1/2".to_owned()],
                },
            ),
            (
                "rolling past the timeout",
                vec![rolling.clone()],
                false,
                late,
                Verdict::Overdue,
            ),
            (
                "completion beats the timeout",
                vec![done.clone()],
                false,
                late,
                Verdict::Complete,
            ),
            (
                "a failure beats everything",
                vec![done, rolling, failed],
                true,
                late,
                Verdict::Failed {
                    message: "Deployment/c: progress deadline exceeded".to_owned(),
                },
            ),
        ];
        for (case, targets, waiting, now, want) in table {
            assert_eq!(
                verdict(&targets, waiting, started, timeout, now),
                want,
                "{case}"
            );
        }
    }

    #[test]
    fn owed_targets_per_method() {
        let targets = [
            target("stamped", Some("new")),
            target("old", Some("old")),
            target("never", None),
        ];
        // (method, rollout for this bundle recorded, owed)
        let table: [(RestartMethod, bool, &[usize]); 6] = [
            (RestartMethod::RolloutRestart, false, &[1, 2]),
            // The template hash decides, whatever status says.
            (RestartMethod::RolloutRestart, true, &[1, 2]),
            (RestartMethod::Evict, false, &[0, 1, 2]),
            (RestartMethod::Evict, true, &[]),
            (RestartMethod::None, false, &[]),
            (RestartMethod::None, true, &[]),
        ];
        for (method, recorded, want) in table {
            assert_eq!(
                method::owed(method, &targets, recorded, "new"),
                want,
                "{method:?}, recorded {recorded}"
            );
        }
    }
}
