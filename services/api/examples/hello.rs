//! Axum hello-world: the baseline for `scripts/bench-hot-path.sh`.
//!
//! Same axum and tokio as the api, same runtime (`#[tokio::main]`, one
//! worker per core) and the same `axum::serve`, so the gap between this and
//! the api's cached-signature path is the cost of the api's own work (the
//! NATS KV read, recording the job, JSON), not of the framework.
//!
//! Run: `cargo run --release -p api --example hello -- 8099`, then
//! `curl http://127.0.0.1:8099/`.

use axum::Router;
use axum::routing::get;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = match std::env::args().nth(1) {
        Some(p) => p
            .parse()
            .map_err(|e| std::io::Error::other(format!("port {p:?}: {e}")))?,
        None => 8099,
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let app = Router::new().route("/", get(|| async { "Hello, World!" }));
    axum::serve(listener, app).await
}
