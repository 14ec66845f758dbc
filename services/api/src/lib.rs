//! The api: the HTTP front door of the signing gateway.
//!
//! It never calls the upstream. It records each caller's job, publishes a
//! sign request to JetStream, waits briefly for the signer's result and
//! answers 200 (signature) or 202 (status URL; a webhook follows).

pub mod admission;
pub mod auth;
pub mod bodies;
pub mod config;
pub mod error_bodies;
pub mod input;
pub mod jobs;
pub mod keep_jobs;
pub mod metrics;
pub mod openapi;
pub mod problem;
pub mod quotas;
pub mod reply;
pub mod request_id;
pub mod request_labels;
pub mod request_timeout;
pub mod result_cache;
pub mod results_watch;
pub mod sign;
pub mod state;
pub mod status;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Router, middleware};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use wire_contract::Topology;

pub use config::Config;
use input::Rules;
use state::AppState;

/// The router, for `run` and for tests.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/crypto/sign", get(sign::get).post(sign::post))
        .route("/crypto/sign/jobs/{id}", get(jobs::show))
        .route("/", get(status::page))
        .route("/status", get(status::page))
        .route("/status.json", get(status::data))
        .route("/healthz", get(healthz))
        .route("/readyz", get(ready))
        .route("/openapi.json", get(openapi::openapi_json))
        .fallback(|| async { StatusCode::NOT_FOUND })
        .layer(DefaultBodyLimit::max(64 * 1024))
        .layer(middleware::from_fn(request_timeout::enforce))
        .layer(middleware::from_fn(error_bodies::as_problems))
        .layer(middleware::from_fn(metrics::track))
        .layer(middleware::from_fn(request_id::assign))
        .merge(service_kit::metrics_router())
        .with_state(state)
}

/// The process is alive (no dependency is checked).
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    summary = "Liveness",
    responses((status = 200, description = "`ok`", body = String, content_type = "text/plain"))
)]
async fn healthz() -> &'static str {
    "ok"
}

/// NATS answers and every stream and bucket exists.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    summary = "Readiness",
    responses(
        (status = 200, description = "`ready`", body = String, content_type = "text/plain"),
        (status = 503, description = "Why not ready", body = String, content_type = "text/plain"),
    )
)]
async fn ready(State(state): State<AppState>) -> (StatusCode, String) {
    service_kit::readiness(&state.topo, READY_WITHIN).await
}

/// How long `/readyz` waits for NATS, and so the `nats_ready` gauge: below
/// the usual 2 s probe timeout, so a slow NATS reads as not ready rather
/// than as a probe that timed out.
const READY_WITHIN: std::time::Duration = std::time::Duration::from_millis(1500);

/// Serve on `listener` until `shutdown`; requests in flight are answered.
pub async fn run(
    listener: tokio::net::TcpListener,
    config: Config,
    topo: Topology,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    if config.callers.is_open() {
        tracing::warn!(
            "NO CALLERS CONFIGURED (CALLERS, CALLERS_FILE): the gateway is OPEN; anyone who reaches it can spend the upstream budget and read any job's status"
        );
    } else {
        tracing::info!(
            callers = config.callers.len(),
            admin_token = config.admin_token.is_set(),
            "caller keys required"
        );
    }
    let cache = Arc::new(result_cache::ResultCache::new(config.result_cache_entries));
    let results = results_watch::spawn(topo.results.clone(), Arc::clone(&cache), shutdown.clone());
    let deliveries = Arc::new(status::DeliveryFeed::default());
    {
        let (feed, store, shutdown) = (
            Arc::clone(&deliveries),
            topo.deliveries.clone(),
            shutdown.clone(),
        );
        tokio::spawn(async move { feed.follow(store, shutdown).await });
    }
    tokio::spawn(keep_jobs::serve(topo.clone(), shutdown.clone()));
    tokio::spawn(service_kit::refresh_nats_gauges(
        topo.clone(),
        READY_WITHIN,
        shutdown.clone(),
    ));
    // Constant, exported so that the backlog's drain time can be compared
    // with it (ops/prometheus: BacklogDrainNearHorizon).
    ::metrics::gauge!("sign_backlog_horizon_seconds").set(config.backlog_horizon.as_secs_f64());
    // From 0 at start: a counter born with its first refusals shows no
    // increase to Prometheus (ops/prometheus: SignRequestsRefused).
    ::metrics::counter!("sign_jobs_refused_total", "reason" => "backlog_full").increment(0);
    ::metrics::counter!("sign_jobs_refused_total", "reason" => "overloaded").increment(0);
    let rules = Rules {
        max_message_bytes: config.max_message_bytes,
        allowed_cidrs: config.webhook_allowed_cidrs.clone(),
    };
    let quotas = Arc::new(quotas::Quotas::new(&config.callers));
    let state = AppState {
        accepting: Arc::new(tokio::sync::Semaphore::new(config.max_accepting)),
        quotas,
        topo: Arc::new(topo),
        config: Arc::new(config),
        rules: Arc::new(rules),
        results,
        recent: Default::default(),
        deliveries,
        cache,
    };
    service_kit::serve_http(listener, app(state), shutdown).await
}
