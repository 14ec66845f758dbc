//! Shared state of the api's handlers.

use crate::config::Config;
use crate::input::Rules;
use crate::results_watch::Landed;
use std::sync::Arc;
use tokio::sync::broadcast;
use wire_contract::Topology;

/// Handler state (cheap to clone).
#[derive(Clone)]
pub struct AppState {
    /// Streams and buckets (behind an `Arc`: axum clones the state for
    /// every request, and a `Topology` clone copies every stream's config).
    pub topo: Arc<Topology>,
    /// Configuration.
    pub config: Arc<Config>,
    /// Input rules derived from the config.
    pub rules: Arc<Rules>,
    /// Results as they land.
    pub results: broadcast::Sender<Landed>,
    /// Messages this replica accepted in the last seconds, which the signer
    /// may not have recorded yet (a burst arrives faster than it records
    /// them): sent with each backlog question so a burst cannot overshoot
    /// the horizon.
    pub recent: Arc<std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>>,
    /// Known outcomes in memory (the cached-200 hot path).
    pub cache: Arc<crate::result_cache::ResultCache>,
    /// Per-caller request rates.
    pub quotas: Arc<crate::quotas::Quotas>,
    /// Places for requests doing NATS work at once (`MAX_ACCEPTING`).
    pub accepting: Arc<tokio::sync::Semaphore>,
    /// Recent webhook deliveries, for the status page.
    pub deliveries: Arc<crate::status::DeliveryFeed>,
}
