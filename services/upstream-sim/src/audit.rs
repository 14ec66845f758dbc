//! The record of every sign call, and the sliding-window rate-limit math.
//!
//! The gateway's central promise is "never more than 10 upstream calls per
//! minute". The simulator is the referee: it records the arrival of every sign
//! call and checks each authorised one against a *sliding* window (any
//! interval of the window's length, not calendar minutes), so a gateway that
//! bursts across a minute boundary is caught. The window functions are pure
//! over sorted arrival times in Unix milliseconds; [`Audit`] is the in-memory
//! log the routes append to and the admin endpoints read.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::Serialize;

/// How a sign call was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// 200 with a valid signature.
    Signed,
    /// 502 from the failure model.
    Degraded,
    /// 401: missing or wrong key.
    Unauthorized,
    /// 429: over the rate limit.
    RateLimited,
    /// 500 injected by chaos.
    #[serde(rename = "chaos_500")]
    Chaos500,
    /// 200 with a body that is not a signature, injected by chaos.
    Garbage,
    /// Never answered, injected by chaos.
    Hang,
    /// Connection cut without a response, injected by chaos.
    Reset,
    /// 400: no `message` parameter.
    BadRequest,
    /// 500: the simulator failed to sign (should not happen).
    InternalError,
}

/// One sign call as the audit shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallRecord {
    /// Sequence number, unique within the simulator's life.
    pub id: u64,
    /// Arrival time, Unix milliseconds.
    pub arrived_at_ms: u64,
    /// Arrival time, RFC 3339.
    pub arrived_at: String,
    /// The `message` parameter, if any.
    pub message: Option<String>,
    /// How the call was answered.
    pub outcome: Outcome,
    /// HTTP status sent; `None` when no response was sent (hang, reset).
    pub status: Option<u16>,
    /// Whether the call counts toward the rate limit (it was authorised).
    pub counted: bool,
    /// Whether it was over the limit in its trailing window.
    pub violation: bool,
    /// Extra delay injected by chaos before answering, milliseconds.
    pub delay_ms: u64,
}

/// The numbers a test asserts on after a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// All recorded sign calls, authorised or not.
    pub calls: usize,
    /// Calls answered with a valid signature.
    pub successes: usize,
    /// All other calls (`calls - successes`).
    pub failures: usize,
    /// Calls that were over the limit in their trailing window.
    pub violations: usize,
    /// Most authorised calls seen in any window of `window_ms`.
    pub max_in_window: usize,
    /// Window length, milliseconds.
    pub window_ms: u64,
    /// Calls allowed per window.
    pub limit: u32,
    /// Arrival of the oldest recorded call, Unix ms.
    pub first_call_ms: Option<u64>,
    /// Arrival of the newest recorded call, Unix ms.
    pub last_call_ms: Option<u64>,
    /// Different messages seen.
    pub distinct_messages: usize,
    /// Different messages signed at least once.
    pub signed_messages: usize,
    /// Count of calls per outcome.
    pub by_outcome: BTreeMap<Outcome, usize>,
}

/// Number of arrivals (newest first) inside the half-open window of length
/// `window_ms` that ends just after `now`, i.e. arrivals `a` with
/// `now - window_ms < a <= now`.
pub fn calls_in_window(newest_first: impl Iterator<Item = u64>, now: u64, window_ms: u64) -> usize {
    newest_first
        .take_while(|&a| a.saturating_add(window_ms) > now)
        .count()
}

/// Whether a call arriving at `now` would be the `(limit + 1)`-th in some
/// window of `window_ms`, given the earlier arrivals (newest first).
pub fn is_violation(
    newest_first: impl Iterator<Item = u64>,
    now: u64,
    window_ms: u64,
    limit: u32,
) -> bool {
    calls_in_window(newest_first, now, window_ms) >= limit as usize
}

