//! Errors as RFC 9457 `application/problem+json`, one type for the api.
//!
//! Internals (NATS errors) are logged, never shown: the body says what the
//! caller can do.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// The body of every error: RFC 9457 problem details.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(example = json!({"type": "/problems/missing-message", "title": "Invalid request", "status": 400,
                          "detail": "the message parameter is required and must not be empty"}))]
pub struct Problem {
    /// What kind of problem, as a relative URI: `/problems/<slug>`.
    #[serde(rename = "type")]
    #[schema(format = UriReference)]
    pub kind: String,
    /// Short, the same for every problem of the kind.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong with this request, for a human.
    pub detail: String,
    /// The job id, for `/problems/signing-failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = Uuid)]
    pub id: Option<String>,
    /// The job's status monitor, for `/problems/signing-failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = UriReference)]
    pub instance: Option<String>,
}

/// Everything a handler can answer with other than success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed.
    #[error("{detail}")]
    BadRequest {
        /// Short slug for the `type` URI.
        kind: &'static str,
        /// What is wrong, for a human.
        detail: String,
    },
    /// The message exceeds the configured size.
    #[error("message is {actual} bytes; the limit is {limit}")]
    MessageTooLong {
        /// Its size.
        actual: usize,
        /// The limit.
        limit: usize,
    },
    /// Callers are configured and the request carries none of their keys.
    #[error("send one of your caller keys as `Authorization: Bearer <key>`")]
    Unauthorized,
    /// No such job.
    #[error("no job {0}")]
    UnknownJob(String),
    /// The upstream rejected this message for good.
    #[error("{reason}")]
    SigningFailed {
        /// Job id.
        id: String,
        /// The upstream's reason.
        reason: String,
    },
    /// The backlog cannot be cleared within the promised horizon.
    #[error(
        "the signing backlog would take {clear_in_secs} s to clear, over the {horizon_secs} s this service promises; retry later"
    )]
    Overloaded {
        /// Estimated time to clear, with this message.
        clear_in_secs: u64,
        /// The configured horizon.
        horizon_secs: u64,
        /// Seconds until asking again is worth it.
        retry_after: u64,
    },
    /// The caller is over its request rate (`rate_per_s` in `CALLERS`).
    #[error("caller {caller} is over its request rate; retry in {retry_after} s")]
    RateLimited {
        /// The caller's name.
        caller: String,
        /// Seconds until its next request is admitted.
        retry_after: u64,
    },
    /// The caller's own backlog cannot be cleared within the horizon at
    /// its share of the budget.
    #[error(
        "caller {caller}'s signing backlog would take {clear_in_secs} s to clear at its share of the upstream's budget, over the {horizon_secs} s this service promises; retry later"
    )]
    CallerOverloaded {
        /// The caller's name.
        caller: String,
        /// Estimated time to clear its backlog, with this message.
        clear_in_secs: u64,
        /// The configured horizon.
        horizon_secs: u64,
        /// Seconds until asking again is worth it.
        retry_after: u64,
    },
    /// The caller has as many jobs pending as it may (`max_pending`).
    #[error(
        "caller {caller} has {pending} jobs waiting for signatures, the most it may have ({cap}); retry once some are signed"
    )]
    TooManyPending {
        /// The caller's name.
        caller: String,
        /// Its jobs waiting, as the signer counted them.
        pending: u64,
        /// Its cap (`max_pending` in `CALLERS`).
        cap: u64,
        /// Seconds until asking again is worth it.
        retry_after: u64,
    },
    /// Too many jobs already wait for this message.
    #[error(
        "{waiting} jobs already wait for this message, the most this service takes ({cap}); retry once it is signed"
    )]
    TooManyJobs {
        /// Jobs waiting, as the signer counted them.
        waiting: u64,
        /// The configured cap (`MAX_JOBS_PER_MESSAGE`).
        cap: u64,
        /// Seconds until asking again is worth it.
        retry_after: u64,
    },
    /// Too many requests at once: this one found no place in time.
    #[error("too many requests at once; retry in {retry_after} s")]
    Busy {
        /// Seconds until retrying is worth it.
        retry_after: u64,
    },
    /// We cannot accept work right now (the broker is unreachable).
    #[error("service unavailable: {0}")]
    Unavailable(String),
}

impl ApiError {
    /// A 400 with a slug and detail.
    pub fn bad_request(kind: &'static str, detail: impl Into<String>) -> Self {
        ApiError::BadRequest {
            kind,
            detail: detail.into(),
        }
    }

    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            ApiError::BadRequest { kind, .. } => (StatusCode::BAD_REQUEST, kind, "Invalid request"),
            ApiError::MessageTooLong { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "message-too-long",
                "Message too long",
            ),
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "A caller key is needed",
            ),
            ApiError::UnknownJob(_) => (StatusCode::NOT_FOUND, "unknown-job", "Unknown job"),
            ApiError::SigningFailed { .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "signing-failed",
                "The upstream refused to sign this message",
            ),
            ApiError::Overloaded { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "backlog-full",
                "Backlog full",
            ),
            ApiError::CallerOverloaded { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "caller-backlog-full",
                "The caller's backlog is full",
            ),
            ApiError::TooManyPending { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "too-many-pending",
                "Too many pending jobs for this caller",
            ),
            ApiError::RateLimited { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "Over the caller's request rate",
            ),
            ApiError::TooManyJobs { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "too-many-jobs",
                "Too many jobs for this message",
            ),
            ApiError::Busy { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "Too many requests at once",
            ),
            ApiError::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Temporarily unavailable",
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind, title) = self.parts();
        let detail = match &self {
            ApiError::Unavailable(internal) => {
                tracing::warn!(error = %internal, "answering 503");
                "the signing queue cannot be reached; retry shortly".to_owned()
            }
            other => other.to_string(),
        };
        let job = match &self {
            ApiError::SigningFailed { id, .. } => Some(id.clone()),
            _ => None,
        };
        let body = Problem {
            kind: format!("/problems/{kind}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail,
            instance: job.as_ref().map(|id| format!("/crypto/sign/jobs/{id}")),
            id: job,
        };
        // Plain strings and a number: serialisation cannot fail.
        let mut response =
            (status, serde_json::to_string(&body).unwrap_or_default()).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        match self {
            ApiError::Unavailable(_) => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            ApiError::Unauthorized => {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::Overloaded { retry_after, .. }
            | ApiError::Busy { retry_after }
            | ApiError::CallerOverloaded { retry_after, .. }
            | ApiError::TooManyPending { retry_after, .. }
            | ApiError::TooManyJobs { retry_after, .. }
            | ApiError::RateLimited { retry_after, .. } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            }
            _ => {}
        }
        response
    }
}
