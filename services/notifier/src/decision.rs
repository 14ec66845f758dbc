//! What to do with a job event, decided from plain data.
//!
//! The notifier's one promise is "a caller answered 200 never gets a
//! webhook, a caller answered 202 always gets one". The api records its
//! answer by compare-and-set on the job record's `reply`; when the api died
//! before answering, the notifier claims the job (`None -> Deferred`, by the
//! same compare-and-set) once the api can no longer be deciding. Whoever
//! writes `reply` first wins, so both never happen and neither never does.
//!
//! [`decide`] takes the time as an argument and does no I/O: the shell in
//! `handle.rs` reads the records, performs the decision, and asks again.

use std::time::Duration;
use wire_contract::UnixMillis;
use wire_contract::records::{DeliveryRecord, DeliveryState, JobRecord, Reply};

/// Timing knobs the decision needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// How long after `created_at` the api may still be choosing 200 or 202.
    pub reply_grace: Duration,
    /// Wait before the first attempt (the retry schedule's first entry).
    pub first_delay: Duration,
}

/// Why no webhook is owed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoWebhook {
    /// The caller got the signature in a 200.
    AnsweredImmediately,
    /// The caller gave no webhook URL (it polls the status resource).
    NoUrl,
    /// The caller was answered 503 (accepting timed out) and will retry.
    Withdrawn,
}

/// The next step for one job event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The delivery already ended (idempotent redelivery): just ack.
    AlreadySettled(DeliveryState),
    /// No job record (expired or never written): ack and warn.
    JobMissing,
    /// Record `NotRequired`, then ack.
    NotRequired(NoWebhook),
    /// The api may still answer 200: look again at `until`.
    AwaitReply {
        /// End of the api's grace period.
        until: UnixMillis,
    },
    /// The api never answered: claim the job as owed a webhook
    /// (compare-and-set `reply: None -> Deferred`), then decide again.
    ClaimReply,
    /// A webhook is owed but the schedule delays the first attempt: record
    /// it as pending until `at`.
    ScheduleFirst {
        /// When the first attempt is due.
        at: UnixMillis,
    },
    /// The next attempt is not due yet (redelivered early): wait until `at`.
    NotDue {
        /// When the next attempt is due.
        at: UnixMillis,
    },
    /// Make attempt number `attempt` (0 for the first) now.
    Deliver {
        /// Index of the attempt about to be made.
        attempt: usize,
    },
}

