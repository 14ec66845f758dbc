//! Keeping the records of jobs still pending.
//!
//! Job records (and the bucket's age limit, `JOB_RETENTION`, 7 days by
//! default) belong to the api; what is still pending is the signer's to
//! know. A message can stay pending longer than the retention (an upstream
//! broken for it for days): its jobs' records would expire, and their 202
//! callers get no webhook. So the signer, sweeping, asks the api to keep
//! the jobs of every message pending for a quarter of the retention or
//! more, again a quarter of the retention after it last did ([`keep_due`];
//! a missed sweep is made up at the next one), and the api rewrites each
//! record unchanged unless it was written within an eighth of the retention
//! ([`rewrite_due`]: two signer replicas asking cost one rewrite). A
//! rewrite starts the record's age again.

use crate::UnixMillis;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Most job ids in one request (about 20 KB).
pub const KEEP_BATCH: usize = 500;

/// The signer's request to the api: rewrite these jobs' records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeepJobsV1 {
    /// Job ids (at most [`KEEP_BATCH`]).
    pub ids: Vec<String>,
}

/// The api's answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptJobsV1 {
    /// Records rewritten.
    pub kept: u64,
    /// Records left as they were, written lately ([`rewrite_due`]).
    #[serde(default)]
    pub fresh: u64,
    /// Ids with no record (already expired, or never written).
    pub missing: u64,
    /// Records the api could not rewrite (NATS errors): asked again later.
    #[serde(default)]
    pub failed: u64,
}

impl KeptJobsV1 {
    /// Both answers added up.
    pub fn plus(self, other: Self) -> Self {
        Self {
            kept: self.kept + other.kept,
            fresh: self.fresh + other.fresh,
            missing: self.missing + other.missing,
            failed: self.failed + other.failed,
        }
    }
}

/// Whether a sweep at `now` asks to keep the jobs of a message pending
/// since `first_seen`, last kept (by this signer, all batches answered) at
/// `last_kept`: once it has been pending a quarter of `retention`, and
/// again each quarter after the last keep.
pub fn keep_due(
    first_seen: UnixMillis,
    last_kept: Option<UnixMillis>,
    now: UnixMillis,
    retention: Duration,
) -> bool {
    let quarter = retention / 4;
    now.since(first_seen) >= quarter && last_kept.is_none_or(|at| now.since(at) >= quarter)
}

/// Whether the api rewrites a record last written at `written` (server
/// time; `None`: unknown) when asked at `now`: not if written within an
/// eighth of `retention`, which another keep (or a reply) just did.
pub fn rewrite_due(written: Option<UnixMillis>, now: UnixMillis, retention: Duration) -> bool {
    written.is_none_or(|at| now.since(at) >= retention / 8)
}

/// How often the signer sweeps for a `retention`: every minute, or often
/// enough for a short retention (tests): a sixteenth of it, at least 100 ms.
pub fn sweep_every(retention: Duration, usual: Duration) -> Duration {
    usual.min(retention / 16).max(Duration::from_millis(100))
}

/// Ask an api replica to keep `ids`' records.
///
/// # Errors
/// [`crate::signer_answers::AskError`] when no api answers or the answer
/// does not decode.
pub async fn keep_jobs(
    client: &async_nats::Client,
    ids: Vec<String>,
) -> Result<KeptJobsV1, crate::signer_answers::AskError> {
    use crate::signer_answers::AskError;
    let reply = client
        .request(
            crate::names::KEEP_JOBS_SUBJECT,
            crate::encode(&KeepJobsV1 { ids }),
        )
        .await
        .map_err(|e| AskError::NoAnswer(e.to_string()))?;
    Ok(crate::decode("kept jobs", &reply.payload)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);
    const T0: UnixMillis = UnixMillis(1_700_000_000_000);

    fn at(d: Duration) -> UnixMillis {
        T0.plus(d)
    }

    #[test]
    fn jobs_are_kept_from_a_quarter_of_the_retention_then_a_quarter_after_each_keep() {
        let retention = 8 * DAY;
        assert!(!keep_due(
            T0,
            None,
            at(2 * DAY - Duration::from_secs(1)),
            retention
        ));
        assert!(keep_due(T0, None, at(2 * DAY), retention));
        let kept = Some(at(2 * DAY + Duration::from_secs(30)));
        assert!(!keep_due(T0, kept, at(4 * DAY), retention));
        assert!(keep_due(
            T0,
            kept,
            at(4 * DAY + Duration::from_secs(30)),
            retention
        ));
        // A sweep missed (or a failed keep) is made up at the next one.
        assert!(keep_due(T0, kept, at(30 * DAY), retention));
    }

    #[test]
    fn a_record_written_lately_is_not_rewritten() {
        let retention = 8 * DAY;
        assert!(rewrite_due(None, T0, retention));
        assert!(!rewrite_due(
            Some(T0),
            at(DAY - Duration::from_secs(1)),
            retention
        ));
        assert!(rewrite_due(Some(T0), at(DAY), retention));
    }

    #[test]
    fn sweeps_come_often_enough_for_a_short_retention() {
        let usual = Duration::from_secs(60);
        assert_eq!(sweep_every(7 * DAY, usual), usual);
        assert_eq!(
            sweep_every(Duration::from_secs(16), usual),
            Duration::from_secs(1)
        );
        assert_eq!(
            sweep_every(Duration::from_secs(1), usual),
            Duration::from_millis(100)
        );
    }
}
