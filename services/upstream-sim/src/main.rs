//! `upstream-sim`: reads `SIM_*` configuration, binds, and serves until
//! SIGTERM or SIGINT (a second signal exits at once).

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;
use upstream_sim::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_tracing();
    let config = Config::from_env().context("invalid configuration")?;
    let listener = TcpListener::bind(config.addr)
        .await
        .with_context(|| format!("binding {}", config.addr))?;
    let shutdown = CancellationToken::new();
    tokio::spawn(watch_signals(shutdown.clone()));
    upstream_sim::run(listener, config, shutdown).await?;
    Ok(())
}

/// Logs to stdout, filtered by `RUST_LOG` (default `info`), as JSON when
/// `LOG_FORMAT=json`.
fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// First signal: graceful shutdown. Second: exit now.
async fn watch_signals(shutdown: CancellationToken) {
    signal().await;
    tracing::info!("shutting down; signal again to exit immediately");
    shutdown.cancel();
    signal().await;
    tracing::warn!("second signal, exiting");
    std::process::exit(130);
}

/// Resolves on SIGINT or SIGTERM.
async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot watch SIGTERM; watching SIGINT only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
