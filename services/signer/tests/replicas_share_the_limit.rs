//! Property: however replicas interleave their read / compare-and-set steps,
//! crash and restart, and however their clocks disagree (within the
//! margin), the upstream never sees more than `limit` calls in any window.
//!
//! The shared KV key is modelled as a register with a revision, exactly the
//! semantics `SharedBudget::take` relies on (`update` fails on a stale
//! revision); the decisions are the signer's own `Budget::admit`/`record`.

use proptest::prelude::*;
use signer::limiter::{Admission, Budget};
use std::time::Duration;
use wire_contract::UnixMillis;

const LIMIT: u32 = 10;
const WINDOW_MS: u64 = 6_000;
const MARGIN_MS: u64 = 300;
/// Each replica's clock is off true time by at most this (either way).
const SKEW_MS: i64 = 100;
/// A recorded call reaches the upstream at most this long after recording.
const DELAY_MS: u64 = 100;

#[derive(Debug, Clone)]
enum Op {
    /// True time passes.
    Advance(u64),
    /// Replica reads the register.
    Read(usize),
    /// Replica decides on what it read and tries to write.
    Cas(usize, u64),
    /// Replica crashes and restarts with a new clock skew.
    Crash(usize, i64),
}

fn op(replicas: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u64..2_000).prop_map(Op::Advance),
        4 => (0..replicas).prop_map(Op::Read),
        4 => (0..replicas, 0..=DELAY_MS).prop_map(|(r, d)| Op::Cas(r, d)),
        1 => (0..replicas, -SKEW_MS..=SKEW_MS).prop_map(|(r, s)| Op::Crash(r, s)),
    ]
}

struct Replica {
    skew: i64,
    snapshot: Option<(Vec<UnixMillis>, u64)>,
}

fn run(replicas: usize, skews: Vec<i64>, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let budget = Budget {
        limit: LIMIT,
        window: Duration::from_millis(WINDOW_MS),
        margin: Duration::from_millis(MARGIN_MS),
    };
    let start = 1_000_000u64;
    let mut now = start;
    let mut register: (Vec<UnixMillis>, u64) = (Vec::new(), 0);
    let mut reps: Vec<Replica> = skews
        .into_iter()
        .take(replicas)
        .map(|skew| Replica {
            skew,
            snapshot: None,
        })
        .collect();
    let mut arrivals: Vec<u64> = Vec::new();
    for op in ops {
        match op {
            Op::Advance(dt) => now += dt,
            Op::Read(r) => reps[r].snapshot = Some(register.clone()),
            Op::Cas(r, delay) => {
                let Some((calls, rev)) = reps[r].snapshot.take() else {
                    continue;
                };
                let local = UnixMillis((now as i64 + reps[r].skew) as u64);
                if let Admission::Now = budget.admit(local, &calls)
                    && rev == register.1
                {
                    register = (budget.record(local, &calls), register.1 + 1);
                    arrivals.push(now + delay);
                }
            }
            Op::Crash(r, skew) => {
                reps[r] = Replica {
                    skew,
                    snapshot: None,
                }
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
            "{in_window} calls in the window from {a}: {arrivals:?}"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn no_window_ever_exceeds_the_limit(
        replicas in 1usize..=4,
        skews in proptest::collection::vec(-SKEW_MS..=SKEW_MS, 4),
        ops in proptest::collection::vec(op(4), 1..600),
    ) {
        let ops = ops.into_iter().map(|o| match o {
            Op::Read(r) => Op::Read(r % replicas),
            Op::Cas(r, d) => Op::Cas(r % replicas, d),
            Op::Crash(r, s) => Op::Crash(r % replicas, s),
            other => other,
        }).collect();
        run(replicas, skews, ops)?;
    }
}

/// The property is not vacuous: without the margin, skewed replicas do
/// exceed the limit for some interleaving, and the check catches it.
#[test]
fn the_check_catches_a_limiter_without_margin() {
    let budget = Budget {
        limit: LIMIT,
        window: Duration::from_millis(WINDOW_MS),
        margin: Duration::ZERO,
    };
    // Replica A's clock is 100 ms behind; it records 10 calls at true t=0.
    let mut calls = Vec::new();
    for _ in 0..LIMIT {
        calls = budget.record(UnixMillis(1_000_000 - 100), &calls);
    }
    // Replica B's clock is right; at true t = window - 50 ms it sees A's calls
    // as already out of the window and is admitted: 11 calls in one window.
    let b_now = UnixMillis(1_000_000 + WINDOW_MS - 50);
    assert_eq!(budget.admit(b_now, &calls), Admission::Now);
    let with_margin = Budget {
        margin: Duration::from_millis(MARGIN_MS),
        ..budget
    };
    assert!(matches!(with_margin.admit(b_now, &calls), Admission::At(_)));
}
