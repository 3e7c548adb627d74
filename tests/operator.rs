//! `webhook-ca-operator run` as users run it: the built binary as a separate process, against
//! the real test cluster and the simulator (in this process, reached over loopback TLS). Two
//! replicas elect one leader and hand over on SIGTERM; and the operator does its whole job with
//! nothing but the Helm chart's ServiceAccount token.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::api::ListParams;
use kube::config::Kubeconfig;
use serde_json::{Value, json};
use test_support::certs::ca_pem;
use test_support::operator::{
    Setup, apply_wcc, assert_rolled_with_bundle, expected_bundle, operator_events, set_secret,
    setup, spec, uploads, wait_condition, wait_stored_bundle,
};
use test_support::{TestNamespace, run_ok, token_for, wait_for};
use webhook_ca_operator::crd::WebhookCaCertificate;

const BINARY: &str = env!("CARGO_BIN_EXE_webhook-ca-operator");
const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/webhook-ca-operator");
const LEASE: &str = "webhook-ca-operator";
/// A standby (kube-lease-manager) looks at the Lease again when the term it last saw ends, at
/// most 15 s on, whether or not the leader released it; the rest is slack for a busy machine.
const TAKEOVER: Duration = Duration::from_secs(30);

/// A running `webhook-ca-operator run`; killed (SIGKILL) when dropped, its log printed when the
/// test is failing.
struct OperatorProcess {
    instance: String,
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
}

