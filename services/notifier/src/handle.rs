//! What happens to one job event: read the records, decide, act, and say
//! how the message is to be settled.
//!
//! This is the shell around [`crate::decision::decide`]: it does the KV reads
//! and writes and the HTTP attempt, and returns a [`Disposition`] that the
//! consumer applies to the message. Nothing here holds retry state in
//! memory: the delivery record is the truth, so a redelivery after a crash
//! (or to another replica) carries on from it.

use crate::config::Config;
use crate::dead_letter::{self, DeadLetterV1};
use crate::decision::{Decision, Policy, decide};
use crate::deliver::{AttemptReport, Delivery, Sender, Verdict};
use crate::limits::HostLimits;
use crate::payload::WebhookPayload;
use crate::record;
use rand::Rng;
use service_kit::telemetry;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, info_span, warn};
use url::Url;
use wire_contract::headers::TraceContext;
use wire_contract::messages::JobEventV1;
use wire_contract::records::{DeliveryAttempt, DeliveryRecord, DeliveryState, JobRecord, Reply};
use wire_contract::time::Clock;
use wire_contract::{
    RecordError, Topology, UnixMillis, Updated, Versioned, decode, load, update_from,
};

/// Pause before retrying after a NATS error while handling a message.
const NATS_RETRY: Duration = Duration::from_secs(2);
/// Pause before looking again at a record that cannot be decoded.
const MALFORMED_RETRY: Duration = Duration::from_secs(60);
/// Decisions in a row for one message (each claim or conflict re-decides).
const MAX_ROUNDS: usize = 8;

/// How to settle a message once handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Done with it.
    Ack,
    /// Give it back, to be delivered again after the delay.
    Nak(Duration),
    /// Poison (undecodable): never deliver it again.
    Term,
}

/// Everything the handlers share.
pub struct Shared {
    /// Streams and buckets.
    pub topology: Topology,
    /// Settings.
    pub config: Config,
    /// The HTTP side.
    pub sender: Sender,
    /// Per-destination bound.
    pub hosts: HostLimits,
    /// Global bound on requests in flight (and on record reads).
    pub global: Semaphore,
    /// The wall clock (injected).
    pub clock: Arc<dyn Clock>,
    /// Cancelled once the consumer has stopped fetching (and unsubscribed):
    /// handlers that have not started sending hand their message back then.
    /// Not the caller's shutdown token itself: a NAK sent while the pull
    /// subscription still exists is redelivered straight into it and then
    /// sits out the whole ack wait.
    pub hand_back: CancellationToken,
}

/// Handle one job event (raw payload; request id and trace context from its
/// headers).
pub async fn handle(
    shared: &Shared,
    payload: &[u8],
    request_id: String,
    trace: Option<TraceContext>,
) -> Disposition {
    let event: JobEventV1 = match decode("job event", payload) {
        Ok(event) => event,
        Err(err) => {
            error!(request_id, error = %err, "undecodable job event; terminating it");
            return Disposition::Term;
        }
    };
    // A child of the signer span that published the event: the job's trace.
    let span =
        info_span!("job", otel.kind = "consumer", job_id = %event.job_id, request_id = %request_id);
    telemetry::continue_trace(&span, trace.as_ref());
    process(shared, &event, &request_id).instrument(span).await
}

