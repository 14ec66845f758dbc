//! Property: however replicas interleave their steps, crash and restart,
//! however late their calls reach the upstream (anywhere up to the call's
//! deadline), however wrong their own clocks are, however the servers that
//! stamp the limiter's writes disagree (within the margin), and even when
//! the limiter's state is lost, the upstream never sees more than `limit`
//! calls arrive in any window.
//!
//! The shared KV key is modelled as a register with a revision and a server
//! timestamp per write, exactly the semantics `SharedBudget` relies on:
//! compare-and-set fails on a stale revision, and each write is stamped by
//! the server. The decisions are the signer's own `Budget::admit`,
//! `still_counts` and `stand_ins_after_loss`; the protocol is the one
//! `SharedBudget::take` runs (decide on an estimate, write, decide again at
//! the server's stamp, send only then, before the deadline).
//!
//! The checker is shown not to be vacuous: the same `run()` with a limiter
//! that counts start times only (the rule before calls had ends) is caught.

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use signer::budget::{Admission, Budget, Call, LossEvidence};
use std::time::Duration;
use wire_contract::UnixMillis;

const LIMIT: u32 = 10;
const WINDOW_MS: u64 = 6_000;
const TIMEOUT_MS: u64 = 2_000;
/// Each NATS server's clock is within this of true time (the margin).
const SERVER_SKEW_MS: i64 = 300;
/// Replicas' own clocks may be off by this much: they must not matter.
const REPLICA_SKEW_MS: i64 = 5_000;

