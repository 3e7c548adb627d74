//! What every reconcile shares: the Kubernetes client, the Event reporter, metrics, settings,
//! and the state that must outlive one reconcile (API clients with their token caches, pending
//! debounces).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};

use super::scope::Scope;
use crate::crd::{WebhookCaCertificate, WebhookCaCertificateStatus};
use crate::metrics::{Metrics, ResourceLabels};
use crate::onprem::{OnPremClient, RequestLimiter, RetryPolicy, Transports};

/// The controller's name in Events, field managers and the leader Lease.
pub const CONTROLLER_NAME: &str = crate::NAME;

/// Knobs of the controller itself (the resource's own knobs are in its spec).
#[derive(Debug, Clone)]
pub struct Settings {
    /// The namespaces and the label selector of the resources served.
    pub scope: Scope,
    /// How soon to look again while a rollout or an eviction is under way.
    pub progress_interval: Duration,
    /// How soon to retry after a transient failure (API unavailable, source unreadable).
    pub retry_interval: Duration,
    /// Retries of the On-Premises API client within one reconcile.
    pub api_retry: RetryPolicy,
    /// Identifies this replica in Events (the pod name in a cluster).
    pub instance: Option<String>,
    /// Change nothing but the resources' status and Events: no upload, delete, restart,
    /// eviction or finalizer; status and Events say what would happen (see `effects`).
    pub dry_run: bool,
    /// On-Premises API requests in flight at once, across every resource.
    pub api_concurrency: usize,
    /// On-Premises API requests in flight at once to one API host.
    pub api_concurrency_per_host: usize,
    /// Passes running at once, over all resources (one resource never has two). Bounds what
    /// the first list of a large fleet costs: each pass in flight holds its sources, and its
    /// requests to the kube-apiserver need their own HTTP/1.1 connections.
    pub max_concurrent_reconciles: u16,
}

impl Settings {
    pub const DEFAULT_API_CONCURRENCY: usize = 16;
    pub const DEFAULT_API_CONCURRENCY_PER_HOST: usize = 2;
    pub const DEFAULT_MAX_CONCURRENT_RECONCILES: u16 = 32;
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            scope: Scope::all(),
            progress_interval: Duration::from_secs(3),
            retry_interval: Duration::from_secs(30),
            api_retry: RetryPolicy::default(),
            instance: None,
            dry_run: false,
            api_concurrency: Self::DEFAULT_API_CONCURRENCY,
            api_concurrency_per_host: Self::DEFAULT_API_CONCURRENCY_PER_HOST,
            max_concurrent_reconciles: Self::DEFAULT_MAX_CONCURRENT_RECONCILES,
        }
    }
}

/// A source change seen but not acted upon yet (debounce).
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub sha256: String,
    /// When this bundle was first seen: the debounce runs from here.
    pub since: Instant,
    /// When the first bundle of this burst was seen: `maxDelay` runs from here.
    pub first: Instant,
}

pub struct Context {
    pub client: Client,
    /// Who writes the Events (controller name and replica).
    pub reporter: Reporter,
    pub metrics: Arc<Metrics>,
    pub settings: Settings,
    /// Bounds the On-Premises API requests of every resource's client.
    pub(crate) limiter: Arc<RequestLimiter>,
    /// The HTTP clients and TLS configurations every resource's API client is built on.
    pub(crate) transports: Arc<Transports>,
    /// One API client per resource, rebuilt when its connection settings change; keeping it
    /// keeps its login token.
    api_clients: Mutex<HashMap<String, (String, OnPremClient)>>,
    pending: Mutex<HashMap<String, Pending>>,
    /// Every resource, as the controller's watch sees it; set once the controller runs.
    store: OnceLock<Store<WebhookCaCertificate>>,
    tracked: Mutex<HashSet<ResourceLabels>>,
    /// Resources whose deletion cleanup has begun (see `deletion`).
    cleanups: Mutex<HashSet<String>>,
    /// The last status written per resource, with the resourceVersion it was computed from.
    written: Mutex<HashMap<String, (String, WebhookCaCertificateStatus)>>,
}

impl Context {
    pub fn new(client: Client, metrics: Arc<Metrics>, settings: Settings) -> Self {
        let reporter = Reporter {
            controller: CONTROLLER_NAME.to_owned(),
            instance: settings.instance.clone(),
        };
        metrics.set_dry_run(settings.dry_run);
        let limiter = Arc::new(RequestLimiter::new(
            settings.api_concurrency,
            settings.api_concurrency_per_host,
        ));
        Self {
            reporter,
            client,
            metrics,
            settings,
            limiter,
            transports: Arc::default(),
            api_clients: Mutex::default(),
            pending: Mutex::default(),
            store: OnceLock::new(),
            tracked: Mutex::default(),
            cleanups: Mutex::default(),
            written: Mutex::default(),
        }
    }

    pub(crate) fn set_store(&self, store: Store<WebhookCaCertificate>) {
        // Set by the one controller that runs on this context; a second would see the same.
        let _ = self.store.set(store);
    }