async fn process(shared: &Shared, event: &JobEventV1, request_id: &str) -> Disposition {
    let policy = Policy {
        reply_grace: shared.config.reply_grace,
        first_delay: shared.config.retry.first_delay(),
    };
    let id = event.job_id.as_str();
    for _ in 0..MAX_ROUNDS {
        let loads = async {
            tokio::try_join!(
                load::<JobRecord>(&shared.topology.jobs, "job record", id),
                load::<DeliveryRecord>(&shared.topology.deliveries, record::WHAT, id),
            )
        };
        let (job, delivery) = match bounded(shared, &shared.global, loads).await {
            None => return Disposition::Nak(Duration::ZERO),
            Some(Ok(records)) => records,
            Some(Err(err)) => return retry_later(&err),
        };
        let now = shared.clock.now();
        match decide(now, job.value.as_ref(), delivery.value.as_ref(), &policy) {
            Decision::AlreadySettled(state) => {
                debug!(?state, "delivery already settled");
                return Disposition::Ack;
            }
            Decision::JobMissing => {
                warn!("job record not found (expired?); nothing to deliver");
                return Disposition::Ack;
            }
            Decision::NotRequired(why) => {
                return match update_from(
                    &shared.topology.deliveries,
                    record::WHAT,
                    id,
                    delivery,
                    record::not_required,
                )
                .await
                {
                    Ok(_) => {
                        info!(?why, "no webhook owed");
                        Disposition::Ack
                    }
                    Err(err) => retry_later(&err),
                };
            }
            Decision::AwaitReply { until } => {
                debug!("the api may still answer this caller; looking again later");
                return Disposition::Nak(until.since(now));
            }
            Decision::ClaimReply => match claim(shared, job).await {
                Ok(true) => info!("the api never answered; claimed the job as owed a webhook"),
                Ok(false) => debug!("job record changed while claiming; deciding again"),
                Err(err) => return retry_later(&err),
            },
            Decision::ScheduleFirst { at } => {
                let change = |prev: Option<&DeliveryRecord>| record::scheduled(prev, at);
                match update_from(
                    &shared.topology.deliveries,
                    record::WHAT,
                    id,
                    delivery,
                    change,
                )
                .await
                {
                    Ok(Updated::Written(_)) => return Disposition::Nak(at.since(now)),
                    Ok(_) => {}
                    Err(err) => return retry_later(&err),
                }
            }
            Decision::NotDue { at } => return Disposition::Nak(at.since(now)),
            Decision::Deliver { attempt } => {
                let Some(job) = job.value else {
                    return Disposition::Ack;
                };
                return deliver(shared, event, request_id, &job, delivery, attempt).await;
            }
        }
    }
    warn!("records kept changing; trying again shortly");
    Disposition::Nak(NATS_RETRY)
}

/// Set the job's `reply` from `None` to `Deferred`, the same transition the
/// api uses. `Ok(false)` if somebody (the api) decided it first.
async fn claim(shared: &Shared, job: Versioned<JobRecord>) -> Result<bool, RecordError> {
    let Some(id) = job.value.as_ref().map(|j| j.id.clone()) else {
        return Ok(false);
    };
    let claimed = update_from(&shared.topology.jobs, "job record", &id, job, |j| {
        j?.replied(Reply::Deferred)
    })
    .await?;
    Ok(matches!(claimed, Updated::Written(_)))
}

/// Make attempt number `attempt`, record it, and dead-letter if it was the last.
async fn deliver(
    shared: &Shared,
    event: &JobEventV1,
    request_id: &str,
    job: &JobRecord,
    delivery: Versioned<DeliveryRecord>,
    attempt: usize,
) -> Disposition {
    let Some(url_text) = job.webhook_url.as_deref() else {
        return Disposition::Ack;
    };
    let started = shared.clock.now();
    let payload = WebhookPayload::of(event, started);
    let body = payload.to_bytes();
    let report = match shared.sender.check(url_text) {
        Err(refusal) => AttemptReport::refused(refusal),
        Ok(url) => {
            let request = Delivery {
                url: &url,
                job_id: &event.job_id,
                request_id,
                body: &body,
                now: started,
                caller: job.caller.as_deref(),
            };
            let span = info_span!(
                "webhook attempt",
                otel.kind = "client",
                attempt,
                http.response.status_code = tracing::field::Empty,
            );
            let sent = send_bounded(shared, &url, request)
                .instrument(span.clone())
                .await;
            if let Some(status) = sent.as_ref().and_then(|r| r.status) {
                span.record("http.response.status_code", status);
            }
            match sent {
                Some(report) => report,
                // Shutting down before the attempt started: hand it back.
                None => return Disposition::Nak(Duration::ZERO),
            }
        }
    };
    let finished = shared.clock.now();
    let outcome = match report.verdict {
        Verdict::Delivered => "delivered",
        Verdict::Failed(crate::retry::Failure::Permanent) => "failed_permanently",
        Verdict::Failed(_) => "failed",
    };
    metrics::counter!("webhook_attempts_total", "outcome" => outcome).increment(1);
    metrics::histogram!("webhook_attempt_duration_seconds")
        .record(report.latency_ms as f64 / 1000.0);
    let recorded = DeliveryAttempt {
        at: started,
        status: report.status,
        error: report.error.clone(),
        latency_ms: report.latency_ms,
    };
    let jitter_sample = rand::thread_rng().gen_range(-1.0..=1.0);
    let schedule = &shared.config.retry;
    let change = |prev: Option<&DeliveryRecord>| {
        record::with_attempt(
            prev,
            &recorded,
            &report.verdict,
            schedule,
            jitter_sample,
            finished,
        )
    };

    // The dead letter goes out before the record says Failed: a crash in
    // between then repeats the attempt rather than losing the dead letter.
    if let Some(planned) = change(delivery.value.as_ref())
        && planned.state == DeliveryState::Failed
    {
        let letter = DeadLetterV1 {
            job_id: event.job_id.clone(),
            request_id: request_id.to_owned(),
            webhook_url: job.webhook_url.clone(),
            event: event.clone(),
            payload,
            last_error: report.error.clone(),
            attempts: planned.attempts,
            failed_at: finished,
            notifier_id: shared.config.notifier_id.clone(),
            trace: telemetry::current_trace(),
        };
        if let Err(err) =
            dead_letter::publish(&shared.topology.js, &letter, delivery.revision).await
        {
            warn!(error = %err, "could not dead-letter the webhook; will try again");
            return Disposition::Nak(NATS_RETRY);
        }
    }

    let written = update_from(
        &shared.topology.deliveries,
        record::WHAT,
        &event.job_id,
        delivery,
        change,
    )
    .await;
    match written {
        Ok(Updated::Written(r)) => settle(&r, &report, attempt, finished),
        Ok(_) => {
            debug!("delivery settled elsewhere meanwhile");
            Disposition::Ack
        }
        Err(err) => retry_later(&err),
    }
}

