//! The notifier process: configuration, logging, NATS connection, signals.
//! Everything else is in the library ([`notifier::run`]).

use anyhow::Context as _;
use async_nats::jetstream;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;
use wire_contract::Topology;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_tracing();
    let config = notifier::Config::from_env().context("invalid configuration")?;
    let shutdown = CancellationToken::new();
    tokio::spawn(watch_signals(shutdown.clone()));

    // NATS may come up after us: connect in the background and retry.
    let client = async_nats::ConnectOptions::new()
        .name(format!("notifier {}", config.notifier_id))
        .retry_on_initial_connect()
        .connect(config.nats_url.as_str())
        .await
        .context("connecting to NATS")?;
    let js = jetstream::new(client);
    let mut backoff = Duration::from_millis(250);
    let topology = loop {
        match Topology::ensure(js.clone()).await {
            Ok(topology) => break topology,
            Err(err) => warn!(error = %err, "JetStream topology not ready; retrying"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    };
    notifier::run(config, topology, shutdown).await?;
    Ok(())
}

/// `RUST_LOG` filters (default `info`); `LOG_FORMAT=json` for JSON lines.
fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// First SIGTERM/SIGINT: cancel (graceful drain). Second: exit at once.
async fn watch_signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (mut term, mut int) = match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(term), Ok(int)) => (term, int),
        (Err(err), _) | (_, Err(err)) => {
            warn!(error = %err, "cannot listen for signals");
            return;
        }
    };
    for round in 0..2 {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        if round == 0 {
            info!("shutdown requested; draining (signal again to exit at once)");
            shutdown.cancel();
        }
    }
    warn!("second signal: exiting now");
    std::process::exit(130);
}
