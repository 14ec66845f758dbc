//! A real webhook receiver on a free port that records every delivery and
//! verifies its Standard Webhooks signature independently of the notifier's
//! code (HMAC-SHA256 over `id.timestamp.body`, written here from the spec).

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// One received webhook.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// `webhook-id` header.
    pub webhook_id: String,
    /// Parsed JSON body.
    pub body: serde_json::Value,
    /// Whether `webhook-signature` verified with the shared secret.
    pub signature_valid: bool,
    /// `webhook-timestamp` and `webhook-signature` as received, and the raw
    /// body: to verify with another secret ([`Delivery::verifies_with`]).
    timestamp: String,
    signatures: String,
    raw_body: Bytes,
}

impl Delivery {
    /// Whether its signature verifies with `secret_b64` (a `whsec_` secret
    /// without the prefix).
    pub fn verifies_with(&self, secret_b64: &str) -> bool {
        verify_with(
            secret_b64,
            &self.webhook_id,
            &self.timestamp,
            &self.raw_body,
            &self.signatures,
        )
    }
}

#[derive(Default)]
struct Inner {
    deliveries: Mutex<Vec<Delivery>>,
    arrived: Notify,
    /// Answer every webhook `500` (recording it all the same), so the
    /// notifier retries and dead-letters (the Prometheus alerts test).
    failing: bool,
}

/// The receiver; cloning shares the record.
#[derive(Clone)]
pub struct Receiver {
    inner: Arc<Inner>,
    /// `http://127.0.0.1:<port>/hook`
    pub url: String,
}

/// The secret the tests configure the notifier with.
pub const SECRET_B64: &str = "c2VjcmV0LWtleS1mb3Itc3lzdGVtLXRlc3RzLTAxMjM=";

impl Receiver {
    /// Listen on a free port.
    pub async fn start() -> Self {
        Self::listen(Inner::default()).await
    }

    /// Listen on a free port and answer every webhook `500`.
    pub async fn start_failing() -> Self {
        Self::listen(Inner {
            failing: true,
            ..Inner::default()
        })
        .await
    }

    async fn listen(inner: Inner) -> Self {
        let inner = Arc::new(inner);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(Arc::clone(&inner));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { inner, url }
    }

    /// Everything received so far.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.inner.deliveries.lock().expect("lock").clone()
    }

    /// Wait until `pred` holds over the deliveries, up to `limit`.
    /// Wait until `pred` holds; a wait that times out fails the test.
    pub async fn expect(
        &self,
        limit: Duration,
        what: &str,
        pred: impl Fn(&[Delivery]) -> bool,
    ) -> Vec<Delivery> {
        let got = self.wait_until(limit, &pred).await;
        assert!(
            pred(&got),
            "timed out after {limit:?} waiting for {what}: {} webhooks",
            got.len()
        );
        got
    }

    /// Wait until `pred` holds or `limit` passes; returns what arrived either
    /// way (for callers that judge it themselves).
    pub async fn wait_until(
        &self,
        limit: Duration,
        pred: impl Fn(&[Delivery]) -> bool,
    ) -> Vec<Delivery> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.inner.arrived.notified();
            let now = self.deliveries();
            if pred(&now) || tokio::time::Instant::now() >= deadline {
                return now;
            }
            let _ = tokio::time::timeout_at(deadline, notified).await;
        }
    }
}

async fn receive(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let webhook_id = header("webhook-id");
    let timestamp = header("webhook-timestamp");
    let signatures = header("webhook-signature");
    let signature_valid = verify_with(SECRET_B64, &webhook_id, &timestamp, &body, &signatures);
    let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    inner.deliveries.lock().expect("lock").push(Delivery {
        webhook_id,
        body: json,
        signature_valid,
        timestamp,
        signatures,
        raw_body: body,
    });
    inner.arrived.notify_waiters();
    if inner.failing {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::NO_CONTENT
    }
}

fn verify_with(secret_b64: &str, id: &str, timestamp: &str, body: &[u8], header: &str) -> bool {
    let Ok(key) = STANDARD.decode(secret_b64) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&key) else {
        return false;
    };
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let expected = STANDARD.encode(mac.finalize().into_bytes());
    header
        .split(' ')
        .any(|s| s.strip_prefix("v1,") == Some(expected.as_str()))
}
