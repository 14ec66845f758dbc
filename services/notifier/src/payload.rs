//! The webhook body: a small Standard Webhooks style event.
//!
//! `{"type": "signature.completed" | "signature.failed", "timestamp": RFC 3339,
//! "data": {"id", "message", "signature" | "error"}}`. The job id doubles as
//! the `webhook-id` header, so receivers can deduplicate retries.

use serde::{Deserialize, Serialize};
use wire_contract::UnixMillis;
use wire_contract::messages::{JobEventV1, Outcome};

/// The JSON POSTed to a webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookPayload {
    /// `signature.completed` or `signature.failed`.
    #[serde(rename = "type")]
    pub kind: String,
    /// When this attempt was made (RFC 3339, UTC).
    pub timestamp: String,
    /// The job and its outcome.
    pub data: WebhookData,
}

/// The `data` member of a [`WebhookPayload`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookData {
    /// The job id the caller got in its 202.
    pub id: String,
    /// The message that was to be signed.
    pub message: String,
    /// The signature, when signing succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// Why signing failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl WebhookPayload {
    /// The payload announcing `event`, stamped `now`.
    pub fn of(event: &JobEventV1, now: UnixMillis) -> Self {
        let (signature, error) = match &event.outcome {
            Outcome::Signed { signature } => (Some(signature.clone()), None),
            Outcome::Failed { reason } => (None, Some(reason.clone())),
        };
        Self {
            kind: event.outcome.event_type().to_owned(),
            timestamp: now.to_rfc3339(),
            data: WebhookData {
                id: event.job_id.clone(),
                message: event.message.clone(),
                signature,
                error,
            },
        }
    }

    /// The JSON bytes to send (and sign).
    pub fn to_bytes(&self) -> Vec<u8> {
        // Plain strings only: serialisation cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(outcome: Outcome) -> JobEventV1 {
        JobEventV1 {
            job_id: "job-1".into(),
            message: "hello".into(),
            outcome,
        }
    }

    #[test]
    fn a_signed_job_is_announced_as_completed() {
        let payload = WebhookPayload::of(
            &event(Outcome::Signed {
                signature: "c2ln".into(),
            }),
            UnixMillis(0),
        );
        let value: serde_json::Value = serde_json::from_slice(&payload.to_bytes()).expect("json");
        assert_eq!(
            value,
            json!({
                "type": "signature.completed",
                "timestamp": "1970-01-01T00:00:00.000Z",
                "data": {"id": "job-1", "message": "hello", "signature": "c2ln"}
            })
        );
    }

    #[test]
    fn a_failed_job_is_announced_with_its_reason() {
        let payload = WebhookPayload::of(
            &event(Outcome::Failed {
                reason: "message too long".into(),
            }),
            UnixMillis(951_782_400_123),
        );
        let value: serde_json::Value = serde_json::from_slice(&payload.to_bytes()).expect("json");
        assert_eq!(
            value,
            json!({
                "type": "signature.failed",
                "timestamp": "2000-02-29T00:00:00.123Z",
                "data": {"id": "job-1", "message": "hello", "error": "message too long"}
            })
        );
    }

    #[test]
    fn the_body_is_small_and_round_trips() {
        let payload = WebhookPayload::of(
            &event(Outcome::Signed {
                signature: "x".repeat(512),
            }),
            UnixMillis(0),
        );
        let bytes = payload.to_bytes();
        assert!(bytes.len() < 20 * 1024);
        assert_eq!(
            serde_json::from_slice::<WebhookPayload>(&bytes).expect("parse"),
            payload
        );
    }
}