/// Wait for the per-host and then the global permit, and send. `None` if
/// asked to stop while waiting.
async fn send_bounded(shared: &Shared, url: &Url, request: Delivery<'_>) -> Option<AttemptReport> {
    let host = format!(
        "{}:{}",
        url.host_str().unwrap_or(""),
        url.port_or_known_default().unwrap_or(0)
    );
    let host_permit = tokio::select! {
        biased;
        _ = shared.hand_back.cancelled() => return None,
        permit = shared.hosts.acquire(&host) => permit,
    };
    let report = bounded(shared, &shared.global, shared.sender.send(request)).await;
    drop(host_permit);
    report
}

/// Run `work` holding a permit of `semaphore`; `None` if asked to stop
/// while waiting for it.
async fn bounded<T>(
    shared: &Shared,
    semaphore: &Semaphore,
    work: impl Future<Output = T>,
) -> Option<T> {
    let _permit = tokio::select! {
        biased;
        _ = shared.hand_back.cancelled() => return None,
        permit = semaphore.acquire() => permit.ok()?,
    };
    Some(work.await)
}

/// Log the attempt's outcome and say how to settle the message.
fn settle(
    record: &DeliveryRecord,
    report: &AttemptReport,
    attempt: usize,
    now: UnixMillis,
) -> Disposition {
    let status = report.status;
    let latency_ms = report.latency_ms;
    let err = report.error.as_deref().unwrap_or("");
    match record.state {
        DeliveryState::Delivered => {
            info!(attempt, ?status, latency_ms, "webhook delivered");
            Disposition::Ack
        }
        DeliveryState::Pending => {
            let delay = record
                .next_attempt_at
                .map(|at| at.since(now))
                .unwrap_or(NATS_RETRY);
            warn!(
                attempt, ?status, latency_ms, error = err,
                retry_in = %humantime::format_duration(delay), "webhook attempt failed; will retry"
            );
            Disposition::Nak(delay)
        }
        DeliveryState::Failed => {
            let permanent = matches!(
                report.verdict,
                Verdict::Failed(crate::retry::Failure::Permanent)
            );
            error!(
                attempt,
                ?status,
                error = err,
                permanent,
                "webhook failed for good; dead-lettered"
            );
            Disposition::Ack
        }
        DeliveryState::NotRequired => Disposition::Ack,
    }
}

fn retry_later(err: &RecordError) -> Disposition {
    if err.is_transient() {
        warn!(error = %err, "NATS error while handling the event; will try again");
        Disposition::Nak(NATS_RETRY)
    } else {
        error!(error = %err, "malformed record; will look again later");
        Disposition::Nak(MALFORMED_RETRY)
    }
}
