//! `webhook-ca-operator crd`: prints the CustomResourceDefinition YAML.

use std::process::ExitCode;

pub fn run() -> ExitCode {
    eprintln!("webhook-ca-operator: crd is not built yet");
    ExitCode::FAILURE
}
