//! Request metrics and backlog gauges for Prometheus (`GET /metrics`).
//!
//! Names follow Prometheus conventions: `_total` counters, `_seconds`
//! histograms, labels with bounded values (the route template, not the path).

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use wire_contract::mirror::Mirror;
use wire_contract::records::WorkItem;
use wire_contract::time::{Clock, SystemClock};

/// Middleware: count and time every request by route and status.
pub async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("http_requests_total", "route" => route.clone(), "method" => method, "status" => status).increment(1);
    metrics::histogram!("http_request_duration_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Every 2 s, publish the pending messages and the age of the oldest.
pub async fn report_backlog(work: Arc<Mirror<WorkItem>>, shutdown: CancellationToken) {
    loop {
        let (pending, oldest) = {
            let items = work.items();
            (items.len(), items.values().map(|w| w.first_seen).min())
        };
        let now = SystemClock.now();
        metrics::gauge!("sign_pending_messages").set(pending as f64);
        metrics::gauge!("sign_oldest_pending_age_seconds")
            .set(oldest.map(|t| now.since(t).as_secs_f64()).unwrap_or(0.0));
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
