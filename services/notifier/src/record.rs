//! The delivery record: where a job's webhook stands, kept in JetStream so
//! retries survive restarts and any replica can pick up where another left.
//!
//! Every change is a compare-and-set on the record as read, computed by a
//! pure function of the current record. On a conflict (another replica got a
//! redelivery of the same event) the record is re-read and the function asked
//! again; a function returns `None` when the record needs no change, e.g.
//! because the delivery has already been settled.

use crate::deliver::Verdict;
use crate::retry::{Next, RetrySchedule, after};
use wire_contract::UnixMillis;
use wire_contract::records::{DeliveryAttempt, DeliveryRecord, DeliveryState};

/// Name of the record in decoding errors and conflict metrics.
pub const WHAT: &str = "delivery record";

/// Every change below is a pure function of the current record, applied by
/// [`wire_contract::update_from`] (the one compare-and-set loop).
/// The record of a job that is owed no webhook (only if none exists yet).
pub fn not_required(prev: Option<&DeliveryRecord>) -> Option<DeliveryRecord> {
    match prev {
        Some(_) => None,
        None => Some(DeliveryRecord {
            state: DeliveryState::NotRequired,
            attempts: vec![],
            next_attempt_at: None,
        }),
    }
}

/// A pending record whose first attempt is due `at` (only if none exists yet).
pub fn scheduled(prev: Option<&DeliveryRecord>, at: UnixMillis) -> Option<DeliveryRecord> {
    match prev {
        Some(_) => None,
        None => Some(DeliveryRecord {
            state: DeliveryState::Pending,
            attempts: vec![],
            next_attempt_at: Some(at),
        }),
    }
}

/// The record after `attempt`, which ended at `finished` with `verdict`:
/// delivered, pending until the next attempt, or failed for good. The attempt
/// index is the number of attempts recorded before it (not the message's
/// delivery count, which also counts waits). `None` if the delivery has
/// been settled meanwhile.
pub fn with_attempt(
    prev: Option<&DeliveryRecord>,
    attempt: &DeliveryAttempt,
    verdict: &Verdict,
    schedule: &RetrySchedule,
    jitter_sample: f64,
    finished: UnixMillis,
) -> Option<DeliveryRecord> {
    if prev.is_some_and(|p| p.state != DeliveryState::Pending) {
        return None;
    }
    let mut attempts = prev.map(|p| p.attempts.clone()).unwrap_or_default();
    let index = attempts.len();
    attempts.push(attempt.clone());
    let (state, next_attempt_at) = match verdict {
        Verdict::Delivered => (DeliveryState::Delivered, None),
        Verdict::Failed(failure) => match after(index, failure, schedule, jitter_sample) {
            Next::RetryAt(delay) => (DeliveryState::Pending, Some(finished.plus(delay))),
            Next::GiveUp => (DeliveryState::Failed, None),
        },
    };
    Some(DeliveryRecord {
        state,
        attempts,
        next_attempt_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::Failure;
    use std::time::Duration;

    const T0: UnixMillis = UnixMillis(1_700_000_000_000);

    fn schedule() -> RetrySchedule {
        RetrySchedule::parse("0s,5s,5m", 0.0).expect("schedule")
    }

    fn attempt(status: Option<u16>) -> DeliveryAttempt {
        DeliveryAttempt {
            at: T0,
            status,
            error: None,
            latency_ms: 12,
        }
    }

    const RETRY: Verdict = Verdict::Failed(Failure::Transient { retry_after: None });

    #[test]
    fn a_failed_first_attempt_is_pending_until_the_next_gap() {
        let r =
            with_attempt(None, &attempt(Some(500)), &RETRY, &schedule(), 0.0, T0).expect("written");
        assert_eq!(r.state, DeliveryState::Pending);
        assert_eq!(r.attempts.len(), 1);
        assert_eq!(r.next_attempt_at, Some(T0.plus(Duration::from_secs(5))));
    }

    #[test]
    fn attempts_accumulate_until_the_schedule_runs_out() {
        let s = schedule();
        let r1 = with_attempt(None, &attempt(Some(500)), &RETRY, &s, 0.0, T0).expect("1");
        let r2 = with_attempt(Some(&r1), &attempt(None), &RETRY, &s, 0.0, T0).expect("2");
        assert_eq!(r2.next_attempt_at, Some(T0.plus(Duration::from_secs(300))));
        let r3 = with_attempt(Some(&r2), &attempt(Some(502)), &RETRY, &s, 0.0, T0).expect("3");
        assert_eq!(r3.state, DeliveryState::Failed);
        assert_eq!(r3.attempts.len(), 3);
        assert_eq!(r3.next_attempt_at, None);
    }

    #[test]
    fn success_and_permanent_failure_settle_the_record() {
        let s = schedule();
        let ok =
            with_attempt(None, &attempt(Some(204)), &Verdict::Delivered, &s, 0.0, T0).expect("ok");
        assert_eq!(
            (ok.state, ok.next_attempt_at),
            (DeliveryState::Delivered, None)
        );
        let gone = Verdict::Failed(Failure::Permanent);
        let r = with_attempt(None, &attempt(Some(410)), &gone, &s, 0.0, T0).expect("gone");
        assert_eq!(r.state, DeliveryState::Failed);
    }

    #[test]
    fn settled_records_are_left_alone() {
        for state in [
            DeliveryState::Delivered,
            DeliveryState::Failed,
            DeliveryState::NotRequired,
        ] {
            let settled = DeliveryRecord {
                state,
                attempts: vec![],
                next_attempt_at: None,
            };
            assert_eq!(
                with_attempt(
                    Some(&settled),
                    &attempt(Some(200)),
                    &Verdict::Delivered,
                    &schedule(),
                    0.0,
                    T0
                ),
                None
            );
            assert_eq!(not_required(Some(&settled)), None);
            assert_eq!(scheduled(Some(&settled), T0), None);
        }
    }

    #[test]
    fn first_writes_create_the_record() {
        assert_eq!(
            not_required(None).map(|r| r.state),
            Some(DeliveryState::NotRequired)
        );
        let s = scheduled(None, T0).expect("scheduled");
        assert_eq!(
            (s.state, s.next_attempt_at, s.attempts.len()),
            (DeliveryState::Pending, Some(T0), 0)
        );
    }
}
