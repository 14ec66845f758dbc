//! A circuit breaker for one webhook destination, as plain data.
//!
//! A receiver that keeps failing (5xx, 429, timeouts, connection errors;
//! any other answer shows it is up) is not sent to for a while: after
//! [`BreakerPolicy::threshold`] failures in a row the circuit opens for
//! [`BreakerPolicy::open_first`], doubled each time it opens again without a
//! success in between, up to [`BreakerPolicy::open_max`]. When the time is
//! up one attempt (the probe) goes out; its success closes the circuit, its
//! failure opens it again for longer. While open, deliveries to the
//! destination are not sent: each due one is recorded as a failed attempt
//! ("circuit open") and follows the retry schedule like any failure, so a
//! dead receiver costs a record write per due delivery, not a connection,
//! and its deliveries still end (dead-lettered) when the schedule does.
//!
//! Everything here takes the time as an argument and does no I/O; the
//! shell ([`crate::destinations`]) keeps one per destination.

use std::time::Duration;
use wire_contract::UnixMillis;

/// When a destination's circuit opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Failures in a row that open the circuit.
    pub threshold: u32,
    /// How long it stays open the first time.
    pub open_first: Duration,
    /// The longest it stays open.
    pub open_max: Duration,
}

impl Default for BreakerPolicy {
    /// Five failures in a row; open 30 s, doubling up to 5 min: a receiver
    /// back up is sent to again within five minutes, and one that is down
    /// gets a probe every five minutes instead of every due delivery.
    fn default() -> Self {
        Self {
            threshold: 5,
            open_first: Duration::from_secs(30),
            open_max: Duration::from_secs(300),
        }
    }
}

/// One destination's circuit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Breaker {
    /// Failures since the last success.
    pub failures: u32,
    /// While `Some`, the circuit is open (or half open once it has passed).
    pub open_until: Option<UnixMillis>,
    /// Times it opened since the last success (the next opening's length).
    pub openings: u32,
    /// A probe is out: other deliveries wait for its outcome.
    pub probing: bool,
    /// When the last failure ended (to forget a destination quiet since).
    pub last_failure: Option<UnixMillis>,
}

/// May a delivery go out now?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Yes (circuit closed).
    Send,
    /// Yes, as the one probe of a circuit whose open time is up.
    Probe,
    /// No: the circuit is open (or a probe is out) until then.
    Open {
        /// When the circuit is next half open.
        until: UnixMillis,
    },
}

impl Breaker {
    /// Whether a delivery may be sent at `now`, and the breaker after asking
    /// (a probe marks itself out).
    pub fn admit(self, now: UnixMillis) -> (Admit, Self) {
        match self.open_until {
            None => (Admit::Send, self),
            Some(until) if now < until || self.probing => (Admit::Open { until }, self),
            Some(_) => (
                Admit::Probe,
                Self {
                    probing: true,
                    ..self
                },
            ),
        }
    }

    /// The breaker after an attempt that ended at `now`, `probe` if it
    /// was the probe [`Breaker::admit`] let out. Any answer of a receiver
    /// that is up closes it; a failure counts, and opens it at the
    /// threshold, or again for longer when it was the probe.
    pub fn record(
        self,
        healthy: bool,
        probe: bool,
        now: UnixMillis,
        policy: &BreakerPolicy,
    ) -> Self {
        if healthy {
            return Self::default();
        }
        let counted = Self {
            failures: self.failures.saturating_add(1),
            last_failure: Some(now),
            ..self
        };
        match self.open_until {
            None if counted.failures < policy.threshold => return counted,
            // An attempt that left before the circuit opened, ending while
            // it is open (or while the probe is out): counted, but it
            // neither lengthens the opening nor answers for the probe.
            Some(_) if !probe => return counted,
            _ => {}
        }
        let shift = self.openings.min(16);
        let open_for = policy
            .open_first
            .saturating_mul(1u32 << shift)
            .min(policy.open_max);
        Self {
            open_until: Some(now.plus(open_for)),
            openings: self.openings.saturating_add(1),
            probing: false,
            ..counted
        }
    }

    /// A probe that never got to send (shut down, destination busy): let the
    /// next due delivery probe instead.
    pub fn probe_abandoned(self) -> Self {
        Self {
            probing: false,
            ..self
        }
    }

    /// Whether the circuit is open at `now` (for counts and the status page;
    /// a circuit whose time is up but whose probe has not answered is open).
    pub fn is_open(&self, now: UnixMillis) -> bool {
        self.open_until
            .is_some_and(|until| now < until || self.probing)
    }

