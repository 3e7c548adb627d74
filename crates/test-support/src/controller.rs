//! The controller running in the test process against one test namespace, and the usual
//! preamble of a controller test: a namespace, the simulator, a CA in `internal-ca`, the
//! resource `prod` Ready.

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::oneshot;
use webhook_ca_operator::controller::{self, Context, Scope, Settings};
use webhook_ca_operator::http::{self, Health};
use webhook_ca_operator::metrics::Metrics;
use webhook_ca_operator::onprem::RetryPolicy;

use crate::certs::ca_pem;
use crate::namespace::TestNamespace;
use crate::operator::{Setup, apply_wcc, set_secret, setup, spec, wait_condition};
use crate::operator_process::scrape;
use crate::wait::wait_for;

/// A controller running in this process, scoped to one namespace, serving /metrics on
/// loopback; stopped on drop.
pub struct Operator {
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    metrics_addr: Arc<OnceLock<SocketAddr>>,
}

/// Settings that make a test quick: short retry and progress intervals, fast API retries.
pub fn quick_settings(ns: &TestNamespace) -> Settings {
    Settings {
        scope: Scope::new([ns.name()], None).expect("a test namespace's name is valid"),
        progress_interval: Duration::from_millis(500),
        retry_interval: Duration::from_secs(1),
        api_retry: RetryPolicy {
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(100),
            ..RetryPolicy::default()
        },
        ..Settings::default()
    }
}

impl Operator {
    pub fn start(ns: &TestNamespace) -> Self {
        Self::start_with(ns, quick_settings(ns))
    }

    /// [`Self::start`] with `--dry-run`: it changes nothing but status and Events.
    pub fn start_dry_run(ns: &TestNamespace) -> Self {
        Self::start_with(
            ns,
            Settings {
                dry_run: true,
                ..quick_settings(ns)
            },
        )
    }

    pub fn start_with(ns: &TestNamespace, settings: Settings) -> Self {
        crate::test_logs::init();
        let metrics = Arc::new(Metrics::default());
        let health = Arc::new(Health {
            metrics: Arc::clone(&metrics),
            ready: AtomicBool::new(false),
        });
        let metrics_addr = Arc::new(OnceLock::new());
        let (served, at) = (Arc::clone(&health), Arc::clone(&metrics_addr));
        tokio::spawn(async move {
            let (addr, server) = http::serve(([127, 0, 0, 1], 0).into(), served)
                .await
                .expect("metrics server on loopback");
            at.get_or_init(|| addr);
            let _ = server.await;
        });
        let ctx = Arc::new(Context::new(ns.client(), metrics, settings));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(controller::run(ctx, health, async move {
            let _ = stopped.await;
        }));
        Self {
            stop: Some(stop),
            task: Some(task),
            metrics_addr,
        }
    }

    /// What a Prometheus scrape of its /metrics sees.
    pub async fn scrape(&self) -> String {
        let addr = wait_for("the metrics server", || async {
            self.metrics_addr
                .get()
                .copied()
                .ok_or_else(|| "not bound yet".to_owned())
        })
        .await;
        scrape(addr).await
    }

    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(20), task).await;
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A namespace whose `internal-ca` Secret holds one CA named `ca_name`, the operator running,
/// and the resource (`spec` plus `extra`) Ready.
pub async fn synced(
    prefix: &str,
    ca_name: &str,
    extra: serde_json::Value,
) -> (Setup, Operator, String) {
    let setup = setup(prefix).await;
    let ca = ca_pem(ca_name);
    set_secret(&setup.ns, "internal-ca", "ca.crt", &ca).await;
    let operator = Operator::start(&setup.ns);
    apply_wcc(&setup.ns, spec(&setup.sim, extra)).await;
    wait_condition(&setup.ns, "Ready", "True", "Synced").await;
    (setup, operator, ca)
}
