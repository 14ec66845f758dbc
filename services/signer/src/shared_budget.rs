//! The upstream budget held in JetStream, shared by every signer replica.
//!
//! The calls that still count live in one KV key. Taking a slot is a read,
//! a pure decision ([`Budget::admit`]), a compare-and-set write that adds a
//! slot stamped with the server's time of that write, and a check of the
//! same decision at that stamp. If another replica wrote in between, the
//! write fails and we decide again; if this replica's estimate of server
//! time was off and the stamp says "too early", the slot is withdrawn
//! before anything is sent. So check-and-record is one atomic step across
//! processes, judged on one clock (the server's), and a restarted signer
//! sees the calls its predecessor made.
//!
//! If the key is gone (deleted, bucket recreated, stream lost), the state
//! is rebuilt from what survives: see [`SharedBudget::recover`].

use crate::budget::{Admission, Budget, Call, LossEvidence};
use async_nats::jetstream::kv;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use wire_contract::records::{CallSlot, LimiterState};
use wire_contract::store::server_time;
use wire_contract::time::Clock;
use wire_contract::{
    Change, RecordError, Topology, UnixMillis, Updated, Versioned, load, names, save,
    update_versioned, with_patience,
};

/// A reserved slot: the call may be sent once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// Its id in the limiter state.
    pub id: u64,
    /// Server time of the reservation.
    pub start: UnixMillis,
}

/// Result of trying to take a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// A call may be sent now, once.
    Slot(Slot),
    /// No slot before this instant (this replica's clock).
    NotBefore(UnixMillis),
}

/// The shared budget.
#[derive(Clone)]
pub struct SharedBudget {
    store: kv::Store,
    work: kv::Store,
    results: kv::Store,
    budget: Budget,
    /// Server time minus this replica's time, learnt from our own writes.
    /// Only used to guess; every reservation is checked on the server's stamp.
    offset_ms: std::sync::Arc<AtomicI64>,
}

/// The state as read, with every stamp made absolute.
struct Read {
    state: LimiterState,
    /// Server time of that revision.
    written: UnixMillis,
}

impl SharedBudget {
    /// The budget `budget`, kept in the topology's limiter bucket.
    pub fn new(topo: &Topology, budget: Budget) -> Self {
        Self {
            store: topo.limiter.clone(),
            work: topo.work.clone(),
            results: topo.results.clone(),
            budget,
            offset_ms: Default::default(),
        }
    }

    /// The configured budget.
    pub fn budget(&self) -> Budget {
        self.budget
    }

    fn server_now(&self, clock: &dyn Clock) -> UnixMillis {
        shift(clock.now(), self.offset_ms.load(Ordering::Relaxed))
    }

    fn to_local(&self, server: UnixMillis) -> UnixMillis {
        shift(server, -self.offset_ms.load(Ordering::Relaxed))
    }

    /// The calls of a state whose stamps `materialized` made absolute.
    fn calls(&self, state: &LimiterState) -> Vec<Call> {
        state.slots.iter().map(call_of).collect()
    }

    /// The state as stored, rebuilt first if it is missing.
    async fn versioned(&self, clock: &dyn Clock) -> Result<Versioned<LimiterState>, RecordError> {
        let v = load::<LimiterState>(&self.store, "limiter state", names::LIMITER_KEY).await?;
        if v.value.is_some() && v.written.is_some() {
            return Ok(v);
        }
        self.recover(v.revision, clock).await?;
        load(&self.store, "limiter state", names::LIMITER_KEY).await
    }

    async fn read(&self, clock: &dyn Clock) -> Result<Read, RecordError> {
        let v = self.versioned(clock).await?;
        match (v.value, v.written) {
            (Some(state), Some(written)) => Ok(Read {
                state: state.materialized(written),
                written,
            }),
            // Deleted again between the rebuild and the read: nothing can be
            // decided on this round.
            _ => Err(RecordError::Conflict),
        }
    }

    /// Create the state if it is missing. Run at start, before anything is
    /// claimed, so a fresh install can start calling at once.
    pub async fn ensure(&self, clock: &dyn Clock) -> Result<(), RecordError> {
        self.read(clock).await.map(|_| ())
    }

