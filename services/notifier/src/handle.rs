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
use crate::destinations::{Destination, Destinations, Entry};
use crate::payload::WebhookPayload;
use crate::record;
use rand::Rng;
use service_kit::telemetry;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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
/// The most a due message may come early (this host's clock behind the
/// server's) and still be held for the difference rather than scheduled.
const CLOCK_SKEW: Duration = Duration::from_secs(60);

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
    /// Per-destination bounds and circuit breakers.
    pub destinations: Destinations,
    /// Deliveries put back because their destination had no room.
    pub deferred_busy: AtomicU64,
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
/// headers); `from_index` if it came back from the retry index when due.
pub async fn handle(
    shared: &Shared,
    payload: &[u8],
    request_id: String,
    trace: Option<TraceContext>,
    from_index: bool,
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
    process(shared, &event, &request_id, from_index)
        .instrument(span)
        .await
}

async fn process(
    shared: &Shared,
    event: &JobEventV1,
    request_id: &str,
    from_index: bool,
) -> Disposition {
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
                return not_yet(shared, event, request_id, until, from_index).await;
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
                    Ok(Updated::Written(_)) => return later(shared, event, request_id, at).await,
                    Ok(_) => {}
                    Err(err) => return retry_later(&err),
                }
            }
            Decision::NotDue { at } => {
                return not_yet(shared, event, request_id, at, from_index).await;
            }
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
    let (report, outcome) = match shared.sender.check(url_text) {
        Err(refusal) => (AttemptReport::refused(refusal), None),
        Ok(url) => {
            let request = Delivery {
                url: &url,
                job_id: &event.job_id,
                request_id,
                body: &body,
                now: started,
                caller: job.caller.as_deref(),
            };
            match send_bounded(shared, &url, request, attempt).await {
                Sent::Report(report) => (report, None),
                Sent::CircuitOpen(report) => (report, Some("not_sent_circuit_open")),
                Sent::Busy => {
                    shared.deferred_busy.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("webhook_deferrals_total", "reason" => "destination_busy")
                        .increment(1);
                    let sample = rand::thread_rng().gen_range(0.0..=1.0);
                    let pause = busy_pause(shared.config.timeout, sample);
                    debug!(?pause, "destination has no room; putting the delivery back");
                    return later(shared, event, request_id, started.plus(pause)).await;
                }
                // Shutting down before the attempt started: hand it back.
                Sent::HandBack => return Disposition::Nak(Duration::ZERO),
            }
        }
    };
    let finished = shared.clock.now();
    let sent = outcome.is_none();
    let outcome = outcome.unwrap_or(match report.verdict {
        Verdict::Delivered => "delivered",
        Verdict::Failed(crate::retry::Failure::Permanent) => "failed_permanently",
        Verdict::Failed(_) => "failed",
    });
    metrics::counter!("webhook_attempts_total", "outcome" => outcome).increment(1);
    if sent {
        metrics::histogram!("webhook_attempt_duration_seconds")
            .record(report.latency_ms as f64 / 1000.0);
    }
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
        Ok(Updated::Written(r)) => match settle(&r, &report, attempt, sent, finished) {
            Some(next) => later(shared, event, request_id, next).await,
            None => Disposition::Ack,
        },
        Ok(_) => {
            debug!("delivery settled elsewhere meanwhile");
            Disposition::Ack
        }
        Err(err) => retry_later(&err),
    }
}

/// What became of a delivery's turn to send.
enum Sent {
    /// It was sent (or failed to be): the report.
    Report(AttemptReport),
    /// Not sent: its destination's circuit is open. The report says so and
    /// counts as a failed attempt.
    CircuitOpen(AttemptReport),
    /// Not sent: its destination has no room. Not an attempt.
    Busy,
    /// Not sent: shutting down.
    HandBack,
}

