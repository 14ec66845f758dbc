//! `GET|POST /crypto/sign`: accept, wait briefly, answer 200 or 202.
//!
//! The promise is an answer within 2 s whatever the upstream does, and then
//! exactly one of: a 200 with the signature, or a 202 followed by a webhook.
//! The caller's reply is recorded by compare-and-set on the job record; the
//! notifier reads (or, if the api died, claims) that same field, so a
//! signature landing at the deadline cannot produce both or neither.

use crate::admission::{Estimate, expectations};
use crate::auth;
use crate::bodies::{JobState, PendingBody, SignedBody};
use crate::input::{self, SignInput};
use crate::problem::{ApiError, Problem};
use crate::reply::{answered_202, claim_reply, withdraw};
use crate::request_id::RequestId;
use crate::state::AppState;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use service_kit::Arrival;
use service_kit::callers::Caller;
use service_kit::telemetry::current_trace;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::{Instant, timeout_at};
use tracing::{Instrument, Span, info_span};
use wire_contract::messages::{Outcome, SignRequestV1};
use wire_contract::records::{JobRecord, Reply, ResultRecord};
use wire_contract::time::{Clock, SystemClock};
use wire_contract::{MessageKey, load, names, publish_once, save};

/// Time allowed for accepting a request (reading the cache, recording the
/// job, publishing); past it the broker is too slow and we answer 503.
const ACCEPT_WITHIN: Duration = Duration::from_millis(1500);
/// Every answer leaves by this long after receipt.
const ANSWER_WITHIN: Duration = Duration::from_millis(1900);

/// What a sign request is answered with, when it is not a problem.
#[derive(Debug)]
pub enum Answer {
    /// `200`: the signature.
    Signed(SignedBody),
    /// `202`: queued, with `Location` and `Retry-After` taken from the body.
    Pending(PendingBody),
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        match self {
            Answer::Signed(body) => (StatusCode::OK, axum::Json(body)).into_response(),
            Answer::Pending(body) => {
                let location = HeaderValue::from_str(&body.status_url).ok();
                let retry_after = HeaderValue::from(body.retry_after_seconds);
                let mut response = (StatusCode::ACCEPTED, axum::Json(body)).into_response();
                if let Some(v) = location {
                    response.headers_mut().insert(header::LOCATION, v);
                }
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, retry_after);
                response
            }
        }
    }
}

/// The query of `GET /crypto/sign`, for the OpenAPI document only: the
/// handler parses the raw query itself (see [`input::from_query`]).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct SignQuery {
    /// The message to sign (UTF-8, at most `MAX_MESSAGE_BYTES` bytes, default 4096).
    #[param(min_length = 1)]
    message: String,
    /// Where to POST the outcome if the answer is a `202`.
    #[param(schema_with = input::webhook_url_schema)]
    webhook_url: Option<String>,
    /// Alias of `webhook_url`; give one or the other.
    #[param(schema_with = input::webhook_url_schema)]
    callback_url: Option<String>,
}

/// `GET /crypto/sign?message=…&webhook_url=…`
#[utoipa::path(
    get,
    path = "/crypto/sign",
    tag = "signing",
    operation_id = "sign_get",
    summary = "Sign a message given in the query string",
    description = "Answers within 2 s: `200` with the signature when it is known or arrives within \
                   `SIGN_WAIT`, otherwise `202` with a status monitor (and, with `webhook_url`, a \
                   `WebhookEvent` POSTed there when the job ends; see `webhooks`).",
    params(SignQuery),
    responses(
        (status = 200, description = "Signed", body = SignedBody),
        (status = 202, description = "Accepted; poll `status_url` or wait for the webhook", body = PendingBody,
            headers(
                ("Location" = String, description = "The job's status monitor (`status_url`)"),
                ("Retry-After" = u64, description = "Seconds before polling is worth it")
            ),
            links(("JobStatus" = (operation_id = "job_status", parameters(("id" = "$response.body#/id")))))),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Callers are configured and no caller key was sent (`Authorization: Bearer <key>`)", body = Problem, content_type = "application/problem+json",
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 413, description = "Message over `MAX_MESSAGE_BYTES`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The upstream refused this message for good", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`MAX_JOBS_PER_MESSAGE` jobs already wait for this message, or the caller is over its request rate or its `max_pending` jobs", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds before retrying is worth it"))),
        (status = 503, description = "Backlog full (the caller's own at its share, or the whole), too many requests at once (`/problems/overloaded`, shed within `SHED_AFTER`), or queue unreachable", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds before retrying is worth it"))),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    arrival: Option<Extension<Arrival>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Answer, ApiError> {
    let received = arrived(arrival);
    let caller = auth::admitted_caller(&state, &headers)?;
    let input = input::from_query(query.as_deref(), &state.rules)?;
    sign(state, request_id, caller, input, received).await
}

