//! Starting the test cluster once per test binary, or attaching to one that already runs.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use kube::config::{AuthInfo, KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use secrecy::SecretString;
use tokio::sync::OnceCell;

use super::process::{run, run_with_input};

/// Kubeconfig of a running cluster to use instead of starting one.
const ATTACH_ENV: &str = "WCO_TEST_KUBECONFIG";
/// Directory holding the cluster's binaries, instead of running build.sh.
const BIN_ENV: &str = "WCO_CLUSTER_BIN";
/// State directory for the cluster this binary starts (default: target/test-cluster/<binary>).
const DIR_ENV: &str = "WCO_TEST_CLUSTER_DIR";

static CLUSTER: OnceCell<Result<Cluster, String>> = OnceCell::const_new();
static BIN_DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// A running control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and
/// kwok's simulated nodes, reached as cluster-admin.
pub struct Cluster {
    kubeconfig: PathBuf,
    /// Where tool caches (kubectl discovery, helm) live; the cluster's own state dir when started here.
    state_dir: PathBuf,
    config: Config,
    /// Whether this test binary started the cluster (and its watchdog will stop it).
    started_here: bool,
}

/// The cluster of this test binary, started on first use. Panics with the failing component's
/// log tail when it cannot start: a test that needs a cluster must not pass without one.
pub async fn cluster() -> &'static Cluster {
    match CLUSTER.get_or_init(start_or_attach).await {
        Ok(cluster) => cluster,
        Err(msg) => panic!("the test cluster is unavailable:\n{msg}"),
    }
}

/// This binary's own cluster, started here even when `WCO_TEST_KUBECONFIG` names a shared one:
/// for tests that disturb the control plane (restart its apiserver), which other tests must not
/// see. Call it before anything else asks for [`cluster`], which then returns the same one.
pub async fn dedicated_cluster() -> &'static Cluster {
    let cluster = match CLUSTER.get_or_init(start_here).await {
        Ok(cluster) => cluster,
        Err(msg) => panic!("the test cluster is unavailable:\n{msg}"),
    };
    assert!(
        cluster.started_here,
        "dedicated_cluster() must be called before cluster() attached to a shared cluster"
    );
    cluster
}

/// Path of one of the cluster's tools (`kubectl`, `helm`, `kwok`, ...), built on first use.
pub fn bin(name: &str) -> PathBuf {
    match BIN_DIR.get_or_init(build) {
        Ok(dir) => dir.join(name),
        Err(msg) => panic!("the test cluster's binaries are unavailable:\n{msg}"),
    }
}

impl Cluster {
    /// A client with the admin credentials, bound to the calling test's runtime.
    pub fn client(&self) -> Client {
        Client::try_from(self.config.clone())
            .expect("a client from a kubeconfig that already loaded")
    }

    /// A client that authenticates with `token` alone (e.g. a ServiceAccount's TokenRequest),
    /// so that RBAC is checked for that identity and not for the admin.
    pub fn client_with_token(&self, token: &str) -> Client {
        let mut config = self.config.clone();
        config.auth_info = AuthInfo {
            token: Some(SecretString::from(token.to_owned())),
            ..AuthInfo::default()
        };
        Client::try_from(config).expect("a client from a token config")
    }

    /// The admin kubeconfig.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// Whether this test binary started the cluster (and its watchdog will stop it).
    pub fn started_here(&self) -> bool {
        self.started_here
    }

    /// Kills the kube-apiserver only (SIGKILL, as in a crash: a graceful stop waits a minute for
    /// open watches) and starts it again after `down` (hack/cluster/restart-apiserver.sh);
    /// returns once it is ready. Only for a cluster this binary started.
    pub fn restart_apiserver(&self, down: std::time::Duration) {
        assert!(
            self.started_here,
            "never restart a shared cluster's apiserver"
        );
        let script = repo().join("hack/cluster/restart-apiserver.sh");
        let out = run(Command::new("bash")
            .arg(&script)
            .arg(&self.state_dir)
            .args(["--signal", "KILL", "--down"])
            .arg(down.as_secs().to_string()));
        if let Err(msg) = out {
            panic!("{msg}");
        }
    }

