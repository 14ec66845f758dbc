//! `api` binary: configuration, logging, signals; the library does the rest.

use anyhow::Context;
use std::time::Duration;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = api::Config::from_env().context("invalid configuration")?;
    if service_kit::is_healthcheck() {
        std::process::exit(service_kit::probe(config.addr));
    }
    let _telemetry = service_kit::init_tracing();
    service_kit::install_metrics();
    tracing::info!(?config, "api starting");
    let shutdown = service_kit::shutdown_on_signals();
    let topo = wire_contract::connect(&config.nats, "api", Duration::from_secs(60))
        .await
        .context("connecting to NATS")?;
    // Room for a burst of callers connecting at once (see docs/benchmarks.md).
    let listener = service_kit::listen(config.addr, 4096)
        .with_context(|| format!("binding {}", config.addr))?;
    tracing::info!(addr = %listener.local_addr()?, "api listening");
    api::run(listener, config, topo, shutdown).await?;
    tracing::info!("api stopped");
    Ok(())
}
