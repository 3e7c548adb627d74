//! What the bench does to the cluster: bulk Secrets and ConfigMaps, installations (namespace,
//! credential Secrets, a coreapp Deployment, a `WebhookCaCertificate`), and the watches it
//! times rollouts and status writes with.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
    PostParams,
};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

use crate::{Res, err};

/// Parallel writes to the apiserver when filling it.
const WRITERS: usize = 48;

pub fn wcc_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "webhookca.io",
        "v1alpha1",
        "WebhookCaCertificate",
    ))
}

pub fn wccs(client: &Client, ns: Option<&str>) -> Api<DynamicObject> {
    match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &wcc_resource()),
        None => Api::all_with(client.clone(), &wcc_resource()),
    }
}

/// Creates the namespace unless it exists.
pub async fn namespace(client: &Client, name: &str, labels: Value) -> Res<()> {
    let ns: Namespace = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "labels": labels}
    }))?;
    ignore_exists(
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .map(|_| ()),
    )
}

fn ignore_exists(r: Result<(), kube::Error>) -> Res<()> {
    match r {
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        other => Ok(other?),
    }
}

/// Tries a write a few times: a loopback apiserver under a bulk load answers the odd 429 or
/// times out.
async fn retrying<F, Fut>(mut write: F) -> Res<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), kube::Error>>,
{
    let mut last = None;
    for attempt in 0..6u32 {
        match ignore_exists(write().await) {
            Ok(()) => return Ok(()),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt + 1))).await;
    }
    Err(last.unwrap_or_else(|| err("write failed")))
}

/// Runs `create(i)` for `0..count`, [`WRITERS`] at a time, each retried; how long it took.
async fn fill<F, Fut>(count: usize, create: F) -> Res<Duration>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<(), kube::Error>>,
{
    let started = Instant::now();
    let create = &create;
    stream::iter(0..count)
        .map(|i| retrying(move || create(i)))
        .buffer_unordered(WRITERS)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(started.elapsed())
}

fn data_meta(prefix: &str, i: usize) -> kube::api::ObjectMeta {
    kube::api::ObjectMeta {
        name: Some(format!("{prefix}-{i}")),
        labels: Some([("bench-data".to_owned(), prefix.to_owned())].into()),
        ..Default::default()
    }
}

/// `count` Secrets `<prefix>-<i>` of `size` bytes each (one data key), labelled
/// `bench-data=<prefix>`.
pub async fn fill_secrets(
    client: &Client,
    ns: &str,
    prefix: &str,
    count: usize,
    size: usize,
) -> Res<Duration> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let blob = ByteString(vec![b'x'; size]);
    fill(count, |i| {
        let secret = Secret {
            metadata: data_meta(prefix, i),
            data: Some([("blob".to_owned(), blob.clone())].into()),
            ..Default::default()
        };
        let api = api.clone();
        async move {
            api.create(&PostParams::default(), &secret)
                .await
                .map(|_| ())
        }
    })
    .await
}

/// `count` ConfigMaps of `size` bytes, like [`fill_secrets`].
pub async fn fill_configmaps(
    client: &Client,
    ns: &str,
    prefix: &str,
    count: usize,
    size: usize,
) -> Res<Duration> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let blob = "x".repeat(size);
    fill(count, |i| {
        let cm = ConfigMap {
            metadata: data_meta(prefix, i),
            data: Some([("blob".to_owned(), blob.clone())].into()),
            ..Default::default()
        };
        let api = api.clone();
        async move { api.create(&PostParams::default(), &cm).await.map(|_| ()) }
    })
    .await
}

/// Deletes every Secret and ConfigMap labelled `bench-data=<prefix>` in `ns` and waits until
/// they are gone.
pub async fn drop_data(client: &Client, ns: &str, prefix: &str) -> Res<Duration> {
    let started = Instant::now();
    let lp = ListParams::default().labels(&format!("bench-data={prefix}"));
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    loop {
        // A deletecollection of many objects may time out half-way; it is simply sent again.
        let _ = secrets
            .delete_collection(&DeleteParams::default(), &lp)
            .await;
        let _ = configmaps
            .delete_collection(&DeleteParams::default(), &lp)
            .await;
        let left = secrets
            .list_metadata(&lp.clone().limit(1))
            .await?
            .items
            .len()
            + configmaps
                .list_metadata(&lp.clone().limit(1))
                .await?
                .items
                .len();
        if left == 0 {
            return Ok(started.elapsed());
        }
        if started.elapsed() > Duration::from_secs(900) {
            return Err(err(format!("{prefix} data still in {ns} after 15 min")));
        }
    }
}

/// Creates (server-side apply) a Secret with string data.
pub async fn apply_secret(client: &Client, ns: &str, name: &str, data: &[(&str, &str)]) -> Res<()> {
    let data: serde_json::Map<String, Value> = data
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned())))
        .collect();
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
        "stringData": data
    });
    Api::<Secret>::namespaced(client.clone(), ns)
        .patch(
            name,
            &PatchParams::apply("wco-bench").force(),
            &Patch::Apply(&secret),
        )
        .await?;
    Ok(())
}

