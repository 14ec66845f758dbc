//! The product on a three-node JetStream cluster (`NATS_REPLICAS=3`): nodes
//! killed in the middle of a burst, and the loss of quorum.

use crate::checks::{Deliveries, all_promises_kept};
use crate::client::{burst, sign};
use crate::system::{Options, System, spawn_system};
use crate::{assert_mid_burst, messages};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use wire_contract::names;

fn cluster() -> Options {
    Options {
        nats_nodes: 3,
        ..Options::default()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

/// Upstream calls that arrived at the simulator in `[from_ms, to_ms]`.
async fn calls_between(sys: &System, from_ms: u64, to_ms: u64) -> Vec<serde_json::Value> {
    sys.audit_calls()
        .await
        .into_iter()
        .filter(|c| {
            c["arrived_at_ms"]
                .as_u64()
                .is_some_and(|at| at >= from_ms && at <= to_ms)
        })
        .collect()
}

#[tokio::test]
async fn on_a_cluster_killing_the_request_streams_leader_and_then_another_node_loses_nothing() {
    let mut sys = spawn_system(cluster()).await;
    // Start-up raised every stream and bucket to three replicas.
    for stream in [
        names::REQUESTS_STREAM.to_owned(),
        names::EVENTS_STREAM.to_owned(),
        format!("KV_{}", names::LIMITER_BUCKET),
        format!("KV_{}", names::JOBS_BUCKET),
    ] {
        assert_eq!(sys.nats.replicas_of(&stream, 0).await, 3, "{stream}");
    }
    let answers = burst(&sys, &messages("cluster-kill", 60)).await;
    sys.receiver
        .expect(Duration::from_secs(60), "10 webhooks", |d| d.len() >= 10)
        .await;
    assert_mid_burst(&sys, 60).await;
    let leader = sys.nats.leader_of(names::REQUESTS_STREAM, 0).await;
    eprintln!("killing n{leader}, leader of {}", names::REQUESTS_STREAM);
    sys.nats.nodes[leader].kill9();
    sys.receiver
        .expect(Duration::from_secs(60), "20 webhooks", |d| d.len() >= 20)
        .await;
    sys.nats.nodes[leader].restart();
    sys.nats.ready(leader).await;
    sys.receiver
        .expect(Duration::from_secs(60), "30 webhooks", |d| d.len() >= 30)
        .await;
    assert_mid_burst(&sys, 60).await;
    // Later, a second node (not the one just back).
    let second = (leader + 1) % 3;
    eprintln!("killing n{second}");
    sys.nats.nodes[second].kill9();
    sys.receiver
        .expect(Duration::from_secs(60), "40 webhooks", |d| d.len() >= 40)
        .await;
    sys.nats.nodes[second].restart();
    sys.nats.ready(second).await;
    let audit = all_promises_kept(&sys, &answers, Deliveries::OncePerWebhookId).await;
    eprintln!("cluster, n{leader} then n{second} killed mid-burst: audit {audit}");
    assert!(
        audit["max_in_window"].as_u64().unwrap_or(99) <= 10,
        "{audit}"
    );
}

#[tokio::test]
async fn without_quorum_new_messages_get_a_fast_503_known_ones_are_served_and_the_upstream_is_not_called()
 {
    let mut sys = spawn_system(cluster()).await;
    // A signature the api knows before the quorum goes.
    let known = sign(&sys, "known before the quorum went").await;
    let mut before = vec![known.clone()];
    if known.status == 202 {
        all_promises_kept(&sys, &before, Deliveries::ExactlyOnce).await;
    }
    let answers = burst(&sys, &messages("quorum", 40)).await;
    before.extend(answers);
    sys.receiver
        .expect(Duration::from_secs(60), "5 webhooks", |d| d.len() >= 5)
        .await;
    assert_mid_burst(&sys, 40).await;
    // Two of three nodes go: node 0 is left alone, a minority of one.
    sys.nats.nodes[1].kill9();
    sys.nats.nodes[2].kill9();
    let lost_at = now_ms();
    // New messages: refused fast and honestly while there is no quorum.
    for i in 0..5 {
        let a = sign(&sys, &format!("new while no quorum {i}")).await;
        assert_eq!(a.status, 503, "{}", a.body);
        assert_eq!(a.content_type, "application/problem+json");
        assert!(a.elapsed < Duration::from_secs(2), "{:?}", a.elapsed);
        assert!(
            a.retry_after
                .as_deref()
                .and_then(|v| v.parse::<u64>().ok())
                .is_some_and(|s| s >= 1),
            "{:?}",
            a.retry_after
        );
    }
    // A known signature is still served.
    let again = sign(&sys, "known before the quorum went").await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert!(again.elapsed < Duration::from_secs(2));
    // No limiter write can commit, so no upstream call is made: a call
    // already on the wire at the loss lands within its 2 s timeout; none
    // after that. Watched over five windows of the budget.
    let watch_from = lost_at + 2_500;
    let watched_until = watch_from + 5 * 3_000;
    while now_ms() < watched_until {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let during = calls_between(&sys, watch_from, watched_until).await;
    assert!(
        during.is_empty(),
        "upstream called without a quorum: {during:?}\n{}",
        sys.logs()
    );
    // Quorum returns: everything accepted before resumes and completes.
    sys.nats.nodes[1].restart();
    sys.nats.nodes[2].restart();
    sys.nats.ready(1).await;
    sys.nats.ready(2).await;
    let audit = all_promises_kept(&sys, &before, Deliveries::OncePerWebhookId).await;
    eprintln!("quorum lost for {} ms: audit {audit}", now_ms() - lost_at);
    let fresh = sign(&sys, "new once the quorum is back").await;
    assert!(fresh.status == 200 || fresh.status == 202, "{}", fresh.body);
}
