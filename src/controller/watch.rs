//! The controller's watches through a kube-apiserver restart.
//!
//! kube-runtime's watcher treats every failure alike: it yields an error, and the stream's
//! backoff sleeps before the watcher is polled again. With `default_backoff()` (client-go's
//! numbers: 800 ms doubling to 30 s, reset only by a successful event or after 120 s without
//! errors) an apiserver that is away for a few seconds leaves the watches sleeping up to 30 s
//! after it is back; then each resumed watch is answered `410 Gone` (its resource version is
//! older than the new apiserver's watch cache), which counts as one more error and one more long
//! sleep before the re-list; and the `Controller` backs off the merged trigger streams once
//! more with the same default (its `trigger_backoff`), so one error costs two sleeps. Source
//! changes went unseen for 90-130 s.
//!
//! Here a `410 Gone` is not an error: the watcher has already gone back to its empty state and
//! re-lists on the next poll, so the item is dropped and that re-list happens at once. Other
//! failures back off from 250 ms to at most 5 s: short enough that a change made after the
//! apiserver is back is seen within seconds, long enough that a few watches of one operator
//! cost an absent apiserver nothing.

use std::future;
use std::time::Duration;

use futures::{Stream, StreamExt};
use kube::runtime::WatchStreamExt;
use kube::runtime::utils::{Backoff, StreamBackoff};
use kube::runtime::watcher;

/// The first wait after a watch failure.
pub const MIN_DELAY: Duration = Duration::from_millis(250);
/// The longest wait between two attempts.
pub const MAX_DELAY: Duration = Duration::from_secs(5);

/// Doubles from [`MIN_DELAY`] to [`MAX_DELAY`]; back to the start after any successful event.
/// No jitter: only the leader's watches run, so there is no herd to spread.
#[derive(Debug, Clone)]
pub struct WatchBackoff {
    next: Duration,
}

impl Default for WatchBackoff {
    fn default() -> Self {
        Self { next: MIN_DELAY }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let current = self.next;
        self.next = current.saturating_mul(2).min(MAX_DELAY);
        Some(current)
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = MIN_DELAY;
    }
}

/// Whether `error` says the watcher's resource version or list continuation is too old (HTTP
/// 410). The watcher has then reset itself to re-list. A 410 that fails the start of a watch is
/// not included: there the watcher keeps its resource version, so it needs the backoff.
pub fn is_gone(error: &watcher::Error) -> bool {
    match error {
        watcher::Error::WatchError(status) => status.code == 410,
        watcher::Error::InitialListFailed(kube::Error::Api(status)) => status.code == 410,
        _ => false,
    }
}

/// `stream` (a watcher, or a reflector around one) with 410s re-listed at once and other
/// failures retried after a [`WatchBackoff`].
pub fn resilient<S, T>(
    stream: S,
) -> StreamBackoff<impl Stream<Item = Result<T, watcher::Error>>, WatchBackoff>
where
    S: Stream<Item = Result<T, watcher::Error>>,
{
    stream
        .filter(|item| {
            let gone = item.as_ref().err().is_some_and(is_gone);
            if gone {
                tracing::info!("watch resource version too old (410 Gone): listing again now");
            }
            future::ready(!gone)
        })
        .backoff(WatchBackoff::default())
}

#[cfg(test)]
mod tests {
    use kube::core::Status;

    use super::*;

    #[test]
    fn the_backoff_doubles_to_five_seconds_and_resets() {
        let mut backoff = WatchBackoff::default();
        let millis: Vec<u128> = backoff.by_ref().take(7).map(|d| d.as_millis()).collect();
        assert_eq!(millis, [250, 500, 1000, 2000, 4000, 5000, 5000]);
        backoff.reset();
        assert_eq!(backoff.next(), Some(MIN_DELAY));
    }

    fn status(code: u16) -> Box<Status> {
        Box::new(Status {
            code,
            ..Status::default()
        })
    }

    #[test]
    fn only_a_reset_watcher_410_is_gone() {
        assert!(is_gone(&watcher::Error::WatchError(status(410))));
        assert!(!is_gone(&watcher::Error::WatchError(status(500))));
        assert!(is_gone(&watcher::Error::InitialListFailed(
            kube::Error::Api(status(410))
        )));
        assert!(!is_gone(&watcher::Error::WatchStartFailed(
            kube::Error::Api(status(410))
        )));
        assert!(!is_gone(&watcher::Error::NoResourceVersion));
    }

    #[tokio::test]
    async fn a_410_never_reaches_the_backoff_and_other_errors_do() {
        let items: Vec<Result<u8, watcher::Error>> = vec![
            Err(watcher::Error::WatchError(status(410))),
            Ok(1),
            Err(watcher::Error::WatchError(status(500))),
            Ok(2),
        ];
        // StreamBackoff sleeps only after an error it yields: the 410 is not among them.
        let seen: Vec<Result<u8, u16>> = resilient(futures::stream::iter(items))
            .map(|item| {
                item.map_err(|e| match e {
                    watcher::Error::WatchError(s) => s.code,
                    _ => 0,
                })
            })
            .collect()
            .await;
        assert_eq!(seen, [Ok(1), Err(500), Ok(2)]);
    }
}
