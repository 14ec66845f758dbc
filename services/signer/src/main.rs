//! `signer` binary: configuration, logging, signals; the library does the rest.

use anyhow::Context;
use std::time::Duration;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = signer::Config::from_env().context("invalid configuration")?;
    if service_kit::is_healthcheck() {
        std::process::exit(service_kit::probe(config.health_addr));
    }
    let _telemetry = service_kit::init_tracing();
    service_kit::install_metrics();
    tracing::info!(?config, "signer starting");
    let shutdown = service_kit::shutdown_on_signals();
    let topo = wire_contract::connect(&config.nats, "signer", Duration::from_secs(60))
        .await
        .context("connecting to NATS")?;
    let listener = tokio::net::TcpListener::bind(config.health_addr)
        .await
        .with_context(|| format!("binding {}", config.health_addr))?;
    signer::run(config, topo, listener, shutdown).await?;
    tracing::info!("signer stopped");
    Ok(())
}
