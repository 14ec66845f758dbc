//! Taking sign requests off the stream into the work bucket.
//!
//! Requests are acknowledged as soon as they are recorded in the work
//! bucket, never held while waiting for the upstream: held messages would
//! count against `max_ack_pending` and be redelivered before new ones, which
//! is exactly the head-of-line blocking the scheduler exists to avoid.

use crate::complete::{CompleteError, complete};
use crate::work_view::WorkView;
use async_nats::jetstream::{
    AckKind, Message,
    consumer::{AckPolicy, pull},
};
use service_kit::telemetry;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use wire_contract::consume::consume;
use wire_contract::headers::TraceContext;
use wire_contract::messages::{JobEventV1, SignRequestV1};
use wire_contract::records::{ResultRecord, WaitingJob, WorkItem};
use wire_contract::time::Clock;
use wire_contract::{
    MessageKey, RecordError, Topology, Updated, decode, headers, load, names, publish_once, update,
};

/// Why one request could not be taken in (it is redelivered).
#[derive(Debug, thiserror::Error)]
enum IngestError {
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error(transparent)]
    Publish(#[from] wire_contract::PublishError),
    #[error(transparent)]
    Complete(#[from] CompleteError),
}

/// Consume sign requests until `shutdown`, one at a time.
pub async fn run(
    topo: Topology,
    view: Arc<WorkView>,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) {
    let (topo, view, clock) = (&topo, view.as_ref(), clock.as_ref());
    consume(
        names::SIGNER_CONSUMER,
        &shutdown,
        move || open(topo),
        move |msg| handle(topo, view, clock, msg),
    )
    .await;
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

async fn handle(topo: &Topology, view: &WorkView, clock: &dyn Clock, msg: Message) {
    let request_id = headers::request_id_of(msg.headers.as_ref());
    // A child of the api's publish span; stored with the job (take_in), it
    // is what the upstream attempt and the job's event continue later.
    let span = tracing::info_span!("ingest", otel.kind = "consumer", request_id);
    telemetry::continue_trace(&span, headers::trace_of(msg.headers.as_ref()).as_ref());
    take_and_ack(topo, view, clock, msg, request_id)
        .instrument(span)
        .await;
}

async fn take_and_ack(
    topo: &Topology,
    view: &WorkView,
    clock: &dyn Clock,
    msg: Message,
    request_id: String,
) {
    let request = match decode::<SignRequestV1>("sign request", &msg.payload) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(request_id, error = %e, "dropping an undecodable sign request");
            let _ = msg.ack_with(AckKind::Term).await;
            return;
        }
    };
    match take_in(topo, view, clock, &request, &request_id).await {
        Ok(()) => {
            if let Err(e) = msg.double_ack().await {
                // Redelivery is harmless: taking in is idempotent.
                tracing::warn!(job_id = %request.job_id, request_id, error = %e, "ack failed");
            }
        }
        Err(e) => {
            tracing::warn!(job_id = %request.job_id, request_id, error = %e, "taking in failed; will retry");
            let _ = msg
                .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                .await;
        }
    }
}

/// Record the job: answer it from a known result, or add it to its message's
/// work item (creating the item for a new message). Idempotent.
async fn take_in(
    topo: &Topology,
    view: &WorkView,
    clock: &dyn Clock,
    request: &SignRequestV1,
    request_id: &str,
) -> Result<(), IngestError> {
    let key = MessageKey::of(&request.message);
    if let Some(result) = load::<ResultRecord>(&topo.results, "result", key.as_str())
        .await?
        .value
    {
        let event = JobEventV1 {
            job_id: request.job_id.clone(),
            message: request.message.clone(),
            outcome: result.outcome,
        };
        publish_once(
            &topo.js,
            names::EVENTS_SUBJECT,
            &request.job_id,
            request_id,
            telemetry::current_trace().as_ref(),
            &event,
        )
        .await?;
        tracing::info!(job_id = %request.job_id, request_id, "answered from a known result");
        return Ok(());
    }
    let job = WaitingJob {
        id: request.job_id.clone(),
        request_id: request_id.to_owned(),
        // traceparent only: a caller's tracestate is not kept per job.
        trace: telemetry::current_trace().map(TraceContext::parent_only),
    };
    let now = clock.now();
    let joined = update(
        &topo.work,
        "work item",
        key.as_str(),
        |item: Option<&WorkItem>| WorkItem::joined(item, &job, &request.message, now),
    )
    .await?;
    if let Updated::Written(item) = joined {
        let shared = item.jobs.len() > 1;
        tracing::info!(job_id = %job.id, request_id, message_key = %key, shared, "job queued");
        view.apply(key.as_str(), Some(item));
    }
    // A result may have landed between the check and the write; finishing
    // again is idempotent and tells this job too.
    if let Some(result) = load::<ResultRecord>(&topo.results, "result", key.as_str())
        .await?
        .value
    {
        complete(
            topo,
            &key,
            &request.message,
            result.outcome,
            result.attempts,
            clock.now(),
        )
        .await?;
    }
    Ok(())
}
