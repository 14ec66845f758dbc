//! Waiting that gives way to shutdown: every retry loop and idle wait in the
//! services pauses through here, so a SIGTERM never waits out a backoff.

use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Sleep for `d` unless `shutdown` comes first; `true` if the whole pause
/// passed, `false` if shutting down.
pub async fn pause(shutdown: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

/// A pause that doubles after each use, up to a ceiling: for reopening
/// what failed (a consumer, a watch) without hammering the server.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    first: Duration,
    max: Duration,
}

impl Backoff {
    /// Start at `first`, double up to `max`.
    pub fn new(first: Duration, max: Duration) -> Self {
        Self {
            next: first,
            first,
            max,
        }
    }

    /// Pause for the current step and double it for next time; `false` if
    /// shutting down.
    pub async fn pause(&mut self, shutdown: &CancellationToken) -> bool {
        let wait = self.next;
        self.next = (self.next * 2).min(self.max);
        pause(shutdown, wait).await
    }

    /// Back to the first step, after a success.
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_backoff_doubles_to_its_ceiling_and_resets() {
        let shutdown = CancellationToken::new();
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let started = tokio::time::Instant::now();
        for _ in 0..4 {
            assert!(b.pause(&shutdown).await);
        }
        // 100 + 200 + 350 + 350
        assert_eq!(started.elapsed(), Duration::from_millis(1_000));
        b.reset();
        let again = tokio::time::Instant::now();
        assert!(b.pause(&shutdown).await);
        assert_eq!(again.elapsed(), Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_cuts_a_pause_short() {
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        let started = tokio::time::Instant::now();
        assert!(!pause(&shutdown, Duration::from_secs(3_600)).await);
        assert_eq!(started.elapsed(), Duration::ZERO);
    }
}