fn budget() -> Budget {
    Budget {
        limit: LIMIT,
        window: Duration::from_millis(WINDOW_MS),
        margin: Duration::from_millis(SERVER_SKEW_MS as u64),
        call_timeout: Duration::from_millis(TIMEOUT_MS),
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// True time passes.
    Advance(u64),
    /// Replica reads the register (its claim happened just before: the
    /// call's deadline starts here).
    Read(usize),
    /// Replica decides on what it read and tries to reserve; a server with
    /// this skew stamps the write; if sent, the call arrives at this
    /// fraction (per mille) of the time left before its deadline.
    Reserve(usize, i64, u16),
    /// `Read` and `Reserve` back to back: the common, uncontended case.
    Take(usize, i64, u16),
    /// One of the replica's calls is over; a server with this skew stamps
    /// the end.
    End(usize, i64),
    /// Replica crashes and restarts with a new clock.
    Crash(usize, i64),
    /// The limiter's state is lost (key deleted, bucket recreated).
    Lose,
}

fn op(replicas: usize) -> impl Strategy<Value = Op> {
    let skew = -SERVER_SKEW_MS..=SERVER_SKEW_MS;
    // Arrivals at either end of a call's span are the interesting ones.
    let frac = || prop_oneof![Just(0u16), Just(1000u16), 0u16..=1000];
    prop_oneof![
        3 => (0u64..800).prop_map(Op::Advance),
        1 => (0u64..3_000).prop_map(Op::Advance),
        3 => (0..replicas).prop_map(Op::Read),
        3 => (0..replicas, skew.clone(), frac()).prop_map(|(r, s, f)| Op::Reserve(r, s, f)),
        4 => (0..replicas, skew.clone(), frac()).prop_map(|(r, s, f)| Op::Take(r, s, f)),
        3 => (0..replicas, skew).prop_map(|(r, s)| Op::End(r, s)),
        1 => (0..replicas, -REPLICA_SKEW_MS..=REPLICA_SKEW_MS).prop_map(|(r, s)| Op::Crash(r, s)),
        1 => Just(Op::Lose),
    ]
}

#[derive(Clone)]
struct Slot {
    id: u64,
    call: Call,
}

/// The KV key: `None` when lost.
#[derive(Clone)]
struct Register {
    slots: Option<Vec<Slot>>,
    revision: u64,
    /// Server time of the last write.
    written: u64,
}

struct InFlight {
    id: u64,
    arrival: u64,
    deadline: u64,
}

struct Replica {
    skew: i64,
    /// What it read, and the true time it read it.
    snapshot: Option<(Register, u64)>,
    calls: Vec<InFlight>,
}

/// A limiter rule: may a call start at `now`, given the calls?
type Rule = dyn Fn(&Budget, UnixMillis, &[Call]) -> Admission;

fn real_rule(b: &Budget, now: UnixMillis, calls: &[Call]) -> Admission {
    b.admit(now, calls)
}

/// The rule before calls had ends: a call counts from its start only.
fn start_times_only(b: &Budget, now: UnixMillis, calls: &[Call]) -> Admission {
    let starts: Vec<Call> = calls
        .iter()
        .map(|c| Call {
            start: c.start,
            end: Some(c.start),
        })
        .collect();
    b.admit(now, &starts)
}

fn at(t: u64, skew: i64) -> u64 {
    (t as i64 + skew).max(0) as u64
}

fn run(rule: &Rule, skews: Vec<i64>, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let b = budget();
    let mut now = 1_000_000u64;
    let mut reg = Register {
        slots: Some(Vec::new()),
        revision: 1,
        written: now,
    };
    let mut reps: Vec<Replica> = skews
        .into_iter()
        .map(|skew| Replica {
            skew,
            snapshot: None,
            calls: Vec::new(),
        })
        .collect();
    let mut last_claim = 0u64;
    let mut next_id = 0u64;
    let mut arrivals: Vec<u64> = Vec::new();
    let ops = ops.into_iter().flat_map(|op| match op {
        Op::Take(r, s, f) => vec![Op::Read(r), Op::Reserve(r, s, f)],
        other => vec![other],
    });
    for op in ops {
        match op {
            Op::Advance(dt) => now += dt,
            Op::Read(r) => {
                reps[r].snapshot = Some((reg.clone(), now));
                last_claim = last_claim.max(now);
            }
            Op::Reserve(r, server_skew, frac) => {
                let Some((snap, read_at)) = reps[r].snapshot.take() else {
                    continue;
                };
                if snap.revision != reg.revision {
                    continue; // compare-and-set fails
                }
                let stamp = at(now, server_skew);
                let Some(slots) = snap.slots else {
                    // Recovery: the work bucket's last write bounds claims.
                    let evidence =
                        LossEvidence::ClaimedBefore(UnixMillis(at(last_claim, server_skew)));
                    let stand_ins = b
                        .stand_ins_after_loss(evidence)
                        .into_iter()
                        .map(|s| Slot {
                            id: s.id,
                            call: Call {
                                start: UnixMillis(s.start.at(UnixMillis(stamp)).0),
                                end: None,
                            },
                        })
                        .collect();
                    reg = Register {
                        slots: Some(stand_ins),
                        revision: reg.revision + 1,
                        written: stamp,
                    };
                    continue;
                };
                let calls: Vec<Call> = slots.iter().map(|s| s.call).collect();
                // The guess, on the replica's own (wrong) clock.
                let guess = UnixMillis(at(now, reps[r].skew).max(snap.written));
                if rule(&b, guess, &calls) != Admission::Now {
                    continue;
                }
                let id = next_id;
                next_id += 1;
                let mut kept: Vec<Slot> = slots
                    .into_iter()
                    .filter(|s| b.still_counts(UnixMillis(snap.written), &s.call))
                    .collect();
                kept.push(Slot {
                    id,
                    call: Call {
                        start: UnixMillis(stamp),
                        end: None,
                    },
                });
                reg = Register {
                    slots: Some(kept),
                    revision: reg.revision + 1,
                    written: stamp,
                };
                // Decide again at the server's stamp; a refused slot is left
                // in place (its withdrawal may be lost) and nothing is sent.
                if rule(&b, UnixMillis(stamp), &calls) != Admission::Now {
                    continue;
                }
                let deadline = read_at + TIMEOUT_MS;
                if deadline <= now {
                    continue; // too late to send
                }
                let arrival = now + (deadline - now) * u64::from(frac) / 1000;
                arrivals.push(arrival);
                reps[r].calls.push(InFlight {
                    id,
                    arrival,
                    deadline,
                });
            }
            Op::End(r, server_skew) => {
                // A call is over after it arrived (or timed out unsent).
                let Some(i) = reps[r].calls.iter().position(|c| c.arrival <= now) else {
                    continue;
                };
                let c = reps[r].calls.remove(i);
                debug_assert!(c.deadline >= c.arrival);
                let stamp = at(now, server_skew);
                if let Some(slots) = reg.slots.as_mut()
                    && let Some(s) = slots.iter_mut().find(|s| s.id == c.id)
                {
                    s.call.end = Some(UnixMillis(stamp));
                    reg.revision += 1;
                    reg.written = stamp;
                }
            }
            Op::Crash(r, skew) => {
                // Its calls still arrive as they were going to; their ends
                // are never written.
                reps[r] = Replica {
                    skew,
                    snapshot: None,
                    calls: Vec::new(),
                };
            }
            Op::Take(..) => unreachable!("split above"),
            Op::Lose => {
                reg = Register {
                    slots: None,
                    revision: reg.revision + 1,
                    written: now,
                };
            }
        }
    }
    arrivals.sort_unstable();
    for (i, a) in arrivals.iter().enumerate() {
        let in_window = arrivals[i..]
            .iter()
            .take_while(|b| **b < a + WINDOW_MS)
            .count();
        prop_assert!(
            in_window <= LIMIT as usize,
            "{in_window} calls arrived in the window from {a}: {arrivals:?}"
        );
    }
    Ok(())
}

fn cases() -> impl Strategy<Value = (Vec<i64>, Vec<Op>)> {
    (1usize..=4).prop_flat_map(|replicas| {
        (
            proptest::collection::vec(-REPLICA_SKEW_MS..=REPLICA_SKEW_MS, replicas),
            proptest::collection::vec(op(replicas), 1..700),
        )
    })
}

/// Cases per property: 2,000 unless `LIMIT_PROPTEST_CASES` says otherwise
/// (fewer for mutation runs, many more for a long search).
fn cases_to_run() -> u32 {
    std::env::var("LIMIT_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases_to_run(), ..ProptestConfig::default() })]

    #[test]
    fn no_window_ever_exceeds_the_limit((skews, ops) in cases()) {
        run(&real_rule, skews, ops)?;
    }
}

/// The same checker, the same `run()`, a limiter that forgets that calls
/// take time to arrive: it must be caught.
#[test]
fn the_check_catches_a_limiter_that_counts_start_times_only() {
    // A fixed seed: the same cases every run, so this check cannot flake.
    let mut runner = TestRunner::new_with_rng(
        Config {
            cases: 2_000,
            failure_persistence: None,
            ..Config::default()
        },
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    let outcome = runner.run(&cases(), |(skews, ops)| run(&start_times_only, skews, ops));
    assert!(
        outcome.is_err(),
        "a limiter counting start times only passed 2,000 cases: the check is vacuous"
    );
}
