//! The signer: takes sign requests from JetStream and calls the upstream at a
//! paced rate, within one budget shared by every replica.
//!
//! - [`ingest`] moves requests from the stream into the work bucket.
//! - [`worker`] asks the pure [`scheduler`] which message to try next, takes a
//!   slot from the JetStream-held [`shared_budget`] (decided by the pure
//!   [`budget`] rule), calls the [`upstream`] and records the outcome.
//! - [`complete`] stores results and tells every waiting job.
//! - [`job_traces`] says which job's trace a shared attempt belongs to.

pub mod answers;
pub mod at_once;
pub mod budget;
pub mod complete;
pub mod config;
pub mod estimate;
pub mod health;
pub mod ingest;
pub mod job_traces;
pub mod keep_pending;
pub mod scheduler;
pub mod shared_budget;
pub mod simulation;
pub mod sweep;
pub mod upstream;
pub mod work_view;
pub mod worker;

use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use wire_contract::Topology;
use wire_contract::pause::pause;
use wire_contract::time::{Clock, SystemClock};

pub use config::Config;

/// Why the signer could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The upstream HTTP client could not be built.
    #[error("upstream client: {0}")]
    Client(#[from] reqwest::Error),
    /// The health endpoint failed.
    #[error("health endpoint: {0}")]
    Io(#[from] std::io::Error),
}

/// Run the signer until `shutdown`; calls in flight are finished and recorded.
pub async fn run(
    config: Config,
    topo: Topology,
    health_listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let upstream = upstream::Upstream::new(
        &config.upstream_url,
        secrecy::ExposeSecret::expose_secret(&config.upstream_api_key),
        config.upstream_timeout,
    )?;
    let budget = shared_budget::SharedBudget::new(
        &topo,
        budget::Budget {
            limit: config.rate_limit,
            window: config.rate_window,
            margin: config.rate_margin,
            call_timeout: config.upstream_timeout,
        },
    );
    // Before anything is claimed: a fresh install finds no claim and starts
    // with an empty budget; a lost one is rebuilt from what survives.
    while let Err(e) = budget.ensure(clock.as_ref()).await {
        tracing::warn!(error = %e, "cannot read the upstream budget yet; retrying");
        if !pause(&shutdown, std::time::Duration::from_millis(500)).await {
            return Ok(());
        }
    }
    let view = Arc::new(work_view::WorkView::default());
    let health = Arc::new(health::Health::default());
    let worker = Arc::new(worker::Worker::new(
        topo.clone(),
        upstream,
        budget.clone(),
        scheduler::RetryPolicy {
            min_backoff: config.retry_min_backoff,
            settle: config.retry_settle,
            speculate: true,
        },
        Arc::clone(&clock),
        Arc::clone(&view),
        Arc::clone(&health),
        config.signer_id.clone(),
        config.upstream_timeout,
        config.auth_retry_interval,
    ));
    let follow = {
        let (view, store, shutdown) = (Arc::clone(&view), topo.work.clone(), shutdown.clone());
        tokio::spawn(async move { view.follow(store, "work item", shutdown).await })
    };
    // Another replica's call ending may free a slot before the deadline the
    // worker is sleeping towards.
    let budget_watch = {
        let (view, store, shutdown) = (Arc::clone(&view), topo.limiter.clone(), shutdown.clone());
        tokio::spawn(async move { wake_on_budget_change(&view, store, shutdown).await })
    };
    let answers = tokio::spawn(
        Arc::new(answers::Answers {
            topo: topo.clone(),
            view: Arc::clone(&view),
            budget: budget.clone(),
            clock: Arc::clone(&clock),
        })
        .serve(shutdown.clone()),
    );
    let ingest = tokio::spawn(ingest::run(
        topo.clone(),
        Arc::clone(&view),
        Arc::clone(&clock),
        shutdown.clone(),
    ));
    let sweep = {
        let (topo, view, clock, shutdown) = (
            topo.clone(),
            Arc::clone(&view),
            Arc::clone(&clock),
            shutdown.clone(),
        );
        tokio::spawn(async move { sweep::run(topo, &view, clock.as_ref(), shutdown).await })
    };
    let health_task = tokio::spawn(health::serve(
        health_listener,
        topo.clone(),
        health,
        shutdown.clone(),
    ));
    worker.run(shutdown.clone()).await;
    let _ = ingest.await;
    let _ = sweep.await;
    let _ = follow.await;
    let _ = budget_watch.await;
    let _ = answers.await;
    if let Ok(result) = health_task.await {
        result?;
    }
    Ok(())
}

async fn wake_on_budget_change(
    view: &work_view::WorkView,
    store: async_nats::jetstream::kv::Store,
    shutdown: CancellationToken,
) {
    use futures::StreamExt;
    while !shutdown.is_cancelled() {
        match store.watch(wire_contract::names::LIMITER_KEY).await {
            Ok(mut changes) => loop {
                tokio::select! {
                    change = changes.next() => match change {
                        Some(Ok(_)) => view.poke(),
                        _ => break,
                    },
                    _ = shutdown.cancelled() => return,
                }
            },
            Err(e) => tracing::debug!(error = %e, "budget watch failed; retrying"),
        }
        if !pause(&shutdown, std::time::Duration::from_millis(500)).await {
            return;
        }
    }
}
