//! The retry index: a delivery that must wait is handed to JetStream, not
//! held.
//!
//! Waiting used to be a delayed NAK, and a NAKed message still counts
//! against its consumer's `max_ack_pending`: ten thousand webhooks waiting
//! for a dead receiver took every place, and nobody's webhook went out.
//! Now the wait is a JetStream message schedule (nats-server 2.12): the
//! event is stored on `webhooks.retry.at.<job_id>` with `Nats-Schedule:
//! @at <time>`, and the server publishes it on `webhooks.retry.due.<job_id>`
//! when the time comes, where the notifier's retry consumer takes it. The
//! message that asked for the wait is then acked. One schedule per job: a
//! newer one replaces the older (the schedule's subject is its identity).
//!
//! The delivery record stays the truth. A due message whose record says
//! "not yet" (or "done") is rescheduled (or acked), so a lost or repeated
//! schedule can only make an attempt late or look again, never repeat a
//! finished delivery.

use async_nats::HeaderMap;
use async_nats::header::{NATS_SCHEDULE, NATS_SCHEDULE_TARGET};
use async_nats::jetstream;
use wire_contract::UnixMillis;
use wire_contract::headers::{TraceContext, with_request_id_and_trace};
use wire_contract::messages::JobEventV1;
use wire_contract::names::{RETRY_AT_SUBJECT, RETRY_DUE_SUBJECT};

/// The headers that make a stored message a one-shot schedule for `at`,
/// published on `target`.
pub fn schedule_headers(mut headers: HeaderMap, at: UnixMillis, target: &str) -> HeaderMap {
    headers.insert(NATS_SCHEDULE, format!("@at {}", at.to_rfc3339()).as_str());
    headers.insert(NATS_SCHEDULE_TARGET, target);
    headers
}

/// Have `event` come back to the notifier at `at` (at once if `at` has
/// passed), replacing any earlier schedule of its job.
///
/// # Errors
/// The publish was not confirmed: the caller keeps the message it is
/// handling and tries again.
pub async fn schedule(
    js: &jetstream::Context,
    event: &JobEventV1,
    request_id: &str,
    trace: Option<&TraceContext>,
    at: UnixMillis,
) -> Result<(), async_nats::Error> {
    let id = &event.job_id;
    let headers = schedule_headers(
        with_request_id_and_trace(request_id, trace),
        at,
        &format!("{RETRY_DUE_SUBJECT}.{id}"),
    );
    js.publish_with_headers(
        format!("{RETRY_AT_SUBJECT}.{id}"),
        headers,
        wire_contract::encode(event),
    )
    .await?
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_names_its_time_in_utc_and_its_target() {
        let h = schedule_headers(HeaderMap::new(), UnixMillis(1_795_000_000_250), "t.x");
        assert_eq!(
            h.get(NATS_SCHEDULE).map(|v| v.as_str()),
            Some("@at 2026-11-18T11:06:40.250Z")
        );
        assert_eq!(h.get(NATS_SCHEDULE_TARGET).map(|v| v.as_str()), Some("t.x"));
    }
}
