//! Which message gets the next upstream call: a pure decision over plain data.
//!
//! The budget (10 calls a minute) is the product's bottleneck, so the order
//! decides how fast a burst drains. Two facts drive it. A first try is never
//! wasted: every message needs one, and half succeed. A retry is wasted
//! while the message is still degraded, and degradation runs from the first
//! failure for minutes. So: never-tried messages first (oldest first, which
//! also starts failed messages' recovery clocks as early as possible), then
//! retries, oldest first failure first (the most likely to have recovered),
//! each at least `min_backoff` after its previous attempt. A retry younger
//! than `settle` (the usual degradation) is speculative; it is made only when
//! nothing better is eligible, so no slot idles while a message could use it.
//! No message blocks another.

use crate::budget::Admission;
use std::time::Duration;
use wire_contract::UnixMillis;

/// What the scheduler needs to know about one pending message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate<K> {
    /// Caller's handle for the message (its key).
    pub key: K,
    /// Upstream attempts so far.
    pub attempts: u32,
    /// When the first request for it arrived.
    pub first_seen: UnixMillis,
    /// When the first attempt started.
    pub first_attempt: Option<UnixMillis>,
    /// When the last attempt started.
    pub last_attempt: Option<UnixMillis>,
    /// Until when some signer holds it (a call in flight).
    pub leased_until: Option<UnixMillis>,
}

/// Retry timing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Least time between two attempts for one message.
    pub min_backoff: Duration,
    /// Time after a first failure by which a message has usually recovered;
    /// retries before it are speculative.
    pub settle: Duration,
    /// Whether speculative retries are made at all (when nothing else is
    /// eligible); without, a message waits until `settle`.
    pub speculate: bool,
}

impl RetryPolicy {
    /// Wait after a message's `attempts`-th failed attempt. Constant: the
    /// benchmark shows doubling it drains the real model 7 % slower (a
    /// recovered message waits out its long backoff while slots idle).
    pub fn backoff(&self, _attempts: u32) -> Duration {
        self.min_backoff
    }
}

impl Default for RetryPolicy {
    /// Tuned on the real API's model by the `schedule_bench` example.
    fn default() -> Self {
        Self {
            min_backoff: Duration::from_secs(30),
            settle: Duration::from_secs(300),
            speculate: true,
        }
    }
}

/// How a candidate ranks; lower goes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Rank {
    /// Never tried, by arrival.
    New(UnixMillis),
    /// Failed long enough ago to have probably recovered, oldest failure first.
    Settled(UnixMillis),
    /// Failed recently, oldest failure first.
    Speculative(UnixMillis),
}

/// The decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next<K> {
    /// Call the upstream for this message now.
    Call(K),
    /// Nothing to do before `until` (or before new work arrives, if `None`).
    Idle {
        /// When to decide again.
        until: Option<UnixMillis>,
    },
}

impl<K> Candidate<K> {
    /// Earliest instant this message may be tried.
    pub fn eligible_at(&self, policy: &RetryPolicy) -> UnixMillis {
        let mut by_backoff = match self.last_attempt {
            None => self.first_seen,
            Some(last) => last.plus(policy.backoff(self.attempts)),
        };
        if !policy.speculate
            && let Some(first) = self.first_attempt.or(self.last_attempt)
        {
            by_backoff = by_backoff.max(first.plus(policy.settle));
        }
        match self.leased_until {
            Some(lease) => by_backoff.max(lease),
            None => by_backoff,
        }
    }

    fn rank(&self, now: UnixMillis, policy: &RetryPolicy) -> Rank {
        match (self.last_attempt, self.first_attempt.or(self.last_attempt)) {
            (None, _) | (_, None) => Rank::New(self.first_seen),
            (Some(_), Some(first)) if now.since(first) >= policy.settle => Rank::Settled(first),
            (Some(_), Some(first)) => Rank::Speculative(first),
        }
    }
}

