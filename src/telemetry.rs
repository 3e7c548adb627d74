//! Structured logs for the long-running controller.

use std::io::{self, IsTerminal};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt as _;

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
    let parsed = EnvFilter::try_new(level);
    let bad_filter = parsed.as_ref().err().map(ToString::to_string);
    let filter = parsed.unwrap_or_else(|_| EnvFilter::new("info"));
    // Err only means a subscriber is already installed (tests embedding the controller).
    let _ = match format {
        LogFormat::Json => json_subscriber(filter, io::stderr).try_init(),
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(io::stderr)
            .with_ansi(io::stderr().is_terminal())
            .finish()
            .try_init(),
    };
    if let Some(error) = bad_filter {
        tracing::warn!(%error, "the log level does not parse; logging at info");
    }
}

/// The subscriber [`init`] installs for [`LogFormat::Json`], writing to `writer`: the tests
/// install it with a writer of their own, so that what they keep and scan is what
/// `run --log-format json` writes.
pub fn json_subscriber<W>(
    filter: EnvFilter,
    writer: W,
) -> impl tracing::Subscriber + Send + Sync + 'static
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .json()
        .with_current_span(true)
        .flatten_event(true)
        .finish()
}
