//! Memory and CPU to list and settle; latency, burst and steady state of one installation.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use onprem_sim::{SimConfig, Simulator};
use serde_json::{Value, json};

use crate::kube_ops::{self, ReplicaSets, WriteCounter};
use crate::proc::{self, Proc, Settled};
use crate::{Bench, Res, err};

const DATA_NS: &str = "bench-data";
const SETTLE_LIMIT: Duration = Duration::from_secs(900);

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn settled_text(s: &Settled) -> String {
    format!(
        "RSS {:.1} MiB (peak {:.1}), CPU {:.2} s, settled after {:.1} s",
        mib(s.at.rss_kib),
        mib(s.at.hwm_kib),
        s.at.cpu_s,
        s.after.as_secs_f64()
    )
}

/// Starts the operator alone, lets it list and settle, stops it; then Reloader the same way.
async fn each_alone(b: &Bench, tag: &str) -> Res<(Settled, Option<Settled>)> {
    let operator = {
        let mut p = proc::spawn_operator(
            &b.operator,
            &b.kubeconfig,
            &b.logdir,
            &format!("operator-{tag}"),
            &[],
        )?;
        proc::settle(&mut p, &b.http, SETTLE_LIMIT).await?
    };
    let reloader = match &b.reloader {
        Some(bin) => {
            let mut p =
                proc::spawn_reloader(bin, &b.kubeconfig, &b.logdir, &format!("reloader-{tag}"))?;
            Some(proc::settle(&mut p, &b.http, SETTLE_LIMIT).await?)
        }
        None => None,
    };
    Ok((operator, reloader))
}

fn ratio(op: &Settled, rl: Option<&Settled>) -> String {
    rl.map_or_else(
        || "n/a".to_owned(),
        |r| format!("{:.2}", op.at.rss_kib as f64 / r.at.rss_kib.max(1) as f64),
    )
}

/// 10,000 Secrets and 1,000 ConfigMaps of 10 KB, then 100,000 Secrets of 1 KB.
pub async fn memory(b: &mut Bench) -> Res<()> {
    let client = b.client.clone();
    kube_ops::namespace(&client, DATA_NS, json!({})).await?;
    let s = b.scale.clone();
    let t1 = kube_ops::fill_secrets(&client, DATA_NS, "big", s.big_secrets, 10 * 1024).await?;
    let t2 =
        kube_ops::fill_configmaps(&client, DATA_NS, "big", s.big_configmaps, 10 * 1024).await?;
    b.table.row(
        &format!(
            "setup: create {} Secrets + {} ConfigMaps of 10 KB",
            s.big_secrets, s.big_configmaps
        ),
        format!("{:.0} s", (t1 + t2).as_secs_f64()),
        String::new(),
        "",
        None,
    );
    let (op, rl) = each_alone(b, "big").await?;
    let rss_ok = op.at.rss_kib <= 25 * 1024;
    b.table.row(
        &format!(
            "list+settle, {} Secrets + {} ConfigMaps of 10 KB",
            s.big_secrets, s.big_configmaps
        ),
        settled_text(&op),
        rl.as_ref().map_or_else(|| "n/a".to_owned(), settled_text),
        "RSS <= 25 MiB",
        Some(rss_ok),
    );
    b.table.row(
        "  RSS ratio operator / Reloader",
        ratio(&op, rl.as_ref()),
        String::new(),
        "",
        None,
    );
    let big_rss = op.at.rss_kib;

    let dropped = kube_ops::drop_data(&client, DATA_NS, "big").await?;
    let t3 = kube_ops::fill_secrets(&client, DATA_NS, "small", s.small_secrets, 1024).await?;
    b.table.row(
        &format!(
            "setup: delete the 10 KB data; create {} Secrets of 1 KB",
            s.small_secrets
        ),
        format!("{:.0} s + {:.0} s", dropped.as_secs_f64(), t3.as_secs_f64()),
        String::new(),
        "",
        None,
    );
    let (op, rl) = each_alone(b, "small").await?;
    b.table.row(
        &format!("list+settle, {} Secrets of 1 KB", s.small_secrets),
        settled_text(&op),
        rl.as_ref().map_or_else(|| "n/a".to_owned(), settled_text),
        "RSS <= 30 MiB",
        Some(op.at.rss_kib <= 30 * 1024),
    );
    b.table.row(
        "  RSS ratio operator / Reloader",
        ratio(&op, rl.as_ref()),
        String::new(),
        "",
        None,
    );
    b.table.row(
        "  operator RSS: 1 KB x count vs 10 KB x count/10",
        format!("{:+.1} MiB", mib(op.at.rss_kib) - mib(big_rss)),
        String::new(),
        "not with data size, barely with count",
        None,
    );
    b.baseline_rss_kib = Some(op.at.rss_kib);
    let dropped = kube_ops::drop_data(&client, DATA_NS, "small").await?;
    b.table.row(
        "setup: delete the 1 KB Secrets",
        format!("{:.0} s", dropped.as_secs_f64()),
        String::new(),
        "",
        None,
    );
    Ok(())
}

