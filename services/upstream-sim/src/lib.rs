//! An offline stand-in for the flaky, rate-limited upstream signing API.
//!
//! The gateway's whole purpose is to make an unreliable upstream look
//! reliable, and that can only be tested against an upstream that fails the
//! same way on demand: the first call for a message succeeds about half of
//! the time, failed messages answer 502 for minutes, and more than 10 calls a
//! minute is a breach. This crate reproduces that behaviour with seeded,
//! replayable randomness and a compressible clock, signs with a real RSA key,
//! audits every call against the rate limit, can inject worse faults (hangs,
//! resets, 500s, garbage), and hosts a demo webhook inbox.
//!
//! [`run`] serves on a listener the caller binds (port 0 in tests) until the
//! cancellation token fires.

pub mod audit;
pub mod chaos;
pub mod clock;
pub mod config;
pub mod failure_model;
pub mod problem;
pub mod routes;
pub mod signing;
pub mod webhook_inbox;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::{Config, ConfigError};

/// Why the simulator stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The RSA key could not be loaded or generated.
    #[error(transparent)]
    Key(#[from] signing::KeyError),
    /// The key generation task panicked or was cancelled.
    #[error("key generation task failed: {0}")]
    KeyTask(#[from] tokio::task::JoinError),
    /// The HTTP server failed.
    #[error("serving HTTP: {0}")]
    Serve(#[source] std::io::Error),
}

/// Serves the simulator on `listener` until `shutdown` is cancelled, then
/// finishes in-flight calls (hanging ones are released) and returns.
///
/// # Errors
/// [`Error::Key`] if the RSA key cannot be obtained, [`Error::Serve`] if the
/// server fails.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let seed = config.seed.unwrap_or_else(rand::random);
    let seed_source = if config.seed.is_some() {
        "SIM_SEED"
    } else {
        "random"
    };
    tracing::info!(?config, seed, seed_source, "starting upstream simulator");

    let key_source = config.key.clone();
    let signer =
        tokio::task::spawn_blocking(move || signing::MessageSigner::load(&key_source)).await??;
    tracing::info!(key = ?config.key, "RSA key ready");

    let app = routes::App::new(config, seed, signer, shutdown.clone());
    let router = routes::router(Arc::new(app));
    match listener.local_addr() {
        Ok(addr) => tracing::info!(%addr, "listening"),
        Err(error) => tracing::warn!(%error, "listening on an unknown address"),
    }
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .map_err(Error::Serve)?;
    tracing::info!("upstream simulator stopped");
    Ok(())
}
