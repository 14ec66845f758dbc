//! `notifier` binary: configuration, logging, signals, NATS connection.
//! Everything else is in the library ([`notifier::run`]).

use anyhow::Context;
use std::time::Duration;

/// How long to wait for NATS and JetStream at start before giving up (the
/// orchestrator restarts us; NATS may well come up after us).
const NATS_PATIENCE: Duration = Duration::from_secs(60);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = notifier::Config::from_env().context("invalid configuration")?;
    if service_kit::is_healthcheck() {
        std::process::exit(service_kit::probe(config.health_addr));
    }
    // `RUST_LOG` filters (default `info`); `LOG_FORMAT=json` for JSON lines.
    let _telemetry = service_kit::init_tracing();
    service_kit::install_metrics();
    // First SIGTERM/SIGINT drains; a second exits at once.
    let shutdown = service_kit::shutdown_on_signals();
    let client_name = format!("notifier {}", config.notifier_id);
    let topology = wire_contract::connect(&config.nats, &client_name, NATS_PATIENCE)
        .await
        .context("connecting to NATS")?;
    let listener = tokio::net::TcpListener::bind(config.health_addr)
        .await
        .with_context(|| format!("binding {}", config.health_addr))?;
    let health = tokio::spawn(service_kit::serve_health(
        listener,
        topology.clone(),
        shutdown.clone(),
    ));
    notifier::run(config, topology, shutdown).await?;
    let _ = health.await;
    Ok(())
}
