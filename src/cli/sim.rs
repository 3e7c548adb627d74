//! Placeholder until the `sim` subcommand lands.

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct SimArgs {}

pub async fn run(_args: SimArgs) -> ExitCode {
    eprintln!("webhook-ca-operator: the sim subcommand is not built yet");
    ExitCode::FAILURE
}
