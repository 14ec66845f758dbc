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
//!
//! Callers share the budget by weight. Each call is charged to one caller:
//! the one, among those with a useful call to make (a first try or a settled
//! retry; a speculative one only when no caller has better), that was
//! charged the fewest of the recent calls for its weight. The call goes to
//! that caller's best message by the rules above. A message wanted by
//! several callers is one call, charged to the caller whose turn it is; the
//! others get it free. So a caller's new message waits for its own backlog
//! and its turn, never for another caller's burst. "Recent" is the last few
//! calls of every replica ([`served`]): an idle caller banks no credit, and
//! nothing of it lives only in one replica's memory.

use crate::budget::Admission;
use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;
use wire_contract::UnixMillis;

/// What the scheduler needs to know about one pending message. `C` names
/// a caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate<K, C = String> {
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
    /// The callers it is for, with their weights; empty: the anonymous
    /// caller of an open gateway.
    pub callers: Vec<(C, u32)>,
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
pub enum Next<K, C = String> {
    /// Call the upstream for this message now, charged to `on_behalf`
    /// (`None`: the anonymous caller).
    Call {
        /// The message.
        key: K,
        /// The caller whose share the call comes out of.
        on_behalf: Option<C>,
    },
    /// Nothing to do before `until` (or before new work arrives, if `None`).
    Idle {
        /// When to decide again.
        until: Option<UnixMillis>,
    },
}

