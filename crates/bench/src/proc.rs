//! The processes under measurement (the operator's release binary, Reloader): spawning them on
//! the host against the loopback apiserver, and reading their memory and CPU from /proc.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Res, err};

/// Clock ticks per second of utime/stime in `/proc/<pid>/stat`. 100 on every Linux this runs on
/// (USER_HZ); reading it would take a libc dependency for one constant.
const CLOCK_TICKS: f64 = 100.0;

/// Memory and CPU of one process at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    pub rss_kib: u64,
    pub hwm_kib: u64,
    pub cpu_s: f64,
}

pub fn sample(pid: u32) -> Res<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces; the fields after its closing parenthesis start at
    // field 3 (state), so utime (field 14) and stime (15) are the 12th and 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| -> u64 { fields.get(i).and_then(|v| v.parse().ok()).unwrap_or(0) };
    Ok(Sample {
        rss_kib: kib("VmRSS:"),
        hwm_kib: kib("VmHWM:"),
        cpu_s: (ticks(11) + ticks(12)) as f64 / CLOCK_TICKS,
    })
}

/// A free loopback port for a process's metrics server (a short race with other binds,
/// acceptable for a bench).
pub fn free_port() -> Res<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A child process, killed when dropped.
pub struct Proc {
    pub name: String,
    child: Child,
    pub metrics: Option<SocketAddr>,
    pub started: Instant,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn sample(&self) -> Res<Sample> {
        sample(self.pid())
    }

    /// Whether it is ready: the operator's /readyz answers 200; a process without a readiness
    /// endpoint (Reloader here) counts as ready once it has run for five seconds.
    pub async fn ready(&self, http: &reqwest::Client) -> bool {
        match self.metrics {
            Some(addr) => http
                .get(format!("http://{addr}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success()),
            None => self.started.elapsed() >= Duration::from_secs(5),
        }
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Err: it has exited already.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `webhook-ca-operator run` with loopback metrics, JSON logs at info (its default) to
/// `<logdir>/<tag>.log`, no leader election.
pub fn spawn_operator(
    binary: &Path,
    kubeconfig: &Path,
    logdir: &Path,
    tag: &str,
    extra: &[&str],
) -> Res<Proc> {
    let port = free_port()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let log = File::create(logdir.join(format!("{tag}.log")))?;
    let child = Command::new(binary)
        .args(["run", "--instance", tag, "--log-format", "json"])
        .arg("--metrics-bind")
        .arg(addr.to_string())
        .args(extra)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("POD_NAMESPACE")
        .env_remove("WATCH_NAMESPACE")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| err(format!("starting {}: {e}", binary.display())))?;
    Ok(Proc {
        name: "operator".to_owned(),
        child,
        metrics: Some(addr),
        started: Instant::now(),
    })
}

/// Reloader as its users run it: every namespace but the system ones, the default reload
/// strategy (env-vars), reaching the cluster through `KUBECONFIG`.
pub fn spawn_reloader(binary: &Path, kubeconfig: &Path, logdir: &Path, tag: &str) -> Res<Proc> {
    let log = File::create(logdir.join(format!("{tag}.log")))?;
    let child = Command::new(binary)
        .arg("--namespaces-to-ignore=kube-system,kube-public,kube-node-lease")
        .env("KUBECONFIG", kubeconfig)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .map_err(|e| err(format!("starting {}: {e}", binary.display())))?;
    Ok(Proc {
        name: "reloader".to_owned(),
        child,
        metrics: None,
        started: Instant::now(),
    })
}

/// What "list and settle" cost: the time until the process was ready and quiet, and its
/// memory and CPU then.
#[derive(Debug, Clone, Copy)]
pub struct Settled {
    pub after: Duration,
    pub at: Sample,
}

/// Waits until `p` is ready and has used under 30 ms of CPU in the last 3 s (quiet after its
/// initial lists), then samples it.
pub async fn settle(p: &mut Proc, http: &reqwest::Client, limit: Duration) -> Res<Settled> {
    const WINDOW: usize = 6; // samples 500 ms apart: 3 s
    let mut history: Vec<(Instant, f64)> = Vec::new();
    loop {
        if !p.alive() {
            return Err(err(format!("{} exited while settling", p.name)));
        }
        let s = p.sample()?;
        history.push((Instant::now(), s.cpu_s));
        let ready = p.ready(http).await;
        if ready && history.len() > WINDOW {
            let (since, cpu_then) = history[history.len() - 1 - WINDOW];
            if s.cpu_s - cpu_then < 0.03 {
                return Ok(Settled {
                    after: since.duration_since(p.started),
                    at: s,
                });
            }
        }
        if p.started.elapsed() > limit {
            return Err(err(format!("{} did not settle within {limit:?}", p.name)));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The 1-minute load average, to print next to latency figures.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}
