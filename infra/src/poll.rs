//! Waiting for what the SDK has no waiter for (a queue to appear or go, a mapping to settle, a
//! function or role to go): one backoff schedule, from the `backon` crate, for every such loop.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use anyhow::{Result, bail};
use backon::{BackoffBuilder, ExponentialBuilder};

/// How long creating or removing one resource may take before we give up on it.
pub(crate) const LIMIT: Duration = Duration::from_secs(300);

/// Delays that start short (emulators answer at once) and grow to a few seconds (AWS may take
/// minutes), adding up to at most `limit`.
pub(crate) fn schedule(limit: Duration) -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .with_total_delay(Some(limit))
        .without_max_times()
}

/// Asks `done` until it answers true, pausing between asks by [`schedule`]; an error from `done`
/// ends the wait at once.
pub(crate) async fn until<F, Fut>(what: impl Display, limit: Duration, mut done: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    let mut delays = schedule(limit).build();
    loop {
        if done().await? {
            return Ok(());
        }
        match delays.next() {
            Some(delay) => tokio::time::sleep(delay).await,
            None => bail!("{what}: still not done after {} s", limit.as_secs()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn waits_until_done_and_gives_up_at_the_limit() {
        let mut asked = 0;
        until("counting", Duration::from_secs(60), || {
            asked += 1;
            std::future::ready(Ok(asked == 4))
        })
        .await
        .unwrap();
        assert_eq!(asked, 4);

        let started = tokio::time::Instant::now();
        let err =
            until("waiting for q to go", Duration::from_secs(30), || std::future::ready(Ok(false))).await.unwrap_err();
        assert_eq!(err.to_string(), "waiting for q to go: still not done after 30 s");
        let waited = started.elapsed();
        assert!(waited <= Duration::from_secs(30) && waited >= Duration::from_secs(20), "{waited:?}");
    }
}
