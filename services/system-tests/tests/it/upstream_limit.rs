//! The upstream limit as the upstream counts it, on arrival: under lag on
//! the way in (a proxy written here, and the simulator's own knob), with
//! several signer replicas, and when the limiter's state is lost mid-burst.
//! Judged by the simulator's arrival-time audit, not by the signers.

use crate::checks::{Deliveries, all_promises_kept};
use crate::client::burst;
use crate::messages;
use crate::system::{Options, System, spawn_system};
use std::time::Duration;

/// The signers' `UPSTREAM_TIMEOUT` in these tests is 2 s: holds stay 0.2 s
/// inside it, as the issue that found the fault describes.
const MAX_HOLD: Duration = Duration::from_millis(1_800);

fn report(what: &str, audit: &serde_json::Value) {
    eprintln!(
        "{what}: upstream calls {}, max in any window {}, violations {}",
        audit["calls"], audit["max_in_window"], audit["violations"]
    );
}

#[tokio::test]
async fn three_signers_behind_a_lagging_network_never_exceed_the_limit_on_arrival() {
    let sys = spawn_system(Options {
        signers: 3,
        seed: 21,
        lag: Some((0.34, MAX_HOLD)),
        ..Options::default()
    })
    .await;
    let answers = burst(&sys, &messages("lag", 60)).await;
    let audit = all_promises_kept(&sys, &answers, Deliveries::ExactlyOnce).await;
    report("3 signers, a third of requests held up to 1.8 s", &audit);
    assert!(
        audit["max_in_window"].as_u64().unwrap_or(99) <= 10,
        "{audit}"
    );
    assert_eq!(audit["signed_messages"].as_u64(), Some(60), "{audit}");
    // The scenario had real lag in it, near the timeout.
    let held = sys.lag.as_ref().map(|p| p.held()).unwrap_or_default();
    let long = held.iter().filter(|d| **d > Duration::from_secs(1)).count();
    assert!(long >= 5, "only {long} long holds of {}", held.len());
}

#[tokio::test]
async fn the_simulators_arrival_lag_knob_is_absorbed_within_the_limit() {
    let sys = spawn_system(Options {
        signers: 2,
        seed: 22,
        sim_env: vec![
            ("SIM_CHAOS_ARRIVAL_DELAY_P", "0.34"),
            ("SIM_CHAOS_ARRIVAL_DELAY_MAX", "1800ms"),
        ],
        ..Options::default()
    })
    .await;
    let answers = burst(&sys, &messages("sim-lag", 40)).await;
    let audit = all_promises_kept(&sys, &answers, Deliveries::ExactlyOnce).await;
    report("2 signers, simulator arrival lag up to 1.8 s", &audit);
    assert!(
        audit["max_in_window"].as_u64().unwrap_or(99) <= 10,
        "{audit}"
    );
    let calls = sys.audit_calls().await;
    assert!(
        !calls.is_empty(),
        "the simulator recorded no calls: the knob was not exercised"
    );
}

/// Wait, bounded, until the simulator has seen at least `n` calls.
async fn until_calls(sys: &System, n: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let audit = sys.audit().await;
        if audit["calls"].as_u64().unwrap_or(0) >= n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never saw {n} upstream calls: {audit}\n{}",
            sys.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn losing_the_limiter_state_mid_burst_does_not_restart_the_window() {
    let sys = spawn_system(Options {
        seed: 23,
        ..Options::default()
    })
    .await;
    let msgs = messages("lost-limiter", 30);
    let sending = {
        let sys = &sys;
        async move { burst(sys, &msgs).await }
    };
    let losing = async {
        // The window is full: ten calls made, more waiting.
        until_calls(&sys, 10).await;
        let client = async_nats::connect(sys.nats_url()).await.expect("nats");
        let js = async_nats::jetstream::new(client);
        let kv = js
            .get_key_value(wire_contract::names::LIMITER_BUCKET)
            .await
            .expect("limiter bucket");
        kv.delete(wire_contract::names::LIMITER_KEY)
            .await
            .expect("delete the limiter state");
        // New work at once: a signer that took the loss for an empty window
        // would spend ten more calls on it inside the same window.
        burst(&sys, &messages("after-loss", 10)).await
    };
    let (mut answers, more) = tokio::join!(sending, losing);
    answers.extend(more);
    let audit = all_promises_kept(&sys, &answers, Deliveries::ExactlyOnce).await;
    report("limiter state deleted mid-burst", &audit);
    assert!(
        audit["max_in_window"].as_u64().unwrap_or(99) <= 10,
        "{audit}"
    );
    // The signer noticed and rebuilt it, once.
    let signer = sys.metrics("signer").await;
    assert!(
        signer.contains("limiter_state_rebuilt_total 1"),
        "the limiter state was not rebuilt:\n{signer}"
    );
}