    /// Whether the breaker says nothing worth keeping at `now`: not open,
    /// and no failure for `policy.open_max` (a receiver quiet that long is
    /// given a fresh start).
    pub fn is_forgettable(&self, now: UnixMillis, policy: &BreakerPolicy) -> bool {
        !self.is_open(now)
            && self
                .last_failure
                .is_none_or(|at| now.since(at) >= policy.open_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: UnixMillis = UnixMillis(1_700_000_000_000);
    const POLICY: BreakerPolicy = BreakerPolicy {
        threshold: 3,
        open_first: Duration::from_secs(10),
        open_max: Duration::from_secs(25),
    };

    fn secs(s: u64) -> UnixMillis {
        T0.plus(Duration::from_secs(s))
    }

    fn failed(b: Breaker, times: u32, at: UnixMillis) -> Breaker {
        (0..times).fold(b, |b, _| b.record(false, false, at, &POLICY))
    }

    #[test]
    fn a_closed_circuit_sends_and_failures_below_the_threshold_keep_it_closed() {
        let b = failed(Breaker::default(), 2, T0);
        assert_eq!(b.failures, 2);
        assert_eq!(b.admit(T0).0, Admit::Send);
        assert!(!b.is_open(T0));
    }

    #[test]
    fn the_threshold_opens_it_until_the_first_opening_is_up() {
        let b = failed(Breaker::default(), 3, T0);
        assert_eq!(b.open_until, Some(secs(10)));
        assert!(b.is_open(secs(9)));
        assert!(!b.is_open(secs(10)), "half open once the time is up");
        assert_eq!(b.admit(secs(9)).0, Admit::Open { until: secs(10) });
        assert_eq!(b.admit(T0).1, b, "asking while open changes nothing");
    }

    #[test]
    fn once_the_time_is_up_one_probe_goes_and_the_rest_wait_for_it() {
        let b = failed(Breaker::default(), 3, T0);
        let (first, b) = b.admit(secs(10));
        assert_eq!(first, Admit::Probe);
        assert!(b.is_open(secs(11)), "open while the probe is out");
        assert_eq!(b.admit(secs(11)).0, Admit::Open { until: secs(10) });
    }

    #[test]
    fn a_successful_probe_closes_it() {
        let (_, b) = failed(Breaker::default(), 3, T0).admit(secs(10));
        let b = b.record(true, true, secs(11), &POLICY);
        assert_eq!(b, Breaker::default());
        assert_eq!(b.admit(secs(11)).0, Admit::Send);
    }

    #[test]
    fn a_failed_probe_opens_it_again_for_longer_up_to_the_most() {
        let (_, b) = failed(Breaker::default(), 3, T0).admit(secs(10));
        let b = b.record(false, true, secs(12), &POLICY);
        assert_eq!(b.open_until, Some(secs(12 + 20)));
        assert!(!b.probing);
        let (_, b) = b.admit(secs(32));
        let b = b.record(false, true, secs(33), &POLICY);
        assert_eq!(b.open_until, Some(secs(33 + 25)), "capped at open_max");
        assert_eq!(b.failures, 5);
    }

    #[test]
    fn late_failures_of_attempts_sent_before_it_opened_do_not_lengthen_it() {
        let b = failed(Breaker::default(), 3, T0);
        let later = b.record(false, false, secs(5), &POLICY);
        assert_eq!(later.open_until, Some(secs(10)));
        assert_eq!(later.openings, 1);
        assert_eq!(later.failures, 4);
        // Nor, ending while the probe is out, does it answer for the probe.
        let (_, probing) = later.admit(secs(10));
        let old = probing.record(false, false, secs(11), &POLICY);
        assert!(old.probing, "the probe is still out");
        assert_eq!(old.open_until, Some(secs(10)));
    }

    #[test]
    fn an_abandoned_probe_lets_the_next_delivery_probe() {
        let (_, b) = failed(Breaker::default(), 3, T0).admit(secs(10));
        let b = b.probe_abandoned();
        assert_eq!(b.admit(secs(10)).0, Admit::Probe);
    }

    #[test]
    fn a_success_in_between_resets_the_count() {
        let b = failed(Breaker::default(), 2, T0).record(true, false, T0, &POLICY);
        let b = failed(b, 2, T0);
        assert_eq!(b.admit(T0).0, Admit::Send);
    }

    #[test]
    fn a_destination_quiet_for_the_longest_opening_is_forgotten() {
        let policy = BreakerPolicy {
            open_max: Duration::from_secs(60),
            ..POLICY
        };
        assert!(Breaker::default().is_forgettable(T0, &policy));
        let b = failed(Breaker::default(), 1, T0);
        assert!(!b.is_forgettable(secs(59), &policy));
        assert!(b.is_forgettable(secs(60), &policy));
        let open = failed(Breaker::default(), 3, T0);
        assert!(!open.is_forgettable(secs(9), &policy), "open: kept");
        assert!(!open.is_forgettable(secs(59), &policy));
        assert!(open.is_forgettable(secs(60), &policy));
        let (_, probing) = open.admit(secs(60));
        assert!(
            !probing.is_forgettable(secs(100), &policy),
            "probe out: kept"
        );
    }
}
