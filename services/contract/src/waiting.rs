//! The jobs waiting for a pending message: one stream message per job on
//! `sign.waiting.<message-key>` ([`crate::names::WAITING_STREAM`]).
//!
//! A join is one append, whatever the number of jobs already waiting: the
//! cost of a join does not grow with the jobs before it, and no record grows
//! towards NATS's payload limit. Finishing a message reads its jobs back in
//! order ([`list`]) and purges them up to the last one told ([`forget`]); a
//! job appended meanwhile keeps its place for the next round.
//!
//! Appends are deduplicated by job id (`Nats-Msg-Id`, two minutes), so a
//! sign request redelivered to the signer does not add its job twice.

use crate::headers::TraceContext;
use crate::keys::MessageKey;
use crate::names;
use crate::records::WaitingJob;
use crate::{PublishError, decode, publish_once};
use async_nats::jetstream::{self, consumer::DeliverPolicy, consumer::pull::OrderedConfig};
use futures::StreamExt;

/// A waiting-jobs read or purge that failed.
#[derive(Debug, thiserror::Error)]
#[error("waiting jobs of {key}: {source}")]
pub struct WaitingError {
    key: String,
    #[source]
    source: async_nats::Error,
}

/// The jobs waiting for one message, as read by [`list`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Waiting {
    /// In the order they joined.
    pub jobs: Vec<WaitingJob>,
    /// The stream sequence of the last of them (0 when none): what
    /// [`forget`] purges up to.
    pub through: u64,
}

/// The subject `key`'s waiting jobs are appended to.
pub fn subject(key: &MessageKey) -> String {
    format!("{}.{}", names::WAITING_SUBJECT, key.as_str())
}

/// Append `job` to `key`'s waiting jobs (once per job id); `trace` travels
/// in the headers for whoever tells the job later.
///
/// # Errors
/// [`PublishError`] when the stream did not confirm the append.
pub async fn add(
    js: &jetstream::Context,
    key: &MessageKey,
    job: &WaitingJob,
    trace: Option<&TraceContext>,
) -> Result<(), PublishError> {
    publish_once(js, &subject(key), &job.id, &job.request_id, trace, job)
        .await
        .map(drop)
}

/// Every job now waiting for `key`, in the order they joined.
///
/// # Errors
/// [`WaitingError`] when the stream cannot be read; an undecodable entry
/// (written by a foreign client) is skipped with an error log instead.
pub async fn list(js: &jetstream::Context, key: &MessageKey) -> Result<Waiting, WaitingError> {
    let fail = |source: async_nats::Error| WaitingError {
        key: key.as_str().to_owned(),
        source,
    };
    let stream = js
        .get_stream(names::WAITING_STREAM)
        .await
        .map_err(|e| fail(e.into()))?;
    // An ordered consumer: ephemeral, in memory on the stream leader, gone by
    // itself after inactive_threshold (default 5 s) once dropped.
    let mut consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: subject(key),
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .map_err(|e| fail(e.into()))?;
    let mut waiting = Waiting::default();
    if consumer
        .info()
        .await
        .map_err(|e| fail(e.into()))?
        .num_pending
        == 0
    {
        return Ok(waiting);
    }
    let mut messages = consumer.messages().await.map_err(|e| fail(e.into()))?;
    while let Some(message) = messages.next().await {
        let message = message.map_err(|e| fail(e.into()))?;
        let info = message.info().map_err(fail)?;
        let (sequence, pending) = (info.stream_sequence, info.pending);
        match decode::<WaitingJob>("waiting job", &message.payload) {
            Ok(job) => waiting.jobs.push(job),
            Err(e) => {
                tracing::error!(message_key = %key, sequence, error = %e, "skipping an undecodable waiting job")
            }
        }
        waiting.through = sequence;
        if pending == 0 {
            break;
        }
    }
    Ok(waiting)
}

/// Forget `key`'s waiting jobs up to sequence `through` (those [`list`]
/// returned); any appended since stay.
///
/// # Errors
/// [`WaitingError`] when the purge was not confirmed.
pub async fn forget(
    js: &jetstream::Context,
    key: &MessageKey,
    through: u64,
) -> Result<(), WaitingError> {
    let fail = |source: async_nats::Error| WaitingError {
        key: key.as_str().to_owned(),
        source,
    };
    if through == 0 {
        return Ok(());
    }
    let stream = js
        .get_stream(names::WAITING_STREAM)
        .await
        .map_err(|e| fail(e.into()))?;
    stream
        .purge()
        .filter(subject(key))
        .sequence(through + 1)
        .await
        .map(drop)
        .map_err(|e| fail(e.into()))
}

impl crate::update::Transient for WaitingError {
    fn is_transient(&self) -> bool {
        true
    }
}
