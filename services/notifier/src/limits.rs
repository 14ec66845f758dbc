//! A bound on concurrent requests per destination host.
//!
//! The global bound (`WEBHOOK_CONCURRENCY`) keeps the notifier's own load in
//! check; this one keeps one slow or dead receiver from taking all of it. A
//! task waits for its host's permit *before* it takes a global one, so
//! deliveries to other hosts never queue behind a slow receiver.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Drop idle hosts from the map once it grows past this many entries.
const PRUNE_ABOVE: usize = 1024;

/// One semaphore per host, created on demand.
#[derive(Debug)]
pub struct HostLimits {
    per_host: usize,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl HostLimits {
    /// At most `per_host` permits out at once for any one host.
    pub fn new(per_host: usize) -> Self {
        Self {
            per_host: per_host.max(1),
            hosts: Mutex::new(HashMap::new()),
        }
    }

    /// Wait for a permit for `host` (held until dropped).
    pub async fn acquire(&self, host: &str) -> OwnedSemaphorePermit {
        let semaphore = self.semaphore(host);
        loop {
            // Our semaphores are never closed, so this only loops in theory.
            if let Ok(permit) = Arc::clone(&semaphore).acquire_owned().await {
                return permit;
            }
        }
    }

    fn semaphore(&self, host: &str) -> Arc<Semaphore> {
        let mut hosts = match self.hosts.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if hosts.len() > PRUNE_ABOVE {
            // Idle: nobody but the map holds it (no permit, no waiter).
            hosts.retain(|_, s| Arc::strong_count(s) > 1);
        }
        Arc::clone(
            hosts
                .entry(host.to_owned())
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_host))),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_busy_host_does_not_block_another() {
        let limits = HostLimits::new(2);
        let _a1 = limits.acquire("slow.example").await;
        let _a2 = limits.acquire("slow.example").await;
        let third =
            tokio::time::timeout(Duration::from_millis(50), limits.acquire("slow.example")).await;
        assert!(third.is_err(), "a third permit for the same host must wait");
        let other =
            tokio::time::timeout(Duration::from_millis(50), limits.acquire("fast.example")).await;
        assert!(other.is_ok(), "another host is not held up");
    }

    #[tokio::test]
    async fn a_released_permit_lets_the_next_one_in() {
        let limits = HostLimits::new(1);
        let first = limits.acquire("h").await;
        drop(first);
        let again = tokio::time::timeout(Duration::from_millis(50), limits.acquire("h")).await;
        assert!(again.is_ok());
    }
}
