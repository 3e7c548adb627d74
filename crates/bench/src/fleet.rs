//! Fleet scale: many `WebhookCaCertificate`s, each in its own namespace with its own API (a
//! simulator on its own port with its own admin credential), plus one whose API accepts
//! connections and never answers.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt, stream};
use kube::ResourceExt;
use kube::api::ListParams;
use onprem_sim::{SimConfig, SimUser, Simulator, TlsIdentity};
use serde_json::{Value, json};
use test_support::certs::CertSpec;

use crate::kube_ops;
use crate::proc;
use crate::{Bench, Res, err};

const HANG_NS: &str = "fleet-hang";

/// A TCP listener that accepts every connection and never answers: an API whose host is up
/// and whose webapp hangs. Counts the connections.
async fn hanging_listener() -> Res<(String, Arc<AtomicUsize>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("https://{}", listener.local_addr()?);
    let count = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&count);
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::Relaxed);
            held.push(socket);
        }
    });
    Ok((url, count))
}

fn spec(url: &str, extra: Value) -> Value {
    let mut spec = json!({
        "sources": [{"secret": {"name": "internal-ca", "key": "ca.crt"}}],
        "api": {
            "url": url,
            "credentials": {"loginSecret": {"name": "wa-admin"}},
            "tls": {"caSecret": {"name": "webapp-tls"}}
        },
        "debounce": "0s",
        // A provider's coreapps are not the subject here: the API side is. 1,000 Deployments
        // with kwok's pods would measure the 2-core control plane instead.
        "restart": {"method": "None"}
    });
    if let (Some(base), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            base.insert(k.clone(), v.clone());
        }
    }
    spec
}

async fn install(
    b: &Bench,
    ns: &str,
    user: &str,
    password: &str,
    ca: &str,
    url: &str,
    label: &str,
) -> Res<()> {
    let client = &b.client;
    kube_ops::namespace(client, ns, json!({"bench": "fleet"})).await?;
    kube_ops::apply_secret(
        client,
        ns,
        "wa-admin",
        &[("username", user), ("password", password)],
    )
    .await?;
    kube_ops::apply_secret(client, ns, "webapp-tls", &[("ca.crt", ca)]).await?;
    let source = test_support::certs::ca_pem(&format!("{ns}-source"));
    kube_ops::apply_secret(client, ns, "internal-ca", &[("ca.crt", &source)]).await?;
    kube_ops::apply_wcc(
        client,
        ns,
        "prod",
        json!({"bench": label}),
        spec(url, json!({})),
    )
    .await
}

fn logins(sim: &Simulator) -> usize {
    sim.requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/v1/users/login")
        .count()
}

