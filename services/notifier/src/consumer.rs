//! The JetStream shell: two durable pull consumers, one task per message,
//! and recovery from whatever NATS does.
//!
//! Job events come from the events stream; deliveries that waited (for a
//! retry, or for the api's reply) come back from the retry stream when due
//! (see [`crate::due`]). Either kind is handled the same way, in its own
//! task, so that a slow receiver never holds up the next message (bounds
//! live in [`crate::destinations`] and the global semaphore). A message is
//! held only while it is being handled: a delivery that must wait is
//! scheduled and acked, so no receiver's failures fill `max_ack_pending`.
//! The fetch loop is [`wire_contract::consume::consume`]: it survives
//! server restarts and a deleted consumer, recreating the consumer (and
//! here, if needed, the stream) with backoff. It never exits on a NATS
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
use wire_contract::names::{
    EVENTS_STREAM, NOTIFIER_CONSUMER, RETRY_CONSUMER, RETRY_DUE_SUBJECTS, RETRY_STREAM,
};

/// How long the server waits for an ack before redelivering.
pub const ACK_WAIT: Duration = Duration::from_secs(60);
/// Most events handed out and not yet acked: events being handled now
/// (a NAK is only a NATS error's short pause).
pub const MAX_ACK_PENDING: i64 = 10_000;
/// Most due deliveries handed out and not yet acked. Fewer than events: a
/// burst of retries falling due together waits in the stream, not in this
/// replica, so a new job's first attempt never queues behind thousands of
/// them for a record read.
pub const MAX_DUE_PENDING: i64 = 512;
/// After the drain timeout, how long handlers get to hand messages back.
const HAND_BACK: Duration = Duration::from_secs(2);

/// A durable consumer the notifier takes messages from.
#[derive(Debug, Clone)]
pub struct Source {
    /// The consumer (and log label).
    pub name: &'static str,
    /// Its stream.
    pub stream: &'static str,
    /// Its configuration.
    pub config: pull::Config,
    /// Whether its messages come back from the retry index when due.
    pub due: bool,
}

impl Source {
    fn held(&self) -> usize {
        usize::try_from(self.config.max_ack_pending)
            .unwrap_or(1)
            .max(1)
    }
}

/// The job events consumer.
pub fn events() -> Source {
    Source {
        name: NOTIFIER_CONSUMER,
        stream: EVENTS_STREAM,
        config: consumer_config(
            NOTIFIER_CONSUMER,
            "notifier: delivers job outcomes to webhooks",
            MAX_ACK_PENDING,
        ),
        due: false,
    }
}

/// The due deliveries consumer.
pub fn retries() -> Source {
    Source {
        name: RETRY_CONSUMER,
        stream: RETRY_STREAM,
        config: pull::Config {
            filter_subject: RETRY_DUE_SUBJECTS.to_owned(),
            ..consumer_config(
                RETRY_CONSUMER,
                "notifier: deliveries whose wait is over",
                MAX_DUE_PENDING,
            )
        },
        due: true,
    }
}

/// A durable consumer's configuration: explicit acks, never given up on.
fn consumer_config(name: &str, description: &str, max_ack_pending: i64) -> pull::Config {
    pull::Config {
        durable_name: Some(name.to_owned()),
        description: Some(description.to_owned()),
        deliver_policy: DeliverPolicy::All,
        ack_policy: AckPolicy::Explicit,
        ack_wait: ACK_WAIT,
        max_deliver: -1,
        max_ack_pending,
        ..Default::default()
    }
}

/// Consume from every source until `shutdown`, then drain: stop fetching,
/// make handlers that have not started sending hand their messages back,
/// wait up to the drain timeout for those in flight, and hand back the rest.
pub async fn consume(shared: Arc<Shared>, sources: Vec<Source>, shutdown: CancellationToken) {
    let hard_stop = CancellationToken::new();
    let tasks = Mutex::new(JoinSet::new());
    let loops = sources
        .iter()
        .map(|source| take(&shared, source, &tasks, &hard_stop, &shutdown));
    futures::future::join_all(loops).await;

    // The pull subscriptions are gone (dropped with the loops); make sure
    // the server knows before any NAK, or it would redeliver into them.
    flush(&shared).await;
    shared.hand_back.cancel();
    let tasks = tasks.into_inner().unwrap_or_else(|p| p.into_inner());
    drain(&shared, tasks, hard_stop).await;
}

/// Take messages from `source` until `shutdown`, each handled in a task of
/// `tasks`; at most the consumer's `max_ack_pending` at once.
async fn take(
    shared: &Arc<Shared>,
    source: &Source,
    tasks: &Mutex<JoinSet<()>>,
    hard_stop: &CancellationToken,
    shutdown: &CancellationToken,
) {
    let held = Arc::new(Semaphore::new(source.held()));
    let batch = shared.config.concurrency.clamp(1, 256);
    {
        let (held, stop) = (&held, shutdown);
        wire_contract::consume::consume(
            source.name,
            shutdown,
            move || open(&shared.topology, source, batch),
            move |message| async move {
                // At most `held` at once: wait for room before taking on
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
                    source.due,
                    permit,
                    hard_stop.clone(),
                ));
            },
        )
        .await;
    }
}

/// Handle one message in its own task: keep it alive with progress acks
/// while it is held, then settle it.
async fn supervise(
    shared: Arc<Shared>,
    message: Message,
    due: bool,
    _held: OwnedSemaphorePermit,
    hard_stop: CancellationToken,
) {
    let request_id = request_id_of(message.headers.as_ref());
    let trace = trace_of(message.headers.as_ref());
    let work = handle(&shared, &message.payload, request_id, trace, due);
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

/// Get the source's stream (recreating the topology if it is gone), create
/// or update its durable consumer, and start pulling `batch` at a time.
async fn open(
    topology: &Topology,
    source: &Source,
    batch: usize,
) -> Result<pull::Stream, async_nats::Error> {
    let stream = match topology.js.get_stream(source.stream).await {
        Ok(stream) => stream,
        Err(err) => {
            debug!(stream = source.stream, error = %err, "stream not found; recreating the topology");
            topology.recreate().await?;
            topology.js.get_stream(source.stream).await?
        }
    };
    let consumer: PullConsumer = stream.create_consumer(source.config.clone()).await?;
    Ok(consumer
        .stream()
        .max_messages_per_batch(batch)
        .expires(Duration::from_secs(30))
        .heartbeat(Duration::from_secs(5))
        .messages()
        .await?)
}
