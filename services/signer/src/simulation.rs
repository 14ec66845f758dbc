//! Virtual-time simulation of scheduling policies against a model of the
//! upstream, shared by the `schedule_bench` example and the end-to-end
//! drain check. It drives the signer's own [`scheduler::next`] and
//! [`Budget`]; time is plain numbers, nothing sleeps.

use crate::budget::{Admission, Budget, Call};
use crate::scheduler::{self, Candidate, Next, RetryPolicy};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use wire_contract::UnixMillis;

/// The upstream: first try succeeds with `p_first`; a message that fails is
/// degraded for a duration drawn uniformly in `degraded`.
#[derive(Clone, Copy)]
pub struct Model {
    pub name: &'static str,
    pub p_first: f64,
    pub degraded: (u64, u64),
    /// Messages and the gap between arrivals (0: one burst).
    pub messages: usize,
    pub arrival_gap_ms: u64,
    /// The budget the signer keeps.
    pub budget: Budget,
    /// How long one call takes, drawn uniformly per call (ms). The upstream
    /// sees it arrive at a uniformly drawn instant within that time: lag
    /// before arrival is what breaks a limiter that counts start times.
    pub call_ms: (u64, u64),
    /// `false` models the limiter before calls had ends: each is counted as
    /// if it arrived the instant it started.
    pub count_ends: bool,
}

/// One message's truth (hidden from policies) and history.
#[derive(Clone)]
pub struct Msg {
    pub arrival: u64,
    pub first_ok: bool,
    pub degraded_for: u64,
    pub degraded_until: Option<u64>,
    pub attempts: u32,
    pub first_attempt: Option<u64>,
    pub last_attempt: Option<u64>,
    pub done_at: Option<u64>,
    /// A call for it is in flight until then.
    pub busy_until: u64,
}

impl Msg {
    /// Arrived by `now` and not yet signed: a policy may call it.
    pub fn waiting(&self, now: u64) -> bool {
        self.done_at.is_none() && self.arrival <= now && self.busy_until <= now
    }

    /// Call the upstream at `now`, answered at `now + took`; true if signed.
    pub fn call(&mut self, now: u64, took: u64) -> bool {
        self.busy_until = now + took;
        self.attempts += 1;
        self.first_attempt.get_or_insert(now);
        self.last_attempt = Some(now);
        let ok = match self.degraded_until {
            None if self.attempts == 1 && self.first_ok => true,
            None => {
                self.degraded_until = Some(now + self.degraded_for);
                false
            }
            Some(until) => now >= until,
        };
        if ok {
            self.done_at = Some(now + took);
        }
        ok
    }
}

pub fn workload(model: &Model, seed: u64) -> Vec<Msg> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..model.messages)
        .map(|i| Msg {
            arrival: i as u64 * model.arrival_gap_ms,
            first_ok: rng.gen_bool(model.p_first),
            degraded_for: rng.gen_range(model.degraded.0..=model.degraded.1),
            degraded_until: None,
            attempts: 0,
            first_attempt: None,
            last_attempt: None,
            done_at: None,
            busy_until: 0,
        })
        .collect()
}

/// A scheduling policy: given `now` and the messages, call one or wait.
pub trait Policy {
    /// Shown in tables.
    fn name(&self) -> String;
    /// Index to call now, or the instant to think again (None: next arrival).
    fn decide(
        &mut self,
        now: u64,
        msgs: &[Msg],
        admission: Admission,
    ) -> Result<usize, Option<u64>>;
}

/// The signer's scheduler, exactly as the service runs it.
pub struct Signer(pub RetryPolicy);

impl Policy for Signer {
    fn name(&self) -> String {
        if self.0 == RetryPolicy::default() {
            "signer scheduler (defaults)".into()
        } else {
            format!(
                "signer, backoff {}s settle {}s spec {}",
                self.0.min_backoff.as_secs(),
                self.0.settle.as_secs(),
                self.0.speculate
            )
        }
    }
    fn decide(
        &mut self,
        now: u64,
        msgs: &[Msg],
        admission: Admission,
    ) -> Result<usize, Option<u64>> {
        let candidates: Vec<Candidate<usize>> = msgs
            .iter()
            .enumerate()
            .filter(|(_, m)| m.waiting(now))
            .map(|(i, m)| Candidate {
                key: i,
                attempts: m.attempts,
                first_seen: UnixMillis(m.arrival),
                first_attempt: m.first_attempt.map(UnixMillis),
                last_attempt: m.last_attempt.map(UnixMillis),
                leased_until: Some(UnixMillis(m.busy_until)),
            })
            .collect();
        match scheduler::next(UnixMillis(now), &candidates, admission, &self.0, None) {
            Next::Call(i) => Ok(i),
            Next::Idle { until } => Err(until.map(|u| u.0)),
        }
    }
}

