//! The notifier: delivers job outcomes to webhooks, durably.
//!
//! It consumes the signer's outcome events from JetStream and POSTs each to
//! the job's webhook, signed the Standard Webhooks way, retrying on a
//! schedule that lasts about a day. The retry state lives in the deliveries
//! KV bucket, not in memory, so a kill -9 or a second replica changes
//! nothing: redelivered events carry on from the record. Whether a webhook
//! is owed at all is settled by compare-and-set on the job record's `reply`
//! (see [`decision`]): a caller answered 200 never gets one, a caller
//! answered 202 always does.
//!
//! Deliveries that run out of retries are dead-lettered ([`dead_letter`]);
//! operators redrive them with `nats req webhooks.redrive <job-id>`
//! ([`redrive_service`]).
//!
//! A delivery that must wait (for its next attempt, or for the api's reply)
//! is scheduled on the retry stream and its message acked ([`due`]), so
//! waiting holds nothing. Each destination (the URL's name and the address
//! it resolves to) has bounded permits and waiting places, and a circuit
//! breaker that stops sending to a receiver that keeps failing
//! ([`destinations`], [`breaker`]); open circuits are on the status page
//! ([`status_answers`]) and in `webhook_circuits_open`.
//!
//! Layout: [`decision`], [`retry`] and [`breaker`] are pure; [`handle`] and
//! [`consumer`] are the shell that does NATS and HTTP ([`deliver`]).

pub mod breaker;
pub mod config;
pub mod consumer;
pub mod dead_letter;
pub mod decision;
pub mod deliver;
pub mod destinations;
pub mod due;
pub mod handle;
pub mod payload;
pub mod record;
pub mod redrive_service;
pub mod resolver;
pub mod retry;
pub mod signing;
pub mod status_answers;

pub use config::Config;
pub use dead_letter::{DeadLetterV1, Redriven, redrive};

use config::SecretOrigin;
use handle::Shared;
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use wire_contract::Topology;
use wire_contract::time::SystemClock;

/// Why the notifier could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The HTTP client could not be built (TLS backend).
    #[error("could not build the HTTP client: {0}")]
    HttpClient(#[from] reqwest::Error),
}

/// Deliver webhooks and answer redrive requests until `shutdown` is
/// cancelled, then drain and return.
///
/// NATS errors are not fatal: the consumer and the redrive subscription are
/// recreated with backoff.
///
/// # Errors
///
/// Only at start, if the HTTP client cannot be built.
pub async fn run(
    config: Config,
    topology: Topology,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    info!(?config, "notifier starting");
    let schedule: std::time::Duration = config.retry.delays().iter().sum();
    if schedule > topology.job_retention * 3 / 4 {
        // The job record is written when the job is answered, not at each
        // attempt: past the retention the last attempts would find it gone.
        warn!(
            schedule = %humantime::format_duration(schedule),
            job_retention = %humantime::format_duration(topology.job_retention),
            "the webhook retry schedule is longer than three quarters of JOB_RETENTION: its last attempts may find the job record expired"
        );
    }
    if config.secret_origin == SecretOrigin::Generated {
        let generated = config
            .signing_keys
            .iter()
            .map(|k| k.to_whsec())
            .collect::<Vec<_>>()
            .join(",");
        warn!(
            webhook_secret = %generated,
            "WEBHOOK_SECRET is not set: signing with a random secret for this run only (demo mode); \
             set WEBHOOK_SECRET (and WEBHOOK_REQUIRE_SECRET=true) in production"
        );
    }
    // From 0 at start: a counter born with its first dead letter shows no
    // increase to Prometheus (ops/prometheus: WebhookDeadLetters).
    metrics::counter!(dead_letter::DEAD_LETTERS_TOTAL).increment(0);
    let sender = deliver::Sender::new(&config)?;
    let redrives = redrive_service::serve(topology.clone(), shutdown.clone());
    let shared = Arc::new(Shared {
        destinations: destinations::Destinations::new(config.per_host_concurrency, config.breaker),
        deferred_busy: std::sync::atomic::AtomicU64::new(0),
        global: Semaphore::new(config.concurrency),
        topology,
        sender,
        config,
        clock: Arc::new(SystemClock),
        hand_back: CancellationToken::new(),
    });
    let sources = vec![consumer::events(), consumer::retries()];
    tokio::join!(
        consumer::consume(Arc::clone(&shared), sources, shutdown.clone()),
        status_answers::serve(shared, shutdown),
        redrives
    );
    Ok(())
}
