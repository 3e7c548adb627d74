//! Placeholder until the `bundle` subcommand lands.

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct BundleArgs {}

pub async fn run(_args: BundleArgs) -> ExitCode {
    eprintln!("webhook-ca-operator: the bundle subcommand is not built yet");
    ExitCode::FAILURE
}
