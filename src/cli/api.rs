//! Placeholder until the `api` subcommand lands.

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct ApiArgs {}

pub async fn run(_args: ApiArgs) -> ExitCode {
    eprintln!("webhook-ca-operator: the api subcommand is not built yet");
    ExitCode::FAILURE
}
