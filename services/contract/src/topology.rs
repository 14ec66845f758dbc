//! Creates and opens the streams and KV buckets every service relies on.
//!
//! Every service calls [`Topology::ensure`] at start, so any of them can come
//! up first. `create_or_update_*` is used (not `get_or_create_*`, which
//! returns an existing stream without comparing its config), so a changed
//! config here reaches a running server on the next deploy.
//!
//! Replicas are the exception: an operator may have raised them by hand
//! (`nats stream edit --replicas 3`), so start-up keeps the larger of what it
//! finds and `NATS_REPLICAS` ([`replicas_to_keep`]), and logs both.
//!
//! On a cluster, a stream with R replicas acknowledges a write only once a
//! majority of its replicas have it (JetStream's Raft commit), so every write
//! the services rely on (job record, request publish, reply claim, limiter
//! compare-and-set, delivery record) is quorum-acknowledged with R = 3.
//! Without a quorum no write commits: the api answers 503 and the signer makes
//! no upstream call (its limiter write cannot land).

use crate::names;
use async_nats::jetstream::{
    self, kv,
    stream::{self, RetentionPolicy, StorageType},
};
use std::time::Duration;

/// How long job records and webhook delivery records are kept after their
/// last write, by default (`JOB_RETENTION`): long enough for the status
/// resource to outlive the webhook retry schedule (~27 h). A job still
/// pending has its record rewritten before then ([`crate::job_keeping`]).
pub const JOB_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// How long a stream remembers a `Nats-Msg-Id` to drop a repeated publish.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// How long signatures are kept by default (`SIGNATURE_RETENTION`): the
/// signature cache is bounded by age. The upstream's budget bounds how fast
/// it grows (at most one new result per call, 14,400 a day at 10 a minute),
/// so 30 days is at most about 430,000 results.
pub const SIGNATURE_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

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
    /// The replicas asked for (`NATS_REPLICAS`), for [`Topology::recreate`].
    pub replicas: usize,
    /// How long results are kept (`SIGNATURE_RETENTION`; zero: for ever).
    pub signature_retention: Duration,
    /// How long job and delivery records are kept after their last write
    /// (`JOB_RETENTION`).
    pub job_retention: Duration,
}

impl Topology {
    /// Create (or bring up to date) every stream and bucket with at least
    /// `replicas` replicas, results kept for `signature_retention` (zero:
    /// for ever), and open them.
    ///
    /// All ten at once: on a cluster that has just formed (or is busy), a
    /// JetStream request can wait out its whole timeout (10 s) while leaders
    /// are elected; one after another, eight such waits (before the waiting
    /// stream) kept a service from starting for over a minute.
    pub async fn ensure(
        js: jetstream::Context,
        replicas: usize,
        signature_retention: Duration,
    ) -> Result<Self, TopologyError> {
        Self::ensure_with(js, replicas, signature_retention, JOB_RETENTION).await
    }

