//! `/healthz` and `/readyz` for the signer (used by compose health checks).
//!
//! Ready means: NATS and every stream and bucket answer, and the upstream has
//! not rejected our credentials since the last success.

use axum::{Router, extract::State, http::StatusCode, routing::get};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio_util::sync::CancellationToken;
use wire_contract::Topology;

/// Readiness flags set by the worker.
#[derive(Debug)]
pub struct Health {
    credentials_ok: AtomicBool,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            credentials_ok: AtomicBool::new(true),
        }
    }
}

impl Health {
    /// Record whether the upstream accepted our credentials.
    pub fn set_credentials_ok(&self, ok: bool) {
        self.credentials_ok.store(ok, Ordering::Relaxed);
    }

    /// Whether it did, last time it said.
    pub fn credentials_ok(&self) -> bool {
        self.credentials_ok.load(Ordering::Relaxed)
    }
}

/// How long `/readyz` waits for NATS, and so the `nats_ready` gauge.
const READY_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

/// Serve health endpoints and `/metrics` on `listener`, and keep the NATS
/// gauges fresh, until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    topo: Topology,
    health: Arc<Health>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let gauges = tokio::spawn(service_kit::refresh_nats_gauges(
        topo.clone(),
        READY_WITHIN,
        shutdown.clone(),
    ));
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state((topo, health))
        .merge(service_kit::metrics_router());
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await;
    // Ends on the same token; a panic in it is not this server's failure.
    let _ = gauges.await;
    served
}

async fn ready(State((topo, health)): State<(Topology, Arc<Health>)>) -> (StatusCode, String) {
    if !health.credentials_ok() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "upstream rejects our credentials (UPSTREAM_API_KEY)".into(),
        );
    }
    service_kit::readiness(&topo, READY_WITHIN).await
}
