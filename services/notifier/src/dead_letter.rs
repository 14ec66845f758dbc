//! Deliveries that ran out of retries, kept for an operator.
//!
//! A dead letter carries everything needed to understand the failure without
//! the job record (which expires): the event, the payload, the target, every
//! attempt and the last error. Each is published on
//! `webhooks.dead.<job_id>`, so the latest one of a job is a direct get away
//! (`nats stream get WEBHOOK_DEAD_LETTERS -S webhooks.dead.<job_id>`).
//! [`redrive`] re-sends one: it resets the delivery record and publishes the
//! event again, so the normal pipeline (decision, SSRF check, signing,
//! schedule) runs once more; operators reach it through
//! [`crate::redrive_service`].

use crate::payload::WebhookPayload;
use crate::record;
use async_nats::jetstream::{self, message::PublishMessage};
use tracing::error;
use wire_contract::headers::{self, TraceContext};
use wire_contract::messages::JobEventV1;
use wire_contract::names::{DEAD_LETTER_SUBJECT, EVENTS_SUBJECT};
use wire_contract::records::{DeliveryAttempt, DeliveryRecord, DeliveryState, JobRecord};
use wire_contract::{RecordError, Topology, UnixMillis, encode, load, remove, save};

/// A webhook that will not be retried any more: published on
/// [`subject`]`(job_id)`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeadLetterV1 {
    /// The job.
    pub job_id: String,
    /// Request id, for tracing.
    pub request_id: String,
    /// Where it was to be delivered.
    pub webhook_url: Option<String>,
    /// The event that was to be announced.
    pub event: JobEventV1,
    /// The body of the last attempt.
    pub payload: WebhookPayload,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// Every attempt, oldest first.
    pub attempts: Vec<DeliveryAttempt>,
    /// When it was given up.
    pub failed_at: UnixMillis,
    /// The notifier replica that gave up.
    pub notifier_id: String,
    /// The job's trace where it was given up: the letter's publish carries
    /// it, and so does a redrive's event, so the redriven delivery joins the
    /// job's trace. Absent when traces were off (and in letters written
    /// before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<TraceContext>,
}

/// A dead letter could not be published, or a redrive failed.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    /// Publishing to JetStream failed (or was not acknowledged).
    #[error("publish to {subject} failed: {source}")]
    Publish {
        /// Subject.
        subject: String,
        /// Cause.
        #[source]
        source: async_nats::Error,
    },
    /// Reading or resetting the delivery record failed.
    #[error(transparent)]
    Record(#[from] RecordError),
}

/// The subject of `job_id`'s dead letters: `webhooks.dead.<job_id>`. Job ids
/// are KV keys, whose alphabet is a subset of what a subject allows.
pub fn subject(job_id: &str) -> String {
    format!("{DEAD_LETTER_SUBJECT}.{job_id}")
}

/// Publish `letter`, written when the delivery record was at `revision`.
///
/// The dedupe id is `<job_id>.<revision>`: a crash before the record says
/// Failed repeats the attempt from the same revision, and its letter is
/// dropped as a duplicate; a job that fails again after a redrive does so
/// from a later revision, and that letter is kept.
///
/// # Errors
///
/// [`DeadLetterError::Publish`] unless JetStream acknowledged it.
pub async fn publish(
    js: &jetstream::Context,
    letter: &DeadLetterV1,
    revision: u64,
) -> Result<(), DeadLetterError> {
    let message = PublishMessage::build()
        .payload(encode(letter))
        .message_id(format!("{}.{revision}", letter.job_id))
        .headers(headers::with_request_id_and_trace(
            &letter.request_id,
            letter.trace.as_ref(),
        ));
    let duplicate = send(js, subject(&letter.job_id), message).await?;
    // Counted when written, not read off the stream: the stream's count
    // drops as letters expire or are purged, which would hide new ones
    // (ops/prometheus: WebhookDeadLetters). A repeat JetStream dropped as a
    // duplicate wrote nothing.
    if !duplicate {
        metrics::counter!(DEAD_LETTERS_TOTAL).increment(1);
    }
    Ok(())
}