pub struct Run {
    pub drain_ms: u64,
    pub bound_ms: u64,
    pub calls: u64,
    pub latencies: Vec<u64>,
    /// The most calls the upstream saw arrive in one window.
    pub max_in_window: usize,
}

/// The earliest the last call could happen if no call were wasted: one call
/// per message plus one per failed first try, each in the earliest slot
/// the window allows, and none before its message arrives. Calls are taken
/// to be instantaneous and clocks exact: no real limiter can do better.
pub fn budget_bound(msgs: &[Msg], budget: Budget) -> u64 {
    let mut needs: Vec<u64> = Vec::new();
    for m in msgs {
        needs.push(m.arrival);
        if !m.first_ok {
            needs.push(m.arrival);
        }
    }
    needs.sort_unstable();
    let budget = Budget {
        margin: std::time::Duration::ZERO,
        ..budget
    };
    let mut calls: Vec<Call> = Vec::new();
    let mut last = 0;
    for ready in needs {
        let mut t = UnixMillis(ready.max(last));
        if let Admission::At(at) = budget.admit(t, &calls) {
            t = at;
        }
        calls.push(Call {
            start: t,
            end: Some(t),
        });
        last = t.0;
    }
    last
}

/// The most arrivals within any window of `window_ms`.
pub fn max_in_window(arrivals: &mut [u64], window_ms: u64) -> usize {
    arrivals.sort_unstable();
    (0..arrivals.len())
        .map(|i| {
            arrivals[i..]
                .iter()
                .take_while(|a| **a < arrivals[i] + window_ms)
                .count()
        })
        .max()
        .unwrap_or(0)
}

pub fn simulate(model: &Model, seed: u64, policy: &mut dyn Policy) -> Run {
    let mut msgs = workload(model, seed);
    let bound_ms = budget_bound(&msgs, model.budget);
    let budget = model.budget;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_ca11);
    // (start, end) of every call; an end is known only once it has passed.
    let mut spans: Vec<(u64, u64)> = Vec::new();
    let mut arrivals: Vec<u64> = Vec::new();
    let mut now = 0u64;
    let mut total_calls = 0u64;
    let horizon = 24 * 3600 * 1000;
    while msgs.iter().any(|m| m.done_at.is_none()) && now < horizon {
        let seen = |&(start, end): &(u64, u64)| Call {
            start: UnixMillis(start),
            end: if !model.count_ends {
                Some(UnixMillis(start))
            } else {
                (end <= now).then_some(UnixMillis(end))
            },
        };
        // As the signer prunes its record: calls that can no longer matter.
        spans.retain(|s| budget.still_counts(UnixMillis(now), &seen(s)));
        let calls: Vec<Call> = spans.iter().map(seen).collect();
        let admission = budget.admit(UnixMillis(now), &calls);
        match policy.decide(now, &msgs, admission) {
            Ok(i) => {
                assert!(
                    matches!(admission, Admission::Now),
                    "{} called over budget",
                    policy.name()
                );
                let took = rng.gen_range(model.call_ms.0..=model.call_ms.1);
                spans.push((now, now + took));
                arrivals.push(now + rng.gen_range(0..=took));
                total_calls += 1;
                msgs[i].call(now, took);
            }
            Err(until) => {
                let next_arrival = msgs.iter().map(|m| m.arrival).filter(|a| *a > now).min();
                // A call ending can free a slot or make its message callable.
                // (The signer wakes when any of its calls ends.)
                let next_end = spans.iter().map(|s| s.1).filter(|e| *e > now).min();
                let wake = [until, next_arrival, next_end]
                    .into_iter()
                    .flatten()
                    .min()
                    .unwrap_or(horizon);
                now = wake.max(now + 1);
            }
        }
    }
    let drain_ms = msgs.iter().filter_map(|m| m.done_at).max().unwrap_or(now);
    let latencies = msgs
        .iter()
        .map(|m| m.done_at.unwrap_or(horizon) - m.arrival)
        .collect();
    Run {
        drain_ms,
        bound_ms,
        calls: total_calls,
        latencies,
        max_in_window: max_in_window(&mut arrivals, budget.window.as_millis() as u64),
    }
}