    /// [`Topology::ensure`], job and delivery records kept `job_retention`
    /// after their last write.
    pub async fn ensure_with(
        js: jetstream::Context,
        replicas: usize,
        signature_retention: Duration,
        job_retention: Duration,
    ) -> Result<Self, TopologyError> {
        let streams = stream_configs(job_retention).map(|(name, config)| {
            let js = js.clone();
            async move {
                let stream_error = |e: async_nats::Error| TopologyError::Stream { name, source: e };
                let found = found_replicas(&js, name).await.map_err(stream_error)?;
                let config = stream::Config {
                    num_replicas: replicas_to_keep(name, found, replicas),
                    ..config
                };
                let wants_schedules = config.allow_message_schedules;
                let info = js
                    .create_or_update_stream(config)
                    .await
                    .map_err(|e| stream_error(e.into()))?;
                // A server that does not know message schedules (before
                // 2.12) would keep them as plain messages that never fire:
                // every waiting webhook would be lost. Refuse to start.
                if wants_schedules && !info.config.allow_message_schedules {
                    return Err(stream_error(
                        "this nats-server does not support message schedules (2.12 or later is needed)"
                            .into(),
                    ));
                }
                Ok(())
            }
        });
        let open = |name: &'static str, max_age: Duration| {
            let js = js.clone();
            async move {
                let bucket_error = |e: async_nats::Error| TopologyError::Bucket { name, source: e };
                let found = found_replicas(&js, &format!("KV_{name}"))
                    .await
                    .map_err(bucket_error)?;
                let config = kv::Config {
                    num_replicas: replicas_to_keep(name, found, replicas),
                    ..bucket_config(name, max_age)
                };
                js.create_or_update_key_value(config)
                    .await
                    .map_err(|e| bucket_error(e.into()))
            }
        };
        let (streams, buckets) = futures::future::join(
            futures::future::try_join_all(streams),
            futures::future::try_join5(
                open(names::JOBS_BUCKET, job_retention),
                open(names::RESULTS_BUCKET, signature_retention),
                open(names::WORK_BUCKET, Duration::ZERO),
                open(names::LIMITER_BUCKET, Duration::ZERO),
                open(names::DELIVERIES_BUCKET, job_retention),
            ),
        )
        .await;
        streams?;
        let (jobs, results, work, limiter, deliveries) = buckets?;
        Ok(Self {
            jobs,
            results,
            work,
            limiter,
            deliveries,
            js,
            replicas,
            signature_retention,
            job_retention,
        })
    }

    /// Create again whatever an operator deleted (same replicas).
    pub async fn recreate(&self) -> Result<Self, TopologyError> {
        Self::ensure_with(
            self.js.clone(),
            self.replicas,
            self.signature_retention,
            self.job_retention,
        )
        .await
    }

    /// Whether every stream and bucket is reachable now (for `/readyz`).
    ///
    /// The ten questions are asked at once: on a loaded cluster each one
    /// waits for its stream's leader, and asked one after another they took
    /// longer than a readiness probe's budget, so the api read as not ready.
    pub async fn check(&self) -> Result<(), TopologyError> {
        let streams = stream_configs(self.job_retention).map(|(name, _)| async move {
            self.js
                .get_stream(name)
                .await
                .map(drop)
                .map_err(|e| TopologyError::Stream {
                    name,
                    source: e.into(),
                })
        });
        let buckets = [
            (names::JOBS_BUCKET, &self.jobs),
            (names::RESULTS_BUCKET, &self.results),
            (names::WORK_BUCKET, &self.work),
            (names::LIMITER_BUCKET, &self.limiter),
            (names::DELIVERIES_BUCKET, &self.deliveries),
        ]
        .map(|(name, store)| async move {
            store
                .status()
                .await
                .map(drop)
                .map_err(|e| TopologyError::Bucket {
                    name,
                    source: e.into(),
                })
        });
        let (streams, buckets) = futures::future::join(
            futures::future::try_join_all(streams),
            futures::future::try_join_all(buckets),
        )
        .await;
        streams?;
        buckets?;
        Ok(())
    }
}

/// The replicas of stream `stream` now, `None` when it does not exist yet.
async fn found_replicas(
    js: &jetstream::Context,
    stream: &str,
) -> Result<Option<usize>, async_nats::Error> {
    use async_nats::jetstream::{ErrorCode, context::GetStreamErrorKind};
    match js.get_stream(stream).await {
        Ok(s) => Ok(Some(s.cached_info().config.num_replicas)),
        Err(e) => match e.kind() {
            GetStreamErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND => {
                Ok(None)
            }
            _ => Err(e.into()),
        },
    }
}

/// The replicas `name` gets: `wanted`, or more if an operator set more
/// (never fewer: lowering replicas is an operator's decision, not a
/// deploy's). Logs what it found when that differs from what it keeps.
pub fn replicas_to_keep(name: &str, found: Option<usize>, wanted: usize) -> usize {
    let keep = found.unwrap_or(0).max(wanted).max(1);
    match found {
        Some(found) if found != keep => {
            tracing::info!(name, found, wanted, keep, "raising replicas");
        }
        Some(found) if found > wanted => {
            tracing::info!(
                name,
                found,
                wanted,
                keep,
                "keeping the replicas an operator set (more than NATS_REPLICAS)"
            );
        }
        Some(found) => tracing::debug!(name, found, "replicas as wanted"),
        None => tracing::info!(name, replicas = keep, "creating"),
    }
    keep
}

