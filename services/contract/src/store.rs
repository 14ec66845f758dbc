//! Reading and writing one KV record: [`load`] with its revision, [`save`]
//! and [`remove`] by compare-and-set, and the failures they share.
//!
//! Values go through [`crate::codec`]; the retry-on-conflict loop built on
//! these is [`crate::update`](mod@crate::update).

use crate::UnixMillis;
use crate::{CodecError, decode, encode};
use async_nats::jetstream::kv::{self, Operation};
use serde::{Serialize, de::DeserializeOwned};

/// A KV value with the revision it was read at (0: key never written).
#[derive(Debug, Clone)]
pub struct Versioned<T> {
    /// The decoded value; `None` when absent or deleted.
    pub value: Option<T>,
    /// Revision to pass to [`save`] for compare-and-set.
    pub revision: u64,
    /// When the server stored that revision (server time); `None` when the
    /// key was never written.
    pub written: Option<UnixMillis>,
}

/// Failure reading or writing a KV record.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// NATS could not be reached or refused the operation.
    #[error("kv {op} failed: {source}")]
    Nats {
        /// The operation.
        op: &'static str,
        /// Cause.
        #[source]
        source: async_nats::Error,
    },
    /// Somebody else wrote the key since it was read.
    #[error("kv key changed concurrently")]
    Conflict,
    /// The stored value is not what this version expects.
    #[error(transparent)]
    Codec(#[from] CodecError),
}

impl RecordError {
    /// Whether trying again (after re-reading) can succeed.
    pub fn is_transient(&self) -> bool {
        !matches!(self, RecordError::Codec(_))
    }
}

/// Read `key` with its revision.
pub async fn load<T: DeserializeOwned>(
    store: &kv::Store,
    what: &'static str,
    key: &str,
) -> Result<Versioned<T>, RecordError> {
    let entry = store.entry(key).await.map_err(|e| RecordError::Nats {
        op: "get",
        source: e.into(),
    })?;
    match entry {
        None => Ok(Versioned {
            value: None,
            revision: 0,
            written: None,
        }),
        Some(e) if matches!(e.operation, Operation::Delete | Operation::Purge) => Ok(Versioned {
            value: None,
            revision: e.revision,
            written: Some(server_time(e.created)),
        }),
        Some(e) => Ok(Versioned {
            value: Some(decode(what, &e.value)?),
            revision: e.revision,
            written: Some(server_time(e.created)),
        }),
    }
}

/// A timestamp set by nats-server (a stored message's time) as Unix millis.
pub fn server_time(t: time::OffsetDateTime) -> UnixMillis {
    UnixMillis((t.unix_timestamp_nanos() / 1_000_000).max(0) as u64)
}

/// Write `value` if `key` is still at `revision` (compare-and-set);
/// returns the new revision.
pub async fn save<T: Serialize>(
    store: &kv::Store,
    key: &str,
    value: &T,
    revision: u64,
) -> Result<u64, RecordError> {
    let bytes = encode(value);
    if revision == 0 {
        return store.create(key, bytes).await.map_err(|e| match e.kind() {
            kv::CreateErrorKind::AlreadyExists => RecordError::Conflict,
            _ => RecordError::Nats {
                op: "create",
                source: e.into(),
            },
        });
    }
    store
        .update(key, bytes, revision)
        .await
        .map_err(|e| match e.kind() {
            kv::UpdateErrorKind::WrongLastRevision => RecordError::Conflict,
            _ => RecordError::Nats {
                op: "update",
                source: e.into(),
            },
        })
}

/// How long the marker a [`remove`] leaves behind is kept. Without a time
/// to live, every deleted key would keep its marker for ever, and every
/// mirror replays them all on each resync. Long enough for any watcher to
/// see the removal live; a mirror resyncing later simply no longer sees the
/// key. The bucket must allow message TTLs (`limit_markers`, as
/// [`crate::Topology`] creates every bucket).
pub const MARKER_TTL: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// Remove `key` if it is still at `revision`, leaving a marker that expires
/// after [`MARKER_TTL`].
pub async fn remove(store: &kv::Store, key: &str, revision: u64) -> Result<(), RecordError> {
    store
        .purge_expect_revision_with_ttl(key, revision, MARKER_TTL)
        .await
        .map_err(|e| {
            // The client reports a stale revision as a publish error of
            // kind `WrongLastSequence` under its own `Other`.
            let stale = std::error::Error::source(&e)
                .and_then(|s| s.downcast_ref::<async_nats::jetstream::context::PublishError>())
                .is_some_and(|p| {
                    p.kind() == async_nats::jetstream::context::PublishErrorKind::WrongLastSequence
                });
            if stale {
                RecordError::Conflict
            } else {
                RecordError::Nats {
                    op: "delete",
                    source: e.into(),
                }
            }
        })
}
