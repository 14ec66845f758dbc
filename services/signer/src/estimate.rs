//! Honest expectations: when a new message's first upstream call can happen,
//! and when the backlog is likely cleared. Pure arithmetic over the budget's
//! own rule ([`Budget::frees`], [`Budget::period`]) and the pending work, so
//! the api's promises and the signer's pace cannot disagree.
//!
//! The signer tries never-tried messages first, so a new message waits for
//! the never-tried ones ahead of it, not for retries.

use crate::budget::{Budget, Call};
use std::time::Duration;
use wire_contract::UnixMillis;

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

/// When the `j`-th future call (0-based) can start: slots free now come
/// first, then each taken slot as it frees, then each again a period later.
pub fn slot(budget: &Budget, now: UnixMillis, calls: &[Call], j: usize) -> UnixMillis {
    let limit = budget.limit.max(1) as usize;
    let frees = budget.frees(now, calls);
    let mut pattern = vec![now; limit - frees.len()];
    pattern.extend(frees);
    let rounds = (j / limit) as u32;
    pattern[j % limit].plus(budget.period() * rounds)
}

/// Expectations for a new message arriving at `now`.
pub fn estimate(budget: &Budget, now: UnixMillis, calls: &[Call], pending: Pending) -> Estimate {
    let first = slot(budget, now, calls, pending.untried);
    // Half of first tries fail and need one more call; a message already
    // retrying needs at least one more.
    let expected_calls = (pending.untried + 1) * 3 / 2 + pending.retrying;
    let clear = slot(budget, now, calls, expected_calls.saturating_sub(1));
    Estimate {
        first_call_in: first.since(now),
        clear_in: clear.since(now),
    }
}

/// A caller's part of the pending work and of the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    /// Its own pending messages.
    pub mine: Pending,
    /// Its weight.
    pub weight: u32,
    /// The weights of every caller with pending work, its own included.
    pub total_weight: u32,
}