/// The streams, durable (file storage) and deduplicating on `Nats-Msg-Id`,
/// each with its name as a constant (errors carry it).
fn stream_configs(job_retention: Duration) -> [(&'static str, stream::Config); 5] {
    let stream = |name: &'static str, config: stream::Config| {
        // The server refuses a window longer than the stream's max_age
        // (only a short JOB_RETENTION, in tests, comes below it).
        let window = match config.max_age {
            Duration::ZERO => DUPLICATE_WINDOW,
            max_age => DUPLICATE_WINDOW.min(max_age),
        };
        let config = stream::Config {
            name: name.to_owned(),
            storage: StorageType::File,
            duplicate_window: window,
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
            names::WAITING_STREAM,
            stream::Config {
                subjects: vec![names::WAITING_SUBJECTS.to_owned()],
                // Kept until the message is finished (its subject is purged
                // then), however long that takes: no max_age.
                retention: RetentionPolicy::Limits,
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
                max_age: job_retention,
                ..Default::default()
            },
        ),
        stream(
            names::RETRY_STREAM,
            stream::Config {
                subjects: vec![names::RETRY_SUBJECTS.to_owned()],
                // A due delivery is gone once the notifier acks it; a
                // schedule is purged by the server when it fires.
                retention: RetentionPolicy::WorkQueue,
                allow_message_schedules: true,
                ..Default::default()
            },
        ),
    ]
}

/// A bucket keeping one value per key, on file, for `max_age` (zero:
/// forever). Markers (of a [`crate::remove`], or of a value aged out) expire
/// after [`crate::store::MARKER_TTL`], so deleted keys cost nothing for ever.
fn bucket_config(name: &'static str, max_age: Duration) -> kv::Config {
    kv::Config {
        bucket: name.to_owned(),
        history: 1,
        max_age,
        storage: StorageType::File,
        limit_markers: Some(crate::store::MARKER_TTL),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_are_raised_to_the_setting_and_never_lowered() {
        assert_eq!(replicas_to_keep("s", None, 1), 1);
        assert_eq!(replicas_to_keep("s", None, 3), 3);
        assert_eq!(replicas_to_keep("s", Some(1), 3), 3);
        assert_eq!(replicas_to_keep("s", Some(3), 1), 3);
        assert_eq!(replicas_to_keep("s", Some(3), 3), 3);
        assert_eq!(replicas_to_keep("s", Some(5), 3), 5);
        // A stream reporting 0 (older servers' "default") is one replica.
        assert_eq!(replicas_to_keep("s", Some(0), 1), 1);
    }

    #[test]
    fn each_stream_is_named_once_and_keeps_its_settings() {
        let streams = stream_configs(JOB_RETENTION);
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
                    names::WAITING_STREAM,
                    names::WAITING_STREAM,
                    vec![names::WAITING_SUBJECTS.to_owned()],
                    RetentionPolicy::Limits,
                    Duration::ZERO,
                ),
                (
                    names::DEAD_LETTER_STREAM,
                    names::DEAD_LETTER_STREAM,
                    vec![names::DEAD_LETTER_SUBJECTS.to_owned()],
                    RetentionPolicy::Limits,
                    JOB_RETENTION,
                ),
                (
                    names::RETRY_STREAM,
                    names::RETRY_STREAM,
                    vec![names::RETRY_SUBJECTS.to_owned()],
                    RetentionPolicy::WorkQueue,
                    Duration::ZERO,
                ),
            ]
        );
        assert!(
            streams
                .iter()
                .all(|(name, c)| c.allow_message_schedules == (*name == names::RETRY_STREAM))
        );
        for (_, c) in &streams {
            assert_eq!(c.storage, StorageType::File);
            assert_eq!(c.duplicate_window, Duration::from_secs(120));
            assert!(c.allow_direct);
        }
    }
}