impl<K, C> Candidate<K, C> {
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

/// How many recent calls the fair share counts: five windows of the
/// default budget, so weights up to the largest configurable weight, 20 (against 1) still
/// show in the tally.
pub const FAIR_MEMORY: usize = 50;

/// Calls recently charged to each caller (`None`: the anonymous one).
pub type Served<C> = HashMap<Option<C>, u32>;

/// Tally the callers charged for the last `memory` of `recent` calls
/// (oldest first).
pub fn served<'a, C: Clone + Eq + Hash + 'a>(
    recent: impl DoubleEndedIterator<Item = &'a Option<C>>,
    memory: usize,
) -> Served<C> {
    let mut tally = Served::new();
    for c in recent.rev().take(memory) {
        *tally.entry(c.clone()).or_default() += 1;
    }
    tally
}

/// Decide the next call at `now`. `admission` is the limiter's answer for
/// `now`; `paused_until` stops all calls (e.g. after the upstream rejected
/// our credentials); `served` is what each caller was charged of late.
pub fn next<K: Clone, C: Clone + Eq + Hash + Ord>(
    now: UnixMillis,
    candidates: &[Candidate<K, C>],
    admission: Admission,
    policy: &RetryPolicy,
    paused_until: Option<UnixMillis>,
    served: &Served<C>,
) -> Next<K, C> {
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
    // Each caller's best eligible message, and its weight.
    type Best<'a, K, C> = HashMap<Option<&'a C>, (Rank, &'a Candidate<K, C>, u32)>;
    let mut best: Best<K, C> = HashMap::new();
    for c in candidates.iter().filter(|c| c.eligible_at(policy) <= now) {
        let rank = c.rank(now, policy);
        if !policy.speculate && matches!(rank, Rank::Speculative(_)) {
            continue;
        }
        let anonymous = c.callers.is_empty().then_some((None, 1));
        let named = c.callers.iter().map(|(name, w)| (Some(name), *w));
        for (caller, weight) in anonymous.into_iter().chain(named) {
            let entry = best.entry(caller).or_insert((rank, c, weight));
            if rank < entry.0 {
                *entry = (rank, c, weight);
            }
        }
    }
    // Only callers with a useful call compete while any has one.
    let useful = |r: &Rank| !matches!(r, Rank::Speculative(_));
    let any_useful = best.values().any(|(r, _, _)| useful(r));
    let charged =
        |caller: &Option<&C>| u64::from(served.get(&caller.cloned()).copied().unwrap_or(0));
    let pick = best
        .iter()
        .filter(|(_, (r, _, _))| useful(r) || !any_useful)
        .min_by(|(ca, (ra, _, wa)), (cb, (rb, _, wb))| {
            // served/weight, compared without division; then today's rank.
            let a = charged(ca) * u64::from((*wb).max(1));
            let b = charged(cb) * u64::from((*wa).max(1));
            a.cmp(&b).then(ra.cmp(rb)).then(ca.cmp(cb))
        });
    match pick {
        Some((caller, (_, c, _))) => Next::Call {
            key: c.key.clone(),
            on_behalf: caller.cloned(),
        },
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

    fn call(key: &'static str) -> Next<&'static str> {
        Next::Call {
            key,
            on_behalf: None,
        }
    }

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
            callers: vec![],
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
            callers: vec![],
        }
    }

    #[test]
    fn never_tried_messages_go_before_retries_even_if_newer() {
        let c = [failed("old", 1, 0), fresh("new", 50)];
        assert_eq!(
            next(t(60), &c, Admission::Now, &POLICY, None, &Served::new()),
            call("new")
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
            next(t(75), &c, Admission::Now, &POLICY, None, &Served::new()),
            call("a")
        );
        // At 60 s only b is due (20 + 30 s; a is due at 40 + 30 = 70 s).
        assert_eq!(
            next(t(60), &c, Admission::Now, &POLICY, None, &Served::new()),
            call("b")
        );
        // At 49 s nothing is due: idle until b is, at 50 s.
        assert_eq!(
            next(t(49), &c, Admission::Now, &POLICY, None, &Served::new()),
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
            next(
                t(400),
                &settled,
                Admission::Now,
                &careful,
                None,
                &Served::new()
            ),
            call("old")
        );
        // First failed 50 s ago: not before it has settled, at 650 s.
        let young = [retried("young", 1, 350, 350)];
        assert_eq!(
            next(
                t(400),
                &young,
                Admission::Now,
                &careful,
                None,
                &Served::new()
            ),
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
            next(t(103), &c, Admission::Now, &POLICY, None, &Served::new()),
            call("x")
        );
        let c = [
            failed("stuck", 9, 100),
            failed("x", 1, 103),
            fresh("y", 102),
        ];
        assert_eq!(
            next(t(104), &c, Admission::Now, &POLICY, None, &Served::new()),
            call("y")
        );
    }

    #[test]
    fn leased_messages_wait_for_their_lease() {
        let mut c = fresh("a", 0);
        c.leased_until = Some(t(20));
        assert_eq!(
            next(
                t(5),
                &[c.clone()],
                Admission::Now,
                &POLICY,
                None,
                &Served::new()
            ),
            Next::Idle { until: Some(t(20)) }
        );
        assert_eq!(
            next(t(20), &[c], Admission::Now, &POLICY, None, &Served::new()),
            call("a")
        );
    }

    #[test]
    fn idles_until_the_limiter_frees_a_slot_or_the_pause_ends() {
        let c = [fresh("a", 0)];
        assert_eq!(
            next(t(1), &c, Admission::At(t(7)), &POLICY, None, &Served::new()),
            Next::Idle { until: Some(t(7)) }
        );
        assert_eq!(
            next(
                t(1),
                &c,
                Admission::Now,
                &POLICY,
                Some(t(9)),
                &Served::new()
            ),
            Next::Idle { until: Some(t(9)) }
        );
        assert_eq!(
            next(
                t(9),
                &c,
                Admission::Now,
                &POLICY,
                Some(t(9)),
                &Served::new()
            ),
            call("a")
        );
    }

    #[test]
    fn nothing_pending_means_idle_until_new_work() {
        let none: [Candidate<&str>; 0] = [];
        assert_eq!(
            next(t(1), &none, Admission::Now, &POLICY, None, &Served::new()),
            Next::Idle { until: None }
        );
    }

    fn of(mut c: Candidate<&'static str>, callers: &[(&str, u32)]) -> Candidate<&'static str> {
        c.callers = callers.iter().map(|(n, w)| (n.to_string(), *w)).collect();
        c
    }

    fn charged(tally: &[(&str, u32)]) -> Served<String> {
        tally
            .iter()
            .map(|(n, k)| (Some(n.to_string()), *k))
            .collect()
    }

    fn on_behalf(key: &'static str, caller: &str) -> Next<&'static str> {
        Next::Call {
            key,
            on_behalf: Some(caller.to_owned()),
        }
    }

    #[test]
    fn the_least_served_caller_goes_next_whatever_the_other_queued_first() {
        // A queued three messages before B's one.
        let c = [
            of(fresh("a1", 0), &[("a", 1)]),
            of(fresh("a2", 1), &[("a", 1)]),
            of(fresh("a3", 2), &[("a", 1)]),
            of(fresh("b1", 3), &[("b", 1)]),
        ];
        let decide =
            |tally: &[(&str, u32)]| next(t(10), &c, Admission::Now, &POLICY, None, &charged(tally));
        // Equal so far: the oldest message's caller.
        assert_eq!(decide(&[]), on_behalf("a1", "a"));
        assert_eq!(decide(&[("a", 1), ("b", 1)]), on_behalf("a1", "a"));
        // A had more of late: B's turn, though its message is the newest.
        assert_eq!(decide(&[("a", 1)]), on_behalf("b1", "b"));
        assert_eq!(decide(&[("a", 9), ("b", 8)]), on_behalf("b1", "b"));
    }

    #[test]
    fn weights_divide_the_calls() {
        let c = [
            of(fresh("a1", 0), &[("a", 3)]),
            of(fresh("b1", 1), &[("b", 1)]),
        ];
        let decide =
            |tally: &[(&str, u32)]| next(t(10), &c, Admission::Now, &POLICY, None, &charged(tally));
        // A, weight 3, is behind until it has three calls to B's one.
        assert_eq!(decide(&[("a", 2), ("b", 1)]), on_behalf("a1", "a"));
        assert_eq!(decide(&[("a", 4), ("b", 1)]), on_behalf("b1", "b"));
        // At exactly its share, the older message goes.
        assert_eq!(decide(&[("a", 3), ("b", 1)]), on_behalf("a1", "a"));
        // Repeated, the choices settle at 3 to 1.
        let mut tally: Served<String> = Served::new();
        for _ in 0..40 {
            match next(t(10), &c, Admission::Now, &POLICY, None, &tally) {
                Next::Call { on_behalf, .. } => *tally.entry(on_behalf).or_default() += 1,
                idle => panic!("{idle:?}"),
            }
        }
        assert_eq!(tally, charged(&[("a", 30), ("b", 10)]));
    }

    #[test]
    fn a_message_wanted_by_several_callers_is_one_call_charged_to_whose_turn_it_is() {
        let c = [
            of(fresh("shared", 0), &[("a", 1), ("b", 1)]),
            of(fresh("a-only", 1), &[("a", 1)]),
        ];
        for (behind, ahead) in [("b", "a"), ("a", "b")] {
            let tally = charged(&[(ahead, 2)]);
            assert_eq!(
                next(t(10), &c, Admission::Now, &POLICY, None, &tally),
                on_behalf("shared", behind)
            );
        }
    }

    #[test]
    fn a_speculative_retry_takes_no_turn_from_a_useful_call() {
        // B, least served, has only a retry 40 s after its first failure
        // (speculative); A has a first try to make.
        let c = [
            of(retried("b-retry", 1, 0, 0), &[("b", 1)]),
            of(fresh("a-new", 5), &[("a", 1)]),
        ];
        assert_eq!(
            next(
                t(40),
                &c,
                Admission::Now,
                &POLICY,
                None,
                &charged(&[("a", 5)])
            ),
            on_behalf("a-new", "a")
        );
        // With nothing useful anywhere, the speculative retry is made.
        assert_eq!(
            next(
                t(40),
                &c[..1],
                Admission::Now,
                &POLICY,
                None,
                &charged(&[("a", 5)])
            ),
            on_behalf("b-retry", "b")
        );
    }

    #[test]
    fn served_counts_only_the_most_recent_calls() {
        let recent = [Some("a"), Some("a"), Some("b"), None, Some("b")];
        let tally = served(recent.iter(), 3);
        assert_eq!(tally.get(&Some("b")), Some(&2));
        assert_eq!(tally.get(&None), Some(&1));
        assert_eq!(tally.get(&Some("a")), None);
    }
}
