//! The one compare-and-set loop: read a record, ask a pure function for its
//! next value, write it only if nobody wrote in between, and ask again on a
//! conflict. Every state change of a shared record goes through here, so the
//! retry policy and the conflict metric are written once.

use crate::topology::{RecordError, Versioned, load, remove, save};
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
    mut current: Versioned<T>,
    mut change: impl FnMut(Option<&T>) -> C,
) -> Result<Updated<T>, RecordError>
where
    T: Serialize + DeserializeOwned,
    C: Into<Change<T>>,
{
    for _ in 0..MAX_ROUNDS {
        let written = match change(current.value.as_ref()).into() {
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
            other => return other,
        }
    }
    Err(RecordError::Conflict)
}
