//! The JSON bodies the api answers with, and the webhook it announces.
//!
//! One typed struct per body, so the handlers and the OpenAPI document
//! (`GET /openapi.json`, see [`crate::openapi`]) cannot drift apart: the
//! schema is derived from the very type that is serialised. Field names are
//! part of the public contract; the README shows each body.

use serde::Serialize;
use utoipa::ToSchema;
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Not signed yet; a status URL (and a webhook, if given) follows.
    Pending,
    /// Signed: `signature` holds the upstream's signature.
    Signed,
    /// The upstream refused the message for good: `error` says why.
    Failed,
}

/// `200 OK`: the signature, exactly as the upstream returned it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(example = json!({"id": "5b0c4f1e-7d8a-4c1b-9a3e-2f6d8c9b0a11", "status": "signed", "message": "hello", "signature": "kq3…"}))]
pub struct SignedBody {
    /// The job id (a status monitor exists for it too).
    #[schema(format = Uuid)]
    pub id: String,
    /// Always `signed`.
    #[schema(schema_with = only_signed)]
    pub status: JobState,
    /// The message that was signed.
    pub message: String,
    /// The signature exactly as the signing API returned it.
    pub signature: String,
}

/// `202 Accepted`: the job is queued; poll `status_url` or wait for the webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(example = json!({
    "id": "9e41c2d0-3b7a-4f5e-8c1d-6a2b9f0e7d34", "status": "pending", "message": "hello again",
    "status_url": "/crypto/sign/jobs/9e41c2d0-3b7a-4f5e-8c1d-6a2b9f0e7d34",
    "webhook_url": "https://example.com/hook", "retry_after_seconds": 6,
    "estimated_first_call_at": "2026-11-28T06:02:11.000Z"
}))]
pub struct PendingBody {
    /// The job id.
    #[schema(format = Uuid)]
    pub id: String,
    /// Always `pending`.
    #[schema(schema_with = only_pending)]
    pub status: JobState,
    /// The message to be signed.
    pub message: String,
    /// The job's status monitor (also the `Location` header); absolute when
    /// `PUBLIC_BASE_URL` is set.
    #[schema(format = UriReference)]
    pub status_url: String,
    /// Where the outcome will be POSTed as a `WebhookEvent` (see the
    /// document's `webhooks`), normalised; `null` without one.
    #[schema(required = true, format = Uri)]
    pub webhook_url: Option<String>,
    /// Seconds before polling is worth it (also the `Retry-After` header).
    pub retry_after_seconds: u64,
    /// When the message's first upstream call can happen, from its place in
    /// the queue and the budget; `null` when it is already queued or the
    /// budget could not be read in time.
    #[schema(required = true, format = DateTime)]
    pub estimated_first_call_at: Option<String>,
}

/// `GET /crypto/sign/jobs/{id}`: the status monitor of one job.
///
/// `signature` is present only when `signed`, `error` only when `failed`,
/// `last_error` only while `pending`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct JobStatus {
    /// The job id.
    #[schema(format = Uuid)]
    pub id: String,
    /// The message to sign.
    pub message: String,
    /// When the job was accepted (RFC 3339, UTC).
    #[schema(format = DateTime)]
    pub created_at: String,
    /// The webhook target given with the job, if any.
    #[schema(required = true, format = Uri)]
    pub webhook_url: Option<String>,
    /// How the caller was answered: `"200"`, `"202"`, or `null` while undecided.
    #[schema(required = true)]
    pub reply: Option<ReplyCode>,
    /// Upstream calls made for the message so far.
    pub attempts: u32,
    /// Pending, signed or failed.
    pub status: JobState,
    /// The signature, once signed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// Why the upstream refused the message, once failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// While pending: why the last attempt failed (`null` before any failed).
    /// Absent once the job has ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub last_error: Option<Option<String>>,
    /// The webhook's delivery.
    pub webhook: WebhookView,
}

/// How the caller of a job was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub enum ReplyCode {
    /// `200` with the signature (no webhook follows).
    #[serde(rename = "200")]
    Immediate,
    /// `202` with the status URL (a webhook follows, if one was given).
    #[serde(rename = "202")]
    Deferred,
    /// `503`: accepting timed out; the caller was told to retry, and no
    /// webhook follows even if the job was queued after all.
    #[serde(rename = "503")]
    Withdrawn,
}

/// Where a job's webhook delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WebhookState {
    /// The job has not ended yet.
    WaitingForResult,
    /// Not delivered yet; retries go on.
    Pending,
    /// A receiver answered 2xx.
    Delivered,
    /// Given up (attempts exhausted, `410 Gone`, or a refused target).
    Failed,
    /// The caller was answered 200, or gave no webhook URL.
    NotRequired,
}

