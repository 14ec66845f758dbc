//! The JetStream shell: a durable pull consumer on the events stream, one
//! task per message, and recovery from whatever NATS does.
//!
//! Each message is handled in its own task so that a slow receiver never
//! holds up the next message (bounds live in [`crate::limits`] and the
//! global semaphore). The fetch loop is [`wire_contract::consume::consume`]: it
//! survives server restarts and a deleted consumer, recreating the consumer
//! (and here, if needed, the stream) with backoff. It never exits on a NATS
//! error; only cancellation stops it.

use crate::handle::{Disposition, Shared, handle};
use async_nats::jetstream::consumer::pull;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::{AckKind, Message};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use wire_contract::Topology;
use wire_contract::headers::{request_id_of, trace_of};
use wire_contract::names::{EVENTS_STREAM, NOTIFIER_CONSUMER};

/// How long the server waits for an ack before redelivering.
pub const ACK_WAIT: Duration = Duration::from_secs(60);
/// Most messages handed out and not yet acked (delayed NAKs count too).
pub const MAX_ACK_PENDING: i64 = 10_000;
/// Most messages this replica holds at once (waiting, sending, recording).
const MAX_HELD: usize = MAX_ACK_PENDING as usize;
/// After the drain timeout, how long handlers get to hand messages back.
const HAND_BACK: Duration = Duration::from_secs(2);

/// The durable consumer's configuration.
pub fn consumer_config() -> pull::Config {
    pull::Config {
        durable_name: Some(NOTIFIER_CONSUMER.to_owned()),
        description: Some("notifier: delivers job outcomes to webhooks".to_owned()),
        deliver_policy: DeliverPolicy::All,
        ack_policy: AckPolicy::Explicit,
        ack_wait: ACK_WAIT,
        max_deliver: -1,
        max_ack_pending: MAX_ACK_PENDING,
        ..Default::default()
    }
}

/// Consume job events until `shutdown`, then drain: stop fetching, make
/// handlers that have not started sending hand their messages back, wait up
/// to the drain timeout for those in flight, and hand back the rest.
pub async fn consume(shared: Arc<Shared>, shutdown: CancellationToken) {
    let held = Arc::new(Semaphore::new(MAX_HELD));
    let hard_stop = CancellationToken::new();
    let tasks = Mutex::new(JoinSet::new());
    let batch = shared.config.concurrency.clamp(1, 256);
    {
        let (shared, held, hard_stop, tasks, stop) =
            (&shared, &held, &hard_stop, &tasks, &shutdown);
        wire_contract::consume::consume(
            NOTIFIER_CONSUMER,
            &shutdown,
            move || open(&shared.topology, batch),
            move |message| async move {
                // At most MAX_HELD at once: wait for room before taking on
                // another. Shutting down meanwhile, leave it unacked like
                // the rest of the pulled batch (a NAK now would be
                // redelivered into this very subscription).
                let permit = tokio::select! {
                    biased;
                    _ = stop.cancelled() => None,
                    permit = Arc::clone(held).acquire_owned() => permit.ok(),
                };
                let Some(permit) = permit else { return };
                let mut tasks = tasks.lock().unwrap_or_else(|p| p.into_inner());
                while tasks.try_join_next().is_some() {}
                tasks.spawn(supervise(
                    Arc::clone(shared),
                    message,
                    permit,
                    hard_stop.clone(),
                ));
            },
        )
        .await;
    }

    // The pull subscription is gone (dropped with the loop); make sure the
    // server knows before any NAK, or it would redeliver into it.
    flush(&shared).await;
    shared.hand_back.cancel();
    let tasks = tasks.into_inner().unwrap_or_else(|p| p.into_inner());
    drain(&shared, tasks, hard_stop).await;
}

/// Handle one message in its own task: keep it alive with progress acks
/// while it is held, then settle it.
async fn supervise(
    shared: Arc<Shared>,
    message: Message,
    _held: OwnedSemaphorePermit,
    hard_stop: CancellationToken,
) {
    let request_id = request_id_of(message.headers.as_ref());
    let trace = trace_of(message.headers.as_ref());
    let work = handle(&shared, &message.payload, request_id, trace);
    tokio::pin!(work);
    let every = ACK_WAIT / 2;
    let mut progress = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let disposition = loop {
        tokio::select! {
            biased;
            disposition = &mut work => break disposition,
            _ = hard_stop.cancelled() => break Disposition::Nak(Duration::ZERO),
            _ = progress.tick() => {
                if let Err(err) = message.ack_with(AckKind::Progress).await {
                    warn!(error = %err, "could not extend the ack deadline");
                }
            }
        }
    };
    let kind = match disposition {
        Disposition::Ack => AckKind::Ack,
        Disposition::Nak(delay) if delay.is_zero() => AckKind::Nak(None),
        Disposition::Nak(delay) => AckKind::Nak(Some(delay)),
        Disposition::Term => AckKind::Term,
    };
    if let Err(err) = message.ack_with(kind).await {
        // The server redelivers after ack_wait; the delivery record keeps
        // that redelivery from repeating finished work.
        warn!(error = %err, ?disposition, "could not settle the message");
    }
}

/// Wait for handlers up to the drain timeout, then make the rest hand their
/// messages back, and flush the acks.
async fn drain(shared: &Shared, mut tasks: JoinSet<()>, hard_stop: CancellationToken) {
    while tasks.try_join_next().is_some() {}
    let in_flight = tasks.len();
    if in_flight > 0 {
        info!(in_flight, "shutting down: waiting for deliveries in flight");
    }
    let all_done = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(shared.config.drain_timeout, all_done)
        .await
        .is_err()
    {
        warn!(
            left = tasks.len(),
            "drain timeout: handing the remaining messages back"
        );
        hard_stop.cancel();
        let handed_back = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(HAND_BACK, handed_back).await.is_err() {
            tasks.abort_all();
        }
    }
    flush(shared).await;
    info!("notifier stopped");
}

/// Push out what the client has buffered (unsubscribes, acks), without
/// hanging a shutdown on a server that is down.
async fn flush(shared: &Shared) {
    match tokio::time::timeout(HAND_BACK, shared.topology.js.client().flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => warn!(error = %err, "could not flush on shutdown"),
        Err(_) => warn!("timed out flushing on shutdown"),
    }
}

/// Get the events stream (recreating the topology if it is gone), create
/// or update the durable consumer on it, and start pulling `batch` at a
/// time.
async fn open(topology: &Topology, batch: usize) -> Result<pull::Stream, async_nats::Error> {
    let stream = match topology.js.get_stream(EVENTS_STREAM).await {
        Ok(stream) => stream,
        Err(err) => {
            debug!(error = %err, "events stream not found; recreating the topology");
            topology.recreate().await?;
            topology.js.get_stream(EVENTS_STREAM).await?
        }
    };
    let consumer: PullConsumer = stream.create_consumer(consumer_config()).await?;
    Ok(consumer
        .stream()
        .max_messages_per_batch(batch)
        .expires(Duration::from_secs(30))
        .heartbeat(Duration::from_secs(5))
        .messages()
        .await?)
}
