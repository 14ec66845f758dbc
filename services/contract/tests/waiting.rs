//! The waiting jobs against a real nats-server: listed in order once each,
//! forgotten up to what was listed, and a listing racing a purge by another
//! finisher ends instead of waiting for jobs that are gone.

use async_nats::jetstream;
use std::time::Duration;
use wire_contract::records::WaitingJob;
use wire_contract::{MessageKey, Topology, waiting};

mod common;

use common::nats;

fn job(i: usize) -> WaitingJob {
    WaitingJob {
        id: format!("job-{i}"),
        request_id: format!("req-{i}"),
        trace: None,
    }
}

async fn topology(url: &str) -> Topology {
    let js = jetstream::new(async_nats::connect(url).await.expect("connect"));
    Topology::ensure(js, 1, Duration::ZERO)
        .await
        .expect("topology")
}

#[tokio::test]
async fn jobs_are_listed_once_in_order_and_forgotten_up_to_the_listing() {
    let n = nats().await;
    let topo = topology(&n.url).await;
    let key = MessageKey::of("m");
    for i in 0..2500 {
        waiting::add(&topo.js, &key, &job(i), None)
            .await
            .expect("add");
    }
    // A redelivered request appends its job again: stored once.
    waiting::add(&topo.js, &key, &job(7), None)
        .await
        .expect("add");
    waiting::add(&topo.js, &MessageKey::of("other"), &job(9999), None)
        .await
        .expect("add");
    let listed = waiting::list(&topo.js, &key).await.expect("list");
    let ids: Vec<String> = listed.jobs.iter().map(|j| j.id.clone()).collect();
    assert_eq!(
        ids,
        (0..2500).map(|i| format!("job-{i}")).collect::<Vec<_>>()
    );
    // One more joins after the listing: forgetting keeps it.
    waiting::add(&topo.js, &key, &job(2500), None)
        .await
        .expect("add");
    waiting::forget(&topo.js, &key, listed.through)
        .await
        .expect("forget");
    let after = waiting::list(&topo.js, &key).await.expect("list");
    assert_eq!(after.jobs, vec![job(2500)]);
    assert_eq!(
        waiting::list(&topo.js, &MessageKey::of("other"))
            .await
            .expect("list")
            .jobs,
        vec![job(9999)]
    );
    assert_eq!(
        waiting::list(&topo.js, &MessageKey::of("none"))
            .await
            .expect("list"),
        waiting::Waiting::default()
    );
}

#[tokio::test]
async fn a_listing_racing_another_finishers_purge_ends() {
    let n = nats().await;
    let topo = topology(&n.url).await;
    let key = MessageKey::of("raced");
    for round in 0..5 {
        for i in 0..3000 {
            waiting::add(&topo.js, &key, &job(round * 10_000 + i), None)
                .await
                .expect("add");
        }
        let through = topo
            .js
            .get_stream(wire_contract::names::WAITING_STREAM)
            .await
            .expect("stream")
            .cached_info()
            .state
            .last_sequence;
        let (listed, purged) = tokio::join!(
            tokio::time::timeout(Duration::from_secs(10), waiting::list(&topo.js, &key)),
            async {
                tokio::task::yield_now().await;
                waiting::forget(&topo.js, &key, through).await
            }
        );
        purged.expect("purge");
        let listed = listed.expect("the listing ended").expect("list");
        assert!(
            listed.jobs.len() <= 3000,
            "round {round}: {}",
            listed.jobs.len()
        );
    }
}
