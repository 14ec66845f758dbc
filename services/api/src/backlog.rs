//! Honest expectations: when a new message's first upstream call can happen,
//! and whether the backlog can be cleared within the promised horizon.
//!
//! Pure arithmetic over the shared budget's recorded calls and the pending
//! work (mirrored from the work bucket). The signer tries never-tried
//! messages first, so a new message waits for the never-tried ones ahead of
//! it, not for retries.

use std::time::Duration;
use wire_contract::UnixMillis;

/// The upstream budget as the api knows it.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Calls per window.
    pub limit: u32,
    /// The window.
    pub window: Duration,
}

/// Pending work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pending {
    /// Messages never tried yet.
    pub untried: usize,
    /// Messages tried and waiting for a retry.
    pub retrying: usize,
}

/// What a caller can expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    /// Until the new message's first upstream call.
    pub first_call_in: Duration,
    /// Until the whole backlog (with the new message) is likely cleared.
    pub clear_in: Duration,
}

impl Pace {
    /// When the `j`-th future call (0-based) can start, given the start times
    /// of calls already made: slots free now come first, then each recorded
    /// call frees its slot one window after it started, and so on.
    pub fn slot(&self, now: UnixMillis, calls: &[UnixMillis], j: usize) -> UnixMillis {
        let limit = self.limit.max(1) as usize;
        let mut frees: Vec<UnixMillis> = calls
            .iter()
            .map(|c| c.plus(self.window))
            .filter(|t| *t > now)
            .collect();
        frees.sort_unstable();
        frees.truncate(limit);
        let free_now = limit - frees.len();
        let mut pattern = vec![now; free_now];
        pattern.extend(frees);
        let rounds = (j / limit) as u32;
        pattern[j % limit].plus(self.window * rounds)
    }

    /// Expectations for a new message arriving at `now`.
    pub fn estimate(&self, now: UnixMillis, calls: &[UnixMillis], pending: Pending) -> Estimate {
        let first = self.slot(now, calls, pending.untried);
        // Half of first tries fail and need one more call; a message
        // already retrying needs at least one more.
        let expected_calls = (pending.untried + 1) * 3 / 2 + pending.retrying;
        let clear = self.slot(now, calls, expected_calls.saturating_sub(1));
        Estimate {
            first_call_in: first.since(now),
            clear_in: clear.since(now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PACE: Pace = Pace {
        limit: 10,
        window: Duration::from_secs(60),
    };

    fn t(secs: u64) -> UnixMillis {
        UnixMillis(1_000_000_000 + secs * 1000)
    }

    #[test]
    fn an_idle_budget_calls_at_once() {
        let e = PACE.estimate(t(0), &[], Pending::default());
        assert_eq!(e.first_call_in, Duration::ZERO);
        assert_eq!(PACE.slot(t(0), &[], 9), t(0));
        assert_eq!(PACE.slot(t(0), &[], 10), t(60));
        assert_eq!(PACE.slot(t(0), &[], 25), t(120));
    }

    #[test]
    fn recorded_calls_hold_their_slots_for_a_window() {
        let calls: Vec<UnixMillis> = (0..10).map(|i| t(i * 5)).collect();
        // At 50 s all ten slots are taken; the first frees at 60 s.
        assert_eq!(PACE.slot(t(50), &calls, 0), t(60));
        assert_eq!(PACE.slot(t(50), &calls, 3), t(75));
        assert_eq!(PACE.slot(t(50), &calls, 10), t(120));
    }

    #[test]
    fn a_new_message_waits_for_untried_ones_ahead_of_it_not_for_retries() {
        let few = PACE.estimate(
            t(0),
            &[],
            Pending {
                untried: 5,
                retrying: 500,
            },
        );
        assert_eq!(few.first_call_in, Duration::ZERO);
        let many = PACE.estimate(
            t(0),
            &[],
            Pending {
                untried: 60,
                retrying: 0,
            },
        );
        assert_eq!(many.first_call_in, Duration::from_secs(360));
        // 61 new messages need about 91 calls: ten windows.
        assert_eq!(many.clear_in, Duration::from_secs(540));
        // A day's budget is 14,400 calls.
        let huge = PACE.estimate(
            t(0),
            &[],
            Pending {
                untried: 10_000,
                retrying: 0,
            },
        );
        assert!(huge.clear_in > Duration::from_secs(24 * 3600), "{huge:?}");
    }
}
