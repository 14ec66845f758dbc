//! Finishing a message: store its result and tell every waiting job.
//!
//! Order matters. The result is written first, so any request that arrives
//! afterwards is answered from it. Then the jobs waiting for the message
//! (the waiting stream, [`wire_contract::waiting`]) are read and each is
//! published one event (deduplicated by job id), they are purged up to the
//! last one read, and the work item is deleted only if nobody joined since
//! it was read; otherwise the next round tells the newcomers too. A job
//! taken in after the item is gone finds the result when its taker looks
//! again, and finishes the message itself. Every step is idempotent, so a
//! crash anywhere is repaired by redoing.

use std::time::Duration;
use wire_contract::messages::{JobEventV1, Outcome};
use wire_contract::records::{ResultRecord, WaitingJob, WorkItem};
use wire_contract::waiting::{self, WaitingError};
use wire_contract::{
    Change, MessageKey, RecordError, Topology, Transient, UnixMillis, encode, load, names,
    publish_once, update_async, with_patience,
};

/// Events published at once while telling a message's jobs: thousands of
/// jobs for one message are told in a few seconds, not one round trip each.
const TELL_AT_ONCE: usize = 128;

/// A completion that could not be written.
#[derive(Debug, thiserror::Error)]
pub enum CompleteError {
    /// KV failure.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// Stream publish failure.
    #[error(transparent)]
    Publish(#[from] wire_contract::PublishError),
    /// The waiting jobs could not be read or purged.
    #[error(transparent)]
    Waiting(#[from] WaitingError),
    /// KV put failure.
    #[error("storing the result failed: {0}")]
    Put(String),
}

/// Store `outcome` for `message` and notify its jobs.
pub async fn complete(
    topo: &Topology,
    key: &MessageKey,
    message: &str,
    outcome: Outcome,
    attempts: u32,
    now: UnixMillis,
) -> Result<(), CompleteError> {
    let result = ResultRecord {
        message: message.to_owned(),
        outcome: outcome.clone(),
        attempts,
        at: now,
    };
    topo.results
        .put(key.as_str(), encode(&result))
        .await
        .map_err(|e| CompleteError::Put(e.to_string()))?;
    tell_waiting(topo, key, message, outcome).await
}

/// Tell every job waiting for `key` its `outcome` (already stored), and
/// delete the message's work item unless a job joined meanwhile (then again).
/// What [`complete`] does after storing the result; alone, it is how jobs
/// left waiting behind a finished message are told ([`crate::sweep`]).
pub async fn tell_waiting(
    topo: &Topology,
    key: &MessageKey,
    message: &str,
    outcome: Outcome,
) -> Result<(), CompleteError> {
    let current = load::<WorkItem>(&topo.work, "work item", key.as_str()).await?;
    // Tell the jobs waiting now, then delete the item at the revision read
    // first; a job joined meanwhile makes it a conflict, and the next round
    // tells the newcomer too (publishing is deduplicated by job id). Jobs
    // wait in the stream even when the item is gone (their taker crashed
    // between the two writes): they are told all the same.
    update_async(&topo.work, "work item", key.as_str(), current, |v| {
        let kept = v
            .value
            .as_ref()
            .map(|item| item.legacy_jobs.clone())
            .unwrap_or_default();
        let exists = v.value.is_some();
        let outcome = &outcome;
        async move {
            let waiting = waiting::list(&topo.js, key).await?;
            let told = kept.len() + waiting.jobs.len();
            let tells = kept
                .iter()
                .chain(&waiting.jobs)
                .map(|job| tell(topo, message, outcome, job));
            crate::at_once::all(tells, TELL_AT_ONCE).await?;
            waiting::forget(&topo.js, key, waiting.through).await?;
            if told > 1 {
                tracing::info!(message_key = %key, jobs = told, "jobs told");
            }
            Ok::<_, CompleteError>(if exists { Change::Delete } else { Change::Keep })
        }
    })
    .await?;
    Ok(())
}

/// Publish `job`'s event (once: deduplicated by its id).
async fn tell(
    topo: &Topology,
    message: &str,
    outcome: &Outcome,
    job: &WaitingJob,
) -> Result<(), CompleteError> {
    let event = JobEventV1 {
        job_id: job.id.clone(),
        message: message.to_owned(),
        outcome: outcome.clone(),
    };
    publish_once(
        &topo.js,
        names::EVENTS_SUBJECT,
        &job.id,
        &job.request_id,
        crate::job_traces::event_trace(job).as_ref(),
        &event,
    )
    .await?;
    tracing::info!(job_id = %job.id, request_id = %job.request_id, kind = outcome.event_type(), "job completed");
    metrics::counter!("sign_jobs_completed_total", "type" => outcome.event_type()).increment(1);
    Ok(())
}

/// [`complete`], retried through NATS outages (a signature in hand must not
/// be lost to a broker restart) for up to `patience`.
pub async fn complete_with_retry(
    topo: &Topology,
    key: &MessageKey,
    message: &str,
    outcome: Outcome,
    attempts: u32,
    now: UnixMillis,
    patience: Duration,
) -> Result<(), CompleteError> {
    with_patience(patience, || {
        complete(topo, key, message, outcome.clone(), attempts, now)
    })
    .await
}

impl Transient for CompleteError {
    fn is_transient(&self) -> bool {
        match self {
            CompleteError::Record(e) => e.is_transient(),
            CompleteError::Publish(_) | CompleteError::Put(_) | CompleteError::Waiting(_) => true,
        }
    }
}