/// Decide what to do with a job's event at `now`.
pub fn decide(
    now: UnixMillis,
    job: Option<&JobRecord>,
    delivery: Option<&DeliveryRecord>,
    policy: &Policy,
) -> Decision {
    if let Some(d) = delivery
        && d.state != DeliveryState::Pending
    {
        return Decision::AlreadySettled(d.state);
    }
    let Some(job) = job else {
        return Decision::JobMissing;
    };
    if job.webhook_url.is_none() {
        return Decision::NotRequired(NoWebhook::NoUrl);
    }
    if job.reply == Some(Reply::Withdrawn) {
        return Decision::NotRequired(NoWebhook::Withdrawn);
    }
    let until = job.created_at.plus(policy.reply_grace);
    if job.reply == Some(Reply::Immediate) {
        // Final only after the grace: the api overrules its own claim when
        // it could not confirm it in time and answered 202 instead.
        return if now < until {
            Decision::AwaitReply { until }
        } else {
            Decision::NotRequired(NoWebhook::AnsweredImmediately)
        };
    }
    if job.reply.is_none() {
        return if now < until {
            Decision::AwaitReply { until }
        } else {
            Decision::ClaimReply
        };
    }
    // Here `reply` is `Deferred`: a webhook is owed.
    match delivery {
        None if policy.first_delay.is_zero() => Decision::Deliver { attempt: 0 },
        None => Decision::ScheduleFirst {
            at: now.plus(policy.first_delay),
        },
        Some(d) => match d.next_attempt_at {
            Some(at) if now < at => Decision::NotDue { at },
            _ => Decision::Deliver {
                attempt: d.attempts.len(),
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire_contract::records::DeliveryAttempt;

    const POLICY: Policy = Policy {
        reply_grace: Duration::from_secs(5),
        first_delay: Duration::ZERO,
    };
    const CREATED: UnixMillis = UnixMillis(1_700_000_000_000);

    fn job(reply: Option<Reply>, url: Option<&str>) -> JobRecord {
        JobRecord {
            id: "job-1".into(),
            message: "hello".into(),
            webhook_url: url.map(str::to_owned),
            request_id: "req-1".into(),
            created_at: CREATED,
            reply,
            caller: None,
        }
    }

    fn deferred() -> JobRecord {
        job(Some(Reply::Deferred), Some("https://example.com/hook"))
    }

    fn pending(attempts: usize, next: Option<UnixMillis>) -> DeliveryRecord {
        let attempt = DeliveryAttempt {
            at: CREATED,
            status: Some(500),
            error: Some("HTTP 500".into()),
            latency_ms: 3,
        };
        DeliveryRecord {
            state: DeliveryState::Pending,
            attempts: vec![attempt; attempts],
            next_attempt_at: next,
        }
    }

    fn at(ms_after_creation: u64) -> UnixMillis {
        UnixMillis(CREATED.0 + ms_after_creation)
    }

    #[test]
    fn a_missing_job_is_acked() {
        assert_eq!(decide(at(0), None, None, &POLICY), Decision::JobMissing);
    }

    #[test]
    fn a_caller_answered_200_gets_no_webhook_once_the_api_can_no_longer_overrule_it() {
        let j = job(Some(Reply::Immediate), Some("https://example.com/hook"));
        // Within the grace the api may still turn its claim into a 202.
        assert_eq!(
            decide(at(4_999), Some(&j), None, &POLICY),
            Decision::AwaitReply { until: at(5_000) }
        );
        assert_eq!(
            decide(at(5_000), Some(&j), None, &POLICY),
            Decision::NotRequired(NoWebhook::AnsweredImmediately)
        );
    }

    #[test]
    fn a_job_without_url_gets_no_webhook() {
        for reply in [None, Some(Reply::Deferred)] {
            let j = job(reply, None);
            assert_eq!(
                decide(at(0), Some(&j), None, &POLICY),
                Decision::NotRequired(NoWebhook::NoUrl)
            );
        }
    }

    #[test]
    fn a_caller_answered_202_gets_a_first_attempt_now() {
        assert_eq!(
            decide(at(0), Some(&deferred()), None, &POLICY),
            Decision::Deliver { attempt: 0 }
        );
    }

    #[test]
    fn a_delayed_first_attempt_is_scheduled() {
        let policy = Policy {
            first_delay: Duration::from_secs(2),
            ..POLICY
        };
        assert_eq!(
            decide(at(10), Some(&deferred()), None, &policy),
            Decision::ScheduleFirst { at: at(2010) }
        );
        // Once scheduled, the record drives it.
        let scheduled = pending(0, Some(at(2010)));
        assert_eq!(
            decide(at(2010), Some(&deferred()), Some(&scheduled), &policy),
            Decision::Deliver { attempt: 0 }
        );
    }

    #[test]
    fn while_the_api_is_deciding_the_notifier_waits() {
        let j = job(None, Some("https://example.com/hook"));
        assert_eq!(
            decide(at(0), Some(&j), None, &POLICY),
            Decision::AwaitReply { until: at(5000) }
        );
        assert_eq!(
            decide(at(4999), Some(&j), None, &POLICY),
            Decision::AwaitReply { until: at(5000) }
        );
    }

    #[test]
    fn after_the_grace_an_unanswered_job_is_claimed() {
        let j = job(None, Some("https://example.com/hook"));
        assert_eq!(
            decide(at(5000), Some(&j), None, &POLICY),
            Decision::ClaimReply
        );
        assert_eq!(
            decide(at(60_000), Some(&j), None, &POLICY),
            Decision::ClaimReply
        );
    }

    #[test]
    fn settled_deliveries_are_not_repeated() {
        for state in [
            DeliveryState::Delivered,
            DeliveryState::Failed,
            DeliveryState::NotRequired,
        ] {
            let d = DeliveryRecord {
                state,
                attempts: vec![],
                next_attempt_at: None,
            };
            assert_eq!(
                decide(at(0), Some(&deferred()), Some(&d), &POLICY),
                Decision::AlreadySettled(state)
            );
            // Even when the job record is gone by now.
            assert_eq!(
                decide(at(0), None, Some(&d), &POLICY),
                Decision::AlreadySettled(state)
            );
        }
    }

    #[test]
    fn early_redelivery_waits_for_the_next_attempt() {
        let d = pending(2, Some(at(10_000)));
        assert_eq!(
            decide(at(3_000), Some(&deferred()), Some(&d), &POLICY),
            Decision::NotDue { at: at(10_000) }
        );
    }

    #[test]
    fn the_attempt_index_counts_attempts_not_deliveries() {
        let d = pending(2, Some(at(10_000)));
        assert_eq!(
            decide(at(10_000), Some(&deferred()), Some(&d), &POLICY),
            Decision::Deliver { attempt: 2 }
        );
        let d = pending(3, None);
        assert_eq!(
            decide(at(0), Some(&deferred()), Some(&d), &POLICY),
            Decision::Deliver { attempt: 3 }
        );
    }

    #[test]
    fn a_withdrawn_job_gets_no_webhook() {
        let j = job(Some(Reply::Withdrawn), Some("https://example.com/hook"));
        assert_eq!(
            decide(at(0), Some(&j), None, &POLICY),
            Decision::NotRequired(NoWebhook::Withdrawn)
        );
    }
}
