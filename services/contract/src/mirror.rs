//! A live in-memory copy of a KV bucket, for planning and estimates.
//!
//! A mirror is a hint, never the truth: every decision that matters re-reads
//! the key and writes by compare-and-set. The watch is recreated on error
//! and every minute, since a KV watch can silently stall across a server
//! restart (async-nats pitfall).

use crate::decode;
use async_nats::jetstream::kv::{self, Operation};
use futures::StreamExt;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Keys and decoded values of a bucket, and a wake-up on change.
pub struct Mirror<T> {
    items: Mutex<HashMap<String, T>>,
    changed: Notify,
}

impl<T> Default for Mirror<T> {
    fn default() -> Self {
        Self {
            items: Mutex::new(HashMap::new()),
            changed: Notify::new(),
        }
    }
}

impl<T: DeserializeOwned> Mirror<T> {
    /// The current copy (hold the guard briefly).
    pub fn items(&self) -> MutexGuard<'_, HashMap<String, T>> {
        self.items.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Record a change seen first-hand, and wake the waiter.
    pub fn apply(&self, key: &str, value: Option<T>) {
        {
            let mut items = self.items();
            match value {
                Some(v) => items.insert(key.to_owned(), v),
                None => items.remove(key),
            };
        }
        self.changed.notify_one();
    }

    /// Wake the waiter without a change.
    pub fn poke(&self) {
        self.changed.notify_one();
    }

    /// Resolves at the next change (or one since the last wait). One waiter.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    fn replace_all(&self, all: HashMap<String, T>) {
        *self.items() = all;
        self.changed.notify_one();
    }

    /// Keep this mirror in step with `store` until `shutdown`; `what` names
    /// the values in logs.
    pub async fn follow(&self, store: kv::Store, what: &'static str, shutdown: CancellationToken) {
        const RESYNC: Duration = Duration::from_secs(60);
        while !shutdown.is_cancelled() {
            let mut watch = match store.watch_with_history(">").await {
                Ok(w) => w,
                Err(e) => {
                    tracing::warn!(what, error = %e, "cannot watch bucket; retrying");
                    if crate::pause::pause(&shutdown, Duration::from_secs(1)).await {
                        continue;
                    }
                    return;
                }
            };
            // Rebuild from the replayed history, then follow live changes.
            let mut initial: Option<HashMap<String, T>> = Some(HashMap::new());
            let resync = tokio::time::sleep(RESYNC);
            tokio::pin!(resync);
            loop {
                let entry = tokio::select! {
                    e = watch.next() => e,
                    _ = &mut resync => break,
                    _ = shutdown.cancelled() => return,
                };
                let entry = match entry {
                    Some(Ok(e)) => e,
                    Some(Err(e)) => {
                        tracing::warn!(what, error = %e, "bucket watch failed; recreating");
                        break;
                    }
                    None => break,
                };
                let value = match entry.operation {
                    Operation::Put => match decode::<T>(what, &entry.value) {
                        Ok(v) => Some(v),
                        Err(e) => {
                            tracing::error!(key = %entry.key, error = %e, "undecodable value ignored");
                            None
                        }
                    },
                    Operation::Delete | Operation::Purge => None,
                };
                match initial.as_mut() {
                    Some(map) => {
                        match value {
                            Some(v) => map.insert(entry.key.clone(), v),
                            None => map.remove(&entry.key),
                        };
                        if entry.delta == 0
                            && let Some(map) = initial.take()
                        {
                            self.replace_all(map);
                        }
                    }
                    None => self.apply(&entry.key, value),
                }
            }
            if let Some(map) = initial.take() {
                // History ended without a last entry (an empty bucket).
                self.replace_all(map);
            }
        }
    }
}

/// Call `on_put(key, value)` for every value written to `store` from now on,
/// until `shutdown`; the watch is recreated when it fails or ends. For
/// feeds that only need what happens next (no replay of history).
pub async fn follow_puts<T: DeserializeOwned>(
    store: kv::Store,
    what: &'static str,
    shutdown: CancellationToken,
    mut on_put: impl FnMut(String, T),
) {
    while !shutdown.is_cancelled() {
        let mut watch = match store.watch_all().await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(what, error = %e, "cannot watch bucket; retrying");
                if crate::pause::pause(&shutdown, Duration::from_millis(500)).await {
                    continue;
                }
                return;
            }
        };
        loop {
            let next = tokio::select! {
                n = watch.next() => n,
                _ = shutdown.cancelled() => return,
            };
            match next {
                Some(Ok(entry)) if entry.operation == Operation::Put => {
                    match decode::<T>(what, &entry.value) {
                        Ok(value) => on_put(entry.key, value),
                        Err(e) => {
                            tracing::error!(key = %entry.key, error = %e, "undecodable value ignored")
                        }
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::warn!(what, error = %e, "bucket watch failed; recreating");
                    break;
                }
                None => break,
            }
        }
    }
}
