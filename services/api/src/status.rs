//! The live status page (`GET /status`, also `/`) and its data
//! (`GET /status.json`): pending work, the budget window slot by slot, the
//! last upstream calls, recent webhook deliveries, and the webhook
//! destinations whose circuit is open.
//!
//! Plain HTML, CSS and a little JavaScript compiled into the binary; the page
//! polls `/status.json` every two seconds. Everything shown comes from
//! JetStream or from a signer's answer, so any api replica shows the same
//! picture.

use crate::auth;
use crate::state::AppState;
use async_nats::jetstream::kv;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use wire_contract::mirror::follow_puts;
use wire_contract::notifier_answers::{WebhookStatusV1, ask_webhook_status};
use wire_contract::records::{DeliveryRecord, DeliveryState};
use wire_contract::signer_answers::{SignerStatusV1, ask_status};
use wire_contract::time::{Clock, SystemClock};

const PAGE: &str = include_str!("status_page.html");
/// Webhook deliveries remembered for the page.
const KEEP: usize = 50;
/// How long the page waits for the notifier replicas' answers (each
/// answers from memory, at once).
const NOTIFIERS_WITHIN: Duration = Duration::from_millis(300);

/// `GET /status`: the page.
pub async fn page() -> Html<&'static str> {
    Html(PAGE)
}

/// Recent webhook delivery changes, fed by a watch on the deliveries bucket.
#[derive(Default)]
pub struct DeliveryFeed {
    recent: Mutex<VecDeque<Value>>,
    totals: Mutex<(u64, u64)>,
}

impl DeliveryFeed {
    fn push(&self, job_id: &str, record: &DeliveryRecord) {
        let state = match record.state {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
            DeliveryState::NotRequired => return,
        };
        let last = record.attempts.last();
        let entry = json!({
            "job_id": job_id,
            "state": state,
            "attempts": record.attempts.len(),
            "at": last.map(|a| a.at.to_rfc3339()),
            "status": last.and_then(|a| a.status),
            "error": last.and_then(|a| a.error.clone()),
            "latency_ms": last.map(|a| a.latency_ms),
        });
        {
            let mut totals = self.totals.lock().unwrap_or_else(|p| p.into_inner());
            match record.state {
                DeliveryState::Delivered => totals.0 += 1,
                DeliveryState::Failed => totals.1 += 1,
                _ => {}
            }
        }
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.push_back(entry);
        while recent.len() > KEEP {
            recent.pop_front();
        }
    }

    /// Follow the deliveries bucket (new changes only) until `shutdown`.
    pub async fn follow(&self, store: kv::Store, shutdown: CancellationToken) {
        follow_puts(
            store,
            "delivery",
            shutdown,
            |key, record: DeliveryRecord| self.push(&key, &record),
        )
        .await;
    }
}

/// `GET /status.json`: the figures the page shows. The pending work, the
/// budget and the upstream calls are the signer's to tell
/// (`sign.ask.status`); the webhook deliveries are the api's own feed.
///
/// Messages, message keys, job ids and errors only with the admin token
/// (or on a wholly open gateway, [`auth::sees_details`]); otherwise the same
/// document with the counts and the budget only, and `"details": false`.
pub async fn data(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let details = auth::sees_details(&state, &headers);
    let now = SystemClock.now();
    let client = state.topo.js.client();
    let (signer, notifiers) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(1), ask_status(&client)),
        ask_webhook_status(&client, NOTIFIERS_WITHIN),
    );
    let (signer, signer_error) = match signer {
        Ok(Ok(status)) => (status, None),
        Ok(Err(e)) => (SignerStatusV1::default(), Some(e.to_string())),
        Err(_) => (
            SignerStatusV1::default(),
            Some("no signer answered within 1 s".to_owned()),
        ),
    };
    let circuits = circuits(notifiers.unwrap_or_default(), details);
    let (deliveries, totals) = {
        let recent = state
            .deliveries
            .recent
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let totals = *state
            .deliveries
            .totals
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        (recent.iter().rev().cloned().collect::<Vec<_>>(), totals)
    };
    let (mut pending, mut calls, mut deliveries) =
        (signer.pending, signer.upstream_calls, deliveries);
    if !details {
        pending.oldest.clear();
        calls.clear();
        deliveries.clear();
    }
    axum::Json(json!({
        "now": now.to_rfc3339(),
        "details": details,
        "pending": pending,
        "budget": signer.budget,
        "upstream_calls": calls,
        "signer_error": signer_error,
        "webhooks": {
            "delivered_since_start": totals.0,
            "failed_since_start": totals.1,
            "recent": deliveries,
            "circuits": circuits,
        },
    }))
    .into_response()
}

/// The notifiers' open circuits: how many replicas answered, how many
/// circuits are open in all, and a few of them (destinations only with
/// details: they are callers' receivers).
fn circuits(answers: Vec<WebhookStatusV1>, details: bool) -> Value {
    let notifiers_answering = answers.len();
    let open: usize = answers.iter().map(|a| a.circuits_open).sum();
    let deferred: u64 = answers.iter().map(|a| a.deferred_busy).sum();
    let mut samples: Vec<_> = answers.into_iter().flat_map(|a| a.open).collect();
    samples.sort_by_key(|c| std::cmp::Reverse(c.failures));
    samples.truncate(wire_contract::notifier_answers::MAX_SAMPLES);
    if !details {
        samples.clear();
    }
    json!({"notifiers_answering": notifiers_answering, "open": open, "deferred_busy": deferred, "samples": samples})
}