/// Take the destination's permits (name and resolved address) and a global
/// one, and send, unless the destination's circuit is open or it has no
/// room.
async fn send_bounded(shared: &Shared, url: &Url, request: Delivery<'_>, attempt: usize) -> Sent {
    let host = url.host_str().unwrap_or("");
    let port = url.port_or_known_default().unwrap_or(0);
    let entry = async {
        // Resolved here for the address's bound; the connection resolves
        // again through the egress resolver, which vets what it dials.
        let to = Destination::new(host, port, shared.sender.resolve(host, port).await);
        shared.destinations.enter(&to, shared.clock.now()).await
    };
    let entry = tokio::select! {
        biased;
        _ = shared.hand_back.cancelled() => return Sent::HandBack,
        entry = entry => entry,
    };
    let pass = match entry {
        Entry::Busy => return Sent::Busy,
        Entry::Open { until, failures } => {
            return Sent::CircuitOpen(AttemptReport::circuit_open(
                until,
                failures,
                shared.clock.now(),
            ));
        }
        Entry::Go(pass) => pass,
    };
    let span = info_span!(
        "webhook attempt",
        otel.kind = "client",
        attempt,
        http.response.status_code = tracing::field::Empty,
    );
    let sent = bounded(shared, &shared.global, shared.sender.send(request))
        .instrument(span.clone())
        .await;
    let Some(report) = sent else {
        return Sent::HandBack; // the pass, dropped unreported, gives back its probe
    };
    if let Some(status) = report.status {
        span.record("http.response.status_code", status);
    }
    match report.receiver_health() {
        Some(healthy) => pass.report(healthy, shared.clock.now()),
        None => drop(pass), // refused before sending: says nothing of the receiver
    }
    Sent::Report(report)
}

/// How long a delivery whose destination had no room waits before coming
/// back: spread by `sample` (in `[0, 1]`) over a second up to an attempt's
/// timeout, so the deliveries a busy receiver turned away come back a few at
/// a time.
pub fn busy_pause(attempt_timeout: Duration, sample: f64) -> Duration {
    let least = Duration::from_secs(1);
    let most = attempt_timeout.max(least * 2);
    least + (most - least).mul_f64(sample.clamp(0.0, 1.0))
}

/// Wait until `at` for a message that came back before its time. Early
/// by a little, a due message is late on this host's clock rather than
/// early on the server's (which fired it): it waits out the difference as
/// a relative NAK, instead of a schedule the server would fire at once.
/// Anything else is scheduled.
async fn not_yet(
    shared: &Shared,
    event: &JobEventV1,
    request_id: &str,
    at: UnixMillis,
    from_index: bool,
) -> Disposition {
    let wait = at.since(shared.clock.now());
    if from_index && wait <= CLOCK_SKEW {
        return Disposition::Nak(wait);
    }
    later(shared, event, request_id, at).await
}

/// Have the event come back at `at` (see [`crate::due`]) and ack this
/// message; keep it (a short NAK) if the schedule could not be stored.
async fn later(
    shared: &Shared,
    event: &JobEventV1,
    request_id: &str,
    at: UnixMillis,
) -> Disposition {
    let trace = telemetry::current_trace();
    match crate::due::schedule(&shared.topology.js, event, request_id, trace.as_ref(), at).await {
        Ok(()) => Disposition::Ack,
        Err(err) => {
            warn!(error = %err, "could not schedule the delivery; will try again");
            Disposition::Nak(NATS_RETRY)
        }
    }
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

/// Log the attempt's outcome; the time of the next attempt if there is one.
fn settle(
    record: &DeliveryRecord,
    report: &AttemptReport,
    attempt: usize,
    sent: bool,
    now: UnixMillis,
) -> Option<UnixMillis> {
    let status = report.status;
    let latency_ms = report.latency_ms;
    let err = report.error.as_deref().unwrap_or("");
    match record.state {
        DeliveryState::Delivered => {
            info!(attempt, ?status, latency_ms, "webhook delivered");
            None
        }
        DeliveryState::Pending => {
            let next = record.next_attempt_at.unwrap_or(now.plus(NATS_RETRY));
            let retry_in = humantime::format_duration(next.since(now));
            if sent {
                warn!(attempt, ?status, latency_ms, error = err, %retry_in, "webhook attempt failed; will retry");
            } else {
                // One per due webhook of a dead receiver: counted in
                // webhook_attempts_total, the circuit on the status page.
                debug!(attempt, error = err, %retry_in, "webhook not sent: circuit open");
            }
            Some(next)
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
            None
        }
        DeliveryState::NotRequired => None,
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
