//! `webhook-ca-operator api push FILE... | get | delete | health | webhook-check FILE...`: the
//! operator's API client on the command line, for installations without a cluster
//! (docker-compose, VMs).
//!
//! Credentials come from the environment (`WA_API_USERNAME` + `WA_API_PASSWORD`, or
//! `WA_API_TOKEN`) or from files (`--password-file`, `--token-file`), never from argument values,
//! which other users of the machine can read in the process list.
//!
//! Exit codes: 0 done; 1 failed (message on stderr with reason and request id); 2 usage;
//! 3 `get` found no bundle stored; 4 the bundle would not trust the webhook server (`push`
//! refused, or `webhook-check`'s verdict); 5 `webhook-check` found no definite answer.

use std::io::{self, IsTerminal as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Subcommand;
use jiff::Timestamp;

use super::files::{self, InputError};
use super::webhook_check::{self, EXIT_WEBHOOK_UNTRUSTED};
use crate::NAME;
use crate::bundle::{self, Bundle, BundleError, Policy, SourceInput};
use crate::onprem::{
    ApiError, ClientConfig, Credentials, DeleteOutcome, Health, OnPremClient, TlsTrust,
};

/// `get` when the API holds no bundle: distinct from failures, so scripts can branch on it.
pub const EXIT_NOTHING_STORED: u8 = 3;

pub const ENV_URL: &str = "WA_API_URL";
pub const ENV_USERNAME: &str = "WA_API_USERNAME";
pub const ENV_PASSWORD: &str = "WA_API_PASSWORD";
pub const ENV_TOKEN: &str = "WA_API_TOKEN";

#[derive(Debug, clap::Args)]
pub struct ApiArgs {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    command: ApiCommand,
}

#[derive(Debug, clap::Args)]
struct Connection {
    /// Base URL of the webapp, e.g. https://waweb:443.
    #[arg(long, env = ENV_URL, global = true, value_name = "URL")]
    url: Option<String>,
    /// Trust only the certificates in this PEM file for the webapp (its CA or self-signed cert).
    #[arg(long, global = true, value_name = "FILE", conflicts_with = "insecure")]
    ca_file: Option<PathBuf>,
    /// Do not verify the webapp's TLS certificate (like curl -k). Warned about on stderr.
    #[arg(long, global = true)]
    insecure: bool,
    /// Accept an http:// URL: credentials cross the network unencrypted (only behind a
    /// TLS-adding sidecar or mesh).
    #[arg(long, global = true)]
    allow_plain_http: bool,
    /// Limit on each request, in seconds.
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 30)]
    timeout: u64,
    /// Limit on connecting, in seconds.
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 5)]
    connect_timeout: u64,
    /// API user to log in as (not secret; the password comes from WA_API_PASSWORD or
    /// --password-file).
    #[arg(long, env = ENV_USERNAME, global = true, value_name = "NAME")]
    username: Option<String>,
    /// File holding the password (instead of WA_API_PASSWORD).
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        conflicts_with = "token_file"
    )]
    password_file: Option<PathBuf>,
    /// File holding a bearer token (instead of WA_API_TOKEN).
    #[arg(long, global = true, value_name = "FILE")]
    token_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum ApiCommand {
    /// Build the bundle from FILEs (as `bundle build` does) and upload it. Private keys and
    /// invalid input are refused before any request.
    Push {
        /// PEM files, merged in this order; `-` reads standard input.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Show what would be uploaded and whether it differs from the stored bundle; upload
        /// nothing.
        #[arg(long)]
        dry_run: bool,
        /// Upload without checking that the bundle trusts the webhook server's certificate.
        #[arg(long, conflicts_with = "webhook_url")]
        skip_webhook_check: bool,
        /// The webhook URL to check instead of the one in the API's application settings.
        #[arg(long, value_name = "URL")]
        webhook_url: Option<String>,
    },
    /// Build the bundle from FILEs and check, without uploading, that it trusts the certificate
    /// the webhook server presents (a TLS handshake, no HTTP request). Exit 0 trusted, 4 not
    /// trusted, 5 no definite answer.
    WebhookCheck {
        /// PEM files, merged in this order; `-` reads standard input.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// The webhook URL; without it, the one in the API's application settings (needs
        /// --url and admin credentials).
        #[arg(long, value_name = "URL")]
        webhook_url: Option<String>,
    },
    /// Print the stored bundle on stdout; exit 3 when none is stored.
    Get,
    /// Delete the stored bundle (no bundle stored counts as done).
    Delete,
    /// Show the gateway status of the installation's nodes.
    Health,
}

