//! This replica's view of the pending messages, followed from the work bucket.
//!
//! The scheduler plans from this view; every claim re-reads the item and
//! writes it by compare-and-set, so a stale view can cost a wasted decision
//! but never a duplicate call. The watch is recreated on error and every
//! minute, since a KV watch can silently stall across a server restart.

use crate::scheduler::Candidate;
use async_nats::jetstream::kv::{self, Operation};
use futures::StreamExt;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use wire_contract::decode;
use wire_contract::records::WorkItem;

/// Pending messages by key, and a wake-up for the worker.
#[derive(Default)]
pub struct WorkView {
    items: Mutex<HashMap<String, WorkItem>>,
    changed: Notify,
}

impl WorkView {
    /// Candidates for the scheduler, leaving out `skip` (calls in flight here).
    pub fn candidates(&self, skip: &HashSet<String>) -> Vec<Candidate<String>> {
        let items = self.items.lock().unwrap_or_else(|p| p.into_inner());
        items
            .iter()
            .filter(|(k, _)| !skip.contains(*k))
            .map(|(k, w)| Candidate {
                key: k.clone(),
                attempts: w.attempts,
                first_seen: w.first_seen,
                first_attempt: w.first_attempt,
                last_attempt: w.last_attempt,
                leased_until: w.lease.as_ref().map(|l| l.until),
            })
            .collect()
    }

    /// Number of pending messages.
    pub fn len(&self) -> usize {
        self.items.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Record a change and wake the worker.
    pub fn apply(&self, key: &str, item: Option<WorkItem>) {
        {
            let mut items = self.items.lock().unwrap_or_else(|p| p.into_inner());
            match item {
                Some(item) => items.insert(key.to_owned(), item),
                None => items.remove(key),
            };
        }
        self.changed.notify_one();
    }

    /// Wake the worker without a change (e.g. a call finished).
    pub fn poke(&self) {
        self.changed.notify_one();
    }

    /// Resolves at the next change (or a change since the last wait).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    fn replace_all(&self, all: HashMap<String, WorkItem>) {
        *self.items.lock().unwrap_or_else(|p| p.into_inner()) = all;
        self.changed.notify_one();
    }
}

/// Keep `view` in step with the work bucket until `shutdown`.
pub async fn follow(store: kv::Store, view: std::sync::Arc<WorkView>, shutdown: CancellationToken) {
    const RESYNC: Duration = Duration::from_secs(60);
    while !shutdown.is_cancelled() {
        let mut watch = match store.watch_with_history(">").await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the work bucket; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = shutdown.cancelled() => return,
                }
            }
        };
        // Rebuild from the replayed history, then follow live changes.
        let mut initial: Option<HashMap<String, WorkItem>> = Some(HashMap::new());
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
                    tracing::warn!(error = %e, "work bucket watch failed; recreating");
                    break;
                }
                None => break,
            };
            let item = match entry.operation {
                Operation::Put => match decode::<WorkItem>("work item", &entry.value) {
                    Ok(item) => Some(item),
                    Err(e) => {
                        tracing::error!(key = %entry.key, error = %e, "undecodable work item ignored");
                        None
                    }
                },
                Operation::Delete | Operation::Purge => None,
            };
            match initial.as_mut() {
                Some(map) => {
                    match item {
                        Some(item) => map.insert(entry.key.clone(), item),
                        None => map.remove(&entry.key),
                    };
                    if entry.delta == 0 {
                        if let Some(map) = initial.take() {
                            view.replace_all(map);
                        }
                    }
                }
                None => view.apply(&entry.key, item),
            }
        }
        if let Some(map) = initial.take() {
            // The history ended without a last entry (empty bucket).
            view.replace_all(map);
        }
    }
}
