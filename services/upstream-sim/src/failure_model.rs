//! The per-message failure model of the real upstream, as a pure function.
//!
//! The real API succeeds on the first call for a message about half of the
//! time; when it fails, that message answers 502 for a few minutes and then
//! recovers, independently of other messages. Here each message's fate is
//! drawn from a ChaCha stream seeded with SHA-256(seed ‖ message), so a given
//! seed reproduces the same outcomes whatever order messages arrive in. Time
//! is passed in (a monotonic offset from the simulator's start), which is what
//! lets tests step through a degradation without sleeping.

use std::time::Duration;

use rand::{Rng, SeedableRng, distributions::Standard};
use rand_chacha::ChaCha20Rng;
use sha2::{Digest, Sha256};

use crate::config::FailureSettings;

/// What the model remembers about a message after its first call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageState {
    /// The message signs on every call.
    Healthy,
    /// The message answers 502 until this time (offset from start).
    DegradedUntil(Duration),
}

/// How one sign call for a message is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Sign it (200).
    Sign,
    /// Answer 502; the message recovers at `until` (offset from start).
    Degraded {
        /// When the degradation ends.
        until: Duration,
    },
}

/// A message's fate, fixed by the seed and the message text alone.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MessageDraw {
    /// Whether the first call succeeds.
    pub first_try_succeeds: bool,
    /// How long the message stays degraded if it does not, already divided by
    /// the time scale.
    pub degraded_for: Duration,
}

/// The failure model: settings plus the seed.
#[derive(Debug, Clone)]
pub struct FailureModel {
    seed: u64,
    settings: FailureSettings,
}

impl FailureModel {
    /// A model drawing from `seed`.
    pub fn new(seed: u64, settings: FailureSettings) -> Self {
        Self { seed, settings }
    }

    /// The fate of `message`; the same for the same seed, always.
    pub fn draw(&self, message: &str) -> MessageDraw {
        let mut hasher = Sha256::new();
        hasher.update(self.seed.to_be_bytes());
        hasher.update(message.as_bytes());
        let mut rng = ChaCha20Rng::from_seed(hasher.finalize().into());

        let first_try_succeeds = rng.sample::<f64, _>(Standard) < self.settings.first_try_success;
        let min = self.settings.degraded_min.as_secs_f64();
        let max = self.settings.degraded_max.as_secs_f64();
        let unscaled = min + rng.sample::<f64, _>(Standard) * (max - min);
        MessageDraw {
            first_try_succeeds,
            degraded_for: Duration::from_secs_f64(unscaled / self.settings.time_scale),
        }
    }

    /// Answers a call for `message` arriving at `now`, given what is known
    /// about the message (`None` before its first call), and returns the
    /// state to remember.
    pub fn decide(
        &self,
        message: &str,
        now: Duration,
        prior: Option<MessageState>,
    ) -> (Verdict, MessageState) {
        match prior {
            None => {
                let draw = self.draw(message);
                if draw.first_try_succeeds {
                    (Verdict::Sign, MessageState::Healthy)
                } else {
                    let until = now.saturating_add(draw.degraded_for);
                    (
                        Verdict::Degraded { until },
                        MessageState::DegradedUntil(until),
                    )
                }
            }
            Some(MessageState::DegradedUntil(until)) if now < until => (
                Verdict::Degraded { until },
                MessageState::DegradedUntil(until),
            ),
            Some(_) => (Verdict::Sign, MessageState::Healthy),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(first_try_success: f64, time_scale: f64) -> FailureSettings {
        FailureSettings {
            first_try_success,
            degraded_min: Duration::from_secs(60),
            degraded_max: Duration::from_secs(300),
            time_scale,
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_fates() {
        let a = FailureModel::new(7, settings(0.5, 1.0));
        let b = FailureModel::new(7, settings(0.5, 1.0));
        let other = FailureModel::new(8, settings(0.5, 1.0));
        let messages: Vec<String> = (0..200).map(|i| format!("message-{i}")).collect();
        let fates = |m: &FailureModel| messages.iter().map(|s| m.draw(s)).collect::<Vec<_>>();
        assert_eq!(fates(&a), fates(&b));
        // Order of calls does not matter: draws are per message.
        let reversed: Vec<_> = messages.iter().rev().map(|s| b.draw(s)).rev().collect();
        assert_eq!(fates(&a), reversed);
        assert_ne!(fates(&a), fates(&other));
    }

    #[test]
    fn about_half_of_first_tries_succeed() {
        let model = FailureModel::new(1234, settings(0.5, 1.0));
        let n = 10_000;
        let ok = (0..n)
            .filter(|i| model.draw(&format!("m{i}")).first_try_succeeds)
            .count();
        let rate = ok as f64 / n as f64;
        assert!((0.47..=0.53).contains(&rate), "first-try rate {rate}");
    }

    #[test]
    fn degradations_are_drawn_within_bounds() {
        let model = FailureModel::new(99, settings(0.0, 1.0));
        for i in 0..1000 {
            let d = model.draw(&format!("m{i}")).degraded_for;
            assert!(
                d >= Duration::from_secs(60) && d <= Duration::from_secs(300),
                "{d:?}"
            );
        }
    }

    #[test]
    fn degradation_ends_after_its_scaled_duration() {
        // Scale 60: minutes become seconds.
        let model = FailureModel::new(5, settings(0.0, 60.0));
        let start = Duration::from_secs(1000);
        let degraded_for = model.draw("hello").degraded_for;
        assert!(degraded_for >= Duration::from_secs(1) && degraded_for <= Duration::from_secs(5));

        let (verdict, state) = model.decide("hello", start, None);
        let until = start + degraded_for;
        assert_eq!(verdict, Verdict::Degraded { until });

        let just_before = until - Duration::from_millis(1);
        let (verdict, state) = model.decide("hello", just_before, Some(state));
        assert_eq!(verdict, Verdict::Degraded { until });

        let (verdict, state) = model.decide("hello", until, Some(state));
        assert_eq!(verdict, Verdict::Sign);
        assert_eq!(state, MessageState::Healthy);

        // Recovered messages keep signing.
        let later = until + Duration::from_secs(3600);
        assert_eq!(model.decide("hello", later, Some(state)).0, Verdict::Sign);
    }

    #[test]
    fn a_message_that_succeeded_keeps_succeeding() {
        let model = FailureModel::new(5, settings(1.0, 1.0));
        let (verdict, mut state) = model.decide("hi", Duration::ZERO, None);
        assert_eq!(verdict, Verdict::Sign);
        for s in 1..100 {
            let (verdict, next) = model.decide("hi", Duration::from_secs(s), Some(state));
            assert_eq!(verdict, Verdict::Sign);
            state = next;
        }
    }
}