/// One installation: a namespace, a simulator, its credential and TLS Secrets, a source
/// Secret `internal-ca`, a Deployment `coreapp`, and (with Reloader) a Deployment `reloaded`
/// that Reloader restarts when the Secret `reloaded-ca` changes.
struct Installation {
    ns: String,
    sim: Simulator,
}

async fn install(b: &Bench, ns: &str, spec_extra: Value) -> Res<Installation> {
    let client = &b.client;
    kube_ops::namespace(client, ns, json!({})).await?;
    let sim = onprem_sim::start(SimConfig::default()).await?;
    let ca = sim
        .ca_pem()
        .ok_or("the simulator serves no TLS")?
        .to_owned();
    kube_ops::apply_secret(
        client,
        ns,
        "wa-admin",
        &[
            ("username", "admin"),
            ("password", onprem_sim::DEFAULT_ADMIN_PASSWORD),
        ],
    )
    .await?;
    kube_ops::apply_secret(client, ns, "webapp-tls", &[("ca.crt", &ca)]).await?;
    let first = test_support::certs::ca_pem(&format!("{ns}-0"));
    kube_ops::apply_secret(client, ns, "internal-ca", &[("ca.crt", &first)]).await?;
    kube_ops::apply_secret(client, ns, "reloaded-ca", &[("ca.crt", &first)]).await?;
    kube_ops::deployment(client, ns, "coreapp", json!({})).await?;
    if b.reloader.is_some() {
        kube_ops::deployment(
            client,
            ns,
            "reloaded",
            json!({"secret.reloader.stakater.com/reload": "reloaded-ca"}),
        )
        .await?;
    }
    let mut spec = json!({
        "sources": [{"secret": {"name": "internal-ca", "key": "ca.crt"}}],
        "api": {
            "url": sim.url(),
            "credentials": {"loginSecret": {"name": "wa-admin"}},
            "tls": {"caSecret": {"name": "webapp-tls"}}
        },
        "restart": {"targets": [{"kind": "Deployment", "name": "coreapp"}]}
    });
    if let (Some(base), Some(extra)) = (spec.as_object_mut(), spec_extra.as_object()) {
        for (k, v) in extra {
            base.insert(k.clone(), v.clone());
        }
    }
    kube_ops::apply_wcc(client, ns, "prod", json!({}), spec).await?;
    Ok(Installation {
        ns: ns.to_owned(),
        sim,
    })
}

fn percentiles(mut v: Vec<Duration>) -> String {
    if v.is_empty() {
        return "none".to_owned();
    }
    v.sort();
    let at = |p: usize| v[((v.len() - 1) * p + 50) / 100].as_secs_f64() * 1000.0;
    format!(
        "p50 {:.0} ms, p90 {:.0} ms, max {:.0} ms (n={})",
        at(50),
        at(90),
        v[v.len() - 1].as_secs_f64() * 1000.0,
        v.len()
    )
}

fn posts(sim: &Simulator) -> Vec<jiff::Timestamp> {
    sim.requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path == "/v1/certificates/webhooks/ca")
        .map(|r| r.at)
        .collect()
}

