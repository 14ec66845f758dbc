//! Request metrics for Prometheus (`GET /metrics`); the backlog gauges are
//! published by [`crate::backlog_gauges`].
//!
//! Names follow Prometheus conventions: `_total` counters, `_seconds`
//! histograms, labels with bounded values (the route template, not the path;
//! standard methods, else `_OTHER`: [`request_labels`]).

use crate::request_labels;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use std::time::Instant;

/// Middleware: count and time every request by route and status.
pub async fn track(request: Request, next: Next) -> Response {
    let route = request_labels::route(&request);
    let method = request_labels::method(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("http_requests_total", "route" => route.clone(), "method" => method, "status" => status).increment(1);
    metrics::histogram!("http_request_duration_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}