impl OperatorProcess {
    /// Starts `run` with `--instance <instance>`, the given arguments, loopback metrics on a free
    /// port and JSON logs, reaching the cluster through `kubeconfig`.
    fn spawn(instance: &str, kubeconfig: &Path, args: &[&str]) -> Self {
        let mut child = Command::new(BINARY)
            .args(["run", "--instance", instance])
            .args(["--metrics-bind", "127.0.0.1:0", "--log-format", "json"])
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info,webhook_ca_operator=debug")
            .env_remove("POD_NAMESPACE")
            .env_remove("POD_NAME")
            .env_remove("WATCH_NAMESPACE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {BINARY}: {e}"));
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        let lines = Arc::clone(&log);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                lines
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(line);
            }
        });
        Self {
            instance: instance.to_owned(),
            child,
            log,
            reader: Some(reader),
        }
    }

    fn log_lines(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The address the metrics server bound, from the `starting` log line.
    async fn metrics_addr(&self) -> SocketAddr {
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
    async fn wait_ready(&self) {
        let addr = self.metrics_addr().await;
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("a plain HTTP client");
        let url = format!("http://{addr}/readyz");
        wait_for(&format!("{} to be ready", self.instance), || async {
            let response = http.get(&url).send().await.map_err(|e| e.to_string())?;
            if response.status() == reqwest::StatusCode::OK {
                Ok(())
            } else {
                Err(format!("{url}: {}", response.status()))
            }
        })
        .await;
    }

    /// Sends SIGTERM, as the kubelet does when it stops a pod.
    fn terminate(&self) {
        run_ok(Command::new("kill").args(["-TERM", &self.child.id().to_string()]));
    }

    /// Waits for the process to exit by itself.
    async fn exit_status(&mut self) -> ExitStatus {
        let deadline = tokio::time::Instant::now() + TAKEOVER;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return status,
                Ok(None) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ok(None) => panic!("{} still runs {TAKEOVER:?} after SIGTERM", self.instance),
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

/// Who holds the operator's Lease in the namespace of `leases`.
async fn holder(leases: &Api<Lease>) -> Result<String, String> {
    let lease = leases
        .get_opt(LEASE)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no Lease yet")?;
    lease
        .spec
        .and_then(|s| s.holder_identity)
        .ok_or_else(|| "the Lease has no holder".to_owned())
}

/// Instances that reported an Event of `reason`.
async fn reporters(ns: &TestNamespace, reason: &str) -> BTreeSet<String> {
    operator_events(ns)
        .await
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter_map(|e| e.reporting_instance)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_acts_and_a_standby_takes_over_on_sigterm() {
    let Setup { ns, sim } = setup("op-leader").await;
    let first = ca_pem("Leader Root 1");
    set_secret(&ns, "internal-ca", "ca.crt", &first).await;
    let kubeconfig = ns.cluster().kubeconfig();
    let args = [
        "--leader-elect",
        "--lease-namespace",
        ns.name(),
        "--namespace",
        ns.name(),
    ];
    let mut replicas = vec![
        OperatorProcess::spawn("a", kubeconfig, &args),
        OperatorProcess::spawn("b", kubeconfig, &args),
    ];

    let leases: Api<Lease> = ns.api();
    let leader = wait_for("a leader", || async {
        let who = holder(&leases).await?;
        if who == "a" || who == "b" {
            Ok(who)
        } else {
            Err(format!("held by {who}"))
        }
    })
    .await;
    for replica in &replicas {
        replica.wait_ready().await;
    }

    apply_wcc(&ns, spec(&sim, json!({}))).await;
    let wcc = wait_condition(&ns, "Ready", "True", "Synced").await;
    wait_stored_bundle(&sim, &expected_bundle(&[&first])).await;
    assert_eq!(uploads(&sim), 1, "one upload: the standby must not act");
    assert_rolled_with_bundle(&ns, &wcc).await;
    let instances: BTreeSet<String> = operator_events(&ns)
        .await
        .into_iter()
        .filter_map(|e| e.reporting_instance)
        .collect();
    assert_eq!(
        instances,
        BTreeSet::from([leader.clone()]),
        "only the leader writes Events"
    );

    let at = replicas
        .iter()
        .position(|r| r.instance == leader)
        .expect("the leader is one of ours");
    let mut old = replicas.remove(at);
    let standby = replicas.pop().expect("two replicas");
    old.terminate();
    let status = old.exit_status().await;
    assert!(status.success(), "the leader exited with {status}");
    // Its Lease had at least 5 s to run (renewed 5 s before expiry), so only a release can
    // have removed its name by now.
    let after_exit = holder(&leases).await;
    assert_ne!(
        after_exit.as_deref(),
        Ok(leader.as_str()),
        "the leader did not release the Lease on SIGTERM"
    );
    let took_over = tokio::time::timeout(
        TAKEOVER,
        wait_for("the standby to take the Lease", || async {
            let who = holder(&leases).await?;
            if who == standby.instance {
                Ok(())
            } else {
                Err(format!("held by {who}"))
            }
        }),
    )
    .await;
    assert!(
        took_over.is_ok(),
        "{} did not take the Lease within {TAKEOVER:?} of {leader} stopping",
        standby.instance
    );
    standby.wait_ready().await;

    // The new leader follows a rotation.
    let second = ca_pem("Leader Root 2");
    set_secret(&ns, "internal-ca", "ca.crt", &format!("{first}{second}")).await;
    wait_stored_bundle(&sim, &expected_bundle(&[&first, &second])).await;
    wait_condition(&ns, "Ready", "True", "Synced").await;
    assert_eq!(
        uploads(&sim),
        2,
        "the new leader uploads the rotation and does not re-upload what is in place"
    );
    assert!(
        reporters(&ns, "Uploaded").await.contains(&standby.instance),
        "no Uploaded Event from {}",
        standby.instance
    );
}

/// A kubeconfig for the admin kubeconfig's cluster (server and CA) that authenticates with
/// `token` alone.
fn token_kubeconfig(admin: &Path, token: &str, dir: &Path) -> PathBuf {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_with_only_the_charts_namespaced_rbac() {
    let Setup { ns, sim } = setup("op-chart").await;
    let ca = ca_pem("Chart Root");
    set_secret(&ns, "internal-ca", "ca.crt", &ca).await;
    let release_ns = TestNamespace::new("op-release").await;
    let cluster = ns.cluster();
    // The release is named after its namespace, unique per run.
    let release = release_ns.name();
    run_ok(cluster.helm().args(["install", release, CHART]).args([
        "--namespace",
        release,
        "--set",
        &format!("watchNamespace={}", ns.name()),
    ]));

    let sa = format!("{release}-webhook-ca-operator");
    let token = token_for(&release_ns.client(), release, &sa).await;
    // RBAC reaches the authorizer through an informer; start the operator once it applies.
    let as_operator = cluster.client_with_token(&token);
    wait_for("the chart's Roles to apply", || async {
        Api::<WebhookCaCertificate>::namespaced(as_operator.clone(), ns.name())
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        Api::<Lease>::namespaced(as_operator.clone(), release)
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    })
    .await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let kubeconfig = token_kubeconfig(cluster.kubeconfig(), &token, dir.path());
    let operator = OperatorProcess::spawn(
        "chart",
        &kubeconfig,
        &[
            "--namespace",
            ns.name(),
            "--leader-elect",
            "--lease-namespace",
            release,
        ],
    );

    apply_wcc(&ns, spec(&sim, json!({}))).await;
    let wcc = wait_condition(&ns, "Ready", "True", "Synced").await;
    wait_stored_bundle(&sim, &expected_bundle(&[&ca])).await;
    assert_rolled_with_bundle(&ns, &wcc).await;
    // A refused Event or watch does not stop the resource from becoming Ready; the operator
    // logs it (debug and up) with the apiserver's "forbidden".
    let denied: Vec<String> = operator
        .log_lines()
        .into_iter()
        .filter(|l| l.to_lowercase().contains("forbidden"))
        .collect();
    assert!(
        denied.is_empty(),
        "requests the chart's RBAC refused: {denied:?}"
    );
    for reason in ["Uploaded", "RolloutStarted", "RolloutComplete"] {
        let by = wait_for(&format!("a {reason} Event"), || async {
            let by = reporters(&ns, reason).await;
            if by.is_empty() {
                Err("none yet".to_owned())
            } else {
                Ok(by)
            }
        })
        .await;
        assert_eq!(by, BTreeSet::from(["chart".to_owned()]), "{reason}");
    }
    assert_eq!(
        holder(&release_ns.api()).await.as_deref(),
        Ok("chart"),
        "the Lease in the release namespace"
    );

    drop(operator);
    run_ok(
        cluster
            .helm()
            .args(["uninstall", release, "--namespace", release, "--wait"]),
    );
}
