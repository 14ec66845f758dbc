//! Edge plumbing shared by every service: the same at every edge, so it is
//! written once.
//!
//! - Process edge, called from `main.rs` only: logging and traces
//!   ([`init_tracing`], [`telemetry`]), shutdown signals
//!   ([`shutdown_on_signals`]), the container health check
//!   ([`is_healthcheck`], [`probe`]), the metrics recorder
//!   ([`install_metrics`]).
//! - HTTP edge, called by each service's `run`: serving with graceful
//!   shutdown ([`serve_http`], [`serve_health`]), `/metrics`
//!   ([`metrics_router`]), the NATS gauges it shows, refreshed in the
//!   background ([`refresh_nats_gauges`]), and `/readyz` ([`readiness`]).
//! - Config edge: every service's `Config` reads its environment through
//!   [`env`].
//!
//! Core logic never calls it: it takes a `CancellationToken` and logs
//! through `tracing`.

pub mod arrival;
pub mod callers;
pub mod env;
mod nats_gauges;
pub mod telemetry;

pub use arrival::Arrival;

pub use nats_gauges::{REFRESH_EVERY, refresh_nats_gauges};

use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// Install the tracing subscriber: `RUST_LOG` filters the log lines
/// (default `info`), `LOG_FORMAT=json` switches them from human-readable to
/// JSON; with an OTLP endpoint configured, spans are also exported as
/// traces ([`telemetry`]). Keep the returned guard until the service has
/// stopped: dropping it flushes the last spans.
pub fn init_tracing() -> telemetry::Telemetry {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("LOG_FORMAT")
        .map(|v| v.eq_ignore_ascii_case("json"))
        .unwrap_or(false);
    let lines = tracing_subscriber::fmt::layer().with_target(false);
    let lines = if json {
        lines.json().flatten_event(true).with_filter(filter).boxed()
    } else {
        lines.with_filter(filter).boxed()
    };
    let (telemetry, failed) = match telemetry::Telemetry::from_env(&binary_name()) {
        Ok(t) => (t, None),
        Err(e) => (telemetry::Telemetry::default(), Some(e)),
    };
    tracing_subscriber::registry()
        .with(lines)
        .with(telemetry.layer())
        .init();
    if let Some(e) = failed {
        tracing::warn!(error = %e, "traces are off: the OTLP exporter could not be set up");
    }
    telemetry
}

/// This binary's file name (`api`, `signer`, ...): the default service name.
fn binary_name() -> String {
    std::env::args_os()
        .next()
        .as_deref()
        .map(std::path::Path::new)
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "signing-gateway".to_owned())
}

/// Run `job` every `period` until `shutdown`, which also cuts a run short.
/// A run slower than the period (NATS slow to answer) is followed by the
/// next one at once, not by a burst of missed ones.
pub async fn every<F: Future<Output = R>, R>(
    period: std::time::Duration,
    shutdown: &CancellationToken,
    mut job: impl FnMut() -> F,
) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = job() => {}
        }
    }
}

/// A token cancelled on the first SIGTERM or SIGINT; a second signal exits
/// the process at once (an operator who insists is not made to wait).
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested; finishing in-flight work (signal again to exit now)");
        trigger.cancel();
        wait_for_signal().await;
        tracing::warn!("second signal: exiting now");
        std::process::exit(130);
    });
    token
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `<binary> healthcheck`: exit 0 if `GET /healthz` on `addr` answers 200
/// within 2 s, else 1.
///
/// Container images have no shell or curl, so each binary probes itself;
/// a wildcard listen address is probed on loopback.
pub fn probe(addr: std::net::SocketAddr) -> i32 {
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
        // The status line's start, e.g. `HTTP/1.1 200`; a short read goes on.
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

/// Whether the process was started as `<binary> healthcheck`.
pub fn is_healthcheck() -> bool {
    std::env::args().nth(1).as_deref() == Some("healthcheck")
}

/// How long the `/readyz` of [`serve_health`] waits for NATS (and so how
/// long its `nats_ready` gauge does).
pub const WORKER_READY_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

/// Serve `/healthz` (alive), `/readyz` (NATS, every stream and bucket
/// answer within [`WORKER_READY_WITHIN`]) and `/metrics` on `listener`, and
/// keep the NATS gauges fresh ([`refresh_nats_gauges`]), until `shutdown`:
/// for workers that have no HTTP api of their own, so orchestrators can
/// probe them.
pub async fn serve_health(
    listener: tokio::net::TcpListener,
    topology: wire_contract::Topology,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    use axum::{Router, extract::State, http::StatusCode, routing::get};
    async fn ready(State(topology): State<wire_contract::Topology>) -> (StatusCode, String) {
        readiness(&topology, WORKER_READY_WITHIN).await
    }
    let gauges = tokio::spawn(refresh_nats_gauges(
        topology.clone(),
        WORKER_READY_WITHIN,
        shutdown.clone(),
    ));
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(topology)
        .merge(metrics_router());
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await;
    // Ends on the same token; a panic in it is not this server's failure.
    let _ = gauges.await;
    served
}

static METRICS: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
    std::sync::OnceLock::new();

/// Install the Prometheus recorder (once per process; `main` calls it).
/// Histograms get explicit buckets, in seconds, from 1 ms to 30 s; 1.8 s is
/// the answer SLO's threshold (answers within 2 s, alerting at 1.8 s:
/// ops/prometheus), so the share over it is counted, not interpolated.
pub fn install_metrics() {
    METRICS.get_or_init(|| {
        let buckets = [
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 1.8, 2.0, 5.0, 10.0, 30.0,
        ];
        let builder = metrics_exporter_prometheus::PrometheusBuilder::new();
        let recorder = match builder.set_buckets(&buckets) {
            Ok(b) => b.build_recorder(),
            Err(_) => metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder(),
        };
        let handle = recorder.handle();
        // Fails only if a recorder is already installed, which OnceLock prevents.
        let _ = metrics::set_global_recorder(recorder);
        handle
    });
}

/// `GET /metrics` in Prometheus text format (empty until [`install_metrics`]):
/// renders what the recorder holds, nothing is fetched per scrape.
pub fn metrics_router<S: Clone + Send + Sync + 'static>() -> axum::Router<S> {
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(|| async { render_metrics() }),
    )
}