pub async fn fleet(b: &mut Bench) -> Res<()> {
    let n = b.scale.fleet;
    if b.baseline_rss_kib.is_none() {
        // What an operator with nothing to do holds, to tell what the resources cost.
        let mut idle =
            proc::spawn_operator(&b.operator, &b.kubeconfig, &b.logdir, "operator-idle", &[])?;
        b.baseline_rss_kib = Some(
            proc::settle(&mut idle, &b.http, Duration::from_secs(120))
                .await?
                .at
                .rss_kib,
        );
    }
    let ca = CertSpec::ca("wco-bench fleet CA").self_signed();
    let leaf = CertSpec::leaf("localhost")
        .dns("localhost")
        .ip(IpAddr::from([127, 0, 0, 1]))
        .signed_by(&ca);
    let identity = TlsIdentity {
        cert_pem: leaf.pem.clone(),
        key_pem: leaf.key_pem.clone(),
    };
    let mut sims = Vec::with_capacity(n);
    for i in 0..n {
        let cfg = SimConfig {
            tls_identity: Some(identity.clone()),
            users: vec![SimUser::admin(
                format!("admin{i}"),
                format!("Fleet-Passw0rd-{i}!"),
            )],
            ..SimConfig::default()
        };
        sims.push(onprem_sim::start(cfg).await?);
    }
    let (hang_url, hang_conns) = hanging_listener().await?;

    // The unreachable one first, so that it is first in the queue too.
    let started = Instant::now();
    install(
        b,
        HANG_NS,
        "admin",
        "Hang-Passw0rd-1!",
        &ca.pem,
        &hang_url,
        "fleet-hang",
    )
    .await?;
    let bench: &Bench = b;
    let ca_pem: &str = &ca.pem;
    stream::iter(sims.iter().enumerate())
        .map(|(i, sim)| async move {
            install(
                bench,
                &format!("fleet-{i:04}"),
                &format!("admin{i}"),
                &format!("Fleet-Passw0rd-{i}!"),
                ca_pem,
                &sim.url(),
                "fleet",
            )
            .await
        })
        .buffer_unordered(32)
        .try_collect::<Vec<()>>()
        .await?;
    b.table.row(
        &format!("setup: {n} namespaces x (3 Secrets + 1 resource) + 1 hanging"),
        format!("{:.0} s", started.elapsed().as_secs_f64()),
        String::new(),
        "",
        None,
    );

    let load_before = proc::loadavg();
    let mut operator =
        proc::spawn_operator(&b.operator, &b.kubeconfig, &b.logdir, "operator-fleet", &[])?;
    let t0 = operator.started;
    let wccs = kube_ops::wccs(&b.client, None);
    let mut ready_at: HashMap<String, Duration> = HashMap::new();
    let limit = Duration::from_secs(600);
    while ready_at.len() < n {
        if !operator.alive() {
            return Err(err("the operator exited during the fleet run"));
        }
        if t0.elapsed() > limit {
            break;
        }
        let list = wccs
            .list(&ListParams::default().labels("bench=fleet"))
            .await?;
        let now = t0.elapsed();
        for o in list.items.iter().filter(|o| kube_ops::is_ready(o)) {
            ready_at
                .entry(o.namespace().unwrap_or_default())
                .or_insert(now);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut times: Vec<Duration> = ready_at.values().copied().collect();
    times.sort();
    let all = (times.len() == n).then(|| times[n - 1]);
    let load = format!("load {load_before} -> {}", proc::loadavg());
    b.table.row(
        &format!("fleet: {n} resources, time until all Ready (1 API hanging)"),
        match all {
            Some(t) => format!(
                "{:.1} s (half by {:.1} s) [{load}]",
                t.as_secs_f64(),
                times[n / 2].as_secs_f64()
            ),
            None => format!(
                "{} of {n} Ready after {:.0} s [{load}]",
                times.len(),
                limit.as_secs_f64()
            ),
        },
        "n/a (no API)".to_owned(),
        "<= 60 s",
        Some(all.is_some_and(|t| t <= Duration::from_secs(60))),
    );

    let ready_rss = operator.sample()?;
    let total_logins: usize = sims.iter().map(logins).sum();
    let max_one = sims.iter().map(logins).max().unwrap_or(0);

    // With the hanging API still retried: 20 rotations at once, update -> upload.
    let picks: Vec<usize> = (0..20.min(n)).map(|k| k * n / 20.min(n)).collect();
    for &i in &picks {
        sims[i].clear_requests();
    }
    let ts0 = jiff::Timestamp::now();
    for &i in &picks {
        let pem = test_support::certs::ca_pem(&format!("fleet-rotate-{i}"));
        kube_ops::apply_secret(
            &b.client,
            &format!("fleet-{i:04}"),
            "internal-ca",
            &[("ca.crt", &pem)],
        )
        .await?;
    }
    let rotate_limit = Instant::now() + Duration::from_secs(120);
    let mut lat: HashMap<usize, Duration> = HashMap::new();
    while lat.len() < picks.len() && Instant::now() < rotate_limit {
        for &i in &picks {
            if lat.contains_key(&i) {
                continue;
            }
            if let Some(at) = sims[i].requests().iter().find(|r| {
                r.method == "POST" && r.path == "/v1/certificates/webhooks/ca" && r.at >= ts0
            }) {
                lat.insert(
                    i,
                    Duration::try_from(at.at.duration_since(ts0)).unwrap_or_default(),
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut l: Vec<Duration> = lat.values().copied().collect();
    l.sort();
    b.table.row(
        "fleet: 20 Secrets updated at once -> uploads, beside the hanging API",
        if l.is_empty() {
            "no upload".to_owned()
        } else {
            format!(
                "{} of 20 uploaded, p50 {:.0} ms, max {:.0} ms",
                l.len(),
                l[l.len() / 2].as_secs_f64() * 1000.0,
                l[l.len() - 1].as_secs_f64() * 1000.0
            )
        },
        String::new(),
        "no head-of-line blocking",
        Some(l.len() == picks.len() && l.last().is_some_and(|m| *m < Duration::from_secs(10))),
    );
    b.table.row(
        "fleet: logins until all Ready",
        format!("{total_logins} for {n} URL+credential pairs (most on one: {max_one})"),
        String::new(),
        "one per URL and credential",
        Some(total_logins == n && max_one == 1),
    );
    let per_resource = |rss_kib: u64| {
        b.baseline_rss_kib
            .map(|base| {
                format!(
                    ", {:.0} KiB per resource over an idle operator",
                    rss_kib.saturating_sub(base) as f64 / n as f64
                )
            })
            .unwrap_or_default()
    };
    let text = |s: proc::Sample| {
        format!(
            "{:.1} MiB (peak {:.1}), CPU {:.1} s{}",
            s.rss_kib as f64 / 1024.0,
            s.hwm_kib as f64 / 1024.0,
            s.cpu_s,
            per_resource(s.rss_kib)
        )
    };
    let rows = vec![(
        format!("fleet: operator RSS when all {n} were Ready"),
        text(ready_rss),
        ready_rss,
    )];
    // The hanging API: how long until its resource says so, with the request timeout (30 s)
    // and the client's retries; the others are served meanwhile (above).
    let hang_api = kube_ops::wccs(&b.client, Some(HANG_NS));
    let mut hang_text = None;
    while t0.elapsed() < Duration::from_secs(300) {
        let hang = hang_api.get("prod").await?;
        if let Some(c) = hang.data["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "Ready" && c["status"] == "False")
        {
            hang_text = Some(format!(
                "Ready=False {} after {:.0} s",
                c["reason"].as_str().unwrap_or("?"),
                t0.elapsed().as_secs_f64()
            ));
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    b.table.row(
        "  the hanging API's own resource",
        format!(
            "{}; {} connection(s) accepted",
            hang_text.unwrap_or_else(|| "no Ready=False within 300 s".to_owned()),
            hang_conns.load(Ordering::Relaxed)
        ),
        String::new(),
        "bounded timeouts",
        None,
    );
    let end = operator.sample()?;
    let mut rows = rows;
    rows.push((
        format!(
            "fleet: operator RSS at the end, {:.0} s after start",
            t0.elapsed().as_secs_f64()
        ),
        text(end),
        end,
    ));
    for (what, text, s) in rows {
        b.table.row(
            &what,
            text,
            String::new(),
            "<= 60 MiB",
            Some(s.rss_kib <= 60 * 1024),
        );
    }
    drop(operator);
    for sim in sims {
        sim.shutdown().await;
    }
    Ok(())
}