    /// `kubectl` aimed at this cluster as admin.
    pub fn kubectl(&self) -> Command {
        let mut cmd = Command::new(bin("kubectl"));
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .env("KUBECACHEDIR", self.state_dir.join("kube-cache"));
        cmd
    }

    /// `helm` aimed at this cluster as admin, with its config, cache and data kept out of $HOME.
    pub fn helm(&self) -> Command {
        let home = self.state_dir.join("helm");
        let mut cmd = Command::new(bin("helm"));
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_DATA_HOME", home.join("data"));
        cmd
    }

    /// `kubectl apply -f -` with `manifest` on stdin; the result says what kubectl said.
    pub fn try_apply(&self, manifest: &str) -> Result<Output, String> {
        run_with_input(self.kubectl().args(["apply", "-f", "-"]), manifest)
    }

    /// `kubectl apply -f -` that must succeed; returns kubectl's stdout.
    pub fn apply(&self, manifest: &str) -> String {
        match self.try_apply(manifest) {
            Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
            Err(msg) => panic!("{msg}"),
        }
    }
}

/// The workspace root, where `hack/` and `target/` are.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/test-support is two levels below the workspace root")
}

fn build() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os(BIN_ENV) {
        return Ok(PathBuf::from(dir));
    }
    let script = repo().join("hack/cluster/build.sh");
    // stderr goes straight to the terminal: a cold build takes many minutes and shows progress.
    let out = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("could not run {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed ({}); its messages are above",
            script.display(),
            out.status
        ));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    match stdout.lines().last() {
        Some(dir) if !dir.is_empty() => Ok(PathBuf::from(dir)),
        _ => Err(format!("{} printed no bin directory", script.display())),
    }
}

async fn start_or_attach() -> Result<Cluster, String> {
    match std::env::var_os(ATTACH_ENV) {
        Some(path) => {
            let state_dir = repo().join("target/test-cluster/attached");
            load(PathBuf::from(path), state_dir, false).await
        }
        None => start_here().await,
    }
}

async fn start_here() -> Result<Cluster, String> {
    let dir = start()?;
    load(dir.join("kubeconfig"), dir, true).await
}

async fn load(
    kubeconfig: PathBuf,
    state_dir: PathBuf,
    started_here: bool,
) -> Result<Cluster, String> {
    webhook_ca_operator::tls::install_crypto_provider();
    let raw = Kubeconfig::read_from(&kubeconfig)
        .map_err(|e| format!("reading {}: {e}", kubeconfig.display()))?;
    let config = Config::from_custom_kubeconfig(raw, &KubeConfigOptions::default())
        .await
        .map_err(|e| format!("loading {}: {e}", kubeconfig.display()))?;
    Ok(Cluster {
        kubeconfig,
        state_dir,
        config,
        started_here,
    })
}

/// Runs up.sh with this process as the owner, so its watchdog stops the cluster when the test
/// binary exits, however it exits.
fn start() -> Result<PathBuf, String> {
    let bin_dir = BIN_DIR.get_or_init(build).clone()?;
    let dir = std::env::var_os(DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/test-cluster").join(binary_name()));
    let script = repo().join("hack/cluster/up.sh");
    let out = run(Command::new("bash")
        .arg(&script)
        .arg("--dir")
        .arg(&dir)
        .arg("--owner-pid")
        .arg(std::process::id().to_string())
        .env(BIN_ENV, &bin_dir))?;
    // up.sh narrates on stderr; keep it with the test output for when a test fails later.
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    Ok(dir)
}

/// The test binary's name without cargo's hash suffix, e.g. `cluster` for `cluster-0123abcd`.
pub(crate) fn binary_name() -> OsString {
    let stem = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "tests".to_owned());
    match stem.rsplit_once('-') {
        Some((name, hash)) if hash.chars().all(|c| c.is_ascii_hexdigit()) => name.into(),
        _ => stem.into(),
    }
}
