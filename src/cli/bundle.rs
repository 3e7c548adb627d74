//! `webhook-ca-operator bundle build|inspect FILE...`: the operator's bundle engine on files, for
//! installations without a cluster and for checking a bundle before it goes into a Secret.
//!
//! Exit codes: 0 done; 1 refused (unreadable file, bad PEM, private key, policy); 2 usage.
//! Messages go to stderr, one line each, prefixed with the program name, and never quote the
//! files' content.

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};
use jiff::Timestamp;
use serde::Serialize;

use super::files::{InputError, read_sources, write_stdout};
use crate::bundle::{self, Action, Bundle, BundleError, CertificateInfo, Finding, Order, Policy};

const PROGRAM: &str = crate::NAME;
const SECONDS_PER_DAY: i64 = 86_400;

#[derive(Debug, clap::Args)]
pub struct BundleArgs {
    #[command(subcommand)]
    command: BundleCommand,
}

#[derive(Debug, Subcommand)]
enum BundleCommand {
    /// Print the canonical bundle on stdout; warnings and its SHA-256 go to stderr.
    Build {
        #[command(flatten)]
        inputs: Inputs,
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// Show the certificates a build would hold and what the policy says about them. Exits 1
    /// when the build would be refused.
    Inspect {
        #[command(flatten)]
        inputs: Inputs,
        #[command(flatten)]
        policy: PolicyArgs,
        #[arg(long, short, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

#[derive(Debug, clap::Args)]
struct Inputs {
    /// PEM files, merged in this order; `-` reads standard input.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct PolicyArgs {
    /// What an expired certificate does to the bundle.
    #[arg(long, value_enum, value_name = "ACTION", default_value_t = ActionArg::Refuse)]
    expired: ActionArg,
    /// What a certificate that is not valid yet does to the bundle.
    #[arg(long, value_enum, value_name = "ACTION", default_value_t = ActionArg::Warn)]
    not_yet_valid: ActionArg,
    /// What a certificate without basicConstraints cA=true does to the bundle.
    #[arg(long, value_enum, value_name = "ACTION", default_value_t = ActionArg::Warn)]
    non_ca: ActionArg,
    /// Same as `--expired warn`.
    #[arg(long, conflicts_with = "expired")]
    allow_expired: bool,
    /// Same as `--non-ca refuse`.
    #[arg(long, conflicts_with = "non_ca")]
    require_ca: bool,
    /// `source` keeps the order of the files and of the blocks in them (chains stay chains);
    /// `sorted` orders by fingerprint, so the order of the files does not matter.
    #[arg(long, value_enum, default_value_t = OrderArg::Source)]
    order: OrderArg,
    /// Judge validity at this instant (RFC 3339, e.g. 2030-01-01T00:00:00Z) instead of now.
    #[arg(long, value_name = "TIME")]
    now: Option<Timestamp>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ActionArg {
    Refuse,
    Warn,
    Drop,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OrderArg {
    Source,
    Sorted,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Output {
    Table,
    Json,
}

impl From<ActionArg> for Action {
    fn from(arg: ActionArg) -> Self {
        match arg {
            ActionArg::Refuse => Action::Refuse,
            ActionArg::Warn => Action::Warn,
            ActionArg::Drop => Action::Drop,
        }
    }
}

impl PolicyArgs {
    fn policy(&self) -> Policy {
        Policy {
            expired: if self.allow_expired {
                Action::Warn
            } else {
                self.expired.into()
            },
            not_yet_valid: self.not_yet_valid.into(),
            non_ca: if self.require_ca {
                Action::Refuse
            } else {
                self.non_ca.into()
            },
            order: match self.order {
                OrderArg::Source => Order::Source,
                OrderArg::Sorted => Order::Sorted,
            },
            // The CLI is the edge where the clock may be read; the engine only gets the value.
            now: self.now.unwrap_or_else(Timestamp::now),
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error("writing the output: {0}")]
    Write(#[source] io::Error),
    #[error("encoding the report as JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// `inspect` found what `build` would refuse; the findings are already printed.
    #[error("the bundle would be refused by the policy")]
    WouldRefuse,
}

pub async fn run(args: BundleArgs) -> ExitCode {
    let result = match args.command {
        BundleCommand::Build { inputs, policy } => build(&inputs, &policy).await,
        BundleCommand::Inspect {
            inputs,
            policy,
            output,
        } => inspect(&inputs, &policy, output).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            report(&err);
            match err {
                CliError::Input(InputError::StdinTwice) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

fn report(err: &CliError) {
    match err {
        CliError::Bundle(BundleError::Refused { findings }) => {
            for finding in findings {
                eprintln!("{PROGRAM}: refused: {finding}");
            }
        }
        other => eprintln!("{PROGRAM}: {other}"),
    }
}

async fn build(inputs: &Inputs, policy: &PolicyArgs) -> Result<(), CliError> {
    let sources = read_sources(&inputs.files).await?;
    let bundle = bundle::build(&as_inputs(&sources), &policy.policy())?;
    for warning in &bundle.warnings {
        eprintln!("{PROGRAM}: warning: {warning}");
    }
    write_stdout(&bundle.pem).map_err(CliError::Write)?;
    eprintln!("{PROGRAM}: {}", summary(&bundle, sources.len()));
    Ok(())
}

async fn inspect(inputs: &Inputs, policy: &PolicyArgs, output: Output) -> Result<(), CliError> {
    let sources = read_sources(&inputs.files).await?;
    let policy = policy.policy();
    // Built with every finding a warning, so the table shows every certificate, also the ones
    // the real policy would refuse; the real policy then judges each finding.
    let lenient = Policy {
        order: policy.order,
        ..Policy::lenient_at(policy.now)
    };
    let bundle = bundle::build(&as_inputs(&sources), &lenient)?;
    let judged: Vec<(Action, &Finding)> = bundle
        .warnings
        .iter()
        .map(|finding| (policy.action(finding), finding))
        .collect();
    let accepted = judged.iter().all(|(action, _)| *action != Action::Refuse);

    match output {
        Output::Json => {
            let report = JsonReport::new(&bundle, &judged, accepted, policy.now);
            let json = serde_json::to_string_pretty(&report).map_err(CliError::Json)?;
            write_stdout(&format!("{json}\n")).map_err(CliError::Write)?;
        }
        Output::Table => {
            let mut text = table(&bundle.certificates, policy.now);
            if accepted {
                text.push_str(&summary(&bundle, sources.len()));
                text.push('\n');
            }
            write_stdout(&text).map_err(CliError::Write)?;
            for (action, finding) in &judged {
                let word = match action {
                    Action::Refuse => "refused",
                    Action::Warn => "warning",
                    Action::Drop => "dropped",
                };
                eprintln!("{PROGRAM}: {word}: {finding}");
            }
        }
    }
    if accepted {
        Ok(())
    } else {
        Err(CliError::WouldRefuse)
    }
}

/// What `inspect --output json` prints.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonReport<'a> {
    /// Whether `build` with the same flags would produce the bundle.
    accepted: bool,
    /// The bundle's SHA-256, present only when it would be built.
    sha256: Option<&'a str>,
    duplicates_removed: usize,
    certificates: Vec<JsonCertificate<'a>>,
    findings: Vec<JsonFinding<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonCertificate<'a> {
    #[serde(flatten)]
    info: &'a CertificateInfo,
    days_left: i64,
}

#[derive(Serialize)]
struct JsonFinding<'a> {
    #[serde(flatten)]
    finding: &'a Finding,
    action: Action,
    message: String,
}

impl<'a> JsonReport<'a> {
    fn new(
        bundle: &'a Bundle,
        judged: &[(Action, &'a Finding)],
        accepted: bool,
        now: Timestamp,
    ) -> Self {
        Self {
            accepted,
            sha256: accepted.then_some(bundle.sha256.as_str()),
            duplicates_removed: bundle.duplicates_removed,
            certificates: bundle
                .certificates
                .iter()
                .map(|info| JsonCertificate {
                    info,
                    days_left: days_left(info, now),
                })
                .collect(),
            findings: judged
                .iter()
                .map(|&(action, finding)| JsonFinding {
                    finding,
                    action,
                    message: finding.to_string(),
                })
                .collect(),
        }
    }
}

/// Whole days until notAfter, rounded down; negative once expired.
fn days_left(info: &CertificateInfo, now: Timestamp) -> i64 {
    (info.not_after.as_second() - now.as_second()).div_euclid(SECONDS_PER_DAY)
}

fn summary(bundle: &Bundle, sources: usize) -> String {
    format!(
        "{} certificate(s) from {sources} source(s), {} duplicate(s) removed, sha256 {}",
        bundle.certificates.len(),
        bundle.duplicates_removed,
        bundle.sha256
    )
}

fn table(certificates: &[CertificateInfo], now: Timestamp) -> String {
    let header = [
        "SUBJECT",
        "NOT AFTER",
        "DAYS LEFT",
        "CA",
        "SHA256",
        "SOURCE",
    ]
    .map(String::from);
    let rows: Vec<[String; 6]> = certificates
        .iter()
        .map(|c| {
            [
                c.subject.clone(),
                c.not_after.to_string(),
                days_left(c, now).to_string(),
                if c.is_ca { "yes" } else { "no" }.to_owned(),
                c.short_sha256().to_owned(),
                c.source.clone(),
            ]
        })
        .collect();
    let mut widths = [0usize; 6];
    for row in std::iter::once(&header).chain(&rows) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn as_inputs(sources: &[(String, String)]) -> Vec<bundle::SourceInput<'_>> {
    sources
        .iter()
        .map(|(source, pem)| bundle::SourceInput { source, pem })
        .collect()
}