/// `POST /crypto/sign` with `{"message": …, "webhook_url": …}`.
#[utoipa::path(
    post,
    path = "/crypto/sign",
    tag = "signing",
    operation_id = "sign_post",
    summary = "Sign a message given in a JSON body",
    description = "The same as `GET /crypto/sign`, for messages awkward in a query string.",
    request_body = input::SignRequest,
    responses(
        (status = 200, description = "Signed", body = SignedBody),
        (status = 202, description = "Accepted; poll `status_url` or wait for the webhook", body = PendingBody,
            headers(
                ("Location" = String, description = "The job's status monitor (`status_url`)"),
                ("Retry-After" = u64, description = "Seconds before polling is worth it")
            ),
            links(("JobStatus" = (operation_id = "job_status", parameters(("id" = "$response.body#/id")))))),
        (status = 400, description = "Malformed request (including a body that is not a sign request)", body = Problem,
            content_type = "application/problem+json"),
        (status = 401, description = "Callers are configured and no caller key was sent (`Authorization: Bearer <key>`)", body = Problem, content_type = "application/problem+json",
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 413, description = "Message over `MAX_MESSAGE_BYTES`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The upstream refused this message for good", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`MAX_JOBS_PER_MESSAGE` jobs already wait for this message, or the caller is over its request rate or its `max_pending` jobs", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds before retrying is worth it"))),
        (status = 503, description = "Backlog full (the caller's own at its share, or the whole), too many requests at once (`/problems/overloaded`, shed within `SHED_AFTER`), or queue unreachable", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds before retrying is worth it"))),
    )
)]
pub async fn post(
    State(state): State<AppState>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    arrival: Option<Extension<Arrival>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Answer, ApiError> {
    let received = arrived(arrival);
    let caller = auth::admitted_caller(&state, &headers)?;
    let input = input::from_json(&body, &state.rules)?;
    sign(state, request_id, caller, input, received).await
}

/// When the request arrived ([`Arrival`], stamped by the accept loop), or
/// now when served without it.
fn arrived(arrival: Option<Extension<Arrival>>) -> Instant {
    arrival.map_or_else(Instant::now, |Extension(Arrival(at))| at)
}

async fn sign(
    state: AppState,
    request_id: String,
    caller: Option<String>,
    input: SignInput,
    received: Instant,
) -> Result<Answer, ApiError> {
    let key = MessageKey::of(&input.message);
    let job_id = uuid::Uuid::new_v4().to_string();
    if let Some(outcome) = state.cache.get(key.as_str()) {
        // The hot path: a known signature, from memory. Not recorded as a
        // job: it costs no NATS round trip or write, so it runs at close to
        // the speed of the HTTP server. The id is for the caller's
        // correlation; there is no status resource for it.
        tracing::debug!(job_id, message_key = %key, "answered from the signature cache");
        metrics::counter!("sign_cache_hits_total").increment(1);
        return answer_now(&job_id, &input.message, outcome);
    }
    let job = JobRecord {
        id: job_id.clone(),
        message: input.message.clone(),
        webhook_url: input.webhook_url.clone(),
        request_id: request_id.clone(),
        created_at: SystemClock.now(),
        reply: None,
        caller,
    };
    // Past here every request costs NATS round trips. Only so many run at
    // once; one that cannot start soon after it arrived is shed now, with a
    // fast 503, rather than queue into a late answer.
    let accepting = admit(&state, received).await?;
    // Subscribe before looking, so a result landing in between is not missed.
    let mut landed = state.results.subscribe();
    let accept_by = received + ACCEPT_WITHIN;
    let answer_by = received + ANSWER_WITHIN;

    if let Some(outcome) = known_outcome(&state, key.as_str(), accept_by).await? {
        // Known, though not in this replica's memory yet: same as above.
        tracing::debug!(job_id, message_key = %key, "answered from the results bucket");
        metrics::counter!("sign_cache_hits_total").increment(1);
        return answer_now(&job_id, &input.message, outcome);
    }

    let configured = job
        .caller
        .as_deref()
        .and_then(|name| state.config.callers.get(name));
    let expect = expectations(&state, key.as_str(), configured, accept_by).await?;
    let request = SignRequestV1 {
        job_id: job_id.clone(),
        message: input.message.clone(),
        caller: configured.map(Caller::claimant),
    };
    // Spans per step (accept, publish, wait), in the request's trace; the
    // publish span's context travels with the request to the signer.
    let accept = async {
        save(&state.topo.jobs, &job_id, &job, 0)
            .await
            .map_err(|e| e.to_string())?;
        let publish = async {
            publish_once(
                &state.topo.js,
                names::REQUESTS_SUBJECT,
                &job_id,
                &request_id,
                current_trace().as_ref(),
                &request,
            )
            .await
            .map_err(|e| e.to_string())
        };
        publish
            .instrument(info_span!("publish", otel.kind = "producer", job_id))
            .await
    };
    let accepted = timeout_at(accept_by, accept.instrument(info_span!("accept", job_id))).await;
    let failure = match accepted {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(e),
        Err(_) => Some("accepting the job timed out".to_owned()),
    };
    if let Some(e) = failure {
        // The job may still have been queued (a write can land after we
        // stopped waiting for its ack). The caller is told 503 and will
        // retry, so make sure it is not also sent a webhook.
        tokio::spawn(withdraw(state.topo.jobs.clone(), job));
        return Err(ApiError::Unavailable(e));
    }
    drop(accepting);
    tracing::info!(job_id, message_key = %key, "job accepted");
    metrics::counter!("sign_jobs_accepted_total").increment(1);

    let mut deadline = received + state.config.sign_wait;
    if expect
        .call_in
        .is_some_and(|call_in| Instant::now() + call_in > deadline)
    {
        // No call can start in time to produce the result (the queue is
        // long, or a message already waiting is not next): answer now.
        deadline = Instant::now();
    }
    let wait = async {
        let mut result = wait_for(&mut landed, key.as_str(), deadline).await;
        if result.is_none() {
            // The watch may have missed it (e.g. across a broker restart).
            let check_by = answer_by - Duration::from_millis(150);
            if let Ok(Ok(v)) = timeout_at(
                check_by,
                load::<ResultRecord>(&state.topo.results, "result", key.as_str()),
            )
            .await
            {
                result = v.value;
            }
        }
        Span::current().record("landed", result.is_some());
        result
    };
    let result = wait
        .instrument(info_span!("wait", job_id, landed = tracing::field::Empty))
        .await;
    match result {
        Some(result) => {
            match timeout_at(answer_by, claim_reply(&state, &job_id, Reply::Immediate)).await {
                Ok(Ok(true)) => {
                    metrics::counter!("sign_replies_total", "reply" => "immediate").increment(1);
                    state
                        .recent
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(key.as_str());
                    return answer_now(&job_id, &input.message, result.outcome);
                }
                Ok(Ok(false)) => {} // The notifier already owes this caller a webhook.
                Ok(Err(_)) | Err(_) => {
                    // Unknown whether the claim landed: a 200 now could come
                    // with a webhook too, if the claim never lands. Answer
                    // 202, and overrule the claim in case it lands late.
                    tracing::warn!(job_id, "reply claim unconfirmed; answering 202");
                    tokio::spawn(answered_202(state.topo.jobs.clone(), job_id.clone()));
                }
            }
        }
        None => {
            if let Ok(Ok(false)) =
                timeout_at(answer_by, claim_reply(&state, &job_id, Reply::Deferred)).await
            {
                tracing::warn!(job_id, "reply already decided as immediate");
            }
        }
    }
    metrics::counter!("sign_replies_total", "reply" => "deferred").increment(1);
    Ok(pending(&state, &job_id, &input, expect.estimate))
}

/// The outcome for `key` from the results bucket, remembered in memory.
async fn known_outcome(
    state: &AppState,
    key: &str,
    by: Instant,
) -> Result<Option<Outcome>, ApiError> {
    let stored = timeout_at(by, load::<ResultRecord>(&state.topo.results, "result", key))
        .await
        .map_err(|_| ApiError::Unavailable("reading results timed out".into()))?
        .map_err(|e| ApiError::Unavailable(e.to_string()))?
        .value;
    Ok(stored.map(|r| {
        state.cache.insert(key, r.outcome.clone());
        r.outcome
    }))
}

/// Wait until `deadline` for `key`'s result to land.
async fn wait_for(
    landed: &mut broadcast::Receiver<crate::results_watch::Landed>,
    key: &str,
    deadline: Instant,
) -> Option<ResultRecord> {
    loop {
        tokio::select! {
            next = landed.recv() => match next {
                Ok((k, record)) if k == key => return Some(record),
                Ok(_) | Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => {
                    tokio::time::sleep_until(deadline).await;
                    return None;
                }
            },
            _ = tokio::time::sleep_until(deadline) => return None,
        }
    }
}

fn answer_now(job_id: &str, message: &str, outcome: Outcome) -> Result<Answer, ApiError> {
    match outcome {
        Outcome::Signed { signature } => Ok(Answer::Signed(SignedBody {
            id: job_id.to_owned(),
            status: JobState::Signed,
            message: message.to_owned(),
            signature,
        })),
        Outcome::Failed { reason } => Err(ApiError::SigningFailed {
            id: job_id.to_owned(),
            reason,
        }),
    }
}

/// Seconds until a retry is worth it: one budget slot's worth of time, as
/// the signer said (the real upstream's 6 s when it did not answer).
pub fn retry_after_secs(slot_every: Option<Duration>) -> u64 {
    const REAL_UPSTREAM_SLOT: Duration = Duration::from_secs(6);
    slot_every
        .unwrap_or(REAL_UPSTREAM_SLOT)
        .as_secs_f64()
        .ceil()
        .max(1.0) as u64
}

/// The status resource's URL.
pub fn status_url(state: &AppState, job_id: &str) -> String {
    let path = format!("/crypto/sign/jobs/{job_id}");
    match &state.config.public_base_url {
        Some(base) => format!("{base}{path}"),
        None => path,
    }
}

fn pending(state: &AppState, job_id: &str, input: &SignInput, expect: Option<Estimate>) -> Answer {
    let url = status_url(state, job_id);
    // Worth asking again once the first call has had time to land.
    let retry_after = match expect {
        Some(e) => e.first_call_in.as_secs() + retry_after_secs(Some(e.slot_every)),
        None => retry_after_secs(None),
    };
    let first_call_at = expect.map(|e| SystemClock.now().plus(e.first_call_in).to_rfc3339());
    Answer::Pending(PendingBody {
        id: job_id.to_owned(),
        status: JobState::Pending,
        message: input.message.clone(),
        status_url: url,
        webhook_url: input.webhook_url.clone(),
        retry_after_seconds: retry_after,
        estimated_first_call_at: first_call_at,
    })
}

/// A place among the requests doing NATS work, waited for until
/// `SHED_AFTER` past `received`; else `503` problem+json
/// (`/problems/overloaded`) with `Retry-After`.
async fn admit(
    state: &AppState,
    received: Instant,
) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    // A free place is taken even past the deadline: the timeout polls the
    // acquire before it looks at the clock.
    let by = received + state.config.shed_after;
    match timeout_at(by, Arc::clone(&state.accepting).acquire_owned()).await {
        Ok(Ok(place)) => Ok(place),
        _ => {
            crate::admission::refused("overloaded", None);
            Err(ApiError::Busy { retry_after: 1 })
        }
    }
}
