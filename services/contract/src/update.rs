//! The one compare-and-set loop: read a record, ask a pure function for its
//! next value, write it only if nobody wrote in between, and ask again on a
//! conflict. Every state change of a shared record goes through here, so the
//! retry policy and the conflict metric are written once.

use crate::store::{RecordError, Versioned, load, remove, save};
use async_nats::jetstream::kv;
use serde::{Serialize, de::DeserializeOwned};

/// Conflicts in a row an update tolerates before giving up with
/// [`RecordError::Conflict`]. Each round re-reads, so this many means the
/// record is being rewritten faster than we can read it: the caller's own
/// retry (a NAK, a later tick) is the better place to wait.
pub const MAX_ROUNDS: usize = 32;

/// What a change function wants done with the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change<T> {
    /// Leave it as it is.
    Keep,
    /// Write this value.
    Put(T),
    /// Delete the key.
    Delete,
}

impl<T> From<Option<T>> for Change<T> {
    /// `Some(next)` writes `next`; `None` leaves the record alone.
    fn from(next: Option<T>) -> Self {
        next.map_or(Change::Keep, Change::Put)
    }
}

/// What [`update`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Updated<T> {
    /// This value was written.
    Written(T),
    /// The key was deleted.
    Deleted,
    /// No change was wanted; the record as it stands (if any).
    Unchanged(Option<T>),
}

impl<T> Updated<T> {
    /// The record after the update, if it exists.
    pub fn value(&self) -> Option<&T> {
        match self {
            Updated::Written(v) => Some(v),
            Updated::Unchanged(v) => v.as_ref(),
            Updated::Deleted => None,
        }
    }
}

/// Apply `change` to the record at `key` by compare-and-set, re-reading and
/// asking again on every conflict.
///
/// # Errors
/// [`RecordError`] if NATS fails, the stored record is malformed, or it
/// kept changing under us for [`MAX_ROUNDS`] rounds.
pub async fn update<T, C>(
    store: &kv::Store,
    what: &'static str,
    key: &str,
    change: impl FnMut(Option<&T>) -> C,
) -> Result<Updated<T>, RecordError>
where
    T: Serialize + DeserializeOwned,
    C: Into<Change<T>>,
{
    let current = load(store, what, key).await?;
    update_from(store, what, key, current, change).await
}

/// As [`update`], starting from `current` as already read.
///
/// # Errors
/// As [`update`].
pub async fn update_from<T, C>(
    store: &kv::Store,
    what: &'static str,
    key: &str,
    current: Versioned<T>,
    mut change: impl FnMut(Option<&T>) -> C,
) -> Result<Updated<T>, RecordError>
where
    T: Serialize + DeserializeOwned,
    C: Into<Change<T>>,
{
    update_versioned(store, what, key, current, |v| change(v.value.as_ref())).await
}

/// As [`update_from`], for changes that need the revision or the server's
/// time of the version they change (e.g. the limiter's stamps).
///
/// # Errors
/// As [`update`].
pub async fn update_versioned<T, C>(
    store: &kv::Store,
    what: &'static str,
    key: &str,
    current: Versioned<T>,
    mut change: impl FnMut(&Versioned<T>) -> C,
) -> Result<Updated<T>, RecordError>
where
    T: Serialize + DeserializeOwned,
    C: Into<Change<T>>,
{
    update_async(store, what, key, current, |v| {
        std::future::ready(Ok::<_, RecordError>(change(v)))
    })
    .await
}

/// As [`update_versioned`], for a change that must act on what it read
/// before the write (tell the jobs a record holds, say, before deleting
/// it): `change` returns a future that may fail, and runs again on the
/// fresh read after every conflict, so what it does must be idempotent.
///
/// The future owns what it needs of the version (not an `async` closure
/// borrowing it: rustc cannot yet prove such futures `Send` when spawned).
///
/// # Errors
/// `change`'s own, or as [`update`].
pub async fn update_async<T, C, E, F>(
    store: &kv::Store,
    what: &'static str,
    key: &str,
    mut current: Versioned<T>,
    mut change: impl FnMut(&Versioned<T>) -> F,
) -> Result<Updated<T>, E>
where
    T: Serialize + DeserializeOwned,
    C: Into<Change<T>>,
    E: From<RecordError>,
    F: Future<Output = Result<C, E>>,
{
    for _ in 0..MAX_ROUNDS {
        let written = match change(&current).await?.into() {
            Change::Keep => return Ok(Updated::Unchanged(current.value)),
            Change::Put(next) => save(store, key, &next, current.revision)
                .await
                .map(|_| Updated::Written(next)),
            Change::Delete if current.value.is_none() => return Ok(Updated::Deleted),
            Change::Delete => remove(store, key, current.revision)
                .await
                .map(|()| Updated::Deleted),
        };
        match written {
            Err(RecordError::Conflict) => {
                metrics::counter!("kv_update_conflicts_total", "record" => what).increment(1);
                current = load(store, what, key).await?;
            }
            other => return Ok(other?),
        }
    }
    Err(RecordError::Conflict.into())
}

/// Run `op` until it succeeds, an error is not transient, or `patience` has
/// passed; pauses double from 100 ms to 2 s. For writes that must not be
/// lost to a broker restart (an outcome in hand, a lease given back).
///
/// # Errors
/// The last error.
pub async fn with_patience<T, E, F, Fut>(patience: std::time::Duration, mut op: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
    E: Transient + std::fmt::Display,
{
    let started = std::time::Instant::now();
    let mut pause = std::time::Duration::from_millis(100);
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_transient() && started.elapsed() + pause < patience => {
                tracing::warn!(error = %e, "retrying a write");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(2));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Errors that may go away by trying again.
pub trait Transient {
    /// Whether trying again (after re-reading) can succeed.
    fn is_transient(&self) -> bool;
}

impl Transient for RecordError {
    fn is_transient(&self) -> bool {
        RecordError::is_transient(self)
    }
}
