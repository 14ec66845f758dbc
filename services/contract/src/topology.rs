//! Creates and opens the streams and KV buckets every service relies on.
//!
//! Every service calls [`Topology::ensure`] at start, so any of them can come
//! up first. `create_or_update_*` is used (not `get_or_create_*`, which
//! returns an existing stream without comparing its config), so a changed
//! config here reaches a running server on the next deploy.

use crate::names;
use async_nats::jetstream::{
    self, kv,
    stream::{self, RetentionPolicy, StorageType},
};
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
        for (name, config) in stream_configs() {
            js.create_or_update_stream(config)
                .await
                .map_err(|e| TopologyError::Stream {
                    name,
                    source: e.into(),
                })?;
        }
        let open = |name: &'static str, max_age: Duration| {
            let js = js.clone();
            async move {
                js.create_or_update_key_value(bucket_config(name, max_age))
                    .await
                    .map_err(|e| TopologyError::Bucket {
                        name,
                        source: e.into(),
                    })
            }
        };
        Ok(Self {
            jobs: open(names::JOBS_BUCKET, JOB_RETENTION).await?,
            results: open(names::RESULTS_BUCKET, Duration::ZERO).await?,
            work: open(names::WORK_BUCKET, Duration::ZERO).await?,
            limiter: open(names::LIMITER_BUCKET, Duration::ZERO).await?,
            deliveries: open(names::DELIVERIES_BUCKET, JOB_RETENTION).await?,
            js,
        })
    }

    /// Whether every stream and bucket is reachable now (for `/readyz`).
    pub async fn check(&self) -> Result<(), TopologyError> {
        for (name, _) in stream_configs() {
            self.js
                .get_stream(name)
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

/// The streams, durable (file storage) and deduplicating on `Nats-Msg-Id`,
/// each with its name as a constant (errors carry it).
fn stream_configs() -> [(&'static str, stream::Config); 3] {
    let stream = |name: &'static str, config: stream::Config| {
        let config = stream::Config {
            name: name.to_owned(),
            storage: StorageType::File,
            duplicate_window: Duration::from_secs(120),
            allow_direct: true,
            ..config
        };
        (name, config)
    };
    [
        stream(
            names::REQUESTS_STREAM,
            stream::Config {
                subjects: vec![names::REQUESTS_SUBJECT.to_owned()],
                retention: RetentionPolicy::WorkQueue,
                ..Default::default()
            },
        ),
        stream(
            names::EVENTS_STREAM,
            stream::Config {
                subjects: vec![names::EVENTS_SUBJECT.to_owned()],
                retention: RetentionPolicy::WorkQueue,
                ..Default::default()
            },
        ),
        stream(
            names::DEAD_LETTER_STREAM,
            stream::Config {
                subjects: vec![names::DEAD_LETTER_SUBJECTS.to_owned()],
                retention: RetentionPolicy::Limits,
                // As long as the job records: a letter outliving its job
                // could not be redriven anyway.
                max_age: JOB_RETENTION,
                ..Default::default()
            },
        ),
    ]
}

/// A bucket keeping one value per key, on file, for `max_age` (zero: forever).
fn bucket_config(name: &'static str, max_age: Duration) -> kv::Config {
    kv::Config {
        bucket: name.to_owned(),
        history: 1,
        max_age,
        storage: StorageType::File,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_stream_is_named_once_and_keeps_its_settings() {
        let streams = stream_configs();
        let by_name: Vec<_> = streams
            .iter()
            .map(|(name, c)| {
                (
                    *name,
                    c.name.as_str(),
                    c.subjects.clone(),
                    c.retention,
                    c.max_age,
                )
            })
            .collect();
        assert_eq!(
            by_name,
            [
                (
                    names::REQUESTS_STREAM,
                    names::REQUESTS_STREAM,
                    vec![names::REQUESTS_SUBJECT.to_owned()],
                    RetentionPolicy::WorkQueue,
                    Duration::ZERO,
                ),
                (
                    names::EVENTS_STREAM,
                    names::EVENTS_STREAM,
                    vec![names::EVENTS_SUBJECT.to_owned()],
                    RetentionPolicy::WorkQueue,
                    Duration::ZERO,
                ),
                (
                    names::DEAD_LETTER_STREAM,
                    names::DEAD_LETTER_STREAM,
                    vec![names::DEAD_LETTER_SUBJECTS.to_owned()],
                    RetentionPolicy::Limits,
                    JOB_RETENTION,
                ),
            ]
        );
        for (_, c) in &streams {
            assert_eq!(c.storage, StorageType::File);
            assert_eq!(c.duplicate_window, Duration::from_secs(120));
            assert!(c.allow_direct);
        }
    }
}
