//! Structured logs for the long-running controller.

use std::io::{self, IsTerminal};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line, for log collectors.
    Json,
    /// Human-readable lines.
    Text,
}

/// Installs the global subscriber: `level` filters (`--log-level`, or `RUST_LOG`; a filter
/// that does not parse falls back to `info`, with a warning), output on stderr.
pub fn init(format: LogFormat, level: &str) {
    let parsed = tracing_subscriber::EnvFilter::try_new(level);
    let bad_filter = parsed.as_ref().err().map(ToString::to_string);
    let filter = parsed.unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr);
    // Err only means a subscriber is already installed (tests embedding the controller).
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .flatten_event(true)
            .try_init(),
        LogFormat::Text => builder.with_ansi(io::stderr().is_terminal()).try_init(),
    };
    if let Some(error) = bad_filter {
        tracing::warn!(%error, "the log level does not parse; logging at info");
    }
}