/// A one-replica Deployment `name` (label `app=<name>`), with extra metadata annotations
/// (Reloader's are on the Deployment itself).
pub async fn deployment(client: &Client, ns: &str, name: &str, annotations: Value) -> Res<()> {
    let d: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}, "annotations": annotations},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "coreapp", "image": "registry.invalid/coreapp:1"}]}
            }
        }
    }))?;
    ignore_exists(
        Api::<Deployment>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &d)
            .await
            .map(|_| ()),
    )
}

/// Whether the Deployment has rolled out, as `kubectl rollout status` decides.
pub async fn rolled_out(client: &Client, ns: &str, name: &str) -> Res<bool> {
    let d = Api::<Deployment>::namespaced(client.clone(), ns)
        .get(name)
        .await?;
    let generation = d.metadata.generation.unwrap_or(0);
    let want = d.spec.replicas.unwrap_or(1);
    let Some(s) = d.status else { return Ok(false) };
    Ok(s.observed_generation.unwrap_or(0) >= generation
        && s.updated_replicas.unwrap_or(0) == want
        && s.replicas.unwrap_or(0) == want
        && s.available_replicas.unwrap_or(0) >= want)
}

pub async fn wait_rolled_out(client: &Client, ns: &str, name: &str, limit: Duration) -> Res<()> {
    let started = Instant::now();
    while !rolled_out(client, ns, name).await? {
        if started.elapsed() > limit {
            return Err(err(format!(
                "{ns}/{name} did not roll out within {limit:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Server-side applies a `WebhookCaCertificate` `name` with `spec` and `labels`.
pub async fn apply_wcc(
    client: &Client,
    ns: &str,
    name: &str,
    labels: Value,
    spec: Value,
) -> Res<()> {
    let object = json!({
        "apiVersion": "webhookca.io/v1alpha1", "kind": "WebhookCaCertificate",
        "metadata": {"name": name, "labels": labels}, "spec": spec
    });
    wccs(client, Some(ns))
        .patch(
            name,
            &PatchParams::apply("wco-bench").force(),
            &Patch::Apply(&object),
        )
        .await?;
    Ok(())
}

/// Whether the resource's `Ready` condition is True for its current generation.
pub fn is_ready(o: &DynamicObject) -> bool {
    let generation = o.metadata.generation.unwrap_or(0);
    o.data["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| {
            c["type"] == "Ready"
                && c["status"] == "True"
                && c["observedGeneration"].as_i64().unwrap_or(generation) >= generation
        })
}

pub async fn wait_ready(client: &Client, ns: &str, name: &str, limit: Duration) -> Res<()> {
    let started = Instant::now();
    loop {
        let o = wccs(client, Some(ns)).get(name).await?;
        if is_ready(&o) {
            return Ok(());
        }
        if started.elapsed() > limit {
            return Err(err(format!(
                "{ns}/{name} not Ready within {limit:?}: {}",
                o.data["status"]["conditions"]
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// When each ReplicaSet of a namespace was first seen, by a watch started now; `app` label
/// alongside.
#[derive(Clone, Default)]
pub struct ReplicaSets {
    seen: Arc<Mutex<HashMap<String, (String, Instant)>>>,
}

impl ReplicaSets {
    pub fn watch(client: &Client, ns: &str) -> Self {
        let this = Self::default();
        let seen = Arc::clone(&this.seen);
        let api: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
        tokio::spawn(async move {
            let mut events = watcher(api, watcher::Config::default())
                .applied_objects()
                .boxed();
            while let Some(event) = events.next().await {
                // Errors: the watcher re-lists by itself; a bench run just goes on.
                if let Ok(rs) = event {
                    let app = rs.labels().get("app").cloned().unwrap_or_default();
                    seen.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .entry(rs.name_any())
                        .or_insert((app, Instant::now()));
                }
            }
        });
        this
    }

    /// Names of the ReplicaSets of `app` seen so far.
    pub fn names(&self, app: &str) -> HashSet<String> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(_, (a, _))| a == app)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// When the first ReplicaSet of `app` not in `before` was seen, if one was.
    pub fn first_new(&self, app: &str, before: &HashSet<String>) -> Option<Instant> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(n, (a, _))| a == app && !before.contains(*n))
            .map(|(_, (_, at))| *at)
            .min()
    }
}

/// Counts the writes to `WebhookCaCertificate`s of the namespaces (each watch event after the
/// initial list is one write: status, metadata or spec).
#[derive(Clone, Default)]
pub struct WriteCounter {
    count: Arc<Mutex<HashMap<String, u64>>>,
}

impl WriteCounter {
    pub fn watch(client: &Client, namespaces: &[&str]) -> Self {
        let this = Self::default();
        for ns in namespaces {
            let count = Arc::clone(&this.count);
            let api = wccs(client, Some(ns));
            let ns = (*ns).to_owned();
            tokio::spawn(async move {
                let mut listed = false;
                let mut events = watcher(api, watcher::Config::default()).boxed();
                while let Some(event) = events.next().await {
                    match event {
                        Ok(watcher::Event::InitDone) => listed = true,
                        Ok(watcher::Event::Apply(o)) if listed => {
                            *count
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .entry(format!("{ns}/{}", o.name_any()))
                                .or_default() += 1;
                        }
                        _ => {}
                    }
                }
            });
        }
        this
    }

    pub fn reset(&self) {
        self.count
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    pub fn get(&self, key: &str) -> u64 {
        self.count
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .copied()
            .unwrap_or(0)
    }
}
