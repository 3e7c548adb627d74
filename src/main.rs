use std::process::ExitCode;

use clap::{Parser, Subcommand};
use webhook_ca_operator::cli;

/// Keeps the webhook CA bundle of WhatsApp Business On-Premises API installations in step with
/// Secrets in the cluster.
#[derive(Debug, Parser)]
#[command(name = webhook_ca_operator::NAME, version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the controller (in a cluster, or locally against the current kubeconfig).
    Run(cli::run::RunArgs),
    /// Build and inspect PEM bundles from files, as the operator would.
    Bundle(cli::bundle::BundleArgs),
    /// Push, read or delete the bundle on an On-Premises API directly, and check it against the
    /// webhook server (installations without a cluster).
    Api(cli::api::ApiArgs),
    /// Print the WebhookCaCertificate CustomResourceDefinition as YAML.
    Crd,
}

#[tokio::main]
async fn main() -> ExitCode {
    webhook_ca_operator::tls::install_crypto_provider();
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => cli::run::run(args).await,
        Command::Bundle(args) => cli::bundle::run(args).await,
        Command::Api(args) => cli::api::run(args).await,
        Command::Crd => cli::crd::run(),
    }
}
