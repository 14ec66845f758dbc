//! When to try a webhook again: the retry schedule as data, and a pure
//! function over it.
//!
//! The schedule is a list of delays: the first is the wait before the first
//! attempt (normally `0s`), each next one the gap after a failed attempt. With
//! Svix's default `0s,5s,5m,30m,2h,5h,10h,10h` a receiver that is down for a
//! day still gets its webhook. Delays are jittered (±20 % by default) so that
//! webhooks that failed together do not all retry in the same instant. The
//! caller waits (on the retry index, [`crate::due`]); the schedule only says
//! how long.

use std::time::Duration;

/// The longest wait a receiver's `Retry-After` can ask for.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Why a schedule is unusable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScheduleError {
    /// No delays at all: not even one attempt.
    #[error("the retry schedule is empty")]
    Empty,
    /// An entry is not a duration such as `5s` or `2h`.
    #[error("retry schedule entry {0:?} is not a duration (e.g. 5s, 30m)")]
    Duration(String),
    /// Jitter outside `[0, 1)`.
    #[error("retry jitter {0} must be at least 0 and below 1")]
    Jitter(f64),
}

/// Delays between attempts, and how much to jitter them.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySchedule {
    delays: Vec<Duration>,
    jitter: f64,
}

impl RetrySchedule {
    /// A schedule of `delays` (first: before the first attempt) jittered by
    /// `jitter` (a fraction, e.g. 0.2 for ±20 %).
    ///
    /// # Errors
    ///
    /// [`ScheduleError`] if `delays` is empty or `jitter` not in `[0, 1)`.
    pub fn new(delays: Vec<Duration>, jitter: f64) -> Result<Self, ScheduleError> {
        if delays.is_empty() {
            return Err(ScheduleError::Empty);
        }
        if !(0.0..1.0).contains(&jitter) {
            return Err(ScheduleError::Jitter(jitter));
        }
        Ok(Self { delays, jitter })
    }

