//! What the notifier tells about itself: its part of the status page.
//!
//! Circuit breakers live in each notifier replica's memory, so every
//! replica answers (no queue group) and the asker gathers what comes within
//! a short wait. Bounded: counts, and at most [`MAX_SAMPLES`] open circuits
//! per replica, however many destinations fail.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Open circuits a replica names in its answer (the rest are counted).
pub const MAX_SAMPLES: usize = 5;

/// One notifier replica's webhook figures (notifier -> api, on request).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WebhookStatusV1 {
    /// Which replica (`NOTIFIER_ID`).
    pub notifier: String,
    /// Destinations whose circuit is open now.
    pub circuits_open: usize,
    /// A few of them, longest failing first.
    pub open: Vec<OpenCircuitV1>,
    /// Deliveries put back because their destination had no room, since start.
    pub deferred_busy: u64,
}

/// A destination that is not being sent to for now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenCircuitV1 {
    /// `host:port` as named in webhook URLs, or the address it resolved to.
    pub destination: String,
    /// Failures in a row.
    pub failures: u32,
    /// When a probe may next go out (RFC 3339).
    pub until: String,
}

/// Ask every notifier replica for its figures, gathering answers for
/// `within`; none at all is an empty list.
///
/// # Errors
/// A NATS error if the question cannot be sent.
pub async fn ask_webhook_status(
    client: &async_nats::Client,
    within: Duration,
) -> Result<Vec<WebhookStatusV1>, async_nats::Error> {
    use futures::StreamExt;
    let inbox = client.new_inbox();
    let mut answers = client.subscribe(inbox.clone()).await?;
    client
        .publish_with_reply(crate::names::WEBHOOK_STATUS_SUBJECT, inbox, "".into())
        .await?;
    let mut gathered = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    while let Ok(Some(answer)) = tokio::time::timeout_at(deadline, answers.next()).await {
        match crate::decode::<WebhookStatusV1>("webhook status", &answer.payload) {
            Ok(status) => gathered.push(status),
            Err(e) => tracing::debug!(error = %e, "undecodable webhook status"),
        }
    }
    Ok(gathered)
}
