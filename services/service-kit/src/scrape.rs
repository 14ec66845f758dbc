//! `/metrics` with NATS gauges read at scrape time, for the operators' alerts
//! (ops/prometheus): whether this replica reaches NATS, the consumers' lag
//! and the dead letters kept.
//!
//! Read from the server at each scrape rather than kept up to date by a task:
//! a scrape then reports what NATS says now, and a replica that cannot reach
//! it says so in the same answer. Every replica of every service reports the
//! same consumers and stream (its own view); the rules aggregate with `max`.

use std::time::Duration;
use wire_contract::Topology;
use wire_contract::names::{
    DEAD_LETTER_STREAM, EVENTS_STREAM, NOTIFIER_CONSUMER, REQUESTS_STREAM, SIGNER_CONSUMER,
};

/// How long a scrape waits for NATS. Below the tests' 1 s scrape timeout, so
/// an unreachable NATS shows as `nats_ready 0`, not as a failed scrape.
const NATS_WITHIN: Duration = Duration::from_millis(500);

/// The durable consumers whose undelivered messages are the pipeline's lag.
const CONSUMERS: [(&str, &str); 2] = [
    (REQUESTS_STREAM, SIGNER_CONSUMER),
    (EVENTS_STREAM, NOTIFIER_CONSUMER),
];

/// `GET /metrics` as [`crate::metrics_router`], after setting:
///
/// - `nats_ready`: 1 when every stream and bucket answers (what `/readyz`
///   checks), else 0;
/// - `nats_consumer_pending{consumer}`: messages not yet delivered to the
///   consumer (its `num_pending`);
/// - `nats_stream_messages{stream="WEBHOOK_DEAD_LETTERS"}`: dead letters kept.
///
/// When NATS does not answer, the lag and dead-letter gauges keep their last
/// value; `nats_ready 0` says they are stale.
pub fn metrics_router_with_nats<S: Clone + Send + Sync + 'static>(
    topology: Topology,
) -> axum::Router<S> {
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let topology = topology.clone();
            async move {
                let ready = tokio::time::timeout(NATS_WITHIN, topology.check())
                    .await
                    .is_ok_and(|checked| checked.is_ok());
                metrics::gauge!("nats_ready").set(if ready { 1.0 } else { 0.0 });
                if ready {
                    let _ =
                        tokio::time::timeout(NATS_WITHIN, lag_and_dead_letters(&topology)).await;
                }
                crate::render_metrics()
            }
        }),
    )
}

async fn lag_and_dead_letters(topology: &Topology) {
    for (stream, consumer) in CONSUMERS {
        let Ok(stream) = topology.js.get_stream(stream).await else {
            continue;
        };
        if let Ok(info) = stream.consumer_info(consumer).await {
            metrics::gauge!("nats_consumer_pending", "consumer" => consumer)
                .set(info.num_pending as f64);
        }
    }
    // get_stream fetches the stream's info, so its cached info is fresh.
    if let Ok(stream) = topology.js.get_stream(DEAD_LETTER_STREAM).await {
        metrics::gauge!("nats_stream_messages", "stream" => DEAD_LETTER_STREAM)
            .set(stream.cached_info().state.messages as f64);
    }
}
