//! The live status page (`GET /status`, also `/`) and its data
//! (`GET /status.json`): pending work, the budget window slot by slot, the
//! last upstream calls, and recent webhook deliveries.
//!
//! Plain HTML, CSS and a little JavaScript compiled into the binary; the page
//! polls `/status.json` every two seconds. Everything shown comes from
//! JetStream, so any api replica shows the same picture.

use crate::state::AppState;
use async_nats::jetstream::kv;
use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::Mutex;
use tokio_util::sync::CancellationToken;
use wire_contract::mirror::follow_puts;
use wire_contract::records::{DeliveryRecord, DeliveryState, LimiterState, RecentCalls};
use wire_contract::time::{Clock, SystemClock};
use wire_contract::{load, names};

const PAGE: &str = include_str!("status_page.html");
/// Webhook deliveries remembered for the page.
const KEEP: usize = 50;

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

/// `GET /status.json`: the figures the page shows.
pub async fn data(State(state): State<AppState>) -> Response {
    let now = SystemClock.now();
    let (pending, untried, oldest, sample) = {
        let items = state.work.items();
        let untried = items.values().filter(|w| w.attempts == 0).count();
        let oldest = items.values().map(|w| w.first_seen).min();
        let mut sample: Vec<_> = items.iter().collect();
        sample.sort_by_key(|(_, w)| w.first_seen);
        let sample: Vec<Value> = sample
            .iter()
            .take(20)
            .map(|(k, w)| {
                json!({
                    "message_key": k,
                    "message": w.message.chars().take(60).collect::<String>(),
                    "jobs": w.jobs.len(),
                    "attempts": w.attempts,
                    "waiting_s": now.since(w.first_seen).as_secs(),
                    "in_flight": w.lease.as_ref().is_some_and(|l| l.until > now),
                    "last_error": w.last_error,
                })
            })
            .collect();
        (items.len(), untried, oldest, sample)
    };
    let window = state.config.rate_window;
    let limit = state.config.rate_limit;
    let calls = load::<LimiterState>(&state.topo.limiter, "limiter state", names::LIMITER_KEY)
        .await
        .ok()
        .and_then(|v| Some(v.value?.starts(v.written?)))
        .unwrap_or_default();
    let mut slots: Vec<Value> = calls
        .iter()
        .filter(|c| c.plus(window) > now)
        .map(|c| json!({"used_at": c.to_rfc3339(), "frees_in_ms": c.plus(window).since(now).as_millis() as u64}))
        .collect();
    let used = slots.len();
    slots.truncate(limit as usize);
    let recent_calls =
        load::<RecentCalls>(&state.topo.limiter, "recent calls", names::RECENT_CALLS_KEY)
            .await
            .ok()
            .and_then(|v| v.value)
            .unwrap_or_default()
            .calls;
    let calls_json: Vec<Value> = recent_calls
        .iter()
        .rev()
        .take(20)
        .map(|c| json!({"at": c.at.to_rfc3339(), "ago_s": now.since(c.at).as_secs(), "message_key": c.message_key, "outcome": c.outcome, "detail": c.detail, "latency_ms": c.latency_ms}))
        .collect();
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
    axum::Json(json!({
        "now": now.to_rfc3339(),
        "pending": {"messages": pending, "untried": untried, "retrying": pending - untried,
                     "oldest_age_s": oldest.map(|t| now.since(t).as_secs()), "oldest": sample},
        "budget": {"limit": limit, "window_s": window.as_secs_f64(), "used": used, "slots": slots},
        "upstream_calls": calls_json,
        "webhooks": {"delivered_since_start": totals.0, "failed_since_start": totals.1, "recent": deliveries},
    }))
    .into_response()
}
