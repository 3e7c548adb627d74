//! `onprem-sim`: runs the On-Premises API simulator as a process for the local demo and for
//! tests that need it out of process. Prints one JSON line with the URL on stdout, then serves
//! until SIGINT or SIGTERM.

mod duration;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use onprem_sim::{SimConfig, SimUser, Variant};
use serde::{Deserialize, Serialize};

/// The admin password is read from here (never from argv, which other users can see).
const ADMIN_PASSWORD_ENV: &str = "WCO_SIM_ADMIN_PASSWORD";

/// A simulator of the WhatsApp Business On-Premises API webhook CA endpoints (tests and the local
/// demo). Listens on loopback only.
#[derive(Debug, Parser)]
#[command(name = "onprem-sim", version, about, long_about = None)]
struct SimArgs {
    /// Loopback address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Serve plain HTTP instead of HTTPS.
    #[arg(long)]
    plain_http: bool,
    /// Write the PEM of the CA that signed the server certificate to this file.
    #[arg(long, value_name = "FILE", conflicts_with = "plain_http")]
    write_ca: Option<PathBuf>,
    /// YAML or JSON file: `users: [{username, password, admin, must_change_password}]` and an
    /// optional `api_key`. Without it, one admin `admin` with the password from
    /// WCO_SIM_ADMIN_PASSWORD.
    #[arg(long, value_name = "FILE")]
    users_file: Option<PathBuf>,
    /// Which documented behaviour the webhook CA endpoints play.
    #[arg(long, value_enum, default_value = "docs")]
    variant: VariantArg,
    /// Token lifetime, a Go-style duration such as 90s, 10m or 168h.
    #[arg(long, default_value = "168h", value_parser = duration::parse_duration)]
    token_lifetime: Duration,
    /// How long after expiry a token is still accepted.
    #[arg(long, default_value = "600s", value_parser = duration::parse_duration)]
    token_grace: Duration,
    /// File holding the bearer token that enables the /_sim/ control API.
    #[arg(long, value_name = "FILE")]
    control_token_file: Option<PathBuf>,
    /// Disable the health and failed-login rate limits (demos that poll often).
    #[arg(long)]
    no_rate_limits: bool,
    /// The webhook URL the application settings name (`webhooks.url`); none by default.
    #[arg(long, value_name = "URL")]
    webhook_url: Option<String>,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum VariantArg {
    Docs,
    Code,
}

impl From<VariantArg> for Variant {
    fn from(v: VariantArg) -> Self {
        match v {
            VariantArg::Docs => Variant::Docs,
            VariantArg::Code => Variant::Code,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    users: Vec<SimUser>,
    #[serde(default)]
    api_key: Option<String>,
}

/// The line printed once the simulator listens.
#[derive(Serialize)]
struct Started<'a> {
    url: &'a str,
    ca_file: Option<&'a Path>,
    control_api: bool,
}

#[derive(Debug, thiserror::Error)]
enum SetupError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot parse users file {path}: {message}")]
    UsersFile { path: PathBuf, message: String },
    #[error("no users: give --users-file or set {ADMIN_PASSWORD_ENV}")]
    NoUsers,
    #[error("control token file {0} is empty")]
    EmptyControlToken(PathBuf),
    #[error("cannot write the CA to {path}: {source}")]
    WriteCa {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Sim(#[from] onprem_sim::SimError),
}

/// Stderr prefix of every message.
const PROGRAM: &str = "onprem-sim";

#[tokio::main]
async fn main() -> ExitCode {
    let args = SimArgs::parse();
    let sim = match start(&args).await {
        Ok(sim) => sim,
        Err(e) => {
            eprintln!("{PROGRAM}: {e}");
            return ExitCode::from(2);
        }
    };
    let started = Started {
        url: &sim.url(),
        ca_file: args.write_ca.as_deref(),
        control_api: args.control_token_file.is_some(),
    };
    if let Err(e) = print_line(&started) {
        eprintln!("{PROGRAM}: cannot write to stdout: {e}");
        sim.shutdown().await;
        return ExitCode::FAILURE;
    }
    if let Err(e) = wait_for_signal().await {
        eprintln!("{PROGRAM}: cannot wait for signals: {e}");
        sim.shutdown().await;
        return ExitCode::FAILURE;
    }
    sim.shutdown().await;
    ExitCode::SUCCESS
}

async fn start(args: &SimArgs) -> Result<onprem_sim::Simulator, SetupError> {
    let (users, api_key) = load_users(args.users_file.as_deref())?;
    let control_token = args
        .control_token_file
        .as_deref()
        .map(read_control_token)
        .transpose()?;
    let defaults = SimConfig::default();
    let cfg = SimConfig {
        bind: args.listen,
        tls: !args.plain_http,
        users,
        api_key,
        token_lifetime: args.token_lifetime,
        token_grace: args.token_grace,
        variant: args.variant.into(),
        health_rate_limit: defaults.health_rate_limit.filter(|_| !args.no_rate_limits),
        login_failure_limit: defaults
            .login_failure_limit
            .filter(|_| !args.no_rate_limits),
        control_token,
        ..defaults
    };
    let sim = onprem_sim::start(cfg).await?;
    sim.set_webhook_url(args.webhook_url.clone());
    if let (Some(path), Some(pem)) = (&args.write_ca, sim.ca_pem()) {
        std::fs::write(path, pem).map_err(|source| SetupError::WriteCa {
            path: path.clone(),
            source,
        })?;
    }
    Ok(sim)
}

fn load_users(file: Option<&Path>) -> Result<(Vec<SimUser>, Option<String>), SetupError> {
    if let Some(path) = file {
        let text = read(path)?;
        let parsed: UsersFile =
            serde_saphyr::from_str(&text).map_err(|e| SetupError::UsersFile {
                path: path.to_owned(),
                message: error_position(&e),
            })?;
        if parsed.users.is_empty() {
            return Err(SetupError::NoUsers);
        }
        return Ok((parsed.users, parsed.api_key));
    }
    match std::env::var(ADMIN_PASSWORD_ENV) {
        Ok(password) if !password.is_empty() => Ok((vec![SimUser::admin("admin", password)], None)),
        _ => Err(SetupError::NoUsers),
    }
}

/// Where the users file is wrong, without the parser's message: that may quote a line or a
/// value of the file, and the file holds passwords.
fn error_position(e: &serde_saphyr::Error) -> String {
    const EXPECTED: &str =
        "expected users: [{username, password, admin, must_change_password}] and api_key";
    match e.location() {
        Some(at) => format!("line {}, column {}: {EXPECTED}", at.line(), at.column()),
        None => EXPECTED.to_owned(),
    }
}

fn read_control_token(path: &Path) -> Result<String, SetupError> {
    let token = read(path)?.trim().to_owned();
    if token.is_empty() {
        return Err(SetupError::EmptyControlToken(path.to_owned()));
    }
    Ok(token)
}

fn read(path: &Path) -> Result<String, SetupError> {
    std::fs::read_to_string(path).map_err(|source| SetupError::Read {
        path: path.to_owned(),
        source,
    })
}

fn print_line(started: &Started<'_>) -> std::io::Result<()> {
    let line = serde_json::to_string(started)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()
}

async fn wait_for_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = term.recv() => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_file_reads_yaml_and_json() {
        let dir = tempfile::tempdir().expect("tempdir");
        let yaml = dir.path().join("users.yaml");
        std::fs::write(
            &yaml,
            "users:\n  - username: ops\n    password: Ops-Passw0rd!\n    admin: true\n  - username: viewer\n    password: View-Passw0rd!\napi_key: k1\n",
        )
        .expect("write");
        let (users, key) = load_users(Some(&yaml)).expect("yaml users");
        assert_eq!(
            users,
            vec![
                SimUser::admin("ops", "Ops-Passw0rd!"),
                SimUser::regular("viewer", "View-Passw0rd!")
            ]
        );
        assert_eq!(key.as_deref(), Some("k1"));

        let json = dir.path().join("users.json");
        std::fs::write(
            &json,
            r#"{"users":[{"username":"admin","password":"secret","admin":true,"must_change_password":true}]}"#,
        )
        .expect("write");
        let (users, key) = load_users(Some(&json)).expect("json users");
        assert_eq!(users, vec![SimUser::factory_admin()]);
        assert_eq!(key, None);
    }

    #[test]
    fn users_file_errors_give_the_position_but_never_the_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("users.yaml");
        std::fs::write(
            &path,
            "users:\n  - username: a\n    password: Hidden-Passw0rd!\n    admin: Hidden-Passw0rd!\n",
        )
        .expect("write");
        let err = load_users(Some(&path)).expect_err("admin is not a boolean");
        let text = err.to_string();
        assert!(text.contains("line 4"), "{text}");
        assert!(
            !text.contains("Hidden"),
            "the error quotes the file: {text}"
        );
    }
}
