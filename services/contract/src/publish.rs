//! Publishing to a stream with a deduplication id, the request id and the
//! trace context.
//!
//! Every publish in this system is keyed by a job id (`Nats-Msg-Id`), so a
//! publish retried after a crash or a lost ack is stored once.

use crate::encode;
use crate::headers::{TraceContext, with_request_id_and_trace};
use async_nats::jetstream::{self, message::PublishMessage};
use serde::Serialize;

/// A publish that JetStream did not confirm.
#[derive(Debug, thiserror::Error)]
#[error("publish to {subject} not confirmed: {source}")]
pub struct PublishError {
    subject: String,
    #[source]
    source: async_nats::Error,
}

/// Publish `value` to `subject` with dedupe id `msg_id`, carrying
/// `request_id` and `trace` (the span the receiver continues); waits for the
/// stream's ack. Returns whether the stream already had it (a duplicate).
pub async fn publish_once<T: Serialize>(
    js: &jetstream::Context,
    subject: &str,
    msg_id: &str,
    request_id: &str,
    trace: Option<&TraceContext>,
    value: &T,
) -> Result<bool, PublishError> {
    let publish = PublishMessage::build()
        .payload(encode(value))
        .headers(with_request_id_and_trace(request_id, trace))
        .message_id(msg_id);
    let ack = js
        .send_publish(subject.to_owned(), publish)
        .await
        .map_err(|e| PublishError {
            subject: subject.to_owned(),
            source: e.into(),
        })?
        .await
        .map_err(|e| PublishError {
            subject: subject.to_owned(),
            source: e.into(),
        })?;
    Ok(ack.duplicate)
}
