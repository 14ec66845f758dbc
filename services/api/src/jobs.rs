//! `GET /crypto/sign/jobs/{id}`: the status monitor of a job.

use crate::problem::ApiError;
use crate::sign::retry_after_secs;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use wire_contract::messages::Outcome;
use wire_contract::records::{DeliveryRecord, DeliveryState, JobRecord, Reply, ResultRecord, WorkItem};
use wire_contract::{MessageKey, load};

/// Show a job: pending, signed or failed; attempts; webhook delivery.
pub async fn show(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    if uuid::Uuid::parse_str(&id).is_err() {
        return Err(ApiError::UnknownJob(id));
    }
    let unavailable = |e: wire_contract::RecordError| ApiError::Unavailable(e.to_string());
    let job = load::<JobRecord>(&state.topo.jobs, "job", &id)
        .await
        .map_err(unavailable)?
        .value
        .ok_or_else(|| ApiError::UnknownJob(id.clone()))?;
    let key = MessageKey::of(&job.message);
    let result = load::<ResultRecord>(&state.topo.results, "result", key.as_str()).await.map_err(unavailable)?.value;
    let work = match result {
        Some(_) => None,
        None => load::<WorkItem>(&state.topo.work, "work item", key.as_str()).await.map_err(unavailable)?.value,
    };
    let delivery = load::<DeliveryRecord>(&state.topo.deliveries, "delivery", &id).await.map_err(unavailable)?.value;

    let mut body = json!({
        "id": job.id,
        "message": job.message,
        "created_at": job.created_at.to_rfc3339(),
        "webhook_url": job.webhook_url,
        "reply": match job.reply {
            Some(Reply::Immediate) => json!("200"),
            Some(Reply::Deferred) => json!("202"),
            None => Value::Null,
        },
    });
    let pending = match &result {
        Some(r) => {
            body["attempts"] = json!(r.attempts);
            match &r.outcome {
                Outcome::Signed { signature } => {
                    body["status"] = json!("signed");
                    body["signature"] = json!(signature);
                }
                Outcome::Failed { reason } => {
                    body["status"] = json!("failed");
                    body["error"] = json!(reason);
                }
            }
            false
        }
        None => {
            body["status"] = json!("pending");
            body["attempts"] = json!(work.as_ref().map(|w| w.attempts).unwrap_or(0));
            body["last_error"] = json!(work.as_ref().and_then(|w| w.last_error.clone()));
            true
        }
    };
    body["webhook"] = webhook_view(&job, delivery.as_ref());
    let mut response = axum::Json(body).into_response();
    if pending {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs(&state)));
    }
    Ok(response)
}

fn webhook_view(job: &JobRecord, delivery: Option<&DeliveryRecord>) -> Value {
    if job.webhook_url.is_none() || job.reply == Some(Reply::Immediate) {
        return json!({"state": "not_required", "attempts": []});
    }
    let Some(d) = delivery else {
        return json!({"state": "waiting_for_result", "attempts": []});
    };
    let state = match d.state {
        DeliveryState::Pending => "pending",
        DeliveryState::Delivered => "delivered",
        DeliveryState::Failed => "failed",
        DeliveryState::NotRequired => "not_required",
    };
    let attempts: Vec<Value> = d
        .attempts
        .iter()
        .map(|a| json!({"at": a.at.to_rfc3339(), "status": a.status, "error": a.error, "latency_ms": a.latency_ms}))
        .collect();
    json!({
        "state": state,
        "attempts": attempts,
        "next_attempt_at": d.next_attempt_at.map(|t| t.to_rfc3339()),
    })
}