    /// The state is gone: write the worst it could have held. Calls made
    /// before the loss are not in it any more, but every call is preceded
    /// by its claim, a write to the work bucket, and is over within
    /// `call_timeout` of that claim. So the work bucket's last write bounds
    /// every lost call; without that, the loss itself does.
    async fn recover(&self, revision: u64, clock: &dyn Clock) -> Result<(), RecordError> {
        let evidence = self.evidence().await?;
        let stand_ins = self.budget.stand_ins_after_loss(evidence);
        let assumed_calls = stand_ins.len();
        let state = LimiterState {
            slots: stand_ins,
            ..LimiterState::default()
        };
        match save(&self.store, names::LIMITER_KEY, &state, revision).await {
            Ok(_) => {}
            // Another replica (or task) rebuilt it first: theirs stands.
            Err(RecordError::Conflict) => return Ok(()),
            Err(e) => return Err(e),
        }
        if evidence == LossEvidence::Fresh {
            tracing::info!("upstream limiter state created: nothing was ever claimed");
        } else {
            tracing::warn!(
                ?evidence,
                assumed_calls,
                now = ?self.server_now(clock),
                "UPSTREAM LIMITER STATE MISSING: rebuilt from what survives; calls may wait up to one window"
            );
            metrics::counter!("limiter_state_rebuilt_total").increment(1);
        }
        Ok(())
    }

    async fn evidence(&self) -> Result<LossEvidence, RecordError> {
        let info = |store: &kv::Store| {
            let stream = store.stream.clone();
            async move {
                stream.get_info().await.map_err(|e| RecordError::Nats {
                    op: "stream info",
                    source: e.into(),
                })
            }
        };
        let work = info(&self.work).await?;
        let results = info(&self.results).await?;
        Ok(
            match (work.state.last_sequence, results.state.last_sequence) {
                (0, 0) => LossEvidence::Fresh,
                // Results exist but the work bucket has no history: it was
                // lost too, and with it the bound.
                (0, _) => LossEvidence::Unknown,
                // A recreated work bucket bounds claims made since; older
                // ones were made before it was created.
                _ => LossEvidence::ClaimedBefore(
                    server_time(work.state.last_timestamp).max(server_time(work.created)),
                ),
            },
        )
    }

    /// The calls that count and the server time they are judged at, for
    /// estimates and the status page.
    pub async fn snapshot(
        &self,
        clock: &dyn Clock,
    ) -> Result<(UnixMillis, Vec<Call>), RecordError> {
        let read = self.read(clock).await?;
        Ok((
            self.server_now(clock).max(read.written),
            self.calls(&read.state),
        ))
    }

    /// Whether a call could start now, and how many slots are taken, without
    /// reserving anything (for the scheduler and metrics). Times are this
    /// replica's clock.
    pub async fn peek(&self, clock: &dyn Clock) -> Result<(Admission, usize), RecordError> {
        let (now, calls) = self.snapshot(clock).await?;
        let admission = match self.budget.admit(now, &calls) {
            Admission::Now => Admission::Now,
            Admission::At(t) => Admission::At(self.to_local(t)),
        };
        Ok((admission, self.budget.occupied(now, &calls)))
    }

