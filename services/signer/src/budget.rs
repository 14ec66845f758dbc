//! The upstream budget as a pure decision: may a call start at `now`?
//!
//! The upstream counts a call when it *arrives*, and we cannot see that
//! instant: a call arrives somewhere between the moment its slot was
//! reserved and the moment it ended (answer, timeout or connection error).
//! Lag, a SYN retransmit or a stalled proxy can put the arrival anywhere in
//! that span. So each call is counted over its whole span, and a new call is
//! admitted only if no placement of all arrivals inside their spans could
//! put more than `limit` of them in one `window`.
//!
//! Two calls can share a window exactly when the gap between their spans is
//! shorter than the window. Written as the instants `u` at which a window
//! *closes*, call `c` can be inside the window closing at `u` iff
//! `u ∈ (start_c, end_c + window]`; the worst case for the upstream is the
//! largest number of these intervals over one point. The cost compared with
//! counting only start times is each call's duration, not a fixed margin.
//!
//! A call still in flight has no known end. The signer gives every call a
//! hard deadline of `call_timeout` from just before its reservation, so its
//! end is at most `start + call_timeout`. Times are NATS server time (the
//! limiter entry's own timestamps), so replicas' clocks drop out; `margin`
//! widens every span on both sides for the skew between NATS servers (a
//! cluster's stream leader may move to a node whose clock differs).
//!
//! A sliding window, not a token bucket: a bucket of 10 per minute lets 19-20
//! calls into one 60 s window (a full bucket plus its refill).

use std::time::Duration;
use wire_contract::UnixMillis;
use wire_contract::records::{CallSlot, Stamp};

/// The limit, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Calls allowed per window.
    pub limit: u32,
    /// The upstream's window.
    pub window: Duration,
    /// Tolerated clock skew between the servers that stamp calls; widens
    /// every call's span on both sides.
    pub margin: Duration,
    /// A call is over (and cannot arrive any more) at most this long after
    /// its start.
    pub call_timeout: Duration,
}

/// One call as the limiter sees it, in server time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    /// When its slot was reserved (it was sent after this).
    pub start: UnixMillis,
    /// When it was known to be over; `None` while it may be in flight.
    pub end: Option<UnixMillis>,
}

/// Whether a call may start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// A slot is free now.
    Now,
    /// The next slot frees at this instant (if no call ends early).
    At(UnixMillis),
}

/// What survives when the limiter's own state is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossEvidence {
    /// Nothing was ever claimed: no call can have been made.
    Fresh,
    /// Every call was claimed before this instant, and a call is over
    /// within `call_timeout` of its claim (the work bucket's last write
    /// bounds every claim).
    ClaimedBefore(UnixMillis),
    /// Calls may have been made at any time up to the loss.
    Unknown,
}

/// `(from, until]`: the instants at which a window closing there may hold
/// the call, in milliseconds.
type Reach = (u64, u64);

impl Budget {
    /// The span a call occupies, widened by the margin.
    fn reach(&self, c: &Call) -> Reach {
        let latest_end = c.start.plus(self.call_timeout);
        let end = c.end.map_or(latest_end, |e| e.min(latest_end));
        let m = self.margin.as_millis() as u64;
        (
            c.start.0.saturating_sub(m),
            end.0 + m + self.window.as_millis() as u64,
        )
    }

    /// The reach of a call starting at `t` (its end unknown).
    fn reach_of_new(&self, t: UnixMillis) -> Reach {
        self.reach(&Call {
            start: t,
            end: None,
        })
    }

    /// The most calls that one window closing in `(from, until]` can hold.
    fn worst_window(reaches: &[Reach], (from, until): Reach) -> usize {
        // The count only rises just after a reach begins, so its maximum is
        // at `from + 1` or just after some reach's start.
        let count = |u: u64| reaches.iter().filter(|(a, b)| *a < u && u <= *b).count();
        std::iter::once(from + 1)
            .chain(reaches.iter().map(|(a, _)| a + 1))
            .filter(|u| *u > from && *u <= until)
            .map(count)
            .max()
            .unwrap_or(0)
    }

    fn admits_at(&self, t: UnixMillis, reaches: &[Reach]) -> bool {
        Self::worst_window(reaches, self.reach_of_new(t)) < self.limit.max(1) as usize
    }

