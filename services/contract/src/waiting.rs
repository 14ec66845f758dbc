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
use async_nats::jetstream::{
    self,
    consumer::{AckPolicy, DeliverPolicy, pull},
};
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

/// Longest a listing may take: a stream that stops answering fails the
/// listing (it is retried) rather than holding the caller for ever.
pub const LIST_WITHIN: std::time::Duration = std::time::Duration::from_secs(30);

/// Every job now waiting for `key`, in the order they joined.
///
/// Read with an ephemeral pull consumer in batches that never wait
/// (`no_wait` fetches): the listing ends at the first empty batch, so jobs
/// purged meanwhile by another finisher (who told them) simply end it
/// sooner, and it can never wait for a message that is gone.
///
/// # Errors
/// [`WaitingError`] when the stream cannot be read within [`LIST_WITHIN`];
/// an undecodable entry (written by a foreign client) is skipped with an
/// error log instead.
pub async fn list(js: &jetstream::Context, key: &MessageKey) -> Result<Waiting, WaitingError> {
    let fail = |source: async_nats::Error| WaitingError {
        key: key.as_str().to_owned(),
        source,
    };
    tokio::time::timeout(LIST_WITHIN, list_all(js, key))
        .await
        .map_err(|_| fail("listing took longer than 30 s".into()))?
}

async fn list_all(js: &jetstream::Context, key: &MessageKey) -> Result<Waiting, WaitingError> {
    const BATCH: usize = 1000;
    let fail = |source: async_nats::Error| WaitingError {
        key: key.as_str().to_owned(),
        source,
    };
    let stream = js
        .get_stream(names::WAITING_STREAM)
        .await
        .map_err(|e| fail(e.into()))?;
    // Ephemeral, in memory, one replica, gone 5 s after its last use (and
    // deleted below when the listing ends normally).
    let consumer = stream
        .create_consumer(pull::Config {
            filter_subject: subject(key),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::None,
            inactive_threshold: std::time::Duration::from_secs(5),
            memory_storage: true,
            num_replicas: 1,
            ..Default::default()
        })
        .await
        .map_err(|e| fail(e.into()))?;
    let mut waiting = Waiting::default();
    loop {
        let mut batch = consumer
            .fetch()
            .max_messages(BATCH)
            .messages()
            .await
            .map_err(|e| fail(e.into()))?;
        let mut got = 0;
        while let Some(message) = batch.next().await {
            let message = message.map_err(fail)?;
            got += 1;
            let sequence = message.info().map_err(fail)?.stream_sequence;
            match decode::<WaitingJob>("waiting job", &message.payload) {
                Ok(job) => waiting.jobs.push(job),
                Err(e) => {
                    tracing::error!(message_key = %key, sequence, error = %e, "skipping an undecodable waiting job")
                }
            }
            waiting.through = waiting.through.max(sequence);
        }
        if got == 0 {
            break;
        }
    }
    let name = consumer.cached_info().name.clone();
    let _ = stream.delete_consumer(&name).await;
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

/// The messages that have jobs waiting now, with how many each (one
/// stream-info request; as many entries as messages with waiting jobs).
///
/// # Errors
/// [`WaitingError`] when the stream cannot be asked.
pub async fn messages_waited_for(
    js: &jetstream::Context,
) -> Result<Vec<(MessageKey, u64)>, WaitingError> {
    use futures::TryStreamExt;
    let fail = |source: async_nats::Error| WaitingError {
        key: ">".to_owned(),
        source,
    };
    let stream = js
        .get_stream(names::WAITING_STREAM)
        .await
        .map_err(|e| fail(e.into()))?;
    let subjects: Vec<(String, usize)> = stream
        .info_with_subjects(names::WAITING_SUBJECTS)
        .await
        .map_err(|e| fail(e.into()))?
        .try_collect()
        .await
        .map_err(|e| fail(e.into()))?;
    let prefix = format!("{}.", names::WAITING_SUBJECT);
    Ok(subjects
        .into_iter()
        .filter_map(|(subject, n)| {
            let key = subject.strip_prefix(&prefix)?;
            Some((MessageKey::of_key(key), n as u64))
        })
        .collect())
}

impl crate::update::Transient for WaitingError {
    fn is_transient(&self) -> bool {
        true
    }
}
