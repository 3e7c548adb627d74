//! `webhook-ca-operator run`: the controller, its health and metrics endpoints, and leader
//! election.

mod lease;
mod scope;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::FutureExt;
use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;

use super::knobs::KnobArgs;
use crate::controller::{self, CONTROLLER_NAME, Context, Settings};
use crate::http::{self, Health};
use crate::metrics::Metrics;
use crate::telemetry::{self, LogFormat};
use lease::{LeaseArgs, LeaseArgsError};
use scope::ScopeArgs;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    scope: ScopeArgs,
    /// Where /metrics, /healthz and /readyz are served.
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_bind: SocketAddr,
    /// Run only while holding the leader Lease (--leader-election-lease-name), so that several
    /// replicas can run with one active.
    #[arg(long)]
    leader_elect: bool,
    /// Namespace of the leader Lease (the pod's own namespace in a cluster).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    #[command(flatten)]
    lease: LeaseArgs,
    /// This replica's name in the Lease and in Events.
    #[arg(long, env = "POD_NAME")]
    instance: Option<String>,
    #[arg(long, value_enum, default_value = "json")]
    log_format: LogFormat,
    #[command(flatten)]
    knobs: KnobArgs,
}

#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error(transparent)]
    Scope(#[from] controller::ScopeError),
    #[error(transparent)]
    LeaseSettings(#[from] LeaseArgsError),
    #[error("cannot reach the Kubernetes API: {0}")]
    Client(#[source] kube::Error),
    #[error(transparent)]
    Bind(#[from] http::BindError),
    #[error("leader election: {0}")]
    Lease(#[source] kube_lease_manager::LeaseManagerError),
    #[error("lost the leader Lease; exiting so that a fresh start can contend again")]
    LostLease,
}

pub async fn run(args: RunArgs) -> ExitCode {
    telemetry::init(args.log_format, &args.knobs.log_level);
    match serve(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "the operator stopped");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: RunArgs) -> Result<(), RunError> {
    // Checked before anything connects: a typo in a flag must not start a half-working operator.
    let scope = args.scope.scope()?;
    let lease = args.lease.settings()?;
    let client = Client::try_default().await.map_err(RunError::Client)?;
    let metrics = Arc::new(Metrics::default());
    let health = Arc::new(Health {
        metrics: Arc::clone(&metrics),
        ready: AtomicBool::new(false),
    });
    let (addr, server) = http::serve(args.metrics_bind, Arc::clone(&health)).await?;
    tokio::spawn(async move {
        if let Err(e) = server.await {
            tracing::error!(error = %e, "the metrics server stopped");
        }
    });
    tracing::info!(
        metrics = %addr,
        namespaces = %scope.describe_namespaces(),
        selector = scope.selector().unwrap_or(""),
        leader_elect = args.leader_elect,
        dry_run = args.knobs.dry_run,
        "starting"
    );

    let mut settings = Settings {
        scope,
        instance: args.instance.clone(),
        ..Settings::default()
    };
    args.knobs.apply(&mut settings);
    let ctx = Arc::new(Context::new(client.clone(), metrics, settings));
    let stop = shutdown_signal().shared();

    if !args.leader_elect {
        controller::run(ctx, health, stop).await;
        return Ok(());
    }

    let identity = args
        .instance
        .clone()
        .unwrap_or_else(|| format!("{CONTROLLER_NAME}-{}", uuid::Uuid::new_v4()));
    let lease_name = lease.name.clone();
    let manager = LeaseManagerBuilder::new(client, lease.name)
        .with_namespace(args.lease_namespace.clone())
        .with_identity(identity)
        .with_duration(lease.duration)
        .with_grace(lease.grace)
        .build()
        .await
        .map_err(RunError::Lease)?;
    let (mut leading, lease_task) = manager.watch().await;
    // A standby replica is healthy and ready: it serves its endpoints and waits.
    health.ready.store(true, Ordering::Relaxed);
    tracing::info!(lease = %lease_name, namespace = %args.lease_namespace, "waiting for the leader Lease");
    tokio::select! {
        () = stop.clone() => {
            drop(leading);
            let _ = lease_task.await;
            return Ok(());
        }
        became = wait_until(&mut leading, true) => {
            if !became {
                return Err(RunError::LostLease);
            }
        }
    }
    tracing::info!("leading");
    health.ready.store(false, Ordering::Relaxed);
    let mut watch_loss = leading.clone();
    let lost = async move {
        wait_until(&mut watch_loss, false).await;
    }
    .shared();
    let stop_or_lost = {
        let lost = lost.clone();
        let stop = stop.clone();
        async move {
            tokio::select! {
                () = stop => {}
                () = lost => {}
            }
        }
    };
    controller::run(ctx, health, stop_or_lost).await;
    let was_lost = lost.now_or_never().is_some() && stop.now_or_never().is_none();
    drop(leading);
    // Dropping the receiver makes the lease task release the Lease for the next replica.
    let _ = lease_task.await;
    if was_lost {
        return Err(RunError::LostLease);
    }
    Ok(())
}

/// Waits until the channel holds `want`; false if the sender is gone first.
async fn wait_until(rx: &mut watch::Receiver<bool>, want: bool) -> bool {
    loop {
        if *rx.borrow_and_update() == want {
            return true;
        }
        if rx.changed().await.is_err() {
            return false;
        }
    }
}

/// SIGTERM (the kubelet) or Ctrl-C.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutting down");
}
