//! Polling for conditions the cluster reaches eventually (rollouts, controllers, kwok stages).

use std::future::Future;
use std::time::Duration;

/// How long a test waits for the cluster to converge before it fails: generous, because two
/// cores may be busy compiling while the tests run. A failure still says what was awaited.
const CONVERGE: Duration = Duration::from_secs(90);

/// Polls `check` every 250 ms until it returns `Ok`, and returns that value; panics with
/// `what` and the last observation (`Err`) after `CONVERGE` (90 s).
pub async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + CONVERGE;
    loop {
        let last = match check().await {
            Ok(v) => return v,
            Err(observed) => observed,
        };
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {CONVERGE:?} waiting for {what}; last seen: {last}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