    /// Slots a call starting at `now` would find taken (for metrics).
    pub fn occupied(&self, now: UnixMillis, calls: &[Call]) -> usize {
        let reaches: Vec<Reach> = calls.iter().map(|c| self.reach(c)).collect();
        Self::worst_window(&reaches, self.reach_of_new(now))
    }

    /// May a call start at `now`, given the calls that still count?
    pub fn admit(&self, now: UnixMillis, calls: &[Call]) -> Admission {
        let reaches: Vec<Reach> = calls.iter().map(|c| self.reach(c)).collect();
        if self.admits_at(now, &reaches) {
            return Admission::Now;
        }
        // A later start can only help once some reach has been left behind:
        // a new call's reach begins `margin` before it, so it no longer meets
        // reach `(a, b]` from `b + margin` on.
        let m = self.margin.as_millis() as u64;
        let mut candidates: Vec<u64> = reaches
            .iter()
            .map(|(_, b)| b + m)
            .filter(|t| *t > now.0)
            .collect();
        candidates.push(now.0);
        candidates.sort_unstable();
        candidates.dedup();
        let last = candidates.last().copied().unwrap_or(now.0);
        let at = candidates
            .into_iter()
            .find(|t| self.admits_at(UnixMillis(*t), &reaches))
            .unwrap_or(last);
        if at <= now.0 {
            Admission::Now
        } else {
            Admission::At(UnixMillis(at))
        }
    }

    /// When the slots taken at `now` free for a new call, soonest first (at
    /// most `limit`): each call stops counting once a new call's span can
    /// no longer share a window with it. For estimates, not for admission.
    pub fn frees(&self, now: UnixMillis, calls: &[Call]) -> Vec<UnixMillis> {
        let mut frees: Vec<UnixMillis> =
            self.frees_each(now, calls).into_iter().flatten().collect();
        frees.sort_unstable();
        let limit = self.limit.max(1) as usize;
        // With more recorded than the limit, a slot frees only when enough
        // of them have left: the latest `limit` decide.
        let excess = frees.len().saturating_sub(limit);
        frees.drain(..excess);
        frees
    }

    /// For each call, when it stops counting against a new call; `None`
    /// when it already has.
    pub fn frees_each(&self, now: UnixMillis, calls: &[Call]) -> Vec<Option<UnixMillis>> {
        let m = self.margin.as_millis() as u64;
        calls
            .iter()
            .map(|c| Some(UnixMillis(self.reach(c).1 + m)).filter(|t| *t > now))
            .collect()
    }

    /// How often a slot can be reused by back-to-back calls that take no
    /// time: one window plus the margin on both sides.
    pub fn period(&self) -> Duration {
        self.window + self.margin * 2
    }

    /// Whether `call` can still matter to a call starting at `now` or later;
    /// the others may be dropped from the record.
    pub fn still_counts(&self, now: UnixMillis, call: &Call) -> bool {
        self.reach(call).1 + self.margin.as_millis() as u64 > now.0
    }

    /// The calls to assume when the limiter's state is found lost: `limit`
    /// calls that may still be in flight, as late as the evidence allows.
    /// They hold every slot until a window has passed since the last lost
    /// call could have arrived, then expire like any other slot. Stamped
    /// [`Stamp::Written`] when only the time of the rebuild bounds them.
    pub fn stand_ins_after_loss(&self, evidence: LossEvidence) -> Vec<CallSlot> {
        let start = match evidence {
            LossEvidence::Fresh => return Vec::new(),
            LossEvidence::ClaimedBefore(t) => Stamp::At(t),
            LossEvidence::Unknown => Stamp::Written,
        };
        (0..self.limit.max(1))
            .map(|i| CallSlot {
                id: u64::MAX - u64::from(i),
                start,
                end: None,
            })
            .collect()
    }
}

