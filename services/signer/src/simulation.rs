//! Virtual-time simulation of scheduling policies against a model of the
//! upstream, shared by the `schedule_bench` example and the end-to-end
//! drain check. It drives the signer's own [`scheduler::next`] and
//! [`Budget`]; time is plain numbers, nothing sleeps.

use crate::budget::{Admission, Budget, Call};
use crate::scheduler::{self, Candidate, Next, RetryPolicy};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::VecDeque;
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

/// The real API's model (first try succeeds half the time, a failed
/// message stays degraded 1 to 5 minutes, 10 calls a minute, calls take no
/// time), with its messages left to the workload.
pub const REAL_API: Model = Model {
    name: "real API (p=.5, 1-5 min)",
    p_first: 0.5,
    degraded: (60_000, 300_000),
    messages: 0,
    arrival_gap_ms: 0,
    budget: Budget {
        limit: 10,
        window: std::time::Duration::from_secs(60),
        margin: std::time::Duration::ZERO,
        call_timeout: std::time::Duration::from_secs(10),
    },
    call_ms: (0, 0),
    count_ends: true,
};

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
    /// The caller it is for and its weight (`None`: an open gateway's
    /// anonymous caller).
    pub caller: Option<(u8, u32)>,
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
            caller: None,
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

/// The signer's scheduler, exactly as the service runs it, remembering
/// whom its last calls were charged to as the service's recent-calls log
/// does.
pub struct Signer {
    /// Retry timing.
    pub policy: RetryPolicy,
    charges: VecDeque<Option<u8>>,
    memory: usize,
}

impl Signer {
    /// The scheduler with `policy`, remembering as many calls as the
    /// service does.
    pub fn new(policy: RetryPolicy) -> Self {
        Self {
            policy,
            charges: VecDeque::new(),
            memory: scheduler::FAIR_MEMORY,
        }
    }
}

impl Policy for Signer {
    fn name(&self) -> String {
        if self.policy == RetryPolicy::default() {
            "signer scheduler (defaults)".into()
        } else {
            format!(
                "signer, backoff {}s settle {}s spec {}",
                self.policy.min_backoff.as_secs(),
                self.policy.settle.as_secs(),
                self.policy.speculate
            )
        }
    }
    fn decide(
        &mut self,
        now: u64,
        msgs: &[Msg],
        admission: Admission,
    ) -> Result<usize, Option<u64>> {
        let candidates: Vec<Candidate<usize, u8>> = msgs
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
                callers: m.caller.into_iter().collect(),
            })
            .collect();
        let served = scheduler::served(self.charges.iter(), self.memory);
        match scheduler::next(
            UnixMillis(now),
            &candidates,
            admission,
            &self.policy,
            None,
            &served,
        ) {
            Next::Call { key, on_behalf } => {
                self.charges.push_back(on_behalf);
                if self.charges.len() > self.memory {
                    self.charges.pop_front();
                }
                Ok(key)
            }
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
    run(model, workload(model, seed), seed, policy, &|_| true).0
}

/// Run `policy` over `msgs` until every message `awaited` is signed (or
/// a week of virtual time passed); the run and the messages as they ended.
pub fn run(
    model: &Model,
    mut msgs: Vec<Msg>,
    seed: u64,
    policy: &mut dyn Policy,
    awaited: &dyn Fn(&Msg) -> bool,
) -> (Run, Vec<Msg>) {
    let bound_ms = budget_bound(&msgs, model.budget);
    let budget = model.budget;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_ca11);
    // (start, end) of every call; an end is known only once it has passed.
    let mut spans: Vec<(u64, u64)> = Vec::new();
    let mut arrivals: Vec<u64> = Vec::new();
    let mut now = 0u64;
    let mut total_calls = 0u64;
    let horizon = 7 * 24 * 3600 * 1000;
    while msgs.iter().any(|m| m.done_at.is_none() && awaited(m)) && now < horizon {
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
    let run = Run {
        drain_ms,
        bound_ms,
        calls: total_calls,
        latencies,
        max_in_window: max_in_window(&mut arrivals, budget.window.as_millis() as u64),
    };
    (run, msgs)
}

/// Callers sharing the budget: `(messages, arrival of the first in ms,
/// gap between arrivals in ms, weight)` each, caller `i` being `i`.
pub type CallerLoads = [(usize, u64, u64, u32)];

/// The model's upstream behaviour over messages from several callers.
/// `named`: false stamps no caller, as an open gateway (the scheduler
/// before fair share orders them oldest first, whoever sent them).
pub fn callers_workload(model: &Model, loads: &CallerLoads, named: bool, seed: u64) -> Vec<Msg> {
    let total = loads.iter().map(|l| l.0).sum();
    let mut truth = workload(
        &Model {
            messages: total,
            ..*model
        },
        seed,
    )
    .into_iter();
    let mut msgs = Vec::with_capacity(total);
    for (caller, &(count, start, gap, weight)) in loads.iter().enumerate() {
        for i in 0..count {
            let Some(m) = truth.next() else { break };
            msgs.push(Msg {
                arrival: start + i as u64 * gap,
                caller: named.then_some((caller as u8, weight)),
                ..m
            });
        }
    }
    msgs
}

/// How one caller's messages fared: mean and worst time from arrival to
/// the first upstream try and to the signature (ms).
#[derive(Debug, Clone, Copy, Default)]
pub struct CallerTimes {
    pub first_try_mean: f64,
    pub first_try_max: u64,
    pub signed_mean: f64,
    pub signed_max: u64,
}

/// `CallerTimes` of the messages `of` selects.
pub fn caller_times(msgs: &[Msg], of: impl Fn(usize) -> bool) -> CallerTimes {
    let mine: Vec<&Msg> = msgs
        .iter()
        .enumerate()
        .filter(|(i, _)| of(*i))
        .map(|(_, m)| m)
        .collect();
    let first: Vec<u64> = mine
        .iter()
        .map(|m| m.first_attempt.map_or(u64::MAX, |t| t - m.arrival))
        .collect();
    let signed: Vec<u64> = mine
        .iter()
        .map(|m| m.done_at.map_or(u64::MAX, |t| t - m.arrival))
        .collect();
    let mean = |v: &[u64]| v.iter().map(|x| *x as f64).sum::<f64>() / v.len().max(1) as f64;
    CallerTimes {
        first_try_mean: mean(&first),
        first_try_max: first.iter().copied().max().unwrap_or(0),
        signed_mean: mean(&signed),
        signed_max: signed.iter().copied().max().unwrap_or(0),
    }
}
