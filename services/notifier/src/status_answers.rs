//! The notifier's part of the status page, on request
//! (`webhooks.ask.status`), and the open-circuits gauge.
//!
//! Circuits are per replica (in memory), so every replica answers, with
//! its counts and a few samples ([`wire_contract::notifier_answers`]); the
//! api gathers them.

use crate::handle::Shared;
use futures::StreamExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use wire_contract::names::WEBHOOK_STATUS_SUBJECT;
use wire_contract::notifier_answers::WebhookStatusV1;
use wire_contract::pause::pause;

/// `webhook_circuits_open`: destinations this replica is not sending to.
pub const CIRCUITS_OPEN: &str = "webhook_circuits_open";

/// This replica's figures now.
pub fn status(shared: &Shared) -> WebhookStatusV1 {
    let (circuits_open, open) = shared.destinations.open_circuits(shared.clock.now());
    WebhookStatusV1 {
        notifier: shared.config.notifier_id.clone(),
        circuits_open,
        open,
        deferred_busy: shared.deferred_busy.load(Ordering::Relaxed),
    }
}

/// Answer status questions and refresh the gauge (pruning the
/// destinations) until `shutdown`.
pub async fn serve(shared: Arc<Shared>, shutdown: CancellationToken) {
    // Also where destinations with nothing to remember are forgotten, so
    // sending never scans the map.
    let gauge = service_kit::every(Duration::from_secs(5), &shutdown, || async {
        let now = shared.clock.now();
        shared.destinations.prune(now);
        let (open, _) = shared.destinations.open_circuits(now);
        metrics::gauge!(CIRCUITS_OPEN).set(open as f64);
    });
    tokio::join!(gauge, answer(&shared, &shutdown));
}

async fn answer(shared: &Shared, shutdown: &CancellationToken) {
    let client = shared.topology.js.client();
    while !shutdown.is_cancelled() {
        let mut questions = match client.subscribe(WEBHOOK_STATUS_SUBJECT).await {
            Ok(sub) => sub,
            Err(e) => {
                tracing::warn!(error = %e, "cannot subscribe to status questions; retrying");
                if pause(shutdown, Duration::from_secs(1)).await {
                    continue;
                }
                return;
            }
        };
        loop {
            let question = tokio::select! {
                q = questions.next() => q,
                _ = shutdown.cancelled() => return,
            };
            let Some(question) = question else { break };
            let Some(reply) = question.reply else {
                continue;
            };
            let answer = wire_contract::encode(&status(shared));
            if let Err(e) = client.publish(reply, answer).await {
                tracing::debug!(error = %e, "could not answer a status question");
            }
        }
    }
}
