//! The controller's own knobs on `webhook-ca-operator run`, each a flag and an environment
//! variable (the Helm chart sets the variables). Kept apart from `run.rs`'s scoping and
//! leader-election flags.

use std::num::NonZeroUsize;
use std::time::Duration;

use crate::controller::Settings;
use crate::duration::parse_duration;

#[derive(Debug, Clone, clap::Args)]
pub struct KnobArgs {
    /// Change nothing outside the resources' own status and Events: no upload or delete on the
    /// API, no pod-template patch, no eviction, no finalizer. Status (reason DryRun) and Events
    /// say what would happen. For adopting an existing installation.
    #[arg(long, env = "DRY_RUN")]
    pub dry_run: bool,
    /// On-Premises API requests in flight at once, over all resources.
    #[arg(long, env = "API_CONCURRENCY", default_value_t = default_concurrency())]
    pub api_concurrency: NonZeroUsize,
    /// On-Premises API requests in flight at once to one API host (host:port).
    #[arg(long, env = "API_CONCURRENCY_PER_HOST", default_value_t = default_per_host())]
    pub api_concurrency_per_host: NonZeroUsize,
    /// Reconciles running at once, over all resources. Each holds a few requests to the
    /// kube-apiserver and the On-Premises API; the bound keeps memory and connections flat
    /// when a thousand resources are listed at once.
    #[arg(long, env = "MAX_CONCURRENT_RECONCILES", default_value_t = Settings::DEFAULT_MAX_CONCURRENT_RECONCILES, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_concurrent_reconciles: u16,
    /// How soon a pass that failed for a passing cause (API unavailable, source unreadable) is
    /// tried again; a Go-style duration.
    #[arg(long, env = "RETRY_INTERVAL", default_value = "30s", value_parser = parse_interval)]
    pub retry_interval: Duration,
    /// Log filter: a level (error, warn, info, debug, trace) or per-module directives such as
    /// `info,webhook_ca_operator=debug`.
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    pub log_level: String,
}

fn default_concurrency() -> NonZeroUsize {
    NonZeroUsize::new(Settings::DEFAULT_API_CONCURRENCY).unwrap_or(NonZeroUsize::MIN)
}

fn default_per_host() -> NonZeroUsize {
    NonZeroUsize::new(Settings::DEFAULT_API_CONCURRENCY_PER_HOST).unwrap_or(NonZeroUsize::MIN)
}

/// A retry interval of zero would spin the controller on a failing resource.
fn parse_interval(text: &str) -> Result<Duration, String> {
    match parse_duration(text) {
        Ok(d) if d >= Duration::from_millis(100) => Ok(d),
        Ok(_) => Err("must be at least 100ms".to_owned()),
        Err(e) => Err(e.to_string()),
    }
}

impl KnobArgs {
    /// These knobs in the controller's settings.
    pub fn apply(&self, settings: &mut Settings) {
        settings.dry_run = self.dry_run;
        settings.api_concurrency = self.api_concurrency.get();
        settings.api_concurrency_per_host = self.api_concurrency_per_host.get();
        settings.retry_interval = self.retry_interval;
        settings.max_concurrent_reconciles = self.max_concurrent_reconciles;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        knobs: KnobArgs,
    }

    #[test]
    fn defaults_are_the_settings_defaults() {
        let cli = Cli::try_parse_from(["run"]).expect("parses");
        let mut settings = Settings::default();
        cli.knobs.apply(&mut settings);
        let defaults = Settings::default();
        assert!(!settings.dry_run);
        assert_eq!(settings.api_concurrency, defaults.api_concurrency);
        assert_eq!(
            settings.api_concurrency_per_host,
            defaults.api_concurrency_per_host
        );
        assert_eq!(settings.retry_interval, defaults.retry_interval);
        assert_eq!(settings.max_concurrent_reconciles, 32);
    }

    #[test]
    fn flags_set_the_settings() {
        let cli = Cli::try_parse_from([
            "run",
            "--dry-run",
            "--api-concurrency=4",
            "--api-concurrency-per-host=1",
            "--retry-interval=1m30s",
            "--log-level=debug",
            "--max-concurrent-reconciles=8",
        ])
        .expect("parses");
        let mut settings = Settings::default();
        cli.knobs.apply(&mut settings);
        assert!(settings.dry_run);
        assert_eq!(settings.api_concurrency, 4);
        assert_eq!(settings.api_concurrency_per_host, 1);
        assert_eq!(settings.retry_interval, Duration::from_secs(90));
        assert_eq!(cli.knobs.log_level, "debug");
        assert_eq!(settings.max_concurrent_reconciles, 8);
    }

    #[test]
    fn nonsense_is_refused() {
        for bad in [
            "--api-concurrency=0",
            "--api-concurrency-per-host=0",
            "--retry-interval=0s",
            "--max-concurrent-reconciles=0",
            "--retry-interval=soon",
        ] {
            assert!(Cli::try_parse_from(["run", bad]).is_err(), "{bad}");
        }
    }
}
