//! `wco-bench`: the benchmark behind `hack/bench.sh`. Against a running loopback cluster (the
//! `KUBECONFIG` it is given, with the CRD installed), it runs the operator's release binary
//! and, when given, stakater Reloader as host processes and prints one table: memory and CPU
//! to list and settle, Secret → upload → ReplicaSet latency, a burst, steady-state API calls,
//! and a fleet of resources each with its own simulated API. Figures only, no assertions: the
//! table says which floor a figure meets.

mod fleet;
mod kube_ops;
mod proc;
mod scenarios;

use std::path::PathBuf;
use std::time::Duration;

pub type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

pub fn err(msg: impl Into<String>) -> Box<dyn std::error::Error + Send + Sync> {
    msg.into().into()
}

/// How big each part of the run is.
#[derive(Debug, Clone)]
pub struct Scale {
    pub big_secrets: usize,
    pub big_configmaps: usize,
    pub small_secrets: usize,
    pub rotations: usize,
    pub steady: Duration,
    pub fleet: usize,
}

impl Scale {
    fn full() -> Self {
        Self {
            big_secrets: 10_000,
            big_configmaps: 1_000,
            small_secrets: 100_000,
            rotations: 30,
            steady: Duration::from_secs(300),
            fleet: 1_000,
        }
    }

    fn quick() -> Self {
        Self {
            big_secrets: 1_000,
            big_configmaps: 100,
            small_secrets: 5_000,
            rotations: 8,
            steady: Duration::from_secs(60),
            fleet: 100,
        }
    }
}

pub struct Bench {
    pub client: kube::Client,
    pub kubeconfig: PathBuf,
    pub operator: PathBuf,
    pub reloader: Option<PathBuf>,
    pub logdir: PathBuf,
    pub scale: Scale,
    pub http: reqwest::Client,
    pub table: Table,
    /// RSS of the operator with no resources, from the memory part, to tell what resources cost.
    pub baseline_rss_kib: Option<u64>,
}

/// The printed result: one row per figure.
#[derive(Default)]
pub struct Table {
    rows: Vec<[String; 5]>,
}

impl Table {
    /// A row: what, the operator's figure, Reloader's, the floor, and whether it is met.
    pub fn row(
        &mut self,
        what: &str,
        operator: String,
        reloader: String,
        floor: &str,
        ok: Option<bool>,
    ) {
        let verdict = match ok {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "",
        };
        let row = [
            what.to_owned(),
            operator,
            reloader,
            floor.to_owned(),
            verdict.to_owned(),
        ];
        // Printed as it comes too, so a long run shows progress and a failure keeps its rows.
        eprintln!("bench: | {} |", row.join(" | "));
        self.rows.push(row);
    }

    fn markdown(&self) -> String {
        let mut out =
            String::from("| figure | operator | Reloader | floor | |\n|---|---|---|---|---|\n");
        for r in &self.rows {
            out.push_str(&format!("| {} |\n", r.join(" | ")));
        }
        out
    }
}

struct Args {
    operator: PathBuf,
    reloader: Option<PathBuf>,
    logdir: PathBuf,
    quick: bool,
    only: Vec<String>,
    fleet: Option<usize>,
}

fn args() -> Res<Args> {
    let mut operator = None;
    let mut reloader = None;
    let mut logdir = PathBuf::from("target/bench");
    let mut quick = false;
    let mut only = Vec::new();
    let mut fleet = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--operator" => operator = it.next().map(PathBuf::from),
            "--reloader" => reloader = it.next().map(PathBuf::from),
            "--logdir" => logdir = it.next().map(PathBuf::from).unwrap_or(logdir),
            "--quick" => quick = true,
            "--only" => only.extend(it.next()),
            "--fleet" => fleet = it.next().and_then(|n| n.parse().ok()),
            other => return Err(err(format!("unknown argument {other}"))),
        }
    }
    Ok(Args {
        operator: operator.ok_or("--operator PATH is required")?,
        reloader,
        logdir,
        quick,
        only,
        fleet,
    })
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wco-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Res<()> {
    let args = args()?;
    let kubeconfig =
        PathBuf::from(std::env::var("KUBECONFIG").map_err(|_| "KUBECONFIG is not set")?);
    std::fs::create_dir_all(&args.logdir)?;
    let client = kube::Client::try_default().await?;
    let mut bench = Bench {
        client,
        kubeconfig,
        operator: args.operator,
        reloader: args.reloader,
        logdir: args.logdir,
        scale: if args.quick {
            Scale::quick()
        } else {
            Scale::full()
        },
        http: reqwest::Client::builder().no_proxy().build()?,
        table: Table::default(),
        baseline_rss_kib: None,
    };
    if let Some(n) = args.fleet {
        bench.scale.fleet = n;
    }
    let wanted = |name: &str| args.only.is_empty() || args.only.iter().any(|o| o == name);
    let result = async {
        if wanted("memory") {
            scenarios::memory(&mut bench).await?;
        }
        if wanted("latency") {
            scenarios::latency_burst_steady(&mut bench).await?;
        }
        if wanted("fleet") {
            fleet::fleet(&mut bench).await?;
        }
        Res::Ok(())
    }
    .await;
    println!("{}", bench.table.markdown());
    result
}