    /// Parse a comma-separated list of humantime durations (`0s,5s,5m`).
    ///
    /// # Errors
    ///
    /// [`ScheduleError`] naming the bad entry.
    pub fn parse(list: &str, jitter: f64) -> Result<Self, ScheduleError> {
        let delays = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                humantime::parse_duration(s).map_err(|_| ScheduleError::Duration(s.to_owned()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(delays, jitter)
    }

    /// Wait before the first attempt.
    pub fn first_delay(&self) -> Duration {
        self.delays.first().copied().unwrap_or_default()
    }

    /// How many attempts the schedule allows in all.
    pub fn attempts(&self) -> usize {
        self.delays.len()
    }

    /// The configured delays.
    pub fn delays(&self) -> &[Duration] {
        &self.delays
    }

    /// The jitter fraction.
    pub fn jitter(&self) -> f64 {
        self.jitter
    }
}

/// How a failed attempt failed, as far as retrying is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Retrying cannot help: 410 Gone, or a refused target.
    Permanent,
    /// Worth another try; `retry_after` if the receiver asked for a pause
    /// (429/503 with `Retry-After`).
    Transient {
        /// The receiver's requested pause.
        retry_after: Option<Duration>,
    },
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Try again after this delay.
    RetryAt(Duration),
    /// Stop: dead-letter it.
    GiveUp,
}

/// What follows failed attempt number `attempt_index` (0 for the first).
///
/// `jitter_sample` is a number in `[-1, 1]` (random in production, 0 in
/// tests) scaled by the schedule's jitter. A receiver's `Retry-After` can
/// lengthen the wait, up to [`MAX_RETRY_AFTER`], but never shorten it below
/// the scheduled gap, and never adds attempts beyond the schedule.
pub fn after(
    attempt_index: usize,
    failure: &Failure,
    schedule: &RetrySchedule,
    jitter_sample: f64,
) -> Next {
    let retry_after = match failure {
        Failure::Permanent => return Next::GiveUp,
        Failure::Transient { retry_after } => *retry_after,
    };
    let Some(gap) = schedule.delays.get(attempt_index + 1).copied() else {
        return Next::GiveUp;
    };
    let factor = 1.0 + schedule.jitter * jitter_sample.clamp(-1.0, 1.0);
    let gap = gap.mul_f64(factor.max(0.0));
    let delay = match retry_after {
        Some(asked) => gap.max(asked.min(MAX_RETRY_AFTER)),
        None => gap,
    };
    Next::RetryAt(delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn default_schedule(jitter: f64) -> RetrySchedule {
        RetrySchedule::parse("0s,5s,5m,30m,2h,5h,10h,10h", jitter).expect("default schedule")
    }

    const TRANSIENT: Failure = Failure::Transient { retry_after: None };

    #[test]
    fn the_default_schedule_walks_the_gaps_then_gives_up() {
        let s = default_schedule(0.0);
        assert_eq!(s.attempts(), 8);
        assert_eq!(s.first_delay(), Duration::ZERO);
        let expected = [
            secs(5),
            secs(300),
            secs(1800),
            secs(7200),
            secs(18_000),
            secs(36_000),
            secs(36_000),
        ];
        for (i, gap) in expected.iter().enumerate() {
            assert_eq!(
                after(i, &TRANSIENT, &s, 0.0),
                Next::RetryAt(*gap),
                "after attempt {i}"
            );
        }
        assert_eq!(after(7, &TRANSIENT, &s, 0.0), Next::GiveUp);
        assert_eq!(after(100, &TRANSIENT, &s, 0.0), Next::GiveUp);
    }

    #[test]
    fn permanent_failures_give_up_at_once() {
        assert_eq!(
            after(0, &Failure::Permanent, &default_schedule(0.0), 0.0),
            Next::GiveUp
        );
    }

    #[test]
    fn jitter_stays_within_its_fraction() {
        let s = default_schedule(0.2);
        assert_eq!(after(0, &TRANSIENT, &s, -1.0), Next::RetryAt(secs(4)));
        assert_eq!(after(0, &TRANSIENT, &s, 1.0), Next::RetryAt(secs(6)));
        assert_eq!(
            after(0, &TRANSIENT, &s, 0.5),
            Next::RetryAt(Duration::from_millis(5500))
        );
        // Out-of-range samples are clamped rather than trusted.
        assert_eq!(after(0, &TRANSIENT, &s, 9.0), Next::RetryAt(secs(6)));
    }

    #[test]
    fn retry_after_lengthens_up_to_an_hour_but_never_shortens() {
        let s = default_schedule(0.0);
        let asked = |d| Failure::Transient {
            retry_after: Some(d),
        };
        assert_eq!(
            after(0, &asked(secs(120)), &s, 0.0),
            Next::RetryAt(secs(120))
        );
        assert_eq!(after(0, &asked(secs(1)), &s, 0.0), Next::RetryAt(secs(5)));
        assert_eq!(
            after(0, &asked(secs(86_400)), &s, 0.0),
            Next::RetryAt(MAX_RETRY_AFTER)
        );
        // A gap already longer than an hour wins over any Retry-After.
        assert_eq!(
            after(3, &asked(secs(86_400)), &s, 0.0),
            Next::RetryAt(secs(7200))
        );
        // Retry-After does not buy attempts beyond the schedule.
        assert_eq!(after(7, &asked(secs(10)), &s, 0.0), Next::GiveUp);
    }

    #[test]
    fn parsing_rejects_bad_schedules() {
        assert_eq!(RetrySchedule::parse("", 0.0), Err(ScheduleError::Empty));
        assert_eq!(
            RetrySchedule::parse("0s,soon", 0.0),
            Err(ScheduleError::Duration("soon".into()))
        );
        assert_eq!(
            RetrySchedule::parse("0s", 1.0),
            Err(ScheduleError::Jitter(1.0))
        );
        assert_eq!(
            RetrySchedule::parse("0s", -0.1),
            Err(ScheduleError::Jitter(-0.1))
        );
        let s = RetrySchedule::parse(" 0s , 100ms ", 0.0).expect("spaces are fine");
        assert_eq!(s.delays(), &[Duration::ZERO, Duration::from_millis(100)]);
    }
}
