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
    /// Streams and buckets.
    pub topo: Topology,
    /// Configuration.
    pub config: Arc<Config>,
    /// Input rules derived from the config.
    pub rules: Arc<Rules>,
    /// Results as they land.
    pub results: broadcast::Sender<Landed>,
}
