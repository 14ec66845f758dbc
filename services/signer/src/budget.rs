//! The upstream budget held in JetStream, shared by every signer replica.
//!
//! The recorded call times live in one KV key. Taking a slot is a read, a
//! pure decision ([`Budget::admit`]) and a compare-and-set write of the new
//! list; if another replica wrote in between, the write fails and we decide
//! again. So check-and-record is one atomic step across processes, and a
//! restarted signer sees the calls its predecessor made.

use crate::limiter::{Admission, Budget};
use async_nats::jetstream::kv;
use wire_contract::records::LimiterState;
use wire_contract::time::Clock;
use wire_contract::{RecordError, UnixMillis, load, names, save};

/// Result of trying to take a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// A call may start now; it was recorded at this instant.
    At(UnixMillis),
    /// No slot before this instant.
    NotBefore(UnixMillis),
}

/// The shared budget.
#[derive(Clone)]
pub struct SharedBudget {
    store: kv::Store,
    budget: Budget,
}

impl SharedBudget {
    /// The budget `budget` kept in `store`.
    pub fn new(store: kv::Store, budget: Budget) -> Self {
        Self { store, budget }
    }

    /// The configured budget.
    pub fn budget(&self) -> Budget {
        self.budget
    }

    /// Recorded call times.
    pub async fn calls(&self) -> Result<Vec<UnixMillis>, RecordError> {
        let v = load::<LimiterState>(&self.store, "limiter state", names::LIMITER_KEY).await?;
        Ok(v.value.unwrap_or_default().calls)
    }

    /// Take a slot if one is free, recording the call atomically.
    pub async fn take(&self, clock: &dyn Clock) -> Result<Taken, RecordError> {
        loop {
            let v = load::<LimiterState>(&self.store, "limiter state", names::LIMITER_KEY).await?;
            let calls = v.value.unwrap_or_default().calls;
            let now = clock.now();
            match self.budget.admit(now, &calls) {
                Admission::At(t) => return Ok(Taken::NotBefore(t)),
                Admission::Now => {
                    let next = LimiterState {
                        calls: self.budget.record(now, &calls),
                    };
                    match save(&self.store, names::LIMITER_KEY, &next, v.revision).await {
                        Ok(_) => return Ok(Taken::At(now)),
                        Err(RecordError::Conflict) => continue,
                        Err(e) => return Err(e),
                    }
                }
            }
        }
    }
}