/// The `webhook` member of a [`JobStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct WebhookView {
    /// Delivery state.
    pub state: WebhookState,
    /// Every attempt so far, oldest first.
    pub attempts: Vec<WebhookAttempt>,
    /// When the next attempt is due (`null` when none is); absent before
    /// delivery starts.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_attempt_at: Option<Option<String>>,
}

/// One webhook delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct WebhookAttempt {
    /// When it started (RFC 3339, UTC).
    #[schema(format = DateTime)]
    pub at: String,
    /// The receiver's HTTP status, if it answered.
    #[schema(required = true)]
    pub status: Option<u16>,
    /// What went wrong, if no response came or it was not a 2xx.
    #[schema(required = true)]
    pub error: Option<String>,
    /// How long the attempt took, in milliseconds.
    pub latency_ms: u64,
}

/// The body POSTed to a job's `webhook_url` when a `202`ed job ends.
///
/// Mirrors the notifier's `WebhookPayload` (services/notifier/src/payload.rs),
/// which is what is actually sent; this type only documents it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(example = json!({
    "type": "signature.completed", "timestamp": "2026-11-28T05:19:37.708Z",
    "data": {"id": "9e41c2d0-3b7a-4f5e-8c1d-6a2b9f0e7d34", "message": "hello", "signature": "kq3…"}
}))]
pub struct WebhookEvent {
    /// `signature.completed` or `signature.failed`.
    #[serde(rename = "type")]
    pub kind: WebhookEventType,
    /// When this attempt was made (RFC 3339, UTC).
    #[schema(format = DateTime)]
    pub timestamp: String,
    /// The job and its outcome.
    pub data: WebhookEventData,
}

/// The kind of a [`WebhookEvent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub enum WebhookEventType {
    /// Signed: `data.signature` is set.
    #[serde(rename = "signature.completed")]
    Completed,
    /// Refused for good: `data.error` is set.
    #[serde(rename = "signature.failed")]
    Failed,
}

/// The `data` member of a [`WebhookEvent`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct WebhookEventData {
    /// The job id the caller got in its `202` (also the `webhook-id` header).
    #[schema(format = Uuid)]
    pub id: String,
    /// The message that was to be signed.
    pub message: String,
    /// The signature, when signing succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// Why signing failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A string schema admitting only `value`.
fn only(value: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some([value]))
        .build()
}

fn only_signed() -> Object {
    only("signed")
}

fn only_pending() -> Object {
    only("pending")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_pending_body_keeps_its_nulls() {
        let body = PendingBody {
            id: "j".into(),
            status: JobState::Pending,
            message: "m".into(),
            status_url: "/crypto/sign/jobs/j".into(),
            webhook_url: None,
            retry_after_seconds: 6,
            estimated_first_call_at: None,
        };
        assert_eq!(
            serde_json::to_value(&body).expect("json"),
            json!({"id": "j", "status": "pending", "message": "m", "status_url": "/crypto/sign/jobs/j",
                   "webhook_url": null, "retry_after_seconds": 6, "estimated_first_call_at": null})
        );
    }

    #[test]
    fn a_status_shows_only_the_fields_of_its_state() {
        let view = WebhookView {
            state: WebhookState::NotRequired,
            attempts: vec![],
            next_attempt_at: None,
        };
        let status = JobStatus {
            id: "j".into(),
            message: "m".into(),
            created_at: "2026-11-28T06:02:09.412Z".into(),
            webhook_url: None,
            reply: Some(ReplyCode::Deferred),
            attempts: 1,
            status: JobState::Pending,
            signature: None,
            error: None,
            last_error: Some(None),
            webhook: view,
        };
        assert_eq!(
            serde_json::to_value(&status).expect("json"),
            json!({"id": "j", "message": "m", "created_at": "2026-11-28T06:02:09.412Z", "webhook_url": null,
                   "reply": "202", "attempts": 1, "status": "pending", "last_error": null,
                   "webhook": {"state": "not_required", "attempts": []}})
        );
    }

    #[test]
    fn a_webhook_event_is_what_the_readme_shows() {
        let event = WebhookEvent {
            kind: WebhookEventType::Failed,
            timestamp: "2026-11-28T05:19:37.708Z".into(),
            data: WebhookEventData {
                id: "j".into(),
                message: "hello".into(),
                signature: None,
                error: Some("no".into()),
            },
        };
        assert_eq!(
            serde_json::to_value(&event).expect("json"),
            json!({"type": "signature.failed", "timestamp": "2026-11-28T05:19:37.708Z",
                   "data": {"id": "j", "message": "hello", "error": "no"}})
        );
    }
}
