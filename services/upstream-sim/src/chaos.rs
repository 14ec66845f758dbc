//! Faults beyond the documented failure model, for hardening the gateway.
//!
//! A real flaky dependency does more than answer 502: it stalls, drops
//! connections, returns 500s and serves error pages with a 200. Each fault is
//! a per-call probability (all zero by default, so the simulator behaves like
//! the documented API unless asked). The draw is a pure function of an RNG
//! the caller owns, so a seeded run injects the same faults in the same
//! order of calls.

use std::time::Duration;

use rand::{Rng, distributions::Standard};

use crate::config::ChaosSettings;

/// A fault that replaces the normal answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Never answer (until shutdown).
    Hang,
    /// Cut the connection without a complete response.
    Reset,
    /// Answer 500.
    Status500,
    /// Answer 200 with a body that is not a signature.
    Garbage,
}

/// What chaos does to one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Plan {
    /// Wait this long before answering.
    pub delay: Option<Duration>,
    /// Answer with this fault instead of the normal answer.
    pub fault: Option<Fault>,
}

/// The body served by the garbage fault: an HTML error page, as a misbehaving
/// proxy would send.
pub const GARBAGE_BODY: &str = "<html>oops</html>";

/// Draws the chaos for one call. Every fault gets its own independent draw
/// (always the same number of draws per call); if several hit, the most
/// disruptive wins: hang, then reset, then 500, then garbage.
pub fn plan<R: Rng + ?Sized>(settings: &ChaosSettings, rng: &mut R) -> Plan {
    let mut hit = |p: f64| rng.sample::<f64, _>(Standard) < p;
    let delay = hit(settings.latency_p).then_some(settings.latency);
    let hang = hit(settings.hang_p);
    let reset = hit(settings.reset_p);
    let status_500 = hit(settings.status_500_p);
    let garbage = hit(settings.garbage_p);
    let fault = [
        (hang, Fault::Hang),
        (reset, Fault::Reset),
        (status_500, Fault::Status500),
        (garbage, Fault::Garbage),
    ]
    .into_iter()
    .find_map(|(hit, fault)| hit.then_some(fault));
    Plan { delay, fault }
}

/// How long to hold one call before it counts as arrived: lag on the way
/// in. Drawn for every call (one draw, plus one for the length when it hits),
/// before anything else is decided.
pub fn arrival_delay<R: Rng + ?Sized>(settings: &ChaosSettings, rng: &mut R) -> Option<Duration> {
    if settings.arrival_delay_p <= 0.0 || rng.sample::<f64, _>(Standard) >= settings.arrival_delay_p
    {
        return None;
    }
    let max = settings.arrival_delay_max.as_millis() as u64;
    Some(Duration::from_millis(rng.gen_range(0..=max)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn settings() -> ChaosSettings {
        ChaosSettings {
            latency_p: 0.0,
            latency: Duration::from_secs(3),
            hang_p: 0.0,
            status_500_p: 0.0,
            garbage_p: 0.0,
            reset_p: 0.0,
            arrival_delay_p: 0.0,
            arrival_delay_max: Duration::from_secs(2),
        }
    }

    #[test]
    fn arrival_delays_hit_at_their_rate_and_stay_within_the_bound() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        assert_eq!(arrival_delay(&settings(), &mut rng), None);
        let some = ChaosSettings {
            arrival_delay_p: 0.3,
            ..settings()
        };
        let draws: Vec<Duration> = (0..10_000)
            .filter_map(|_| arrival_delay(&some, &mut rng))
            .collect();
        let rate = draws.len() as f64 / 10_000.0;
        assert!((0.28..=0.32).contains(&rate), "{rate}");
        assert!(draws.iter().all(|d| *d <= Duration::from_secs(2)));
        assert!(draws.iter().any(|d| *d > Duration::from_millis(1_900)));
    }

    #[test]
    fn no_chaos_by_default() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        for _ in 0..1000 {
            assert_eq!(plan(&settings(), &mut rng), Plan::default());
        }
    }

    #[test]
    fn certain_faults_always_fire_most_disruptive_first() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let all = ChaosSettings {
            latency_p: 1.0,
            hang_p: 1.0,
            status_500_p: 1.0,
            garbage_p: 1.0,
            reset_p: 1.0,
            ..settings()
        };
        let p = plan(&all, &mut rng);
        assert_eq!(p.delay, Some(Duration::from_secs(3)));
        assert_eq!(p.fault, Some(Fault::Hang));
        let garbage_only = ChaosSettings {
            garbage_p: 1.0,
            ..settings()
        };
        assert_eq!(plan(&garbage_only, &mut rng).fault, Some(Fault::Garbage));
    }

    #[test]
    fn rates_follow_probabilities() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let some = ChaosSettings {
            status_500_p: 0.2,
            ..settings()
        };
        let n = 10_000;
        let hits = (0..n)
            .filter(|_| plan(&some, &mut rng).fault == Some(Fault::Status500))
            .count();
        let rate = hits as f64 / n as f64;
        assert!((0.18..=0.22).contains(&rate), "{rate}");
    }
}