/// The budget the signer's unit tests share: ten calls a minute, no
/// margin, a 10 s call timeout.
#[cfg(test)]
pub(crate) const TEST_BUDGET: Budget = Budget {
    limit: 10,
    window: Duration::from_secs(60),
    margin: Duration::ZERO,
    call_timeout: Duration::from_secs(10),
};

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: f64) -> UnixMillis {
        UnixMillis(1_000_000 + (secs * 1000.0) as u64)
    }

    fn ended(start: f64, end: f64) -> Call {
        Call {
            start: s(start),
            end: Some(s(end)),
        }
    }

    #[test]
    fn admits_up_to_the_limit_then_waits_until_the_first_call_ended_a_window_ago() {
        let b = TEST_BUDGET;
        let mut calls = Vec::new();
        for i in 0..10 {
            let now = s(i as f64);
            assert_eq!(b.admit(now, &calls), Admission::Now, "call {i}");
            calls.push(ended(i as f64, i as f64 + 0.5));
        }
        // The first call may have arrived as late as 0.5 s.
        assert_eq!(b.admit(s(10.0), &calls), Admission::At(s(60.5)));
        assert_eq!(b.admit(s(60.499), &calls), Admission::At(s(60.5)));
        assert_eq!(b.admit(s(60.5), &calls), Admission::Now);
    }

    #[test]
    fn a_call_in_flight_counts_until_its_timeout() {
        let b = TEST_BUDGET;
        let mut calls: Vec<Call> = (0..9).map(|_| ended(30.0, 30.0)).collect();
        calls.insert(
            0,
            Call {
                start: s(0.0),
                end: None,
            },
        );
        // The in-flight call may arrive up to 10 s after it started.
        assert_eq!(b.admit(s(61.0), &calls), Admission::At(s(70.0)));
        // Once it is known to have ended at 2 s, the slot frees at 62 s.
        calls[0].end = Some(s(2.0));
        assert_eq!(b.admit(s(61.0), &calls), Admission::At(s(62.0)));
        // A recorded end later than the deadline changes nothing: the call
        // was over by then.
        calls[0].end = Some(s(30.0));
        assert_eq!(b.admit(s(61.0), &calls), Admission::At(s(70.0)));
    }

    #[test]
    fn a_late_arrival_of_an_old_call_and_an_early_arrival_of_a_new_one_are_both_counted() {
        // Ten calls started at 0 s and lasted 9 s: all may arrive at 8.9 s.
        // Counting start times only would admit an 11th at 60 s, which can
        // land at 60 s, inside the window [8.9 s, 68.9 s).
        let b = TEST_BUDGET;
        let calls: Vec<Call> = (0..10).map(|_| ended(0.0, 9.0)).collect();
        assert_eq!(b.admit(s(60.0), &calls), Admission::At(s(69.0)));
    }

    #[test]
    fn a_token_bucket_burst_pattern_is_refused() {
        // Ten calls at t=59 s; a bucket would refill and allow ten more at 61 s.
        let b = TEST_BUDGET;
        let calls: Vec<Call> = (0..10).map(|_| ended(59.0, 59.0)).collect();
        assert_eq!(b.admit(s(61.0), &calls), Admission::At(s(119.0)));
    }

    #[test]
    fn the_margin_widens_spans_on_both_sides() {
        let b = Budget {
            margin: Duration::from_millis(500),
            ..TEST_BUDGET
        };
        let calls: Vec<Call> = (0..10).map(|_| ended(0.0, 0.0)).collect();
        // Reach ends at 60.5 s; a new call's reach starts 0.5 s before it.
        assert_eq!(b.admit(s(1.0), &calls), Admission::At(s(61.0)));
    }

    #[test]
    fn calls_stamped_after_now_count_too() {
        // Another server's stamps may lie ahead of this replica's `now`.
        let b = TEST_BUDGET;
        let calls: Vec<Call> = (0..10).map(|_| ended(5.0, 5.0)).collect();
        assert!(matches!(b.admit(s(0.0), &calls), Admission::At(_)));
    }

    fn stand_ins(b: &Budget, evidence: LossEvidence, written: UnixMillis) -> Vec<Call> {
        b.stand_ins_after_loss(evidence)
            .iter()
            .map(|s| Call {
                start: s.start.at(written),
                end: None,
            })
            .collect()
    }

    #[test]
    fn lost_state_waits_a_full_window_after_the_last_possible_call() {
        let b = TEST_BUDGET;
        let now = s(100.0);
        assert!(stand_ins(&b, LossEvidence::Fresh, now).is_empty());
        // Nothing bounds the lost calls but the loss: 10 s for one in flight
        // to arrive, then a window.
        let unknown = stand_ins(&b, LossEvidence::Unknown, now);
        assert_eq!(unknown.len(), 10);
        assert_eq!(b.admit(now, &unknown), Admission::At(s(170.0)));
        // The last claim was at 50 s: its call arrived by 60 s.
        let bounded = stand_ins(&b, LossEvidence::ClaimedBefore(s(50.0)), now);
        assert_eq!(b.admit(now, &bounded), Admission::At(s(120.0)));
        // Long quiet before the loss: nothing to wait for.
        let quiet = stand_ins(&b, LossEvidence::ClaimedBefore(s(20.0)), now);
        assert_eq!(b.admit(now, &quiet), Admission::Now);
        assert!(quiet.iter().all(|c| !b.still_counts(now, c)));
    }

    #[test]
    fn never_more_than_limit_in_any_window_for_any_arrival_when_calls_start_as_soon_as_admitted() {
        // Each call lasts a different time; arrivals are put at both ends of
        // each span, in the worst combination for each window.
        let b = TEST_BUDGET;
        let mut calls: Vec<Call> = Vec::new();
        let mut now = s(0.0);
        let mut n = 0u64;
        while calls.len() < 200 {
            match b.admit(now, &calls) {
                Admission::Now => {
                    let dur = (n * 7919) % 9_000;
                    calls.push(Call {
                        start: now,
                        end: Some(now.plus(Duration::from_millis(dur))),
                    });
                    n += 1;
                    now = now.plus(Duration::from_millis(137));
                }
                Admission::At(t) => {
                    assert!(t > now);
                    now = t;
                }
            }
        }
        let w = b.window.as_millis() as u64;
        for close in calls
            .iter()
            .flat_map(|c| [c.start.0 + 1, c.end.map_or(0, |e| e.0) + w])
        {
            let fits = calls
                .iter()
                .filter(|c| c.start.0 < close && close <= c.end.map_or(0, |e| e.0) + w)
                .count();
            assert!(
                fits <= 10,
                "{fits} calls can share the window closing at {close}"
            );
        }
        // And the budget is used: 200 calls take about 20 windows.
        let span = calls[199].start.since(calls[0].start);
        assert!(span < Duration::from_secs(20 * 70), "{span:?}");
    }

    fn instant(at: UnixMillis) -> Call {
        Call {
            start: at,
            end: Some(at),
        }
    }

    #[test]
    fn calls_a_window_apart_never_share_one() {
        // Four calls at 0, one at 59.999 s, five at 60 s, all instant. No
        // window of 60 s holds the calls at 0 and those at 60 s together,
        // so the worst window holds six, and a new call at 0 is allowed.
        let b = TEST_BUDGET;
        let t0 = s(0.0);
        let mut calls: Vec<Call> = (0..4).map(|_| instant(t0)).collect();
        calls.push(instant(s(59.999)));
        calls.extend((0..5).map(|_| instant(s(60.0))));
        assert_eq!(b.occupied(t0, &calls), 6);
        assert_eq!(b.admit(t0, &calls), Admission::Now);
    }

    #[test]
    fn a_call_that_left_the_window_exactly_now_is_not_counted() {
        // Five calls whose window closed exactly now, five a millisecond
        // ago: only the latter can share a window with a call starting now.
        let b = TEST_BUDGET;
        let now = s(100.0);
        let mut calls: Vec<Call> = (0..5).map(|_| instant(s(40.0))).collect();
        calls.extend((0..5).map(|_| instant(s(99.999))));
        assert_eq!(b.occupied(now, &calls), 5);
        assert_eq!(b.admit(now, &calls), Admission::Now);
    }

    #[test]
    fn with_a_margin_a_slot_frees_a_window_and_both_margins_after_the_end() {
        let b = Budget {
            margin: Duration::from_millis(500),
            ..TEST_BUDGET
        };
        let c = ended(0.0, 2.0);
        // 2 s + 60 s + 0.5 s on each side.
        assert_eq!(b.frees(s(10.0), &[c]), vec![s(63.0)]);
        assert_eq!(b.frees(s(63.0), &[c]), vec![], "free at that instant");
        assert!(b.still_counts(s(62.999), &c));
        assert!(!b.still_counts(s(63.0), &c));
    }

    #[test]
    fn still_counts_keeps_exactly_the_calls_that_can_matter() {
        let b = TEST_BUDGET;
        let c = ended(0.0, 2.0);
        assert!(b.still_counts(s(61.999), &c));
        assert!(!b.still_counts(s(62.0), &c));
        assert_eq!(b.occupied(s(61.0), &[c]), 1);
        assert_eq!(b.occupied(s(62.0), &[c]), 0);
    }
}
