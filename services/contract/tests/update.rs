//! `update` against a real nats-server: conflicts are detected by type (for
//! puts and deletes), retried with a fresh read, and a change function that
//! keeps the record writes nothing.

use async_nats::jetstream::{self, kv};
use wire_contract::{Change, RecordError, Updated, load, remove, save, update};

mod common;

use common::nats;

async fn store(url: &str) -> kv::Store {
    let js = jetstream::new(async_nats::connect(url).await.expect("connect"));
    js.create_key_value(kv::Config {
        bucket: "t".into(),
        ..Default::default()
    })
    .await
    .expect("bucket")
}

#[tokio::test]
async fn a_stale_write_or_delete_is_a_typed_conflict() {
    let n = nats().await;
    let kv = store(&n.url).await;
    let first = save(&kv, "k", &1u32, 0).await.expect("create");
    save(&kv, "k", &2u32, first).await.expect("update");
    assert!(matches!(
        save(&kv, "k", &3u32, first).await,
        Err(RecordError::Conflict)
    ));
    assert!(matches!(
        remove(&kv, "k", first).await,
        Err(RecordError::Conflict)
    ));
    assert!(matches!(
        save(&kv, "k", &3u32, 0).await,
        Err(RecordError::Conflict)
    ));
}

#[tokio::test]
async fn concurrent_updates_all_land_by_rereading() {
    let n = nats().await;
    let kv = store(&n.url).await;
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let kv = kv.clone();
            tokio::spawn(async move {
                update::<u32, _>(&kv, "counter", "c", |v| Some(v.copied().unwrap_or(0) + 1))
                    .await
                    .expect("update")
            })
        })
        .collect();
    for t in tasks {
        assert!(matches!(t.await.expect("task"), Updated::Written(_)));
    }
    let v = load::<u32>(&kv, "counter", "c").await.expect("load");
    assert_eq!(v.value, Some(20), "every increment landed once");
}

#[tokio::test]
async fn keep_writes_nothing_and_delete_removes() {
    let n = nats().await;
    let kv = store(&n.url).await;
    let rev = save(&kv, "k", &7u32, 0).await.expect("create");
    let kept = update::<u32, Change<u32>>(&kv, "n", "k", |_| Change::Keep)
        .await
        .expect("keep");
    assert_eq!(kept, Updated::Unchanged(Some(7)));
    assert_eq!(
        load::<u32>(&kv, "n", "k").await.expect("load").revision,
        rev
    );
    let gone = update::<u32, Change<u32>>(&kv, "n", "k", |v| match v {
        Some(7) => Change::Delete,
        _ => Change::Keep,
    })
    .await
    .expect("delete");
    assert_eq!(gone, Updated::Deleted);
    assert_eq!(load::<u32>(&kv, "n", "k").await.expect("load").value, None);
}
