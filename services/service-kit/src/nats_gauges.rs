//! NATS gauges for the operators' alerts (ops/prometheus): whether this
//! replica reaches NATS, the consumers' lag and the dead letters kept.
//!
//! Kept up to date by a background task ([`refresh_nats_gauges`]) rather
//! than read at each scrape: a scrape then costs no NATS request (the api's
//! `/metrics` is public, and every GET would otherwise make about a dozen),
//! it answers at once whatever NATS does, and `nats_ready` is judged with
//! the same patience as the service's `/readyz` instead of a scrape-sized
//! one that would report a slow NATS as gone. Every replica of every
//! service reports the same consumers and stream (its own view); the rules
//! aggregate with `max`.

use std::time::Duration;
use tokio_util::sync::CancellationToken;
use wire_contract::Topology;
use wire_contract::names::{
    DEAD_LETTER_STREAM, EVENTS_STREAM, NOTIFIER_CONSUMER, REQUESTS_STREAM, SIGNER_CONSUMER,
};

/// How often the gauges are refreshed: a few per Prometheus scrape interval
/// (15 s in ops/prometheus), so a scrape sees values at most this old.
pub const REFRESH_EVERY: Duration = Duration::from_secs(3);

/// The durable consumers whose undelivered messages are the pipeline's lag.
const CONSUMERS: [(&str, &str); 2] = [
    (REQUESTS_STREAM, SIGNER_CONSUMER),
    (EVENTS_STREAM, NOTIFIER_CONSUMER),
];

/// Refresh, every [`REFRESH_EVERY`] until `shutdown`:
///
/// - `nats_ready`: 1 when every stream and bucket answers within `within`
///   (pass the service's `/readyz` timeout: the gauge is that check), else 0;
/// - `nats_consumer_pending{consumer}`: messages not yet delivered to the
///   consumer (its `num_pending`);
/// - `nats_stream_messages{stream="WEBHOOK_DEAD_LETTERS"}`: dead letters kept;
/// - `sign_results_stored`: results in the signature cache.
///
/// When NATS does not answer, the lag and dead-letter gauges keep their last
/// value; `nats_ready 0` says they are stale (ConsumerLagHigh requires
/// `nats_ready 1`).
pub async fn refresh_nats_gauges(
    topology: Topology,
    within: Duration,
    shutdown: CancellationToken,
) {
    crate::every(REFRESH_EVERY, &shutdown, || refresh(&topology, within)).await;
}

async fn refresh(topology: &Topology, within: Duration) {
    let ready = tokio::time::timeout(within, topology.check())
        .await
        .is_ok_and(|checked| checked.is_ok());
    metrics::gauge!("nats_ready").set(if ready { 1.0 } else { 0.0 });
    if ready {
        // Bounded like the check: a stuck read must not stop the refreshes.
        let _ = tokio::time::timeout(within, lag_and_dead_letters(topology)).await;
    }
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
    // The signature cache's size, bounded by SIGNATURE_RETENTION (a removed
    // or aged-out key's marker may count for MARKER_TTL).
    if let Ok(status) = topology.results.status().await {
        metrics::gauge!("sign_results_stored").set(status.values() as f64);
    }
}