/// Expectations for a new message of one caller: the scheduler gives each
/// caller with pending work calls in proportion to its weight, so its own
/// calls come at `weight / total_weight` of the budget's pace. Never later
/// than if everything pending went first (`all`): the share is a floor,
/// and calls no other caller wants are its too.
pub fn estimate_for(
    budget: &Budget,
    now: UnixMillis,
    calls: &[Call],
    part: Part,
    all: Pending,
) -> Estimate {
    let everyone = estimate(budget, now, calls, all);
    let (w, total) = (
        u64::from(part.weight.max(1)),
        u64::from(part.total_weight.max(part.weight).max(1)),
    );
    // The n-th of its own calls, at its share: ceil(n * total / w) overall.
    let at_share = |n: usize| (n as u64 * total).div_ceil(w) as usize;
    let mine = estimate(budget, now, calls, part.mine);
    let expected_calls = (part.mine.untried + 1) * 3 / 2 + part.mine.retrying;
    let first = slot(budget, now, calls, at_share(part.mine.untried)).since(now);
    let clear = slot(
        budget,
        now,
        calls,
        at_share(expected_calls).saturating_sub(1),
    )
    .since(now);
    Estimate {
        first_call_in: first.max(mine.first_call_in).min(everyone.first_call_in),
        clear_in: clear.max(mine.clear_in).min(everyone.clear_in),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::TEST_BUDGET;

    fn t(secs: u64) -> UnixMillis {
        UnixMillis(1_000_000_000 + secs * 1000)
    }

    fn ended(start: u64, end: u64) -> Call {
        Call {
            start: t(start),
            end: Some(t(end)),
        }
    }

    #[test]
    fn an_idle_budget_calls_at_once() {
        let e = estimate(&TEST_BUDGET, t(0), &[], Pending::default());
        assert_eq!(e.first_call_in, Duration::ZERO);
        assert_eq!(slot(&TEST_BUDGET, t(0), &[], 9), t(0));
        assert_eq!(slot(&TEST_BUDGET, t(0), &[], 10), t(60));
        assert_eq!(slot(&TEST_BUDGET, t(0), &[], 25), t(120));
    }

    #[test]
    fn recorded_calls_hold_their_slots_for_a_window_after_they_ended() {
        let calls: Vec<Call> = (0..10).map(|i| ended(i * 5, i * 5 + 1)).collect();
        // At 50 s all ten slots are taken; the first frees at 61 s.
        assert_eq!(slot(&TEST_BUDGET, t(50), &calls, 0), t(61));
        assert_eq!(slot(&TEST_BUDGET, t(50), &calls, 3), t(76));
        assert_eq!(slot(&TEST_BUDGET, t(50), &calls, 10), t(121));
        // A call in flight holds its slot until its deadline plus a window.
        let in_flight = [Call {
            start: t(50),
            end: None,
        }];
        assert_eq!(budget_frees(&in_flight), vec![t(120)]);
    }

    fn budget_frees(calls: &[Call]) -> Vec<UnixMillis> {
        TEST_BUDGET.frees(t(50), calls)
    }

    #[test]
    fn the_margin_lengthens_every_round() {
        let b = Budget {
            margin: Duration::from_millis(500),
            ..TEST_BUDGET
        };
        assert_eq!(slot(&b, t(0), &[], 10), t(61));
    }

    #[test]
    fn a_new_message_waits_for_untried_ones_ahead_of_it_not_for_retries() {
        let few = estimate(
            &TEST_BUDGET,
            t(0),
            &[],
            Pending {
                untried: 5,
                retrying: 500,
            },
        );
        assert_eq!(few.first_call_in, Duration::ZERO);
        let many = estimate(
            &TEST_BUDGET,
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
        let huge = estimate(
            &TEST_BUDGET,
            t(0),
            &[],
            Pending {
                untried: 10_000,
                retrying: 0,
            },
        );
        assert!(huge.clear_in > Duration::from_secs(24 * 3600), "{huge:?}");
    }

    #[test]
    fn a_callers_expectations_follow_its_own_backlog_at_its_share() {
        let flood = Pending {
            untried: 10_000,
            retrying: 0,
        };
        let alone = Part {
            mine: Pending {
                untried: 60,
                retrying: 0,
            },
            weight: 1,
            total_weight: 1,
        };
        // Alone, its share is the whole budget: as for everyone.
        let e = estimate_for(&TEST_BUDGET, t(0), &[], alone, alone.mine);
        assert_eq!(e, estimate(&TEST_BUDGET, t(0), &[], alone.mine));
        // Beside another caller's flood at equal weight: twice as long as
        // alone, far from the flood's day.
        let shared = Part {
            total_weight: 2,
            ..alone
        };
        let e = estimate_for(&TEST_BUDGET, t(0), &[], shared, flood);
        assert_eq!(e.first_call_in, Duration::from_secs(720));
        assert_eq!(e.clear_in, Duration::from_secs(1080));
        // A new caller with nothing pending is next.
        let newcomer = Part {
            mine: Pending::default(),
            weight: 1,
            total_weight: 2,
        };
        let e = estimate_for(&TEST_BUDGET, t(0), &[], newcomer, flood);
        assert_eq!(e.first_call_in, Duration::ZERO);
        // Weight 3 of 4: a third faster than at 1 of 2.
        let heavy = Part {
            weight: 3,
            total_weight: 4,
            ..alone
        };
        let e = estimate_for(&TEST_BUDGET, t(0), &[], heavy, flood);
        assert_eq!(e.first_call_in, Duration::from_secs(480));
        // Its retries count too: 1.5 calls for the new message and 20 for
        // its retrying ones, at half the budget, end in the fifth window.
        let retrying = Part {
            mine: Pending {
                untried: 0,
                retrying: 20,
            },
            weight: 1,
            total_weight: 2,
        };
        let e = estimate_for(&TEST_BUDGET, t(0), &[], retrying, flood);
        assert_eq!(e.clear_in, Duration::from_secs(240));
        // Never later than if everything pending went first.
        let small_world = Pending {
            untried: 61,
            retrying: 0,
        };
        let e = estimate_for(&TEST_BUDGET, t(0), &[], shared, small_world);
        assert_eq!(e, estimate(&TEST_BUDGET, t(0), &[], small_world));
    }
}
