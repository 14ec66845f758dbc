//! Storage stays bounded, against a real nats-server: a removed key's
//! marker expires (every bucket allows TTL markers, including buckets made
//! by a version that did not), and results age out after
//! `SIGNATURE_RETENTION`.

use async_nats::jetstream::{self, kv};
use std::time::Duration;
use wire_contract::{Topology, names, remove, save};

mod common;

use common::nats;

/// Poll `bucket`'s stream until it holds at most `most` messages; fails
/// after 30 s.
async fn until_at_most(js: &jetstream::Context, bucket: &str, most: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let info = js
            .get_stream(format!("KV_{bucket}"))
            .await
            .expect("stream")
            .cached_info()
            .clone();
        if info.state.messages <= most {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{bucket} still holds {} messages",
            info.state.messages
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn removal_markers_expire_even_in_buckets_made_before_they_could() {
    let n = nats().await;
    let js = jetstream::new(async_nats::connect(&n.url).await.expect("connect"));
    // The work bucket as an older version made it: no TTL markers.
    js.create_key_value(kv::Config {
        bucket: names::WORK_BUCKET.into(),
        history: 1,
        ..Default::default()
    })
    .await
    .expect("old bucket");
    let topo = Topology::ensure(js.clone(), 1, Duration::ZERO)
        .await
        .expect("start-up updates the old bucket");
    let config = js
        .get_stream(format!("KV_{}", names::WORK_BUCKET))
        .await
        .expect("stream")
        .cached_info()
        .config
        .clone();
    assert!(config.allow_message_ttl, "{config:?}");
    assert_eq!(
        config.subject_delete_marker_ttl,
        Some(wire_contract::store::MARKER_TTL)
    );

    // `remove` works there and leaves one marker...
    let revision = save(&topo.work, "done", &"item", 0).await.expect("put");
    remove(&topo.work, "done", revision).await.expect("remove");
    assert_eq!(topo.work.get("done").await.expect("read"), None);
    let info = js
        .get_stream(format!("KV_{}", names::WORK_BUCKET))
        .await
        .expect("stream")
        .cached_info()
        .clone();
    assert_eq!(info.state.messages, 1, "the marker");
    // ...which, with a short time to live, the server deletes by itself:
    // the mechanism MARKER_TTL relies on.
    let revision = save(&topo.work, "soon", &"item", 0).await.expect("put");
    topo.work
        .purge_expect_revision_with_ttl("soon", revision, Duration::from_secs(1))
        .await
        .expect("purge");
    until_at_most(&js, names::WORK_BUCKET, 1).await;
    // A key written again after its marker is gone is created afresh.
    assert!(save(&topo.work, "soon", &"again", 0).await.is_ok());
}

#[tokio::test]
async fn results_age_out_after_the_signature_retention() {
    let n = nats().await;
    let js = jetstream::new(async_nats::connect(&n.url).await.expect("connect"));
    let topo = Topology::ensure(js.clone(), 1, Duration::from_secs(1))
        .await
        .expect("topology");
    save(&topo.results, "signed", &"signature", 0)
        .await
        .expect("put");
    save(&topo.work, "kept", &"item", 0).await.expect("put");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while topo.results.get("signed").await.expect("read").is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the result outlived a 1 s retention by 30 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // What stays is at most its marker, itself gone after MARKER_TTL.
    until_at_most(&js, names::RESULTS_BUCKET, 1).await;
    // Other buckets keep theirs.
    assert!(topo.work.get("kept").await.expect("read").is_some());
}