    /// Every resource the controller's cache holds (none before it runs).
    pub fn resources(&self) -> Vec<Arc<WebhookCaCertificate>> {
        self.store.get().map(Store::state).unwrap_or_default()
    }

    /// A recorder for one Event. kube's Recorder folds an Event with the same reason into the
    /// first one's series for minutes and keeps the first note, so a second upload would show the
    /// first upload's hash. Events here are written only on changes and actions, never per pass,
    /// so each gets its own object instead.
    pub fn recorder(&self) -> Recorder {
        Recorder::new(self.client.clone(), self.reporter.clone())
    }

    /// The cached client for `key` if it was built with the same `settings_key`, else `build()`'s.
    pub(crate) fn api_client<E>(
        &self,
        key: &str,
        settings_key: &str,
        build: impl FnOnce() -> Result<OnPremClient, E>,
    ) -> Result<OnPremClient, E> {
        // A poisoned lock only means another reconcile panicked mid-insert; the map is still usable.
        let mut clients = self
            .api_clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((existing, client)) = clients.get(key)
            && existing == settings_key
        {
            return Ok(client.clone());
        }
        let client = build()?;
        clients.insert(key.to_owned(), (settings_key.to_owned(), client.clone()));
        Ok(client)
    }

    /// How long to wait before acting on `sha256` for `key`: zero once it has been pending for
    /// `debounce`, or once the burst it ends has been pending for `max_delay`.
    pub(crate) fn debounce(
        &self,
        key: &str,
        sha256: &str,
        debounce: Duration,
        max_delay: Duration,
    ) -> Duration {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let entry = pending.entry(key.to_owned()).or_insert_with(|| Pending {
            sha256: sha256.to_owned(),
            since: now,
            first: now,
        });
        if entry.sha256 != sha256 {
            // Another change within the window starts it again (one action for the burst),
            // but not the burst's deadline: a source that never rests still gets uploaded.
            entry.sha256 = sha256.to_owned();
            entry.since = now;
        }
        let quiet = debounce.saturating_sub(now.duration_since(entry.since));
        let deadline = max_delay.saturating_sub(now.duration_since(entry.first));
        quiet.min(deadline)
    }

    /// Forgets what is kept for a resource that reached its goal or was deleted.
    pub(crate) fn settle(&self, key: &str) {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }

    /// `wcc` with the status this operator last wrote for it when the cache still holds the
    /// object that status was computed from: the watch may not have delivered the write yet,
    /// and a pass that read the older status would repeat its Events and restart decisions.
    pub(crate) fn with_written_status(
        &self,
        key: &str,
        wcc: &WebhookCaCertificate,
    ) -> WebhookCaCertificate {
        let mut wcc = wcc.clone();
        let mut written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        match written.get(key) {
            Some((read_version, status))
                if wcc.metadata.resource_version.as_ref() == Some(read_version) =>
            {
                wcc.status = Some(status.clone());
            }
            // The cache holds a later object (the write itself, or something newer): what was
            // kept for it is not needed any more, and a thousand resources would each keep one.
            Some(_) => {
                written.remove(key);
            }
            None => {}
        }
        wcc
    }

    /// Remembers the status written for `key`, computed from `from`.
    pub(crate) fn wrote_status(
        &self,
        key: &str,
        from: &WebhookCaCertificate,
        status: WebhookCaCertificateStatus,
    ) {
        if let Some(version) = from.metadata.resource_version.clone() {
            self.written
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(key.to_owned(), (version, status));
        }
    }

    /// Whether the controller's cache still holds `resource` (true before the controller runs).
    pub(crate) fn holds(&self, resource: &ResourceLabels) -> bool {
        self.store.get().is_none_or(|store| {
            store
                .get(&ObjectRef::new(&resource.name).within(&resource.namespace))
                .is_some()
        })
    }

    /// Whether this is the first cleanup pass for `key` in this process (later passes only
    /// follow the restart; the mark goes with [`Self::forget`]).
    pub(crate) fn begin_cleanup(&self, key: &str) -> bool {
        self.cleanups
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.to_owned())
    }

    /// Notes that a pass ran for `resource`, so that [`Self::sweep`] can forget it later.
    pub(crate) fn track(&self, resource: &ResourceLabels) {
        self.tracked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(resource.clone());
    }

    /// Forgets everything kept for a resource that is gone: its API client and token, its
    /// debounce, and its metric series (an expiry alert must not fire for it forever).
    pub(crate) fn forget(&self, resource: &ResourceLabels) {
        let key = resource.key();
        self.settle(&key);
        self.api_clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key);
        self.metrics.forget(resource);
        self.cleanups
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key);
        self.written
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key);
        self.tracked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(resource);
    }

    /// Forgets every tracked resource the cache no longer holds: a deletion that happened while
    /// the watch was down comes with no Delete event, only with the next full list.
    pub(crate) fn sweep(&self) {
        let live: HashSet<ResourceLabels> = self
            .resources()
            .iter()
            .map(|w| ResourceLabels::of(w))
            .collect();
        let gone: Vec<ResourceLabels> = self
            .tracked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|r| !live.contains(r))
            .cloned()
            .collect();
        for resource in &gone {
            self.forget(resource);
        }
    }
}
