//! Per-destination bounds and circuit breakers, shared by every delivery of
//! this replica.
//!
//! A delivery is bounded by its URL's `host:port` *and* by the address that
//! name resolved to: wildcard DNS can give one receiver any number of
//! names, but not any number of addresses. Each has at most
//! `per_destination` requests in flight and [`WAITERS_PER_PERMIT`] times
//! that many deliveries waiting for one; a delivery finding no waiting
//! place is not held but put back on the retry index (see [`crate::due`])
//! to come again shortly, without counting as an attempt. So however many
//! deliveries a receiver has, it holds a bounded share of this replica.
//!
//! The circuit breaker ([`crate::breaker`]) is the name's: behind one
//! address (a CDN, a shared webhook host) live receivers of many callers,
//! and one caller's dead origin must not stop the others' webhooks.

use crate::breaker::{Admit, Breaker, BreakerPolicy};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wire_contract::UnixMillis;
use wire_contract::notifier_answers::{MAX_SAMPLES, OpenCircuitV1};

/// Deliveries that may wait for a destination's permits, per permit: few,
/// since a waiting delivery holds its consumer's place.
pub const WAITERS_PER_PERMIT: usize = 4;

/// Where a delivery goes: its URL's name, and the address it resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// `host:port` of the URL (the circuit's key).
    pub name: String,
    /// The first vetted address the name resolved to, if it did (an IP
    /// literal URL is its own address).
    pub address: Option<String>,
}

impl Destination {
    /// The destination of `host:port` that resolved to `resolved`.
    pub fn new(host: &str, port: u16, resolved: Option<SocketAddr>) -> Self {
        let name = format!("{host}:{port}");
        let address = resolved
            .map(|a| SocketAddr::new(a.ip().to_canonical(), a.port()).to_string())
            .filter(|a| *a != name);
        Self { name, address }
    }

    fn keys(&self) -> impl Iterator<Item = &String> {
        std::iter::once(&self.name).chain(&self.address)
    }
}

/// What a delivery may do.
pub enum Entry<'a> {
    /// Send, holding these permits until the attempt is reported.
    Go(Pass<'a>),
    /// Do not send: the name's circuit is open until then.
    Open {
        /// When the circuit is next half open.
        until: UnixMillis,
        /// Failures in a row at that destination.
        failures: u32,
    },
    /// No room: come back later.
    Busy,
}

/// The right to make one attempt: permits for the name and the address.
/// Dropped without [`Pass::report`] (the attempt never went out), it gives
/// back the probe it had taken, so a circuit is never left waiting for a
/// probe that will not answer.
pub struct Pass<'a> {
    owner: &'a Destinations,
    name: String,
    probe: bool,
    permits: Vec<OwnedSemaphorePermit>,
    reported: bool,
}

impl Pass<'_> {
    /// The attempt ended at `now`; `healthy` unless the receiver failed
    /// (5xx, 429, timeout, connection error).
    pub fn report(mut self, healthy: bool, now: UnixMillis) {
        self.reported = true;
        let policy = self.owner.policy;
        if let Some(slot) = self.owner.slots().get_mut(&self.name) {
            slot.breaker = slot.breaker.record(healthy, self.probe, now, &policy);
        }
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        if !self.reported && self.probe {
            self.owner.abandon_probe(&self.name);
        }
    }
}

struct Slot {
    permits: Arc<Semaphore>,
    waiting: Arc<Semaphore>,
    breaker: Breaker,
}

impl Slot {
    /// Whether a delivery holds or awaits one of its permits: each holds a
    /// clone of `permits` from taking its waiting place until its attempt
    /// ends, so this also covers the waiting places.
    fn in_use(&self) -> bool {
        Arc::strong_count(&self.permits) > 1
    }
}

/// Every destination this replica has sent to lately.
pub struct Destinations {
    per_destination: usize,
    policy: BreakerPolicy,
    slots: Mutex<HashMap<String, Slot>>,
}

