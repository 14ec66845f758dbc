//! Finishing a message: store its result and tell every waiting job.
//!
//! Order matters. The result is written first, so any request that arrives
//! afterwards is answered from it. Then one event per waiting job is
//! published (deduplicated by job id), and the work item is deleted only if
//! nobody added a job since it was read; otherwise the newcomers are told
//! too. Every step is idempotent, so a crash anywhere is repaired by redoing.

use std::time::Duration;
use wire_contract::messages::{JobEventV1, Outcome};
use wire_contract::records::{ResultRecord, WaitingJob, WorkItem};
use wire_contract::{
    Change, MessageKey, RecordError, Topology, Transient, UnixMillis, encode, load, names,
    publish_once, update_async, with_patience,
};

/// A completion that could not be written.
#[derive(Debug, thiserror::Error)]
pub enum CompleteError {
    /// KV failure.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// Stream publish failure.
    #[error(transparent)]
    Publish(#[from] wire_contract::PublishError),
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
    let current = load::<WorkItem>(&topo.work, "work item", key.as_str()).await?;
    // Tell the jobs of the item as read, then delete it at that revision;
    // a job added meanwhile makes it a conflict, and the next round tells
    // the newcomer too (publishing is deduplicated by job id).
    update_async(&topo.work, "work item", key.as_str(), current, |v| {
        let jobs = v.value.as_ref().map(|item| item.jobs.clone());
        let outcome = &outcome;
        async move {
            let Some(jobs) = jobs else {
                return Ok::<_, CompleteError>(Change::Keep);
            };
            for job in &jobs {
                tell(topo, message, outcome, job).await?;
            }
            Ok(Change::Delete)
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
            CompleteError::Publish(_) | CompleteError::Put(_) => true,
        }
    }
}
