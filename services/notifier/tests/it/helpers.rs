//! Test scaffolding: a real nats-server per test, a scriptable webhook
//! receiver, and polling with a deadline instead of fixed sleeps.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A nats-server with JetStream on a free port and its own store directory,
/// killed (and its directory removed) on drop.
pub struct NatsServer {
    child: Child,
    dir: PathBuf,
    port: u16,
    /// `nats://127.0.0.1:<port>`.
    pub url: String,
}

impl NatsServer {
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!("notifier-it-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("store dir");
        let child = spawn(port, &dir).await;
        Self {
            child,
            dir,
            port,
            url: format!("nats://127.0.0.1:{port}"),
        }
    }

    /// Kill the server (SIGKILL) and start it again on the same port and store.
    pub async fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(self.port, &self.dir).await;
    }
}

async fn spawn(port: u16, dir: &std::path::Path) -> Child {
    let child = Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server must be on PATH");
    let addr = format!("127.0.0.1:{port}");
    eventually(
        "nats-server to accept connections",
        Duration::from_secs(10),
        || {
            let addr = addr.clone();
            async move { tokio::net::TcpStream::connect(addr).await.ok().map(|_| ()) }
        },
    )
    .await;
    child
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
    /// When it arrived (wall clock, to compare with records' times).
    pub at: std::time::SystemTime,
}

#[derive(Default)]
struct ReceiverState {
    /// Requests by hook name, in arrival order.
    requests: Mutex<HashMap<String, Vec<Received>>>,
    /// Hook name -> (failures before succeeding, failure status).
    scripts: Mutex<HashMap<String, (usize, u16)>>,
    /// Hook name -> how long to take before answering.
    delays: Mutex<HashMap<String, Duration>>,
}

/// A webhook receiver on 127.0.0.1:0: `POST /hook/{name}` answers per its
/// script (fail the first n times with a status, then 200) and records
/// every request.
pub struct Receiver {
    base: String,
    state: Arc<ReceiverState>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start() -> Self {
        let state = Arc::new(ReceiverState::default());
        let app = Router::new()
            .route("/hook/{name}", post(receive))
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let base = format!("http://{}", listener.local_addr().expect("receiver addr"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { base, state, task }
    }

    /// The URL of hook `name`.
    pub fn url(&self, name: &str) -> String {
        format!("{}/hook/{name}", self.base)
    }

    /// Make hook `name` fail its first `failures` requests with `status`.
    pub fn script(&self, name: &str, failures: usize, status: u16) {
        lock(&self.state.scripts).insert(name.to_owned(), (failures, status));
    }

    /// Make hook `name` take `delay` before answering.
    pub fn slow(&self, name: &str, delay: Duration) {
        lock(&self.state.delays).insert(name.to_owned(), delay);
    }

    /// Requests hook `name` got so far.
    pub fn requests(&self, name: &str) -> Vec<Received> {
        lock(&self.state.requests)
            .get(name)
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let seen = {
        let mut requests = lock(&state.requests);
        let list = requests.entry(name.clone()).or_default();
        list.push(Received {
            headers,
            body,
            at: std::time::SystemTime::now(),
        });
        list.len()
    };
    let delay = lock(&state.delays).get(&name).copied();
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let (failures, status) = lock(&state.scripts).get(&name).copied().unwrap_or((0, 500));
    if seen <= failures {
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    } else {
        StatusCode::OK
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Poll `probe` until it yields `Some`, failing the test after `limit`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
