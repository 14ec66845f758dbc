//! This replica's view of the pending messages: a mirror of the work bucket
//! turned into scheduler candidates.
//!
//! The scheduler plans from this view; every claim re-reads the item and
//! writes it by compare-and-set, so a stale view can cost a wasted decision
//! but never a duplicate call.

use crate::scheduler::Candidate;
use std::collections::HashMap;
use wire_contract::mirror::Mirror;
use wire_contract::records::WorkItem;

/// Pending messages by key.
pub type WorkView = Mirror<WorkItem>;

/// Candidates for the scheduler, leaving out `skip` (calls in flight here).
pub fn candidates<V>(view: &WorkView, skip: &HashMap<String, V>) -> Vec<Candidate<String>> {
    view.items()
        .iter()
        .filter(|(k, _)| !skip.contains_key(*k))
        .map(|(k, w)| Candidate {
            key: k.clone(),
            attempts: w.attempts,
            first_seen: w.first_seen,
            first_attempt: w.first_attempt,
            last_attempt: w.last_attempt,
            leased_until: w.lease.as_ref().map(|l| l.until),
            callers: w
                .callers
                .iter()
                .map(|(name, share)| (name.clone(), share.weight))
                .collect(),
        })
        .collect()
}
