//! Hooks a long-running caller (the operator) gives the client: a [`RequestObserver`] that
//! hears of every HTTP exchange (for metrics), and a [`RequestLimiter`] that bounds how many
//! requests are in flight, in all and per API host.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use reqwest::Method;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How one HTTP exchange ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestOutcome {
    /// The server answered with this status code.
    Status(u16),
    /// No answer: the transport failure's reason (`Connect`, `Timeout`, `Tls`, ...).
    Failed(&'static str),
}

/// Hears of every HTTP exchange the client makes, retries and logins included. `endpoint` is
/// the request's fixed path (never a URL with a host or query), so that labels stay bounded.
pub trait RequestObserver: Send + Sync + fmt::Debug {
    fn observe(
        &self,
        endpoint: &'static str,
        method: &Method,
        outcome: RequestOutcome,
        took: Duration,
    );
}

/// Bounds the requests in flight: at most `global` across every client that shares this
/// limiter, and at most `per_host` to any one API host (`host:port`), so that one slow webapp
/// cannot take every slot from the others.
pub struct RequestLimiter {
    global: Arc<Semaphore>,
    per_host: usize,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl fmt::Debug for RequestLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestLimiter")
            .field("available", &self.global.available_permits())
            .field("per_host", &self.per_host)
            .finish_non_exhaustive()
    }
}

/// Slots held for one request; released on drop.
#[derive(Debug)]
pub struct Slot {
    _host: OwnedSemaphorePermit,
    _global: OwnedSemaphorePermit,
}

impl RequestLimiter {
    /// Zero is read as one: a limit of none would block every request forever.
    pub fn new(global: usize, per_host: usize) -> Self {
        Self {
            global: Arc::new(Semaphore::new(global.max(1))),
            per_host: per_host.max(1),
            hosts: Mutex::default(),
        }
    }

    /// Waits for a slot for `host`: the host's own first, then a global one, so that requests
    /// queued behind a busy host hold no global slot while they wait. `None` only if a
    /// semaphore were closed, which this type never does; the request then goes unlimited.
    pub async fn acquire(&self, host: &str) -> Option<Slot> {
        let host_semaphore = {
            // A poisoned lock only means a panic elsewhere mid-insert; the map is still usable.
            let mut hosts = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(
                hosts
                    .entry(host.to_owned())
                    .or_insert_with(|| Arc::new(Semaphore::new(self.per_host))),
            )
        };
        let host = host_semaphore.acquire_owned().await.ok()?;
        let global = Arc::clone(&self.global).acquire_owned().await.ok()?;
        Some(Slot {
            _host: host,
            _global: global,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[tokio::test]
    async fn one_host_is_held_to_its_share_and_all_hosts_to_the_global_limit() {
        let limiter = RequestLimiter::new(2, 1);
        let a = limiter.acquire("a:443").await.expect("open");
        assert!(
            limiter.acquire("a:443").now_or_never().is_none(),
            "a second request to the same host waits"
        );
        let b = limiter.acquire("b:443").await.expect("open");
        assert!(
            limiter.acquire("c:443").now_or_never().is_none(),
            "a third host waits for a global slot"
        );
        drop(a);
        let a_again = limiter.acquire("a:443").now_or_never();
        assert!(a_again.is_some(), "a freed slot is taken at once");
        drop(b);
        assert!(limiter.acquire("c:443").now_or_never().is_some());
    }

    #[tokio::test]
    async fn zero_limits_mean_one() {
        let limiter = RequestLimiter::new(0, 0);
        let held = limiter.acquire("a:443").await.expect("open");
        assert!(limiter.acquire("b:443").now_or_never().is_none());
        drop(held);
        assert!(limiter.acquire("b:443").now_or_never().is_some());
    }
}