/// The `/metrics` answer: the recorder's Prometheus text.
fn render_metrics() -> impl axum::response::IntoResponse {
    let body = METRICS.get().map(|h| h.render()).unwrap_or_default();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        body,
    )
}

/// How long a client may take to send a request's headers.
pub const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Largest request head (request line and headers) the HTTP layer reads.
/// Services refuse smaller limits themselves, with a body that says why
/// (the api: 16 KiB of target, 64 KiB of headers, as problem+json); only a
/// head over this is cut by the HTTP layer, with a bare `431`.
pub const MAX_HEADER_BYTES: usize = 256 * 1024;

/// Serve `app` on `listener` until `shutdown`, then let requests in flight
/// finish (for up to 10 s).
///
/// Unlike `axum::serve`, which sets no timer, connections get a header-read
/// timeout and a bounded header buffer, so a slow or hostile client cannot
/// hold a connection open forever by trickling its headers, nor grow the
/// buffer without bound. Slow bodies are bounded by the service's own
/// request timeout.
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::server::graceful::GracefulShutdown;
    use hyper_util::service::TowerToHyperService;

    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        .keep_alive_interval(Some(std::time::Duration::from_secs(30)));
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: back off, go on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        // A connection's first request arrived when its first bytes did:
        // at the accept if they were waiting by then (the time until hyper
        // hands the request over is this server's queue), or when they came
        // (a client that connects ahead, as pools do). Later requests
        // arrive about when hyper hands them over.
        let (stream, first_bytes) = arrival::FirstBytes::watch(stream);
        let first = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let stamped = tower::ServiceExt::map_request(
            app.clone(),
            move |mut request: axum::http::Request<_>| {
                let now = tokio::time::Instant::now();
                let at = if first.swap(false, std::sync::atomic::Ordering::Relaxed) {
                    first_bytes.at().unwrap_or(now)
                } else {
                    now
                };
                request.extensions_mut().insert(Arrival(at));
                request
            },
        );
        let service = TowerToHyperService::new(stamped);
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(std::time::Duration::from_secs(10)) => {
            tracing::warn!("connections still open after 10 s; closing them");
        }
    }
    Ok(())
}

/// A listener on `addr` whose kernel accept queue holds `backlog`
/// connections (capped by `net.core.somaxconn`): tokio's `bind` allows
/// 1,024, and past it a burst of new connections has SYNs dropped and
/// retried a second later, a wait no server-side deadline sees.
///
/// # Errors
/// As binding and listening.
pub fn listen(
    addr: std::net::SocketAddr,
    backlog: u32,
) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// The `/readyz` answer of every service: `200 ready` when NATS and every
/// stream and bucket answer within `within`, else `503` with the reason.
pub async fn readiness(
    topology: &wire_contract::Topology,
    within: std::time::Duration,
) -> (axum::http::StatusCode, String) {
    use axum::http::StatusCode;
    match tokio::time::timeout(within, topology.check()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready".into()),
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "NATS did not answer in time".into(),
        ),
    }
}
