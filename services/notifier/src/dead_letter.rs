//! Deliveries that ran out of retries, kept for an operator.
//!
//! A dead letter carries everything needed to understand and re-send the
//! webhook without the job record (which expires): the event, the payload,
//! the target, every attempt and the last error. [`redrive`] re-sends one:
//! it resets the delivery record and publishes the event again, so the normal
//! pipeline (decision, SSRF check, signing, schedule) runs once more.

use crate::payload::WebhookPayload;
use crate::record;
use async_nats::jetstream::{self, message::PublishMessage};
use wire_contract::headers::REQUEST_ID;
use wire_contract::messages::JobEventV1;
use wire_contract::names::{DEAD_LETTER_SUBJECT, EVENTS_SUBJECT};
use wire_contract::records::{DeliveryAttempt, DeliveryRecord, DeliveryState};
use wire_contract::{RecordError, Topology, UnixMillis, encode, load, save};

/// A webhook that will not be retried any more: published on
/// [`DEAD_LETTER_SUBJECT`] with `Nats-Msg-Id` = job id.
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
}

/// A dead letter could not be published, or a redrive failed.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    /// Publishing to JetStream failed (or was not acknowledged).
    #[error("publish to {subject} failed: {source}")]
    Publish {
        /// Subject.
        subject: &'static str,
        /// Cause.
        #[source]
        source: async_nats::Error,
    },
    /// Reading or resetting the delivery record failed.
    #[error(transparent)]
    Record(#[from] RecordError),
}

/// Publish `letter` (deduplicated on the job id).
///
/// # Errors
///
/// [`DeadLetterError::Publish`] unless JetStream acknowledged it.
pub async fn publish(
    js: &jetstream::Context,
    letter: &DeadLetterV1,
) -> Result<(), DeadLetterError> {
    let message = PublishMessage::build()
        .payload(encode(letter))
        .message_id(&letter.job_id)
        .header(REQUEST_ID, letter.request_id.as_str());
    send(js, DEAD_LETTER_SUBJECT, message).await
}

/// What [`redrive`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redriven {
    /// The record was reset and the event published again.
    Requeued,
    /// The delivery is not failed (delivered meanwhile, or already
    /// redriven): nothing was done.
    NotFailed(DeliveryState),
}

/// Re-send a dead-lettered webhook: reset its delivery record (from `Failed`
/// to a fresh `Pending`, so the whole schedule applies again) and publish its
/// event to the notifier once more. The job record must still exist (it is
/// kept for [`wire_contract::topology::JOB_RETENTION`]); otherwise the
/// notifier acks the event with a warning.
///
/// # Errors
///
/// [`DeadLetterError`] if the record cannot be reset or the publish fails.
pub async fn redrive(
    topology: &Topology,
    letter: &DeadLetterV1,
) -> Result<Redriven, DeadLetterError> {
    let current =
        load::<DeliveryRecord>(&topology.deliveries, record::WHAT, &letter.job_id).await?;
    let revision = match &current.value {
        Some(r) if r.state != DeliveryState::Failed => return Ok(Redriven::NotFailed(r.state)),
        _ => current.revision,
    };
    let fresh = DeliveryRecord {
        state: DeliveryState::Pending,
        attempts: vec![],
        next_attempt_at: None,
    };
    let new_revision = save(&topology.deliveries, &letter.job_id, &fresh, revision).await?;
    // A new id per redrive, so JetStream's duplicate window does not drop it.
    let message = PublishMessage::build()
        .payload(encode(&letter.event))
        .message_id(format!("{}.redrive.{new_revision}", letter.job_id))
        .header(REQUEST_ID, letter.request_id.as_str());
    send(&topology.js, EVENTS_SUBJECT, message).await?;
    Ok(Redriven::Requeued)
}

async fn send(
    js: &jetstream::Context,
    subject: &'static str,
    message: PublishMessage,
) -> Result<(), DeadLetterError> {
    let fail = |source: async_nats::Error| DeadLetterError::Publish { subject, source };
    js.send_publish(subject, message)
        .await
        .map_err(|e| fail(e.into()))?
        .await
        .map_err(|e| fail(e.into()))?;
    Ok(())
}