    /// Take a slot if one is free, recording the call atomically.
    pub async fn take(&self, clock: &dyn Clock) -> Result<Taken, RecordError> {
        // A withdrawn reservation (the guess of server time was off) is
        // tried again with the corrected guess; a few rounds at most.
        for _ in 0..4 {
            let current = self.versioned(clock).await?;
            // Ids of stand-ins count down from u64::MAX; ours stay below.
            let id = rand::random::<u64>() >> 1;
            let mut decided: Option<Vec<Call>> = None;
            let mut refused: Option<UnixMillis> = None;
            let sent = clock.now();
            let written = update_versioned(
                &self.store,
                "limiter state",
                names::LIMITER_KEY,
                current,
                |v: &Versioned<LimiterState>| {
                    decided = None;
                    let (Some(state), Some(written)) = (v.value.clone(), v.written) else {
                        // Lost again under us: decide afresh next round.
                        return Change::Keep;
                    };
                    let state = state.materialized(written);
                    let calls = self.calls(&state);
                    let now = self.server_now(clock).max(written);
                    if let Admission::At(t) = self.budget.admit(now, &calls) {
                        refused = Some(t);
                        return Change::Keep;
                    }
                    let next = self.pruned(state, written).reserving(id);
                    decided = Some(calls);
                    Change::Put(next)
                },
            )
            .await?;
            let (Updated::Written(_), Some(calls)) = (written, decided) else {
                return Ok(Taken::NotBefore(self.to_local(refused.unwrap_or(
                    self.server_now(clock).plus(Duration::from_millis(50)),
                ))));
            };
            let stamp = match self.start_of(id).await {
                Ok(Some(stamp)) => stamp,
                // The state was lost again under us: decide afresh.
                Ok(None) => continue,
                Err(e) => {
                    self.cancel(id).await;
                    return Err(e);
                }
            };
            self.learn_offset(sent, clock.now(), stamp);
            // The decision again, at the server's time of the reservation
            // and against exactly the calls it was written over.
            if self.budget.admit(stamp, &calls) == Admission::Now {
                return Ok(Taken::Slot(Slot { id, start: stamp }));
            }
            metrics::counter!("limiter_reservations_withdrawn_total").increment(1);
            tracing::debug!(
                ?stamp,
                "reservation stamped earlier than guessed; withdrawn"
            );
            self.cancel(id).await;
        }
        Ok(Taken::NotBefore(
            clock.now().plus(Duration::from_millis(50)),
        ))
    }

    /// Without the slots that can no longer matter, judged by the server's
    /// own time of the (materialized) state read, never by a replica's
    /// clock that may run ahead.
    fn pruned(&self, mut state: LimiterState, written: UnixMillis) -> LimiterState {
        state
            .slots
            .retain(|s| self.budget.still_counts(written, &call_of(s)));
        state
    }

    async fn start_of(&self, id: u64) -> Result<Option<UnixMillis>, RecordError> {
        let v = load::<LimiterState>(&self.store, "limiter state", names::LIMITER_KEY).await?;
        Ok(match (v.value, v.written) {
            (Some(state), Some(written)) => state.start_of(id, written),
            _ => None,
        })
    }

    fn learn_offset(&self, sent: UnixMillis, acked: UnixMillis, stamp: UnixMillis) {
        let mid = (sent.0 + acked.0) / 2;
        self.offset_ms
            .store(stamp.0 as i64 - mid as i64, Ordering::Relaxed);
    }

    /// The call in `slot` is over (answered, timed out or failed): it
    /// stops counting one window after now rather than after its deadline.
    /// Best effort: if this write is lost, the deadline bounds the slot.
    pub async fn end(&self, id: u64) {
        self.rewrite(id, "end", |s| s.ending(id)).await;
    }

    /// Withdraw a slot whose call was never sent.
    pub async fn cancel(&self, id: u64) {
        self.rewrite(id, "withdraw", |s| s.cancelling(id)).await;
    }

    async fn rewrite(
        &self,
        id: u64,
        what: &'static str,
        change: impl Fn(LimiterState) -> Option<LimiterState>,
    ) {
        let written = with_patience(self.budget.call_timeout, || async {
            let current = load(&self.store, "limiter state", names::LIMITER_KEY).await?;
            update_versioned(
                &self.store,
                "limiter state",
                names::LIMITER_KEY,
                current,
                |v: &Versioned<LimiterState>| match (v.value.clone(), v.written) {
                    (Some(state), Some(written)) => change(state.materialized(written)).into(),
                    // Gone: the rebuilt state accounts for this call.
                    _ => Change::Keep,
                },
            )
            .await
        })
        .await;
        if let Err(e) = written {
            tracing::warn!(slot = id, error = %e, "limiter {what} lost; the call's deadline bounds it");
        }
    }
}

/// A slot of a materialized state as the rule sees it.
fn call_of(slot: &CallSlot) -> Call {
    // Every stamp is absolute here, so the base is never used.
    let absolute = UnixMillis(0);
    Call {
        start: slot.start.at(absolute),
        end: slot.end.map(|e| e.at(absolute)),
    }
}

fn shift(t: UnixMillis, by_ms: i64) -> UnixMillis {
    UnixMillis((t.0 as i64).saturating_add(by_ms).max(0) as u64)
}
