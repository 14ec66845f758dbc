//! Creates and opens the streams and KV buckets every service relies on.
//!
//! Every service calls [`Topology::ensure`] at start, so any of them can come
//! up first. `create_or_update_*` is used (not `get_or_create_*`, which
//! returns an existing stream without comparing its config), so a changed
//! config here reaches a running server on the next deploy.

use crate::UnixMillis;
use crate::names;
use crate::{CodecError, decode, encode};
use async_nats::jetstream::{
    self,
    kv::{self, Operation},
    stream::{self, RetentionPolicy, StorageType},
};
use serde::{Serialize, de::DeserializeOwned};
use std::time::Duration;

/// How long job records and webhook delivery records are kept: long enough
/// for the status resource to outlive the webhook retry schedule (~27 h).
pub const JOB_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Why the topology could not be created or opened.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// A stream could not be created or updated.
    #[error("stream {name}: {source}")]
    Stream {
        /// Stream name.
        name: &'static str,
        /// Cause.
        #[source]
        source: async_nats::Error,
    },
    /// A KV bucket could not be created or updated.
    #[error("kv bucket {name}: {source}")]
    Bucket {
        /// Bucket name.
        name: &'static str,
        /// Cause.
        #[source]
        source: async_nats::Error,
    },
}

/// Handles to every stream and bucket.
#[derive(Clone)]
pub struct Topology {
    /// The JetStream context.
    pub js: jetstream::Context,
    /// Job records.
    pub jobs: kv::Store,
    /// Results (signature cache).
    pub results: kv::Store,
    /// Messages still to sign.
    pub work: kv::Store,
    /// The shared upstream budget.
    pub limiter: kv::Store,
    /// Webhook deliveries.
    pub deliveries: kv::Store,
}

impl Topology {
    /// Create (or bring up to date) every stream and bucket, and open them.
    pub async fn ensure(js: jetstream::Context) -> Result<Self, TopologyError> {
        for config in stream_configs() {
            let name = leak_name(&config.name);
            js.create_or_update_stream(config)
                .await
                .map_err(|e| TopologyError::Stream {
                    name,
                    source: e.into(),
                })?;
        }
        let bucket = |name: &'static str, max_age: Duration| kv::Config {
            bucket: name.to_owned(),
            history: 1,
            max_age,
            storage: StorageType::File,
            ..Default::default()
        };
        let open = |config: kv::Config| {
            let js = js.clone();
            async move {
                let name = leak_name(&config.bucket);
                js.create_or_update_key_value(config)
                    .await
                    .map_err(|e| TopologyError::Bucket {
                        name,
                        source: e.into(),
                    })
            }
        };
        Ok(Self {
            jobs: open(bucket(names::JOBS_BUCKET, JOB_RETENTION)).await?,
            results: open(bucket(names::RESULTS_BUCKET, Duration::ZERO)).await?,
            work: open(bucket(names::WORK_BUCKET, Duration::ZERO)).await?,
            limiter: open(bucket(names::LIMITER_BUCKET, Duration::ZERO)).await?,
            deliveries: open(bucket(names::DELIVERIES_BUCKET, JOB_RETENTION)).await?,
            js,
        })
    }

    /// Whether every stream and bucket is reachable now (for `/readyz`).
    pub async fn check(&self) -> Result<(), TopologyError> {
        for config in stream_configs() {
            let name = leak_name(&config.name);
            self.js
                .get_stream(&config.name)
                .await
                .map_err(|e| TopologyError::Stream {
                    name,
                    source: e.into(),
                })?;
        }
        for (name, store) in [
            (names::JOBS_BUCKET, &self.jobs),
            (names::RESULTS_BUCKET, &self.results),
            (names::WORK_BUCKET, &self.work),
            (names::LIMITER_BUCKET, &self.limiter),
            (names::DELIVERIES_BUCKET, &self.deliveries),
        ] {
            store.status().await.map_err(|e| TopologyError::Bucket {
                name,
                source: e.into(),
            })?;
        }
        Ok(())
    }
}

/// The streams, durable (file storage) and deduplicating on `Nats-Msg-Id`.
fn stream_configs() -> Vec<stream::Config> {
    let dedupe = Duration::from_secs(120);
    vec![
        stream::Config {
            name: names::REQUESTS_STREAM.to_owned(),
            subjects: vec![names::REQUESTS_SUBJECT.to_owned()],
            retention: RetentionPolicy::WorkQueue,
            storage: StorageType::File,
            duplicate_window: dedupe,
            allow_direct: true,
            ..Default::default()
        },
        stream::Config {
            name: names::EVENTS_STREAM.to_owned(),
            subjects: vec![names::EVENTS_SUBJECT.to_owned()],
            retention: RetentionPolicy::WorkQueue,
            storage: StorageType::File,
            duplicate_window: dedupe,
            allow_direct: true,
            ..Default::default()
        },
        stream::Config {
            name: names::DEAD_LETTER_STREAM.to_owned(),
            subjects: vec![names::DEAD_LETTER_SUBJECTS.to_owned()],
            retention: RetentionPolicy::Limits,
            // As long as the job records: a letter outliving its job could
            // not be redriven anyway.
            max_age: JOB_RETENTION,
            storage: StorageType::File,
            duplicate_window: dedupe,
            allow_direct: true,
            ..Default::default()
        },
    ]
}

/// Stream and bucket names are the constants in [`names`]; map back to them
/// so errors can carry `&'static str`.
fn leak_name(name: &str) -> &'static str {
    [
        names::REQUESTS_STREAM,
        names::EVENTS_STREAM,
        names::DEAD_LETTER_STREAM,
        names::JOBS_BUCKET,
        names::RESULTS_BUCKET,
        names::WORK_BUCKET,
        names::LIMITER_BUCKET,
        names::DELIVERIES_BUCKET,
    ]
    .into_iter()
    .find(|n| *n == name)
    .unwrap_or("unknown")
}

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

/// Delete `key` if it is still at `revision`.
pub async fn remove(store: &kv::Store, key: &str, revision: u64) -> Result<(), RecordError> {
    store
        .delete_expect_revision(key, Some(revision))
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

/// Why a service could not get to its streams and buckets.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The NATS connection failed.
    #[error("connecting to NATS: {0}")]
    Connect(#[source] async_nats::ConnectError),
    /// The topology could not be ensured in time.
    #[error(transparent)]
    Topology(TopologyError),
}

/// Connect to NATS (waiting for it if it is not up yet) and ensure the
/// topology, retrying for up to `patience` so services can start in any
/// order (compose starts them together).
pub async fn connect(
    nats_url: &str,
    client_name: &str,
    patience: Duration,
) -> Result<Topology, ConnectError> {
    let client = async_nats::ConnectOptions::new()
        .name(client_name)
        .retry_on_initial_connect()
        .connect(nats_url)
        .await
        .map_err(ConnectError::Connect)?;
    let js = jetstream::new(client);
    let started = std::time::Instant::now();
    loop {
        match Topology::ensure(js.clone()).await {
            Ok(t) => return Ok(t),
            Err(e) if started.elapsed() < patience => {
                tracing::warn!(error = %e, "JetStream not ready yet; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(ConnectError::Topology(e)),
        }
    }
}
