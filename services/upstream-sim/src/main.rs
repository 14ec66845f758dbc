//! `upstream-sim`: reads `SIM_*` configuration, binds, and serves until
//! SIGTERM or SIGINT (a second signal exits at once).
//!
//! `upstream-sim healthcheck` instead probes `GET /healthz` on `SIM_ADDR`
//! and exits 0 on a 200 (container images have no shell or curl).

use anyhow::Context as _;
use tokio::net::TcpListener;
use upstream_sim::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::from_env().context("invalid configuration")?;
    if service_kit::is_healthcheck() {
        std::process::exit(service_kit::probe(config.addr));
    }
    let _telemetry = service_kit::init_tracing();
    let listener = TcpListener::bind(config.addr)
        .await
        .with_context(|| format!("binding {}", config.addr))?;
    let shutdown = service_kit::shutdown_on_signals();
    upstream_sim::run(listener, config, shutdown).await?;
    Ok(())
}
