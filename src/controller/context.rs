//! What every reconcile shares: the Kubernetes client, the Event reporter, metrics, settings,
//! and the state that must outlive one reconcile (API clients with their token caches, pending
//! debounces).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};

use crate::metrics::Metrics;
use crate::onprem::{OnPremClient, RetryPolicy};

/// The controller's name in Events, field managers and the leader Lease.
pub const CONTROLLER_NAME: &str = crate::NAME;

/// Knobs of the controller itself (the resource's own knobs are in its spec).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Watch only this namespace; `None` watches all.
    pub namespace: Option<String>,
    /// How soon to look again while a rollout or an eviction is under way.
    pub progress_interval: Duration,
    /// How soon to retry after a transient failure (API unavailable, source unreadable).
    pub retry_interval: Duration,
    /// Retries of the On-Premises API client within one reconcile.
    pub api_retry: RetryPolicy,
    /// Identifies this replica in Events (the pod name in a cluster).
    pub instance: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            namespace: None,
            progress_interval: Duration::from_secs(3),
            retry_interval: Duration::from_secs(30),
            api_retry: RetryPolicy::default(),
            instance: None,
        }
    }
}

/// A source change seen but not acted upon yet (debounce).
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub sha256: String,
    pub since: Instant,
}

pub struct Context {
    pub client: Client,
    /// Who writes the Events (controller name and replica).
    pub reporter: Reporter,
    pub metrics: Arc<Metrics>,
    pub settings: Settings,
    /// One API client per resource, rebuilt when its connection settings change; keeping it
    /// keeps its login token.
    api_clients: Mutex<HashMap<String, (String, OnPremClient)>>,
    pending: Mutex<HashMap<String, Pending>>,
}

impl Context {
    pub fn new(client: Client, metrics: Arc<Metrics>, settings: Settings) -> Self {
        let reporter = Reporter {
            controller: CONTROLLER_NAME.to_owned(),
            instance: settings.instance.clone(),
        };
        Self {
            reporter,
            client,
            metrics,
            settings,
            api_clients: Mutex::default(),
            pending: Mutex::default(),
        }
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
    /// `debounce`, or when it replaces nothing.
    pub(crate) fn debounce(&self, key: &str, sha256: &str, debounce: Duration) -> Duration {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let entry = pending.entry(key.to_owned()).or_insert_with(|| Pending {
            sha256: sha256.to_owned(),
            since: now,
        });
        if entry.sha256 != sha256 {
            // Another change within the window starts it again: one action for the burst.
            *entry = Pending {
                sha256: sha256.to_owned(),
                since: now,
            };
        }
        debounce.saturating_sub(now.duration_since(entry.since))
    }

    /// Forgets what is kept for a resource that reached its goal or was deleted.
    pub(crate) fn settle(&self, key: &str) {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }

    pub(crate) fn forget(&self, key: &str) {
        self.settle(key);
        self.api_clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }
}
