//! The leader Lease's name and timings. Releases that split a fleet (`--namespace`,
//! `--selector`) each hold their own Lease, and may keep them in one namespace.
//!
//! kube-lease-manager knows two numbers: how long a Lease holds after its last renewal, and how
//! long before that end the leader renews it. Flags give the duration and how often the leader
//! renews (the "renew period"); the difference is the margin for a slow renewal and clock skew.
//! There is no retry period to set: a standby sleeps until the Lease it saw would expire and
//! then tries, so a leader that vanishes without releasing is replaced within one duration.

use crate::controller::CONTROLLER_NAME;
use crate::controller::sources::selector::is_dns_subdomain;
use crate::duration::parse_duration;

#[derive(Debug, clap::Args)]
pub struct LeaseArgs {
    /// Name of the leader Lease. Releases that share the Lease namespace and split the fleet
    /// (--namespace, --selector) need one each.
    #[arg(long = "leader-election-lease-name", default_value = CONTROLLER_NAME)]
    name: String,
    /// How long the Lease holds after its last renewal: a standby takes over at most this long
    /// after a leader vanished without releasing it. Whole seconds (Go syntax: 15s, 1m).
    #[arg(
        long = "leader-election-lease-duration",
        default_value = "15s",
        value_parser = whole_seconds
    )]
    duration: u64,
    /// How often the leader renews the Lease; shorter than the lease duration. Whole seconds.
    #[arg(
        long = "leader-election-renew-period",
        default_value = "10s",
        value_parser = whole_seconds
    )]
    renew_period: u64,
}

/// Lease settings that kube-lease-manager can use as they are (it panics on others).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseSettings {
    pub name: String,
    /// Seconds the Lease holds after a renewal.
    pub duration: u64,
    /// Seconds before the end of the Lease at which the leader renews it.
    pub grace: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseArgsError {
    #[error(
        "--leader-election-lease-name {0:?} is not a valid object name (at most 253 lower-case \
         letters, digits, '-' and '.')"
    )]
    InvalidName(String),
    #[error(
        "--leader-election-renew-period ({renew}s) must be shorter than \
         --leader-election-lease-duration ({duration}s)"
    )]
    RenewNotShorter { renew: u64, duration: u64 },
}

impl LeaseArgs {
    pub fn settings(&self) -> Result<LeaseSettings, LeaseArgsError> {
        // Lease names are DNS subdomains, as most object names are.
        if !is_dns_subdomain(&self.name) {
            return Err(LeaseArgsError::InvalidName(self.name.clone()));
        }
        if self.renew_period >= self.duration {
            return Err(LeaseArgsError::RenewNotShorter {
                renew: self.renew_period,
                duration: self.duration,
            });
        }
        Ok(LeaseSettings {
            name: self.name.clone(),
            duration: self.duration,
            grace: self.duration - self.renew_period,
        })
    }
}

/// A Lease counts in whole seconds (`leaseDurationSeconds`).
fn whole_seconds(input: &str) -> Result<u64, String> {
    let duration = parse_duration(input).map_err(|e| e.to_string())?;
    if duration.subsec_nanos() != 0 || duration.as_secs() == 0 {
        return Err(format!(
            "{input:?} is not a whole number of seconds, at least 1s"
        ));
    }
    Ok(duration.as_secs())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        lease: LeaseArgs,
    }

    fn settings(args: &[&str]) -> Result<LeaseSettings, String> {
        let cli = Cli::try_parse_from(std::iter::once("run").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        cli.lease.settings().map_err(|e| e.to_string())
    }

    #[test]
    fn the_defaults_are_the_former_fixed_lease() {
        assert_eq!(
            settings(&[]),
            Ok(LeaseSettings {
                name: "webhook-ca-operator".to_owned(),
                duration: 15,
                grace: 5,
            })
        );
    }

    #[test]
    fn name_and_timings_are_set_by_flags() {
        assert_eq!(
            settings(&[
                "--leader-election-lease-name=wco-shard-eu",
                "--leader-election-lease-duration=1m",
                "--leader-election-renew-period=45s",
            ]),
            Ok(LeaseSettings {
                name: "wco-shard-eu".to_owned(),
                duration: 60,
                grace: 15,
            })
        );
    }

    #[test]
    fn unusable_values_are_refused_with_the_flag_named() {
        let cases: [(&[&str], &str); 5] = [
            (
                &["--leader-election-lease-duration=1500ms"],
                "not a whole number of seconds",
            ),
            (&["--leader-election-renew-period=0s"], "at least 1s"),
            (&["--leader-election-lease-duration=15"], "invalid duration"),
            (
                &["--leader-election-renew-period=15s"],
                "--leader-election-renew-period (15s) must be shorter than \
                 --leader-election-lease-duration (15s)",
            ),
            (
                &["--leader-election-lease-name=Shard_EU"],
                "\"Shard_EU\" is not a valid object name",
            ),
        ];
        for (args, want) in cases {
            let err = settings(args).unwrap_err();
            assert!(err.contains(want), "{args:?}: {err}");
        }
    }
}