/// The largest number of `arrivals` (sorted ascending) falling in any
/// half-open window `[t, t + window_ms)`.
pub fn max_in_window(arrivals: &[u64], window_ms: u64) -> usize {
    if window_ms == 0 {
        return 0;
    }
    let mut best = 0;
    let mut start = 0;
    for (end, &arrival) in arrivals.iter().enumerate() {
        while arrival.saturating_sub(arrivals[start]) >= window_ms {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}

/// At most this many records are kept; the oldest are dropped beyond it.
const MAX_RECORDS: usize = 100_000;

/// The in-memory log of sign calls, oldest first.
#[derive(Debug)]
pub struct Audit {
    records: VecDeque<CallRecord>,
    next_id: u64,
    window_ms: u64,
    limit: u32,
}

/// The verdict of the rate window on an authorised call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// Arrival time to record (never before the previous record's).
    pub arrived_at_ms: u64,
    /// Whether the call is over the limit.
    pub violation: bool,
}

impl Audit {
    /// An empty audit for a window of `window_ms` allowing `limit` calls.
    pub fn new(window_ms: u64, limit: u32) -> Self {
        Self {
            records: VecDeque::new(),
            next_id: 0,
            window_ms,
            limit,
        }
    }

    /// Arrival time for a call seen at `now_ms`, clamped so records stay
    /// sorted even if the wall clock steps back.
    pub fn arrival(&self, now_ms: u64) -> u64 {
        self.records
            .back()
            .map_or(now_ms, |last| now_ms.max(last.arrived_at_ms))
    }

    /// Checks an authorised call seen at `now_ms` against the window.
    pub fn admit(&self, now_ms: u64) -> Admission {
        let arrived_at_ms = self.arrival(now_ms);
        // Stop at the window's edge first, so uncounted (401) records
        // outside it are never scanned.
        let counted = self
            .records
            .iter()
            .rev()
            .take_while(|r| r.arrived_at_ms.saturating_add(self.window_ms) > arrived_at_ms)
            .filter(|r| r.counted);
        let violation = is_violation(
            counted.map(|r| r.arrived_at_ms),
            arrived_at_ms,
            self.window_ms,
            self.limit,
        );
        Admission {
            arrived_at_ms,
            violation,
        }
    }

    /// Appends a record (its `id` is assigned here) and returns the id.
    pub fn push(&mut self, mut record: CallRecord) -> u64 {
        record.id = self.next_id;
        self.next_id += 1;
        if self.records.len() == MAX_RECORDS {
            self.records.pop_front();
        }
        self.records.push_back(record);
        self.next_id - 1
    }

    /// Corrects the outcome of a call recorded earlier.
    pub fn amend(&mut self, id: u64, outcome: Outcome, status: Option<u16>) {
        if let Some(record) = self.records.iter_mut().rev().find(|r| r.id == id) {
            record.outcome = outcome;
            record.status = status;
        }
    }

    /// Records that arrived at or after `since_ms` (all when `None`), oldest
    /// first.
    pub fn calls(&self, since_ms: Option<u64>) -> Vec<CallRecord> {
        let since = since_ms.unwrap_or(0);
        self.records
            .iter()
            .filter(|r| r.arrived_at_ms >= since)
            .cloned()
            .collect()
    }

    /// Forgets every record (the rate window starts afresh too).
    pub fn clear(&mut self) {
        self.records.clear();
    }

    /// Totals over the records kept.
    pub fn summary(&self) -> Summary {
        let counted: Vec<u64> = self
            .records
            .iter()
            .filter(|r| r.counted)
            .map(|r| r.arrived_at_ms)
            .collect();
        let mut by_outcome = BTreeMap::new();
        let mut distinct = BTreeSet::new();
        let mut signed = BTreeSet::new();
        for record in &self.records {
            *by_outcome.entry(record.outcome).or_insert(0) += 1;
            if let Some(message) = &record.message {
                distinct.insert(message.as_str());
                if record.outcome == Outcome::Signed {
                    signed.insert(message.as_str());
                }
            }
        }
        let successes = by_outcome.get(&Outcome::Signed).copied().unwrap_or(0);
        Summary {
            calls: self.records.len(),
            successes,
            failures: self.records.len() - successes,
            violations: self.records.iter().filter(|r| r.violation).count(),
            max_in_window: max_in_window(&counted, self.window_ms),
            window_ms: self.window_ms,
            limit: self.limit,
            first_call_ms: self.records.front().map(|r| r.arrived_at_ms),
            last_call_ms: self.records.back().map(|r| r.arrived_at_ms),
            distinct_messages: distinct.len(),
            signed_messages: signed.len(),
            by_outcome,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000;

    fn violation_at(prior: &[u64], now: u64) -> bool {
        is_violation(prior.iter().rev().copied(), now, MIN, 10)
    }

    #[test]
    fn the_window_slides_rather_than_resetting_each_minute() {
        let prior: Vec<u64> = (0..10).map(|s| s * 1000).collect();
        // Eleven calls in [0, 60s): a violation.
        assert!(violation_at(&prior, 59_900));
        // At exactly 60s the call at 0 has left the window [0.001s, 60.001s).
        assert!(!violation_at(&prior, 60_000));
        // A fixed-minute counter would allow these: 10 calls late in minute 0
        // and one early in minute 1, all within 60s of each other.
        let late: Vec<u64> = (0..10).map(|i| 50_000 + i * 100).collect();
        assert!(violation_at(&late, 61_000));
        assert!(!violation_at(&late, 110_000));
    }

    #[test]
    fn fewer_than_limit_calls_never_violate() {
        let prior: Vec<u64> = (0..9).collect();
        assert!(!violation_at(&prior, 9));
        assert!(!violation_at(&[], 0));
    }

    #[test]
    fn max_in_window_uses_half_open_windows() {
        let arrivals: Vec<u64> = (0..10).map(|s| s * 1000).collect();
        let mut with = arrivals.clone();
        with.push(59_900);
        assert_eq!(max_in_window(&with, MIN), 11);
        let mut without = arrivals.clone();
        without.push(60_000);
        assert_eq!(max_in_window(&without, MIN), 10);
        assert_eq!(max_in_window(&[], MIN), 0);
        assert_eq!(max_in_window(&[5], MIN), 1);
        // Same-millisecond arrivals all count.
        assert_eq!(max_in_window(&[7, 7, 7], 1), 3);
    }

    #[test]
    fn max_in_window_finds_the_densest_interval() {
        // 6 spread calls, then a burst of 8 within 2s, then 3 more.
        let mut arrivals = vec![0, 20_000, 40_000, 70_000, 90_000, 100_000];
        arrivals.extend((0..8).map(|i| 120_000 + i * 250));
        arrivals.extend([200_000, 250_000, 300_000]);
        // Window [70s, 130s) holds 3 + 8.
        assert_eq!(max_in_window(&arrivals, MIN), 11);
        assert_eq!(max_in_window(&arrivals, 1000), 4);
    }

    fn record(at: u64, counted: bool, outcome: Outcome, message: &str) -> CallRecord {
        CallRecord {
            id: 0,
            arrived_at_ms: at,
            arrived_at: String::new(),
            message: Some(message.to_owned()),
            outcome,
            status: Some(200),
            counted,
            violation: false,
            delay_ms: 0,
        }
    }

    #[test]
    fn only_authorised_calls_count_toward_the_limit() {
        let mut audit = Audit::new(1000, 2);
        audit.push(record(0, true, Outcome::Signed, "a"));
        for t in 1..50 {
            audit.push(record(t, false, Outcome::Unauthorized, "x"));
        }
        assert!(!audit.admit(100).violation);
        audit.push(record(100, true, Outcome::Degraded, "b"));
        assert!(audit.admit(200).violation);
        assert!(!audit.admit(1000).violation);
        // The clock stepping back does not unsort the log.
        assert_eq!(audit.admit(10).arrived_at_ms, 100);
    }

    #[test]
    fn summary_counts_outcomes_and_messages() {
        let mut audit = Audit::new(MIN, 10);
        audit.push(record(1_000, true, Outcome::Degraded, "a"));
        audit.push(record(2_000, true, Outcome::Signed, "a"));
        audit.push(record(3_000, true, Outcome::Signed, "b"));
        let mut over = record(4_000, true, Outcome::RateLimited, "c");
        over.violation = true;
        audit.push(over);
        audit.push(record(5_000, false, Outcome::Unauthorized, "d"));
        let id = audit.push(record(6_000, true, Outcome::Signed, "e"));
        audit.amend(id, Outcome::InternalError, Some(500));

        let s = audit.summary();
        assert_eq!(
            (s.calls, s.successes, s.failures, s.violations),
            (6, 2, 4, 1)
        );
        assert_eq!(s.max_in_window, 5);
        assert_eq!(
            (s.first_call_ms, s.last_call_ms),
            (Some(1_000), Some(6_000))
        );
        assert_eq!((s.distinct_messages, s.signed_messages), (5, 2));
        assert_eq!(s.by_outcome.get(&Outcome::InternalError), Some(&1));
        assert_eq!(audit.calls(Some(4_000)).len(), 3);
        let ids: Vec<u64> = audit.calls(None).iter().map(|r| r.id).collect();
        assert_eq!(ids, [0, 1, 2, 3, 4, 5]);

        audit.clear();
        assert_eq!(audit.summary().calls, 0);
        assert_eq!(audit.summary().first_call_ms, None);
    }
}
