//! `upstream-sim`: reads `SIM_*` configuration, binds, and serves until
//! SIGTERM or SIGINT (a second signal exits at once).
//!
//! `upstream-sim healthcheck` instead probes `GET /healthz` on `SIM_ADDR`
//! and exits 0 on a 200 (container images have no shell or curl).

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;
use upstream_sim::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::from_env().context("invalid configuration")?;
    if is_healthcheck() {
        std::process::exit(probe(config.addr));
    }
    init_tracing();
    let listener = TcpListener::bind(config.addr)
        .await
        .with_context(|| format!("binding {}", config.addr))?;
    let shutdown = CancellationToken::new();
    tokio::spawn(watch_signals(shutdown.clone()));
    upstream_sim::run(listener, config, shutdown).await?;
    Ok(())
}

/// Whether the process was started as `upstream-sim healthcheck`.
fn is_healthcheck() -> bool {
    std::env::args().nth(1).as_deref() == Some("healthcheck")
}

/// Exit status of `upstream-sim healthcheck`: 0 if `GET /healthz` on `addr`
/// answers 200 within 2 s, else 1. A wildcard listen address is probed on
/// loopback. (The same as `service_kit::probe`, which this crate does not
/// depend on.)
fn probe(addr: std::net::SocketAddr) -> i32 {
    use std::io::{Read, Write};
    use std::time::Duration;
    let mut target = addr;
    if target.ip().is_unspecified() {
        target.set_ip(match target.ip() {
            std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let attempt = || -> std::io::Result<bool> {
        let mut stream = std::net::TcpStream::connect_timeout(&target, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.set_write_timeout(Some(Duration::from_secs(2)))?;
        stream.write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
        // Status line prefix, e.g. `HTTP/1.1 200`; a short read is retried.
        let mut head = [0u8; 12];
        let mut n = 0;
        while n < head.len() {
            match stream.read(&mut head[n..])? {
                0 => break,
                k => n += k,
            }
        }
        Ok(&head[..n] == b"HTTP/1.0 200" || &head[..n] == b"HTTP/1.1 200")
    };
    match attempt() {
        Ok(true) => 0,
        _ => 1,
    }
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
