//! `webhook-ca-operator run` as users run it: the built binary as a separate process, with its
//! log kept for the test's checks (and printed when the test fails), reaching the cluster with
//! the admin kubeconfig or, through [`token_kubeconfig`], with nothing but a ServiceAccount's
//! token.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::config::Kubeconfig;
use serde_json::{Value, json};

use super::process::run_ok;
use super::test_logs;
use super::wait::wait_for;

/// How long a SIGTERM may take: the operator releases its Lease and stops its controller.
const EXIT_WAIT: Duration = Duration::from_secs(30);

/// A running `webhook-ca-operator run`; killed (SIGKILL) when dropped, its log printed when the
/// test is failing.
pub struct OperatorProcess {
    pub instance: String,
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
}

impl OperatorProcess {
    /// Starts `binary run` (the test's `env!("CARGO_BIN_EXE_webhook-ca-operator")`) with
    /// `--instance <instance>`, the given arguments, loopback metrics on a free port and JSON
    /// logs at debug level (`--log-level debug`, every crate, as a user debugging it runs it),
    /// reaching the cluster through `kubeconfig`. Its log also goes to
    /// `target/test-logs/logs/` for the secret scan ([`crate::test_logs`]).
    pub fn spawn(binary: &str, instance: &str, kubeconfig: &Path, args: &[&str]) -> Self {
        let mut child = Command::new(binary)
            .args(["run", "--instance", instance])
            .args(["--metrics-bind", "127.0.0.1:0", "--log-format", "json"])
            .args(["--log-level", "debug"])
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env_remove("RUST_LOG")
            .env_remove("POD_NAMESPACE")
            .env_remove("POD_NAME")
            .env_remove("WATCH_NAMESPACE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {binary}: {e}"));
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        let lines = Arc::clone(&log);
        let mut file = test_logs::process_log(instance);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(out) = file.as_mut()
                    && let Err(e) = writeln!(out, "{line}")
                {
                    eprintln!("test logs: the operator's log is not kept: {e}");
                    file = None;
                }
                lines
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(line);
            }
            // The pipe closed: the process is gone. The rest of the buffer goes to the file.
            if let Some(Err(e)) = file.as_mut().map(Write::flush) {
                eprintln!("test logs: the operator's log is not kept: {e}");
            }
        });
        Self {
            instance: instance.to_owned(),
            child,
            log,
            reader: Some(reader),
        }
    }

    pub fn log_lines(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The address the metrics server bound, from the `starting` log line.
    pub async fn metrics_addr(&self) -> SocketAddr {
        wait_for(
            &format!("{}'s `starting` log line", self.instance),
            || async {
                let lines = self.log_lines();
                lines
                    .iter()
                    .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                    .find(|l| l["message"] == "starting")
                    .and_then(|l| l["metrics"].as_str()?.parse().ok())
                    .ok_or_else(|| format!("log so far: {lines:?}"))
            },
        )
        .await
    }

    /// Waits until /readyz answers 200.
    pub async fn wait_ready(&self) {
        wait_for(&format!("{} to be ready", self.instance), || async {
            match self.readyz().await {
                Ok(reqwest::StatusCode::OK) => Ok(()),
                Ok(status) => Err(format!("/readyz: {status}")),
                Err(e) => Err(e),
            }
        })
        .await;
    }

    /// The status /readyz answers now.
    pub async fn readyz(&self) -> Result<reqwest::StatusCode, String> {
        let addr = self.metrics_addr().await;
        plain_http()
            .get(format!("http://{addr}/readyz"))
            .send()
            .await
            .map(|r| r.status())
            .map_err(|e| e.to_string())
    }

    /// What a Prometheus scrape of its /metrics sees.
    pub async fn scrape(&self) -> String {
        scrape(self.metrics_addr().await).await
    }

    /// Log lines about requests the apiserver refused ("forbidden"): a refused Event or watch
    /// does not stop a resource from becoming Ready, only this shows it (debug and up).
    pub fn refused_requests(&self) -> Vec<String> {
        self.log_lines()
            .into_iter()
            .filter(|l| l.to_lowercase().contains("forbidden"))
            .collect()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How it exited, or `None` while it still runs.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .try_wait()
            .unwrap_or_else(|e| panic!("checking on {}: {e}", self.instance))
    }

    /// SIGKILL, as the OOM killer or a lost node would end it: no chance to finish a request,
    /// write status or release its Lease. Returns once the process is gone.
    pub fn kill(self) {
        // Drop sends SIGKILL (`Child::kill`) and reaps the process.
        drop(self);
    }

    /// Sends SIGTERM, as the kubelet does when it stops a pod.
    pub fn terminate(&self) {
        run_ok(Command::new("kill").args(["-TERM", &self.child.id().to_string()]));
    }

    /// Waits for the process to exit by itself.
    pub async fn exit_status(&mut self) -> ExitStatus {
        let deadline = tokio::time::Instant::now() + EXIT_WAIT;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return status,
                Ok(None) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ok(None) => panic!("{} still runs {EXIT_WAIT:?} after SIGTERM", self.instance),
                Err(e) => panic!("waiting for {}: {e}", self.instance),
            }
        }
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        // Err: it has exited already, which is what killing it is for.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        if std::thread::panicking() {
            eprintln!("--- log of operator {} ---", self.instance);
            for line in self.log_lines() {
                eprintln!("{line}");
            }
        }
    }
}

/// What a Prometheus scrape of the /metrics served at `addr` (loopback) sees.
pub(crate) async fn scrape(addr: SocketAddr) -> String {
    plain_http()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text")
}

/// A client for the operator's loopback endpoints (no proxy from the environment).
fn plain_http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("a plain HTTP client")
}

/// Who holds the Lease `name` in the namespace of `leases`.
pub async fn lease_holder(leases: &Api<Lease>, name: &str) -> Result<String, String> {
    let lease = leases
        .get_opt(name)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no Lease yet")?;
    lease
        .spec
        .and_then(|s| s.holder_identity)
        .ok_or_else(|| "the Lease has no holder".to_owned())
}

/// A kubeconfig for the admin kubeconfig's cluster (server and CA) that authenticates with
/// `token` alone.
pub fn token_kubeconfig(admin: &Path, token: &str, dir: &Path) -> PathBuf {
    let config = Kubeconfig::read_from(admin).expect("the admin kubeconfig");
    let current = config.current_context.clone().expect("a current context");
    let context = config
        .contexts
        .iter()
        .find(|c| c.name == current)
        .and_then(|c| c.context.clone())
        .expect("the current context");
    let cluster = config
        .clusters
        .iter()
        .find(|c| c.name == context.cluster)
        .and_then(|c| c.cluster.clone())
        .expect("the current context's cluster");
    // JSON is YAML: kubeconfig readers take it as it is.
    let kubeconfig = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {
            "server": cluster.server.expect("a server"),
            "certificate-authority-data": cluster.certificate_authority_data.expect("an inline CA"),
        }}],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "test", "user": "operator"}}],
        "current-context": "operator",
    });
    let path = dir.join("kubeconfig");
    std::fs::write(&path, kubeconfig.to_string()).expect("write the kubeconfig");
    path
}
