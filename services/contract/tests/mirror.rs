//! Following a bucket against a real nats-server: a mirror starts from what
//! is stored and keeps up with puts and deletes; a put feed sees only what
//! is written after it starts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use wire_contract::encode;
use wire_contract::mirror::{Mirror, follow_puts};

mod common;

use common::{bucket, nats};

/// Wait (up to 10 s) until `check` holds.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_mirror_starts_from_the_bucket_and_follows_puts_and_deletes() {
    let n = nats().await;
    let kv = bucket(&n.url).await;
    kv.put("a", encode(&1u32)).await.expect("put");
    kv.put("b", encode(&2u32)).await.expect("put");
    kv.put("gone", encode(&3u32)).await.expect("put");
    kv.delete("gone").await.expect("delete");

    let mirror = Arc::new(Mirror::<u32>::default());
    let shutdown = CancellationToken::new();
    let following = {
        let (mirror, kv, shutdown) = (Arc::clone(&mirror), kv.clone(), shutdown.clone());
        tokio::spawn(async move { mirror.follow(kv, "n", shutdown).await })
    };
    let is = |want: &[(&str, u32)]| {
        let want: HashMap<String, u32> = want.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
        *mirror.items() == want
    };
    eventually("the stored keys", || is(&[("a", 1), ("b", 2)])).await;

    kv.put("a", encode(&10u32)).await.expect("put");
    kv.delete("b").await.expect("delete");
    kv.put("c", encode(&4u32)).await.expect("put");
    eventually("the live changes", || is(&[("a", 10), ("c", 4)])).await;

    shutdown.cancel();
    following.await.expect("follow returns on shutdown");
}

#[tokio::test]
async fn a_put_feed_sees_only_new_values_and_skips_deletes_and_undecodable_ones() {
    let n = nats().await;
    let kv = bucket(&n.url).await;
    kv.put("old", encode(&1u32)).await.expect("put");

    let seen = Arc::new(Mutex::new(Vec::new()));
    let shutdown = CancellationToken::new();
    let feed = {
        let (seen, kv, shutdown) = (Arc::clone(&seen), kv.clone(), shutdown.clone());
        tokio::spawn(follow_puts(kv, "n", shutdown, move |key, value: u32| {
            seen.lock().expect("lock").push((key, value));
        }))
    };
    // The watch may start after a put made right away: put until one shows.
    let first = async {
        loop {
            kv.put("new", encode(&2u32)).await.expect("put");
            tokio::time::sleep(Duration::from_millis(50)).await;
            if !seen.lock().expect("lock").is_empty() {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), first)
        .await
        .expect("a new value");
    kv.delete("new").await.expect("delete");
    kv.put("bad", "not json".into()).await.expect("put");
    kv.put("last", encode(&3u32)).await.expect("put");
    eventually("the last put", || {
        seen.lock().expect("lock").iter().any(|(k, _)| k == "last")
    })
    .await;

    let seen = seen.lock().expect("lock").clone();
    assert!(seen.iter().all(|(k, _)| k != "old"), "no history: {seen:?}");
    assert!(seen.iter().all(|(k, _)| k != "bad"), "{seen:?}");
    assert_eq!(seen.last(), Some(&("last".to_owned(), 3)));
    assert!(
        seen.iter()
            .all(|(k, v)| k == "last" || (k == "new" && *v == 2))
    );
    shutdown.cancel();
    feed.await.expect("the feed returns on shutdown");
}
