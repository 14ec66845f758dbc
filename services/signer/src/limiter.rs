//! The upstream budget as a pure decision: may a call start at `now`?
//!
//! A sliding window, not a token bucket: a bucket of 10 per minute lets 19-20
//! calls into one 60 s window (a full bucket plus its refill). Here a call
//! may start only when fewer than `limit` recorded calls started within the
//! last `window + margin`. The margin absorbs clock differences between
//! replicas and the delay between recording a call and the upstream
//! receiving it. Every call is recorded *before* it is sent, so timeouts and
//! connection errors count too.

use std::time::Duration;
use wire_contract::UnixMillis;

/// The limit, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Calls allowed per window.
    pub limit: u32,
    /// The upstream's window.
    pub window: Duration,
    /// Extra spacing added to the window for jitter.
    pub margin: Duration,
}

/// Whether a call may start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// A slot is free now.
    Now,
    /// The next slot frees at this instant.
    At(UnixMillis),
}

impl Budget {
    /// The span over which recorded calls are counted.
    fn span(&self) -> Duration {
        self.window + self.margin
    }

    /// Calls from `calls` that still occupy a slot at `now`.
    pub fn in_window(&self, now: UnixMillis, calls: &[UnixMillis]) -> usize {
        calls.iter().filter(|c| c.plus(self.span()) > now).count()
    }

    /// May a call start at `now`, given the recorded start times?
    pub fn admit(&self, now: UnixMillis, calls: &[UnixMillis]) -> Admission {
        let mut live: Vec<UnixMillis> = calls
            .iter()
            .copied()
            .filter(|c| c.plus(self.span()) > now)
            .collect();
        let limit = self.limit.max(1) as usize;
        if live.len() < limit {
            return Admission::Now;
        }
        live.sort_unstable();
        // The slot frees when the call `limit` places from the end leaves.
        Admission::At(live[live.len() - limit].plus(self.span()))
    }

    /// The recorded calls after one more starts at `now`, pruned of calls
    /// that no longer matter. Only call this after `admit` said `Now`.
    pub fn record(&self, now: UnixMillis, calls: &[UnixMillis]) -> Vec<UnixMillis> {
        let mut kept: Vec<UnixMillis> = calls
            .iter()
            .copied()
            .filter(|c| c.plus(self.span()) > now)
            .collect();
        kept.push(now);
        kept.sort_unstable();
        kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget() -> Budget {
        Budget {
            limit: 10,
            window: Duration::from_secs(60),
            margin: Duration::from_millis(500),
        }
    }

    fn s(secs: f64) -> UnixMillis {
        UnixMillis(1_000_000 + (secs * 1000.0) as u64)
    }

    #[test]
    fn admits_up_to_the_limit_then_waits_for_the_oldest_to_leave() {
        let b = budget();
        let mut calls = Vec::new();
        for i in 0..10 {
            let now = s(i as f64);
            assert_eq!(b.admit(now, &calls), Admission::Now, "call {i}");
            calls = b.record(now, &calls);
        }
        assert_eq!(b.admit(s(10.0), &calls), Admission::At(s(60.5)));
        assert_eq!(b.admit(s(60.499), &calls), Admission::At(s(60.5)));
        assert_eq!(b.admit(s(60.5), &calls), Admission::Now);
    }

    #[test]
    fn a_token_bucket_burst_pattern_is_refused() {
        // Ten calls at t=59 s; a bucket would refill and allow ten more at 61 s.
        let b = budget();
        let mut calls = Vec::new();
        for _ in 0..10 {
            calls = b.record(s(59.0), &calls);
        }
        assert_eq!(b.admit(s(61.0), &calls), Admission::At(s(119.5)));
    }

    #[test]
    fn never_more_than_limit_in_any_window_when_calls_start_as_soon_as_admitted() {
        let b = budget();
        let mut calls: Vec<UnixMillis> = Vec::new();
        let mut all = Vec::new();
        let mut now = s(0.0);
        while all.len() < 200 {
            match b.admit(now, &calls) {
                Admission::Now => {
                    calls = b.record(now, &calls);
                    all.push(now);
                    now = now.plus(Duration::from_millis(137));
                }
                Admission::At(t) => {
                    assert!(t > now);
                    now = t;
                }
            }
        }
        for (i, start) in all.iter().enumerate() {
            let in_window = all[i..]
                .iter()
                .filter(|c| **c < start.plus(b.window))
                .count();
            assert!(
                in_window <= 10,
                "{in_window} calls in the window starting at {start:?}"
            );
        }
        // And the budget is used: 200 calls take about 20 windows, not more.
        let span = all[all.len() - 1].since(all[0]);
        assert!(span < Duration::from_secs(20 * 61), "{span:?}");
    }

    #[test]
    fn record_prunes_calls_outside_the_window() {
        let b = budget();
        let calls = vec![s(0.0), s(30.0)];
        assert_eq!(b.record(s(61.0), &calls), vec![s(30.0), s(61.0)]);
        assert_eq!(b.in_window(s(61.0), &calls), 1);
    }
}
