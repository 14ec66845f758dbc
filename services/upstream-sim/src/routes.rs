//! The HTTP surface: the upstream's endpoints plus admin and demo extras.
//!
//! The handlers are a thin shell: they read the clock, take the locks, ask the
//! pure modules ([`crate::failure_model`], [`crate::chaos`], [`crate::audit`])
//! what to do, and render the answer. State lives in one [`App`] shared by
//! all requests.

mod admin;
mod crypto;
mod inbox;
mod sign;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Instant,
};

use axum::{
    Router,
    routing::{get, post},
};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::{
    audit::Audit,
    config::{ApiKey, AuditSettings, ChaosSettings, Config},
    failure_model::{FailureModel, MessageState},
    problem::ApiError,
    signing::MessageSigner,
    webhook_inbox::Inbox,
};

/// Everything the handlers share.
pub struct App {
    api_key: ApiKey,
    signer: MessageSigner,
    model: FailureModel,
    /// Per-message state of the failure model, by message text.
    degradations: Mutex<HashMap<String, MessageState>>,
    chaos: ChaosSettings,
    /// Chaos draws depend on call order, unlike the failure model.
    chaos_rng: Mutex<ChaCha20Rng>,
    audit_settings: AuditSettings,
    audit: Mutex<Audit>,
    inbox: Mutex<Inbox>,
    /// Origin of the monotonic time given to the failure model.
    started: Instant,
    /// Cancelled at shutdown; ends hanging calls.
    shutdown: CancellationToken,
}

impl App {
    /// Shared state for a simulator drawing from `seed`.
    pub fn new(
        config: Config,
        seed: u64,
        signer: MessageSigner,
        shutdown: CancellationToken,
    ) -> Self {
        let window_ms = u64::try_from(config.audit.window.as_millis()).unwrap_or(u64::MAX);
        let chaos_seed: [u8; 32] = Sha256::new()
            .chain_update(seed.to_be_bytes())
            .chain_update(b"chaos")
            .finalize()
            .into();
        Self {
            api_key: config.api_key,
            signer,
            model: FailureModel::new(seed, config.failure),
            degradations: Mutex::new(HashMap::new()),
            chaos: config.chaos,
            chaos_rng: Mutex::new(ChaCha20Rng::from_seed(chaos_seed)),
            audit: Mutex::new(Audit::new(window_ms, config.audit.limit)),
            audit_settings: config.audit,
            inbox: Mutex::new(Inbox::default()),
            started: Instant::now(),
            shutdown,
        }
    }

    /// Whether the raw `Authorization` header carries the key.
    fn authorised(&self, headers: &axum::http::HeaderMap) -> bool {
        headers
            .get(axum::http::header::AUTHORIZATION)
            .is_some_and(|value| self.api_key.matches(value.as_bytes()))
    }
}

/// Locks a mutex, carrying on after a panic elsewhere: every critical section
/// leaves the data consistent, and a simulator must keep answering.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The router over `app`.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(crypto::welcome))
        .route("/healthz", get(|| async { "ok" }))
        .route("/crypto/sign", get(sign::sign))
        .route("/crypto/verify", get(crypto::verify))
        .route("/admin/audit", get(admin::audit))
        .route("/admin/audit/summary", get(admin::summary))
        .route("/admin/reset", post(admin::reset))
        .route(
            "/webhooks/inbox",
            post(inbox::receive).get(inbox::list).delete(inbox::clear),
        )
        .fallback(|| async { ApiError::NotFound })
        .with_state(app)
}
