//! The fair share in virtual time, on the scheduler and limiter the signer
//! runs (`examples/fair_share_bench.rs` prints the full table): a caller's
//! few messages are tried within a budget window however large another
//! caller's burst, where oldest-first made them wait for all of it.

use signer::scheduler::RetryPolicy;
use signer::simulation::{
    CallerTimes, Model, Msg, REAL_API, Signer, caller_times, callers_workload, run,
};

const REAL: Model = REAL_API;

/// B's times (3 messages at 30 s) beside A's burst at 0 s, one seed.
fn b_times(a_burst: usize, named: bool, seed: u64) -> CallerTimes {
    let loads = [(a_burst, 0, 0, 1), (3, 30_000, 1_000, 1)];
    let msgs = callers_workload(&REAL, &loads, named, seed);
    let is_b = |m: &Msg| m.arrival >= 30_000;
    let (_, ended) = run(
        &REAL,
        msgs,
        seed,
        &mut Signer::new(RetryPolicy::default()),
        &is_b,
    );
    caller_times(&ended, |i| i >= a_burst)
}

#[test]
fn another_callers_burst_does_not_delay_a_callers_first_tries() {
    for seed in 0..3 {
        for a_burst in [10, 1_000] {
            let fair = b_times(a_burst, true, seed);
            assert!(
                fair.first_try_max <= 60_000,
                "burst {a_burst}, seed {seed}: B first tried after {} ms",
                fair.first_try_max
            );
            // A failed first try is retried once settled (5 min), in B's
            // turn: signed within its degradation and a window.
            assert!(
                fair.signed_max <= 300_000 + 60_000,
                "burst {a_burst}, seed {seed}: B signed after {} ms",
                fair.signed_max
            );
        }
        // The same workload with no callers named (oldest first, as
        // before): B waits for A's thousand first tries, 100 minutes.
        let before = b_times(1_000, false, seed);
        assert!(
            before.first_try_mean >= 90.0 * 60_000.0,
            "seed {seed}: {before:?}"
        );
    }
}
