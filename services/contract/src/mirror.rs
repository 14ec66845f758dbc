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
        // Each watch replays the bucket first: rebuild from that, swap it in
        // whole once the replay is over, then follow live changes.
        let mut initial: Option<HashMap<String, T>> = Some(HashMap::new());
        watch(&store, what, Start::Replay, &shutdown, |seen| match seen {
            Seen::Change { key, value, delta } => match initial.as_mut() {
                Some(map) => {
                    match value {
                        Some(v) => map.insert(key, v),
                        None => map.remove(&key),
                    };
                    if delta == 0
                        && let Some(map) = initial.take()
                    {
                        self.replace_all(map);
                    }
                }
                None => self.apply(&key, value),
            },
            Seen::Ended => {
                if let Some(map) = initial.replace(HashMap::new()) {
                    // History ended without a last entry (an empty bucket).
                    self.replace_all(map);
                }
            }
        })
        .await;
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
    watch(&store, what, Start::Now, &shutdown, |seen| {
        if let Seen::Change {
            key,
            value: Some(value),
            ..
        } = seen
        {
            on_put(key, value);
        }
    })
    .await;
}

/// Where a watch starts, which decides how it is kept alive.
#[derive(Debug, Clone, Copy)]
enum Start {
    /// At each key's latest value. Recreated every minute as well, since a
    /// watch can stall unnoticed; the replay makes that cost nothing.
    Replay,
    /// At what is written next. Recreated only when it fails or ends:
    /// changes in between are missed.
    Now,
}

impl Start {
    async fn open(self, store: &kv::Store) -> Result<kv::Watch, kv::WatchError> {
        match self {
            Start::Replay => store.watch_with_history(">").await,
            Start::Now => store.watch_all().await,
        }
    }

    fn resync(self) -> Option<Duration> {
        match self {
            Start::Replay => Some(Duration::from_secs(60)),
            Start::Now => None,
        }
    }

    fn retry(self) -> Duration {
        match self {
            Start::Replay => Duration::from_secs(1),
            Start::Now => Duration::from_millis(500),
        }
    }
}

/// What a watch hands on.
enum Seen<T> {
    /// A change: the decoded value, or `None` for a delete (or for a value
    /// that does not decode, which is logged).
    Change {
        key: String,
        value: Option<T>,
        /// Entries still to come in a replay (0: the replay is over).
        delta: u64,
    },
    /// This watch is over (failed, ended or due for a resync); the next one
    /// starts afresh.
    Ended,
}

/// Watch `store` from `start` until `shutdown`, recreating the watch
/// whenever it fails or ends, and hand on what it sees.
async fn watch<T: DeserializeOwned>(
    store: &kv::Store,
    what: &'static str,
    start: Start,
    shutdown: &CancellationToken,
    mut seen: impl FnMut(Seen<T>),
) {
    while !shutdown.is_cancelled() {
        let mut watch = match start.open(store).await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(what, error = %e, "cannot watch bucket; retrying");
                if crate::pause::pause(shutdown, start.retry()).await {
                    continue;
                }
                return;
            }
        };
        let resync = async {
            match start.resync() {
                Some(after) => tokio::time::sleep(after).await,
                None => std::future::pending().await,
            }
        };
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
            seen(Seen::Change {
                key: entry.key,
                value,
                delta: entry.delta,
            });
        }
        seen(Seen::Ended);
    }
}