impl Destinations {
    /// At most `per_destination` requests in flight to any destination;
    /// circuits opened by `policy`.
    pub fn new(per_destination: usize, policy: BreakerPolicy) -> Self {
        Self {
            per_destination: per_destination.max(1),
            policy,
            slots: Mutex::new(HashMap::new()),
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn slot<'m>(&self, slots: &'m mut HashMap<String, Slot>, key: &str) -> &'m mut Slot {
        slots.entry(key.to_owned()).or_insert_with(|| Slot {
            permits: Arc::new(Semaphore::new(self.per_destination)),
            waiting: Arc::new(Semaphore::new(self.per_destination * WAITERS_PER_PERMIT)),
            breaker: Breaker::default(),
        })
    }

    /// Ask to send to `to` at `now`; waits only for permits it has a
    /// waiting place for, and looks at the circuit again once it has them.
    pub async fn enter(&self, to: &Destination, now: UnixMillis) -> Entry<'_> {
        let mut places = Vec::with_capacity(2);
        let mut semaphores = Vec::with_capacity(2);
        let probe = {
            let mut slots = self.slots();
            let name = self.slot(&mut slots, &to.name);
            let (admit, breaker) = name.breaker.admit(now);
            if let Admit::Open { until } = admit {
                return Entry::Open {
                    until,
                    failures: breaker.failures,
                };
            }
            name.breaker = breaker;
            let probe = admit == Admit::Probe;
            for key in to.keys() {
                let slot = self.slot(&mut slots, key);
                match Arc::clone(&slot.waiting).try_acquire_owned() {
                    Ok(place) => places.push(place),
                    Err(_) => {
                        if probe {
                            let name = self.slot(&mut slots, &to.name);
                            name.breaker = name.breaker.probe_abandoned();
                        }
                        return Entry::Busy;
                    }
                }
                semaphores.push(Arc::clone(&slot.permits));
            }
            probe
        };
        // Built before waiting: cancelled meanwhile, it gives its probe back.
        let mut pass = Pass {
            owner: self,
            name: to.name.clone(),
            probe,
            permits: Vec::with_capacity(semaphores.len()),
            reported: false,
        };
        // Always name, then address: no two deliveries each hold what the
        // other waits for.
        for semaphore in semaphores {
            match semaphore.acquire_owned().await {
                Ok(permit) => pass.permits.push(permit),
                Err(_) => return Entry::Busy, // never closed; only in theory
            }
        }
        drop(places);
        if !probe {
            // The circuit may have opened while this one waited: then it
            // is not sent either.
            let mut slots = self.slots();
            let breaker = self.slot(&mut slots, &to.name).breaker;
            if breaker.is_open(now) {
                return Entry::Open {
                    until: breaker.open_until.unwrap_or(now),
                    failures: breaker.failures,
                };
            }
        }
        Entry::Go(pass)
    }

    fn abandon_probe(&self, name: &str) {
        if let Some(slot) = self.slots().get_mut(name) {
            slot.breaker = slot.breaker.probe_abandoned();
        }
    }

    /// Forget destinations with nothing in use and nothing to remember
    /// (see [`Breaker::is_forgettable`]); returns how many are left.
    pub fn prune(&self, now: UnixMillis) -> usize {
        let mut slots = self.slots();
        slots.retain(|_, s| s.in_use() || !s.breaker.is_forgettable(now, &self.policy));
        slots.len()
    }

    /// How many circuits are open at `now`, or past their time but not yet
    /// closed by a healthy probe, and a few of them (most failures first).
    pub fn open_circuits(&self, now: UnixMillis) -> (usize, Vec<OpenCircuitV1>) {
        let slots = self.slots();
        let mut open: Vec<_> = slots
            .iter()
            .filter(|(_, s)| s.breaker.open_until.is_some())
            .map(|(key, s)| (key, s.breaker))
            .collect();
        let count = open.len();
        open.sort_by(|a, b| b.1.failures.cmp(&a.1.failures).then(a.0.cmp(b.0)));
        let samples = open
            .into_iter()
            .take(MAX_SAMPLES)
            .map(|(key, b)| OpenCircuitV1 {
                destination: key.clone(),
                failures: b.failures,
                until: b.open_until.unwrap_or(now).to_rfc3339(),
            })
            .collect();
        (count, samples)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const T0: UnixMillis = UnixMillis(1_700_000_000_000);
    const POLICY: BreakerPolicy = BreakerPolicy {
        threshold: 2,
        open_first: Duration::from_secs(10),
        open_max: Duration::from_secs(60),
    };

    fn to(name: &str, address: &str) -> Destination {
        let (host, port) = name.rsplit_once(':').unwrap_or((name, "80"));
        let port = port.parse().unwrap_or(80);
        Destination::new(host, port, address.parse().ok())
    }

    #[test]
    fn a_destination_is_its_name_and_the_address_it_resolved_to() {
        let d = to("a.example:443", "203.0.113.7:443");
        assert_eq!(d.name, "a.example:443");
        assert_eq!(d.address.as_deref(), Some("203.0.113.7:443"));
        assert_eq!(to("a.example:443", "").address, None);
        assert_eq!(to("203.0.113.7:443", "203.0.113.7:443").address, None);
        // One receiver, one address, however it is spelled.
        assert_eq!(
            to("b.example:80", "[::ffff:203.0.113.7]:80")
                .address
                .as_deref(),
            Some("203.0.113.7:80")
        );
    }

    #[tokio::test]
    async fn names_sharing_an_address_share_its_permits() {
        let d = Destinations::new(1, POLICY);
        let Entry::Go(first) = d.enter(&to("a.example:80", "1.2.3.4:80"), T0).await else {
            panic!("the first delivery goes");
        };
        let second = tokio::time::timeout(
            Duration::from_millis(50),
            d.enter(&to("b.example:80", "1.2.3.4:80"), T0),
        )
        .await;
        assert!(second.is_err(), "another name on the same address waits");
        let other = tokio::time::timeout(
            Duration::from_millis(50),
            d.enter(&to("c.example:80", "5.6.7.8:80"), T0),
        )
        .await;
        assert!(
            matches!(other, Ok(Entry::Go(_))),
            "another address does not"
        );
        first.report(true, T0);
    }

    #[tokio::test]
    async fn beyond_its_waiting_places_a_destination_is_busy_at_once() {
        let d = Arc::new(Destinations::new(1, POLICY));
        let h = to("h:80", "");
        let Entry::Go(_held) = d.enter(&h, T0).await else {
            panic!("first goes");
        };
        let mut waiters = Vec::new();
        for _ in 0..WAITERS_PER_PERMIT {
            let (d, h) = (Arc::clone(&d), h.clone());
            waiters.push(tokio::spawn(async move {
                // Holds its place (or its permit) until aborted.
                let _entry = d.enter(&h, T0).await;
                std::future::pending::<()>().await;
            }));
        }
        // Let every waiter take its place.
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        let next = tokio::time::timeout(Duration::from_millis(50), d.enter(&h, T0))
            .await
            .ok();
        assert!(
            matches!(next, Some(Entry::Busy)),
            "no place left: busy at once"
        );
        for w in waiters {
            w.abort();
        }
    }

    #[tokio::test]
    async fn a_failing_name_opens_its_own_circuit_only() {
        let d = Destinations::new(4, POLICY);
        for _ in 0..2 {
            let Entry::Go(pass) = d.enter(&to("bad:80", "9.9.9.9:80"), T0).await else {
                panic!("closed: goes");
            };
            pass.report(false, T0);
        }
        let open = d.enter(&to("bad:80", "9.9.9.9:80"), T0).await;
        assert!(
            matches!(open, Entry::Open { until, failures: 2 } if until == T0.plus(Duration::from_secs(10))),
            "the failing name is not sent to"
        );
        let neighbour = d.enter(&to("good:80", "9.9.9.9:80"), T0).await;
        assert!(
            matches!(neighbour, Entry::Go(_)),
            "another caller's receiver on the same address still is"
        );
        let (count, samples) = d.open_circuits(T0);
        assert_eq!(count, 1);
        assert_eq!(samples[0].destination, "bad:80");
    }

    #[tokio::test]
    async fn a_circuit_that_opened_while_a_delivery_waited_stops_it_too() {
        let d = Arc::new(Destinations::new(
            1,
            BreakerPolicy {
                threshold: 1,
                ..POLICY
            },
        ));
        let bad = to("bad:80", "");
        let Entry::Go(first) = d.enter(&bad, T0).await else {
            panic!("first goes");
        };
        let waiting = {
            let (d, bad) = (Arc::clone(&d), bad.clone());
            tokio::spawn(async move { matches!(d.enter(&bad, T0).await, Entry::Open { .. }) })
        };
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        first.report(false, T0);
        assert!(
            waiting.await.unwrap_or(false),
            "not sent once the circuit opened"
        );
    }

    #[tokio::test]
    async fn a_probe_that_never_went_lets_another_probe() {
        let d = Destinations::new(4, POLICY);
        let bad = to("bad:80", "");
        for _ in 0..2 {
            if let Entry::Go(pass) = d.enter(&bad, T0).await {
                pass.report(false, T0);
            }
        }
        let later = T0.plus(Duration::from_secs(10));
        let Entry::Go(probe) = d.enter(&bad, later).await else {
            panic!("the probe goes");
        };
        assert!(matches!(d.enter(&bad, later).await, Entry::Open { .. }));
        drop(probe); // never sent
        let Entry::Go(probe) = d.enter(&bad, later).await else {
            panic!("another probe goes");
        };
        probe.report(true, later);
        assert_eq!(d.open_circuits(later).0, 0, "a healthy probe closes it");
    }

    #[tokio::test]
    async fn a_destination_in_use_is_never_forgotten() {
        let d = Destinations::new(1, POLICY);
        let h = to("h:80", "1.2.3.4:80");
        let Entry::Go(held) = d.enter(&h, T0).await else {
            panic!("goes");
        };
        let far = T0.plus(Duration::from_secs(3600));
        assert_eq!(
            d.prune(far),
            2,
            "name and address kept while a permit is out"
        );
        let again = tokio::time::timeout(Duration::from_millis(50), d.enter(&h, far)).await;
        assert!(again.is_err(), "still bounded by the held permit");
        drop(held);
        assert_eq!(d.prune(far), 0);
    }

    #[tokio::test]
    async fn an_attempt_from_before_the_circuit_opened_does_not_free_the_probe() {
        let d = Destinations::new(4, POLICY);
        let bad = to("bad:80", "");
        let Entry::Go(early) = d.enter(&bad, T0).await else {
            panic!("closed: goes");
        };
        for _ in 0..2 {
            if let Entry::Go(pass) = d.enter(&bad, T0).await {
                pass.report(false, T0);
            }
        }
        let later = T0.plus(Duration::from_secs(10));
        let Entry::Go(_probe) = d.enter(&bad, later).await else {
            panic!("the probe goes");
        };
        drop(early); // never sent: it had no probe to give back
        assert!(
            matches!(d.enter(&bad, later).await, Entry::Open { .. }),
            "one probe at a time"
        );
    }

    #[tokio::test]
    async fn quiet_destinations_are_forgotten_open_ones_kept() {
        let d = Destinations::new(4, POLICY);
        if let Entry::Go(pass) = d.enter(&to("ok:80", "1.1.1.1:80"), T0).await {
            pass.report(true, T0);
        }
        for _ in 0..2 {
            if let Entry::Go(pass) = d.enter(&to("bad:80", ""), T0).await {
                pass.report(false, T0);
            }
        }
        assert_eq!(d.prune(T0), 1, "only the open circuit is kept");
        assert_eq!(d.prune(T0.plus(Duration::from_secs(60))), 0);
    }
}
