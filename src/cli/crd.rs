//! `webhook-ca-operator crd`: prints the CustomResourceDefinition YAML.

use std::process::ExitCode;

use crate::crd::WebhookCaCertificate;

pub fn run() -> ExitCode {
    match WebhookCaCertificate::crd_yaml() {
        Ok(yaml) => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("{}: cannot serialize the CRD: {err}", crate::NAME);
            ExitCode::FAILURE
        }
    }
}
