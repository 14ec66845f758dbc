//! Known outcomes in memory, so a repeated message is answered without a
//! round trip to NATS (the hot path: a cached `200`).
//!
//! Filled from the shared results watch and from bucket reads; bounded, with
//! arbitrary eviction when full (a miss only costs one KV read). Outcomes
//! never change once written, so a cached entry is never stale.

use std::collections::HashMap;
use std::sync::RwLock;
use wire_contract::messages::Outcome;

/// Message key -> outcome, at most `capacity` entries.
pub struct ResultCache {
    entries: RwLock<HashMap<String, Outcome>>,
    capacity: usize,
}

impl ResultCache {
    /// An empty cache holding up to `capacity` outcomes (0 disables it).
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: RwLock::new(HashMap::new()),
            capacity,
        }
    }

    /// The outcome for `key`, if cached.
    pub fn get(&self, key: &str) -> Option<Outcome> {
        self.entries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    /// Remember `outcome` for `key`.
    pub fn insert(&self, key: &str, outcome: Outcome) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= self.capacity
            && !entries.contains_key(key)
            && let Some(victim) = entries.keys().next().cloned()
        {
            entries.remove(&victim);
        }
        entries.insert(key.to_owned(), outcome);
    }

    /// Number of cached outcomes.
    pub fn len(&self) -> usize {
        self.entries.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(s: &str) -> Outcome {
        Outcome::Signed {
            signature: s.to_owned(),
        }
    }

    #[test]
    fn holds_at_most_its_capacity_and_keeps_the_newest() {
        let cache = ResultCache::new(2);
        cache.insert("a", signed("1"));
        cache.insert("b", signed("2"));
        cache.insert("c", signed("3"));
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get("c"), Some(signed("3")));
        let disabled = ResultCache::new(0);
        disabled.insert("a", signed("1"));
        assert!(disabled.get("a").is_none());
    }
}
