//! Taking sign requests off the stream into the work bucket.
//!
//! Requests are acknowledged as soon as they are recorded, never held while
//! waiting for the upstream: held messages would count against
//! `max_ack_pending` and be redelivered before new ones, which is exactly
//! the head-of-line blocking the scheduler exists to avoid.
//!
//! They are taken in batches: whatever has arrived (up to [`BATCH`]) is
//! grouped by message, and each message's group costs one result read, one
//! append per job to the waiting stream (all at once) and one work-item
//! write, whatever the number of jobs already waiting. A burst of requests
//! for one pending message is taken in at the broker's pace, not one
//! read-modify-write of a growing record per request.

use crate::complete::tell_waiting;
use crate::work_view::WorkView;
use async_nats::jetstream::{
    AckKind, Message,
    consumer::{AckPolicy, pull},
};
use service_kit::telemetry;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Span;
use wire_contract::consume::consume;
use wire_contract::headers::TraceContext;
use wire_contract::messages::{JobEventV1, SignRequestV1};
use wire_contract::records::{ResultRecord, WaitingJob, WorkItem};
use wire_contract::time::Clock;
use wire_contract::{
    MessageKey, RecordError, Topology, Updated, decode, headers, load, names, publish_once, update,
    waiting,
};

/// Requests taken in together at most (below the consumer's
/// `max_ack_pending`, so a full batch can always be delivered).
pub const BATCH: usize = 256;
/// Messages of one batch taken in at once.
const MESSAGES_AT_ONCE: usize = 16;
/// Appends or events of one message published at once.
const PUBLISHES_AT_ONCE: usize = 64;

/// Why one message's requests could not be taken in (they are redelivered).
#[derive(Debug, thiserror::Error)]
enum IngestError {
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error(transparent)]
    Publish(#[from] wire_contract::PublishError),
}

/// Consume sign requests until `shutdown`, in batches.
pub async fn run(
    topo: Topology,
    view: Arc<WorkView>,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) {
    let (tx, rx) = mpsc::channel::<Message>(BATCH);
    let (topo, view, clock) = (&topo, view.as_ref(), clock.as_ref());
    let taking = async move {
        consume(
            names::SIGNER_CONSUMER,
            &shutdown,
            move || open(topo),
            |msg| {
                let tx = tx.clone();
                async move {
                    // Fails only once the batches below have ended.
                    let _ = tx.send(msg).await;
                }
            },
        )
        .await;
        // `tx` is dropped here, which ends the batches once drained.
    };
    futures::future::join(taking, take_in_batches(topo, view, clock, rx)).await;
}

async fn open(topo: &Topology) -> Result<pull::Stream, async_nats::Error> {
    let stream = topo.js.get_stream(names::REQUESTS_STREAM).await?;
    let consumer = stream
        .get_or_create_consumer(
            names::SIGNER_CONSUMER,
            pull::Config {
                durable_name: Some(names::SIGNER_CONSUMER.to_owned()),
                ack_policy: AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                max_ack_pending: 1000,
                ..Default::default()
            },
        )
        .await?;
    Ok(consumer.messages().await?)
}

/// One sign request of a batch, decoded, in its own span.
struct Taken {
    msg: Message,
    request: SignRequestV1,
    request_id: String,
    /// A child of the api's publish span; stored with the job, it is what
    /// the upstream attempt and the job's event continue later.
    span: Span,
}

/// Take whatever has arrived (at least one, at most [`BATCH`]) and take it
/// in, until the sender is gone.
async fn take_in_batches(
    topo: &Topology,
    view: &WorkView,
    clock: &dyn Clock,
    mut rx: mpsc::Receiver<Message>,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(msg) => batch.push(msg),
                Err(_) => break,
            }
        }
        take_in_batch(topo, view, clock, batch).await;
    }
}

async fn take_in_batch(topo: &Topology, view: &WorkView, clock: &dyn Clock, batch: Vec<Message>) {
    let mut groups: HashMap<MessageKey, Vec<Taken>> = HashMap::new();
    for msg in batch {
        let request_id = headers::request_id_of(msg.headers.as_ref());
        let span = tracing::info_span!("ingest", otel.kind = "consumer", request_id);
        telemetry::continue_trace(&span, headers::trace_of(msg.headers.as_ref()).as_ref());
        let request = match decode::<SignRequestV1>("sign request", &msg.payload) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(parent: &span, request_id, error = %e, "dropping an undecodable sign request");
                let _ = msg.ack_with(AckKind::Term).await;
                continue;
            }
        };
        groups
            .entry(MessageKey::of(&request.message))
            .or_default()
            .push(Taken {
                msg,
                request,
                request_id,
                span,
            });
    }
    let groups = groups.into_iter().map(|(key, taken)| async move {
        let result = take_in(topo, view, clock, &key, &taken).await;
        let settled = taken.iter().map(|t| async {
            settle(t, &result).await;
            Ok::<(), ()>(())
        });
        crate::at_once::all(settled, PUBLISHES_AT_ONCE).await
    });
    let _ = crate::at_once::all(groups, MESSAGES_AT_ONCE).await;
}