/// Decide the next call at `now`. `admission` is the limiter's answer for
/// `now`; `paused_until` stops all calls (e.g. after the upstream rejected
/// our credentials).
pub fn next<K: Clone>(
    now: UnixMillis,
    candidates: &[Candidate<K>],
    admission: Admission,
    policy: &RetryPolicy,
    paused_until: Option<UnixMillis>,
) -> Next<K> {
    if candidates.is_empty() {
        return Next::Idle { until: None };
    }
    let earliest = candidates.iter().map(|c| c.eligible_at(policy)).min();
    let mut gate = now;
    if let Admission::At(t) = admission {
        gate = gate.max(t);
    }
    if let Some(p) = paused_until {
        gate = gate.max(p);
    }
    if gate > now {
        return Next::Idle {
            until: earliest.map(|e| e.max(gate)),
        };
    }
    let best = candidates
        .iter()
        .filter(|c| c.eligible_at(policy) <= now)
        .map(|c| (c.rank(now, policy), c))
        .filter(|(rank, _)| policy.speculate || !matches!(rank, Rank::Speculative(_)))
        .min_by_key(|(rank, _)| *rank)
        .map(|(_, c)| c);
    match best {
        Some(c) => Next::Call(c.key.clone()),
        None => Next::Idle { until: earliest },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy {
        min_backoff: Duration::from_secs(30),
        settle: Duration::from_secs(300),
        speculate: true,
    };

    fn t(secs: u64) -> UnixMillis {
        UnixMillis(10_000_000 + secs * 1000)
    }

    fn fresh(key: &'static str, seen: u64) -> Candidate<&'static str> {
        Candidate {
            key,
            attempts: 0,
            first_seen: t(seen),
            first_attempt: None,
            last_attempt: None,
            leased_until: None,
        }
    }

    fn failed(key: &'static str, attempts: u32, last: u64) -> Candidate<&'static str> {
        Candidate {
            key,
            attempts,
            first_seen: t(0),
            first_attempt: Some(t(last)),
            last_attempt: Some(t(last)),
            leased_until: None,
        }
    }

    #[test]
    fn never_tried_messages_go_before_retries_even_if_newer() {
        let c = [failed("old", 1, 0), fresh("new", 50)];
        assert_eq!(
            next(t(60), &c, Admission::Now, &POLICY, None),
            Next::Call("new")
        );
    }

    fn retried(key: &'static str, attempts: u32, first: u64, last: u64) -> Candidate<&'static str> {
        Candidate {
            first_attempt: Some(t(first)),
            ..failed(key, attempts, last)
        }
    }

    #[test]
    fn retries_go_oldest_first_failure_first_and_respect_backoff() {
        // a failed first at 10 s but was tried again at 40 s; b failed once,
        // at 20 s. Both are due at 75 s. "Least recently tried" would pick b;
        // the rule is the oldest first failure (the likeliest recovered): a.
        let c = [retried("a", 3, 10, 40), retried("b", 1, 20, 20)];
        assert_eq!(
            next(t(75), &c, Admission::Now, &POLICY, None),
            Next::Call("a")
        );
        // At 60 s only b is due (20 + 30 s; a is due at 40 + 30 = 70 s).
        assert_eq!(
            next(t(60), &c, Admission::Now, &POLICY, None),
            Next::Call("b")
        );
        // At 49 s nothing is due: idle until b is, at 50 s.
        assert_eq!(
            next(t(49), &c, Admission::Now, &POLICY, None),
            Next::Idle { until: Some(t(50)) }
        );
    }

    #[test]
    fn without_speculation_only_settled_retries_are_made() {
        let careful = RetryPolicy {
            speculate: false,
            ..POLICY
        };
        // First failed 400 s ago: settled (300 s), so it is retried.
        let settled = [retried("old", 1, 0, 0)];
        assert_eq!(
            next(t(400), &settled, Admission::Now, &careful, None),
            Next::Call("old")
        );
        // First failed 50 s ago: not before it has settled, at 650 s.
        let young = [retried("young", 1, 350, 350)];
        assert_eq!(
            next(t(400), &young, Admission::Now, &careful, None),
            Next::Idle {
                until: Some(t(650))
            }
        );
    }

    #[test]
    fn a_degraded_message_does_not_block_others() {
        // "stuck" failed many times; "x" and "y" arrive later and are served.
        let c = [failed("stuck", 9, 100), fresh("x", 101), fresh("y", 102)];
        assert_eq!(
            next(t(103), &c, Admission::Now, &POLICY, None),
            Next::Call("x")
        );
        let c = [
            failed("stuck", 9, 100),
            failed("x", 1, 103),
            fresh("y", 102),
        ];
        assert_eq!(
            next(t(104), &c, Admission::Now, &POLICY, None),
            Next::Call("y")
        );
    }

    #[test]
    fn leased_messages_wait_for_their_lease() {
        let mut c = fresh("a", 0);
        c.leased_until = Some(t(20));
        assert_eq!(
            next(t(5), &[c.clone()], Admission::Now, &POLICY, None),
            Next::Idle { until: Some(t(20)) }
        );
        assert_eq!(
            next(t(20), &[c], Admission::Now, &POLICY, None),
            Next::Call("a")
        );
    }

    #[test]
    fn idles_until_the_limiter_frees_a_slot_or_the_pause_ends() {
        let c = [fresh("a", 0)];
        assert_eq!(
            next(t(1), &c, Admission::At(t(7)), &POLICY, None),
            Next::Idle { until: Some(t(7)) }
        );
        assert_eq!(
            next(t(1), &c, Admission::Now, &POLICY, Some(t(9))),
            Next::Idle { until: Some(t(9)) }
        );
        assert_eq!(
            next(t(9), &c, Admission::Now, &POLICY, Some(t(9))),
            Next::Call("a")
        );
    }

    #[test]
    fn nothing_pending_means_idle_until_new_work() {
        let none: [Candidate<&str>; 0] = [];
        assert_eq!(
            next(t(1), &none, Admission::Now, &POLICY, None),
            Next::Idle { until: None }
        );
    }
}
