//! `GET /crypto/sign/jobs/{id}`: the status monitor of a job.

use crate::auth;
use crate::bodies::{JobState, JobStatus, ReplyCode, WebhookAttempt, WebhookState, WebhookView};
use crate::problem::{ApiError, Problem};
use crate::sign::retry_after_secs;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use std::time::Duration;
use wire_contract::messages::Outcome;
use wire_contract::records::{DeliveryRecord, DeliveryState, JobRecord, Reply, ResultRecord};
use wire_contract::signer_answers::{BacklogQuestionV1, ask_backlog};
use wire_contract::{MessageKey, load};

/// How long a status request waits for the signer's word on attempts.
const ASK_PATIENCE: Duration = Duration::from_millis(500);

/// Who reads a job's status.
enum Reader {
    /// The admin token.
    Operator,
    /// A configured caller.
    Caller(String),
    /// Anyone: the gateway is open.
    Anyone,
}

impl Reader {
    fn may_read(&self, job: &JobRecord) -> bool {
        match self {
            Reader::Operator | Reader::Anyone => true,
            Reader::Caller(name) => job.caller.as_deref() == Some(name.as_str()),
        }
    }
}

/// Show a job: pending, signed or failed; attempts; webhook delivery.
#[utoipa::path(
    get,
    path = "/crypto/sign/jobs/{id}",
    tag = "signing",
    operation_id = "job_status",
    summary = "A job's status monitor",
    description = "The `Location` of a `202`. Jobs are kept while pending, then for `JOB_RETENTION` (7 days by default).",
    params(("id" = String, Path, format = Uuid, description = "The job id from a `200` or `202`")),
    responses(
        (status = 200, description = "The job", body = JobStatus,
            headers(("Retry-After" = u64, description = "While pending: seconds before polling again is worth it"))),
        (status = 401, description = "Callers are configured and no caller key (or admin token) was sent", body = Problem, content_type = "application/problem+json",
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 404, description = "No such job (or another caller's)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The job store cannot be reached", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds before retrying is worth it"))),
    )
)]
pub async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    // With callers configured, a job is its caller's (or an operator's) to
    // read; another caller's job looks like no job at all.
    let reader = if auth::is_admin(&state, &headers) {
        Reader::Operator
    } else {
        match auth::caller(&state, &headers)? {
            Some(name) => Reader::Caller(name),
            None => Reader::Anyone,
        }
    };
    if uuid::Uuid::parse_str(&id).is_err() {
        return Err(ApiError::UnknownJob(id));
    }
    let unavailable = |e: wire_contract::RecordError| ApiError::Unavailable(e.to_string());
    let job = load::<JobRecord>(&state.topo.jobs, "job", &id)
        .await
        .map_err(unavailable)?
        .value
        .filter(|job| reader.may_read(job))
        .ok_or_else(|| ApiError::UnknownJob(id.clone()))?;
    let key = MessageKey::of(&job.message);
    let result = load::<ResultRecord>(&state.topo.results, "result", key.as_str())
        .await
        .map_err(unavailable)?
        .value;
    // A pending job's attempts are the signer's to tell; a signer that does
    // not answer in time leaves them out rather than hold the caller.
    let answer = match result {
        Some(_) => None,
        None => {
            let question = BacklogQuestionV1 {
                message_key: key.as_str().to_owned(),
                recent_keys: Vec::new(),
                caller: None,
            };
            let client = state.topo.js.client();
            let asked = ask_backlog(&client, &question);
            tokio::time::timeout(ASK_PATIENCE, asked)
                .await
                .ok()
                .and_then(Result::ok)
        }
    };
    let delivery = load::<DeliveryRecord>(&state.topo.deliveries, "delivery", &id)
        .await
        .map_err(unavailable)?
        .value;

    let (status, attempts, signature, error, last_error) = match result {
        Some(r) => match r.outcome {
            Outcome::Signed { signature } => {
                (JobState::Signed, r.attempts, Some(signature), None, None)
            }
            Outcome::Failed { reason } => (JobState::Failed, r.attempts, None, Some(reason), None),
        },
        None => {
            let work = answer.as_ref().and_then(|a| a.queued.clone());
            let attempts = work.as_ref().map(|w| w.attempts).unwrap_or(0);
            (
                JobState::Pending,
                attempts,
                None,
                None,
                Some(work.and_then(|w| w.last_error)),
            )
        }
    };
    let body = JobStatus {
        webhook: webhook_view(&job, delivery.as_ref()),
        id: job.id,
        message: job.message,
        created_at: job.created_at.to_rfc3339(),
        webhook_url: job.webhook_url,
        reply: job.reply.map(|r| match r {
            Reply::Immediate => ReplyCode::Immediate,
            Reply::Deferred => ReplyCode::Deferred,
            Reply::Withdrawn => ReplyCode::Withdrawn,
        }),
        attempts,
        status,
        signature,
        error,
        last_error,
    };
    let slot_every = answer.map(|a| Duration::from_millis(a.slot_every_ms));
    let mut response = axum::Json(body).into_response();
    if status == JobState::Pending {
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(retry_after_secs(slot_every)),
        );
    }
    Ok(response)
}

fn webhook_view(job: &JobRecord, delivery: Option<&DeliveryRecord>) -> WebhookView {
    let before_delivery = |state| WebhookView {
        state,
        attempts: vec![],
        next_attempt_at: None,
    };
    if job.owes_webhook() == Some(false) {
        return before_delivery(WebhookState::NotRequired);
    }
    let Some(d) = delivery else {
        return before_delivery(WebhookState::WaitingForResult);
    };
    let state = match d.state {
        DeliveryState::Pending => WebhookState::Pending,
        DeliveryState::Delivered => WebhookState::Delivered,
        DeliveryState::Failed => WebhookState::Failed,
        DeliveryState::NotRequired => WebhookState::NotRequired,
    };
    let attempts = d
        .attempts
        .iter()
        .map(|a| WebhookAttempt {
            at: a.at.to_rfc3339(),
            status: a.status,
            error: a.error.clone(),
            latency_ms: a.latency_ms,
        })
        .collect();
    WebhookView {
        state,
        attempts,
        next_attempt_at: Some(d.next_attempt_at.map(|t| t.to_rfc3339())),
    }
}
