//! Who a message is signed for, as the scheduler's fair share needs it.
//!
//! The api stamps each sign request with its configured caller's name and
//! weight ([`Claimant`]); the signer tallies them per work item
//! ([`Share`]), so that it can divide the upstream budget among callers
//! without reading the api's configuration. With no callers configured (the
//! open gateway) requests carry none, and every message belongs to one
//! anonymous caller.

use serde::{Deserialize, Serialize};

/// The caller a sign request is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claimant {
    /// The configured caller's name.
    pub name: String,
    /// Its weight: its share of the budget against other callers with
    /// pending work is proportional to it (at least 1).
    pub weight: u32,
}

/// One caller's stake in a pending message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share {
    /// The caller's weight, as its latest request said.
    pub weight: u32,
    /// Its jobs taken in for the message.
    pub jobs: u64,
}