/// Acknowledge a request once its message's group is recorded; otherwise
/// have it redelivered (taking in is idempotent).
async fn settle(t: &Taken, result: &Result<(), IngestError>) {
    let (job_id, request_id) = (&t.request.job_id, &t.request_id);
    match result {
        Ok(()) => {
            if let Err(e) = t.msg.double_ack().await {
                // Redelivery is harmless: taking in is idempotent.
                tracing::warn!(parent: &t.span, job_id, request_id, error = %e, "ack failed");
            }
        }
        Err(e) => {
            tracing::warn!(parent: &t.span, job_id, request_id, error = %e, "taking in failed; will retry");
            let _ = t
                .msg
                .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                .await;
        }
    }
}

/// Record the jobs of one message: answer them from a known result, or
/// append them to its waiting jobs and count them in its work item
/// (creating the item for a new message). Idempotent.
async fn take_in(
    topo: &Topology,
    view: &WorkView,
    clock: &dyn Clock,
    key: &MessageKey,
    taken: &[Taken],
) -> Result<(), IngestError> {
    let Some(message) = taken.first().map(|t| t.request.message.as_str()) else {
        return Ok(());
    };
    if let Some(result) = load::<ResultRecord>(&topo.results, "result", key.as_str())
        .await?
        .value
    {
        let answers = taken.iter().map(|t| answer_known(topo, t, &result));
        return crate::at_once::all(answers, PUBLISHES_AT_ONCE).await;
    }
    let jobs: Vec<WaitingJob> = taken
        .iter()
        .map(|t| WaitingJob {
            id: t.request.job_id.clone(),
            request_id: t.request_id.clone(),
            // traceparent only: a caller's tracestate is not kept per job.
            trace: telemetry::trace_of(&t.span).map(TraceContext::parent_only),
        })
        .collect();
    // The jobs first, then the item: whoever finishes the message reads the
    // item, then the jobs, and deletes the item only if it did not change,
    // so a job is never appended unseen behind a finished message.
    let appends = jobs.iter().map(|job| async {
        Ok::<_, IngestError>(waiting::add(&topo.js, key, job, job.trace.as_ref()).await?)
    });
    crate::at_once::all(appends, PUBLISHES_AT_ONCE).await?;
    let now = clock.now();
    let joined = update(
        &topo.work,
        "work item",
        key.as_str(),
        |item: Option<&WorkItem>| {
            let claimants = taken.iter().filter_map(|t| t.request.caller.as_ref());
            Some(WorkItem::joined(item, &jobs, claimants, message, now))
        },
    )
    .await?;
    if let Updated::Written(item) = joined {
        let shared = item.jobs() > 1;
        for (job, t) in jobs.iter().zip(taken) {
            tracing::info!(parent: &t.span, job_id = %job.id, request_id = %job.request_id, message_key = %key, shared, "job queued");
        }
        view.apply(key.as_str(), Some(item));
    }
    // A result may have landed between the check and the write: tell these
    // jobs (and any others still waiting) in the background, so that a
    // message with many waiting jobs does not hold up this batch. The jobs
    // are durable already; if this is lost, the worker finishes an item
    // whose result is known, and the sweep tells jobs left behind.
    if let Some(result) = load::<ResultRecord>(&topo.results, "result", key.as_str())
        .await?
        .value
    {
        let (topo, key, message) = (topo.clone(), key.clone(), message.to_owned());
        tokio::spawn(async move {
            if let Err(e) = tell_waiting(&topo, &key, &message, result.outcome).await {
                tracing::warn!(message_key = %key, error = %e, "telling the jobs of a finished message failed; the worker or the sweep will");
            }
        });
    }
    Ok(())
}

/// Tell one job the outcome already known for its message.
async fn answer_known(
    topo: &Topology,
    t: &Taken,
    result: &ResultRecord,
) -> Result<(), IngestError> {
    let event = JobEventV1 {
        job_id: t.request.job_id.clone(),
        message: t.request.message.clone(),
        outcome: result.outcome.clone(),
    };
    publish_once(
        &topo.js,
        names::EVENTS_SUBJECT,
        &t.request.job_id,
        &t.request_id,
        telemetry::trace_of(&t.span).as_ref(),
        &event,
    )
    .await?;
    tracing::info!(parent: &t.span, job_id = %t.request.job_id, request_id = %t.request_id, "answered from a known result");
    Ok(())
}