/// Rotates `secret` and times it to the first upload after (when `upload`) and to the first
/// new ReplicaSet of `app`; waits for the rollout to finish.
async fn rotate_once(
    b: &Bench,
    inst: &Installation,
    rs: &ReplicaSets,
    secret: &str,
    app: &str,
    upload: bool,
    i: usize,
) -> Res<(Option<Duration>, Duration)> {
    let before = rs.names(app);
    let pem = test_support::certs::ca_pem(&format!("{}-{secret}-{i}", inst.ns));
    inst.sim.clear_requests();
    let t0 = Instant::now();
    let ts0 = jiff::Timestamp::now();
    kube_ops::apply_secret(&b.client, &inst.ns, secret, &[("ca.crt", &pem)]).await?;
    let mut uploaded = None;
    let replica_set = loop {
        if upload && uploaded.is_none() {
            uploaded = posts(&inst.sim)
                .into_iter()
                .find(|at| *at >= ts0)
                .and_then(|at| Duration::try_from(at.duration_since(ts0)).ok());
        }
        if let Some(at) = rs.first_new(app, &before) {
            break at.duration_since(t0);
        }
        if t0.elapsed() > Duration::from_secs(120) {
            return Err(err(format!(
                "no new ReplicaSet of {app} 120 s after rotation {i}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    if upload && uploaded.is_none() {
        uploaded = posts(&inst.sim)
            .into_iter()
            .find(|at| *at >= ts0)
            .and_then(|at| Duration::try_from(at.duration_since(ts0)).ok());
    }
    kube_ops::wait_rolled_out(&b.client, &inst.ns, app, Duration::from_secs(120)).await?;
    if upload {
        kube_ops::wait_ready(&b.client, &inst.ns, "prod", Duration::from_secs(120)).await?;
    }
    Ok((uploaded, replica_set))
}

fn per_hour(count: usize, over: Duration) -> f64 {
    count as f64 * 3600.0 / over.as_secs_f64()
}

/// Latency over the rotations, a burst of 20 updates in one second, then steady state; the
/// operator and Reloader run side by side.
pub async fn latency_burst_steady(b: &mut Bench) -> Res<()> {
    let _operator: Proc = proc::spawn_operator(
        &b.operator,
        &b.kubeconfig,
        &b.logdir,
        "operator-latency",
        &[],
    )?;
    let _reloader = match &b.reloader {
        Some(bin) => Some(proc::spawn_reloader(
            bin,
            &b.kubeconfig,
            &b.logdir,
            "reloader-latency",
        )?),
        None => None,
    };
    // The latency resource checks drift every minute so that five minutes of steady state show
    // the drift reads; the burst resource keeps every default.
    let lat = install(
        b,
        "bench-latency",
        json!({"debounce": "0s", "driftCheckInterval": "1m",
        "restart": {"targets": [{"kind": "Deployment", "name": "coreapp"}], "minInterval": "0s"}}),
    )
    .await?;
    let burst = install(b, "bench-burst", json!({})).await?;
    for inst in [&lat, &burst] {
        kube_ops::wait_ready(&b.client, &inst.ns, "prod", Duration::from_secs(180)).await?;
        kube_ops::wait_rolled_out(&b.client, &inst.ns, "coreapp", Duration::from_secs(120)).await?;
    }
    let lat_rs = ReplicaSets::watch(&b.client, &lat.ns);
    let burst_rs = ReplicaSets::watch(&b.client, &burst.ns);
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Latency.
    let load_before = proc::loadavg();
    let (mut uploads, mut rollouts, mut reloads) = (Vec::new(), Vec::new(), Vec::new());
    for i in 1..=b.scale.rotations {
        let (up, rs) = rotate_once(b, &lat, &lat_rs, "internal-ca", "coreapp", true, i).await?;
        uploads.extend(up);
        rollouts.push(rs);
        if b.reloader.is_some() {
            let (_, rs) =
                rotate_once(b, &lat, &lat_rs, "reloaded-ca", "reloaded", false, i).await?;
            reloads.push(rs);
        }
    }
    let load = format!("load {load_before} -> {}", proc::loadavg());
    let reloader_text = if b.reloader.is_some() {
        percentiles(reloads)
    } else {
        "n/a".to_owned()
    };
    b.table.row(
        "Secret update -> upload (debounce 0)",
        format!("{} [{load}]", percentiles(uploads)),
        "(no upload)".to_owned(),
        "",
        None,
    );
    b.table.row(
        "Secret update -> new ReplicaSet (debounce 0)",
        format!("{} [{load}]", percentiles(rollouts)),
        reloader_text,
        "",
        None,
    );

    // Burst: 20 updates 50 ms apart on the default-settings resource (and Reloader's Secret).
    let before_op = burst_rs.names("coreapp");
    let before_rl = burst_rs.names("reloaded");
    burst.sim.clear_requests();
    let started = Instant::now();
    for i in 0..20 {
        let pem = test_support::certs::ca_pem(&format!("burst-{i}"));
        kube_ops::apply_secret(&b.client, &burst.ns, "internal-ca", &[("ca.crt", &pem)]).await?;
        if b.reloader.is_some() {
            kube_ops::apply_secret(&b.client, &burst.ns, "reloaded-ca", &[("ca.crt", &pem)])
                .await?;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let spread = started.elapsed();
    // Debounce 5 s, and the restart throttle (minInterval 1m) counted from the first rollout.
    tokio::time::sleep(Duration::from_secs(80)).await;
    let op_uploads = posts(&burst.sim).len();
    let op_rollouts = burst_rs.names("coreapp").difference(&before_op).count();
    let rl_rollouts = burst_rs.names("reloaded").difference(&before_rl).count();
    b.table.row(
        &format!(
            "burst: 20 updates in {:.2} s, default settings, 80 s later",
            spread.as_secs_f64()
        ),
        format!("{op_uploads} upload(s), {op_rollouts} rollout(s)"),
        if b.reloader.is_some() {
            format!("{rl_rollouts} rollout(s)")
        } else {
            "n/a".to_owned()
        },
        "",
        None,
    );

    // Steady state.
    let writes = WriteCounter::watch(&b.client, &[&lat.ns, &burst.ns]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    writes.reset();
    lat.sim.clear_requests();
    burst.sim.clear_requests();
    let over = b.scale.steady;
    tokio::time::sleep(over).await;
    for (inst, drift) in [
        (&lat, Duration::from_secs(60)),
        (&burst, Duration::from_secs(600)),
    ] {
        let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
        for r in inst.sim.requests() {
            *kinds.entry(format!("{} {}", r.method, r.path)).or_default() += 1;
        }
        let posts = kinds
            .get("POST /v1/certificates/webhooks/ca")
            .copied()
            .unwrap_or(0);
        let logins = kinds.get("POST /v1/users/login").copied().unwrap_or(0);
        let gets = kinds
            .get("GET /v1/certificates/webhooks/ca")
            .copied()
            .unwrap_or(0);
        let expected_gets = over.as_secs_f64() / drift.as_secs_f64();
        let calls = kinds
            .iter()
            .map(|(k, n)| format!("{k}: {:.0}/h", per_hour(*n, over)))
            .collect::<Vec<_>>()
            .join(", ");
        let status = writes.get(&format!("{}/prod", inst.ns));
        b.table.row(
            &format!(
                "steady {:.0} s, drift check {:.0} s: API calls per resource",
                over.as_secs_f64(),
                drift.as_secs_f64()
            ),
            if calls.is_empty() {
                "none".to_owned()
            } else {
                calls
            },
            "(no API)".to_owned(),
            "no POST, no login, 1 GET per drift interval",
            Some(posts == 0 && logins == 0 && (gets as f64) <= expected_gets.ceil() + 1.0),
        );
        b.table.row(
            "  status/metadata writes per resource",
            format!("{:.0}/h", per_hour(status as usize, over)),
            String::new(),
            "",
            None,
        );
    }
    // The simulators stop with this function and their ports go back to the pool: resources
    // left naming them would conflict with a later simulator on the same port.
    for inst in [&lat, &burst] {
        kube_ops::wccs(&b.client, Some(&inst.ns))
            .delete("prod", &kube::api::DeleteParams::default())
            .await?;
    }
    Ok(())
}