/// Counter of dead letters written (by this replica, since it started).
pub const DEAD_LETTERS_TOTAL: &str = "webhook_dead_letters_total";

/// What [`redrive`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redriven {
    /// The record was reset and the event published again.
    Requeued,
    /// The delivery is not failed (delivered meanwhile, or already
    /// redriven): nothing was done.
    NotFailed(DeliveryState),
    /// The job record has expired: the notifier could not deliver the
    /// event any more, so nothing was done.
    JobMissing,
}

/// Re-send a dead-lettered webhook: reset its delivery record (from `Failed`
/// to a fresh `Pending`, so the whole schedule applies again) and publish its
/// event to the notifier once more. The job record must still exist (it is
/// kept for `JOB_RETENTION`, [`wire_contract::topology::JOB_RETENTION`] by default): the notifier needs
/// it to deliver, so without it nothing is done ([`Redriven::JobMissing`]).
///
/// Safe to call concurrently and repeatedly: the reset is a compare-and-set
/// from `Failed`, so only one caller requeues.
///
/// # Errors
///
/// [`DeadLetterError`] if the record cannot be reset or the publish fails
/// (the record is then put back to what it was, so a later redrive can
/// succeed).
pub async fn redrive(
    topology: &Topology,
    letter: &DeadLetterV1,
) -> Result<Redriven, DeadLetterError> {
    let id = letter.job_id.as_str();
    let (job, current) = tokio::try_join!(
        load::<JobRecord>(&topology.jobs, "job record", id),
        load::<DeliveryRecord>(&topology.deliveries, record::WHAT, id),
    )?;
    if let Some(r) = &current.value
        && r.state != DeliveryState::Failed
    {
        return Ok(Redriven::NotFailed(r.state));
    }
    if job.value.is_none() {
        return Ok(Redriven::JobMissing);
    }
    let fresh = DeliveryRecord {
        state: DeliveryState::Pending,
        attempts: vec![],
        next_attempt_at: None,
    };
    let new_revision = match save(&topology.deliveries, id, &fresh, current.revision).await {
        Ok(revision) => revision,
        // Somebody else redrove it first.
        Err(RecordError::Conflict) => {
            let now = load::<DeliveryRecord>(&topology.deliveries, record::WHAT, id).await?;
            let state = now.value.map_or(DeliveryState::Pending, |r| r.state);
            return Ok(Redriven::NotFailed(state));
        }
        Err(err) => return Err(err.into()),
    };
    // A new id per redrive, so JetStream's duplicate window does not drop it.
    let message = PublishMessage::build()
        .payload(encode(&letter.event))
        .message_id(format!("{id}.redrive.{new_revision}"))
        .headers(headers::with_request_id_and_trace(
            &letter.request_id,
            letter.trace.as_ref(),
        ));
    if let Err(err) = send(&topology.js, EVENTS_SUBJECT.to_owned(), message).await {
        // Without its event a Pending record would never move again (and
        // could not be redriven): put the old one back.
        let restored = match &current.value {
            Some(old) => save(&topology.deliveries, id, old, new_revision)
                .await
                .map(|_| ()),
            None => remove(&topology.deliveries, id, new_revision).await,
        };
        if let Err(restore) = restored {
            error!(job_id = id, error = %restore, "redrive: could not restore the record");
        }
        return Err(err);
    }
    Ok(Redriven::Requeued)
}

/// Publish and wait for JetStream's ack; `true` when it dropped the message
/// as a duplicate of one already stored (same message id).
async fn send(
    js: &jetstream::Context,
    subject: String,
    message: PublishMessage,
) -> Result<bool, DeadLetterError> {
    let fail = |source: async_nats::Error| DeadLetterError::Publish {
        subject: subject.clone(),
        source,
    };
    let ack = js
        .send_publish(subject.clone(), message)
        .await
        .map_err(|e| fail(e.into()))?
        .await
        .map_err(|e| fail(e.into()))?;
    Ok(ack.duplicate)
}
