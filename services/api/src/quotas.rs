//! Per-caller request rates: a token bucket per caller that has
//! `rate_per_s` in `CALLERS` (governor's GCRA, the bucket's continuous
//! form). Each api replica keeps its own buckets, so with N replicas behind
//! a load balancer a caller gets up to N times its rate; the budget that
//! really matters, the upstream's, is shared and enforced by the signer.

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use service_kit::callers::Callers;
use std::collections::HashMap;
use std::time::Duration;

/// The buckets of the callers with a rate.
#[derive(Debug, Default)]
pub struct Quotas {
    buckets: HashMap<String, DefaultDirectRateLimiter>,
}

impl Quotas {
    /// A bucket per caller with a rate, full.
    pub fn new(callers: &Callers) -> Self {
        let buckets = callers
            .iter()
            .filter_map(|c| {
                let rate = c.rate?;
                let quota = Quota::per_second(rate.per_second).allow_burst(rate.burst);
                Some((c.name.clone(), RateLimiter::direct(quota)))
            })
            .collect();
        Self { buckets }
    }

    /// Take a token for `caller`'s request: `Err` with the wait until the
    /// next one when its bucket is empty. Callers without a rate always pass.
    pub fn admit(&self, caller: &str) -> Result<(), Duration> {
        match self.buckets.get(caller) {
            None => Ok(()),
            Some(bucket) => bucket
                .check()
                .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_caller_waits_and_others_do_not() {
        let key = "0".repeat(64);
        let other = "1".repeat(64);
        let callers = Callers::parse(&format!(
            r#"[{{"name": "slow", "key_sha256": ["{key}"], "rate_per_s": 1, "burst": 3}},
                {{"name": "free", "key_sha256": ["{other}"]}}]"#
        ))
        .expect("valid");
        let quotas = Quotas::new(&callers);
        for _ in 0..3 {
            assert_eq!(quotas.admit("slow"), Ok(()));
        }
        let wait = quotas.admit("slow").expect_err("the bucket is empty");
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        for _ in 0..100 {
            assert_eq!(quotas.admit("free"), Ok(()));
        }
        assert_eq!(quotas.admit("unknown"), Ok(()));
    }
}