#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error("{path}: {source}")]
    Read { path: String, source: io::Error },
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("refused: {0}")]
    Bundle(#[from] BundleError),
    #[error("{}: {source}", source.reason())]
    Api {
        #[from]
        source: ApiError,
    },
    #[error("the bundle read back after the upload differs from the one sent (sha256 {sent})")]
    ReadBackDiffers { sent: String },
    #[error("writing the output: {0}")]
    Write(#[source] io::Error),
    #[error(
        "not uploaded: {0} (--skip-webhook-check uploads anyway; the coreapps would then refuse \
         the webhook server)"
    )]
    WebhookUntrusted(String),
}

/// Why `run` stops early without it being a failure.
enum Done {
    Success,
    NothingStored,
    /// `webhook-check`'s verdict, as its exit code.
    WebhookCheck(u8),
}

pub async fn run(args: ApiArgs) -> ExitCode {
    init_logging();
    match execute(args).await {
        Ok(Done::Success) => ExitCode::SUCCESS,
        Ok(Done::NothingStored) => ExitCode::from(EXIT_NOTHING_STORED),
        Ok(Done::WebhookCheck(code)) => ExitCode::from(code),
        Err(err) => {
            // One line, whatever a server put into a title.
            let line = err.to_string().replace(['\n', '\r'], " ");
            eprintln!("{NAME} api: error: {line}");
            match err {
                CliError::Usage(_) | CliError::Input(InputError::StdinTwice) => ExitCode::from(2),
                CliError::WebhookUntrusted(_) => ExitCode::from(EXIT_WEBHOOK_UNTRUSTED),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

/// Logs (the insecure warning, `RUST_LOG=debug` request lines) go to stderr; stdout carries only
/// the command's output, e.g. the bundle of `get`.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // rustls logs a refused certificate at error level itself; the command's own error line
        // already says so with the request id, so the default keeps stderr to that one line.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,rustls=off"));
    // Err means a subscriber is already installed (an embedding program), which is fine.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal())
        .with_target(false)
        .without_time()
        .try_init();
}

async fn execute(args: ApiArgs) -> Result<Done, CliError> {
    let conn = &args.connection;
    match args.command {
        ApiCommand::Push {
            files,
            dry_run,
            skip_webhook_check,
            webhook_url,
        } => {
            // Input first: a key or a broken file is refused before anything else, the
            // network included.
            let bundle = build_bundle(&files).await?;
            let client = connect(conn).await?;
            let check = if skip_webhook_check {
                None
            } else {
                Some(webhook_check::check(&bundle, webhook_url.as_deref(), Some(&client)).await)
            };
            if dry_run {
                return dry_run_push(&client, &bundle, check.as_ref()).await;
            }
            if let Some(check) = check {
                eprintln!(
                    "{NAME} api: webhook trust: {}: {}",
                    check.reason, check.message
                );
                if check.blocks_upload() {
                    return Err(CliError::WebhookUntrusted(check.message));
                }
            }
            push(&client, &bundle).await
        }
        ApiCommand::WebhookCheck { files, webhook_url } => {
            let bundle = build_bundle(&files).await?;
            let client = match webhook_url {
                Some(_) => None,
                None => Some(connect(conn).await?),
            };
            let check =
                webhook_check::check(&bundle, webhook_url.as_deref(), client.as_ref()).await;
            write_stdout(&webhook_check::describe(&check))?;
            Ok(Done::WebhookCheck(webhook_check::exit_code(&check)))
        }
        ApiCommand::Get => {
            let client = connect(conn).await?;
            match client.get_webhook_ca().await? {
                Some(pem) => {
                    write_stdout(&pem)?;
                    Ok(Done::Success)
                }
                None => {
                    eprintln!("{NAME} api: no webhook CA bundle is stored");
                    Ok(Done::NothingStored)
                }
            }
        }
        ApiCommand::Delete => {
            let client = connect(conn).await?;
            let text = match client.delete_webhook_ca().await? {
                DeleteOutcome::Deleted => {
                    "deleted the stored webhook CA bundle; restart the coreapp nodes for it to \
                     take effect"
                }
                DeleteOutcome::NothingStored => "no webhook CA bundle was stored",
            };
            write_stdout(&format!("{text}\n"))?;
            Ok(Done::Success)
        }
        ApiCommand::Health => {
            let client = connect(conn).await?;
            let health = client.health().await?;
            write_stdout(&health_text(&health))?;
            Ok(Done::Success)
        }
    }
}

/// The bundle from `files` as `bundle build` makes it; its warnings go to stderr.
async fn build_bundle(files: &[PathBuf]) -> Result<Bundle, CliError> {
    let sources = files::read_sources(files).await?;
    let inputs: Vec<SourceInput<'_>> = sources
        .iter()
        .map(|(source, pem)| SourceInput { source, pem })
        .collect();
    let bundle = bundle::build(&inputs, &Policy::defaults_at(Timestamp::now()))?;
    for warning in &bundle.warnings {
        eprintln!("{NAME} api: warning: {warning}");
    }
    Ok(bundle)
}

async fn push(client: &OnPremClient, bundle: &Bundle) -> Result<Done, CliError> {
    client.upload_webhook_ca(&bundle.pem).await?;
    let stored = client.get_webhook_ca().await?;
    if !stored.is_some_and(|remote| bundle.matches(&remote)) {
        return Err(CliError::ReadBackDiffers {
            sent: bundle.sha256.clone(),
        });
    }
    write_stdout(&format!(
        "uploaded {} certificate(s), sha256 {}; restart the coreapp nodes for the bundle to take \
         effect\n",
        bundle.certificates.len(),
        bundle.sha256
    ))?;
    Ok(Done::Success)
}

async fn dry_run_push(
    client: &OnPremClient,
    bundle: &Bundle,
    check: Option<&crate::webhook::Check>,
) -> Result<Done, CliError> {
    let remote = client.get_webhook_ca().await?;
    let mut text = format!(
        "would upload {} certificate(s), sha256 {}\n",
        bundle.certificates.len(),
        bundle.sha256
    );
    for cert in &bundle.certificates {
        text.push_str(&format!(
            "  {} (sha256 {}…, not after {})\n",
            cert.subject,
            cert.short_sha256(),
            cert.not_after
        ));
    }
    text.push_str(match remote {
        None => "stored: none; an upload would add it\n",
        Some(remote) if bundle.matches(&remote) => "stored: same certificates; nothing to do\n",
        Some(_) => "stored: differs; an upload would replace it\n",
    });
    if let Some(check) = check {
        text.push_str(&webhook_check::describe(check));
        if check.blocks_upload() {
            text.push_str("push would refuse to upload this bundle\n");
        }
    }
    write_stdout(&text)?;
    Ok(Done::Success)
}

fn health_text(health: &Health) -> String {
    match health {
        Health::Single { gateway_status } => format!("gateway_status: {gateway_status}\n"),
        Health::Nodes(nodes) => {
            let mut out = String::new();
            for node in nodes {
                let status = node
                    .gateway_status
                    .as_ref()
                    .map_or("unreachable", |s| s.as_str());
                let role = node.role.as_ref().map_or("-", |r| r.as_str());
                out.push_str(&format!("{}  {role}  {status}", node.name));
                if let Some(err) = node.errors.first() {
                    let title = err.title.as_deref().unwrap_or("error");
                    out.push_str(&format!("  ({title})"));
                }
                out.push('\n');
            }
            out
        }
    }
}

async fn connect(conn: &Connection) -> Result<OnPremClient, CliError> {
    let url = conn
        .url
        .clone()
        .ok_or_else(|| CliError::Usage(format!("no API URL: pass --url or set {ENV_URL}")))?;
    let tls = if conn.insecure {
        TlsTrust::InsecureSkipVerify
    } else if let Some(path) = &conn.ca_file {
        TlsTrust::CaPem(read_text(path).await?)
    } else {
        TlsTrust::SystemRoots
    };
    let credentials = resolve_credentials(
        |name| std::env::var(name).ok(),
        conn.username.clone(),
        read_optional(conn.password_file.as_deref()).await?,
        read_optional(conn.token_file.as_deref()).await?,
    )?;
    let mut config = ClientConfig::new(url, tls);
    config.request_timeout = Duration::from_secs(conn.timeout);
    config.connect_timeout = Duration::from_secs(conn.connect_timeout);
    config.allow_plain_http = conn.allow_plain_http;
    // One command, one login: there is no next attempt to hold back.
    config.login_backoff = false;
    Ok(OnPremClient::new(config, Arc::new(credentials))?)
}

/// Picks the credentials from files (already read) and the environment. Files win over the
/// environment; a token and a password together are refused rather than guessed between.
fn resolve_credentials(
    env: impl Fn(&str) -> Option<String>,
    username: Option<String>,
    password_file: Option<String>,
    token_file: Option<String>,
) -> Result<Credentials, CliError> {
    let present = |v: Option<String>| {
        v.map(|s| s.trim_end_matches(['\r', '\n']).to_owned())
            .filter(|s| !s.is_empty())
    };
    let token = present(token_file).or_else(|| present(env(ENV_TOKEN)));
    let password = present(password_file).or_else(|| present(env(ENV_PASSWORD)));
    let username = present(username);
    match (token, username, password) {
        (Some(_), _, Some(_)) => Err(CliError::Usage(format!(
            "both a token and a password are given; use either {ENV_TOKEN} / --token-file or \
             {ENV_USERNAME} with {ENV_PASSWORD} / --password-file"
        ))),
        (Some(token), _, None) => Ok(Credentials::token(token)),
        (None, Some(user), Some(password)) => Ok(Credentials::login(user, password)),
        (None, None, Some(_)) => Err(CliError::Usage(format!(
            "a password is given but no username: set {ENV_USERNAME} or pass --username"
        ))),
        (None, Some(_), None) => Err(CliError::Usage(format!(
            "a username is given but no password: set {ENV_PASSWORD} or pass --password-file"
        ))),
        (None, None, None) => Err(CliError::Usage(format!(
            "no credentials: set {ENV_USERNAME} and {ENV_PASSWORD} (or --password-file), or \
             {ENV_TOKEN} (or --token-file)"
        ))),
    }
}

/// The file as text; bytes that are not UTF-8 become U+FFFD, which the PEM scanner ignores.
async fn read_text(path: &Path) -> Result<String, CliError> {
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|source| CliError::Read {
            path: path.display().to_string(),
            source,
        })?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

async fn read_optional(path: Option<&Path>) -> Result<Option<String>, CliError> {
    match path {
        Some(path) => read_text(path).await.map(Some),
        None => Ok(None),
    }
}

fn write_stdout(text: &str) -> Result<(), CliError> {
    files::write_stdout(text).map_err(CliError::Write)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Env = &'static [(&'static str, &'static str)];

    fn env_of(pairs: Env) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    fn resolved(
        env: Env,
        username: Option<&str>,
        password_file: Option<&str>,
        token_file: Option<&str>,
    ) -> Result<Credentials, CliError> {
        resolve_credentials(
            env_of(env),
            username.map(str::to_owned),
            password_file.map(str::to_owned),
            token_file.map(str::to_owned),
        )
    }

    #[test]
    fn login_from_env_and_from_file() {
        let Ok(Credentials::Login { username, password }) =
            resolved(&[(ENV_PASSWORD, "from-env")], Some("admin"), None, None)
        else {
            panic!("expected login credentials");
        };
        assert_eq!(username, "admin");
        assert_eq!(password.expose(), "from-env");

        let Ok(Credentials::Login { password, .. }) = resolved(
            &[(ENV_PASSWORD, "from-env")],
            Some("admin"),
            Some("from-file\n"),
            None,
        ) else {
            panic!("expected login credentials");
        };
        assert_eq!(password.expose(), "from-file");
    }

    #[test]
    fn token_from_env_or_file() {
        let Ok(Credentials::Token(token)) = resolved(&[(ENV_TOKEN, "t-env")], None, None, None)
        else {
            panic!("expected a token");
        };
        assert_eq!(token.expose(), "t-env");
        let Ok(Credentials::Token(token)) =
            resolved(&[(ENV_TOKEN, "t-env")], None, None, Some("t-file\r\n"))
        else {
            panic!("expected a token");
        };
        assert_eq!(token.expose(), "t-file");
    }

    #[test]
    fn incomplete_or_ambiguous_credentials_are_usage_errors() {
        let cases: [(Env, Option<&str>); 4] = [
            (&[], None),
            (&[], Some("admin")),
            (&[(ENV_PASSWORD, "pw")], None),
            (&[(ENV_PASSWORD, "pw"), (ENV_TOKEN, "t")], Some("admin")),
        ];
        for (env, username) in cases {
            let err = resolved(env, username, None, None).unwrap_err();
            assert!(matches!(err, CliError::Usage(_)), "{err}");
            assert!(!err.to_string().contains("pw\""), "{err}");
        }
        // An empty variable counts as unset.
        let err = resolved(&[(ENV_TOKEN, "")], None, None, None).unwrap_err();
        assert!(err.to_string().starts_with("no credentials"), "{err}");
    }

    #[test]
    fn health_lines() {
        use crate::onprem::{GatewayStatus, NodeHealth, NodeRole};
        let single = Health::Single {
            gateway_status: GatewayStatus::Connected,
        };
        assert_eq!(health_text(&single), "gateway_status: connected\n");
        let nodes = Health::Nodes(vec![
            NodeHealth {
                name: "master1:master1".into(),
                gateway_status: Some(GatewayStatus::Connected),
                role: Some(NodeRole::PrimaryMaster),
                errors: vec![],
            },
            NodeHealth {
                name: "wacore1:wacore1".into(),
                gateway_status: None,
                role: None,
                errors: vec![crate::onprem::EnvelopeError {
                    code: Some(1011),
                    title: Some("Service not ready".into()),
                    ..Default::default()
                }],
            },
        ]);
        assert_eq!(
            health_text(&nodes),
            "master1:master1  primary_master  connected\n\
             wacore1:wacore1  -  unreachable  (Service not ready)\n"
        );
    }
}
