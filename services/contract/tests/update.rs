//! `update` against a real nats-server: conflicts are detected by type (for
//! puts and deletes), retried with a fresh read, and a change function that
//! keeps the record writes nothing; an async change acts again on the
//! fresh read after a conflict.

use std::sync::Mutex;
use wire_contract::{Change, RecordError, Updated, load, remove, save, update, update_async};

mod common;

use common::{bucket, nats};

#[tokio::test]
async fn a_stale_write_or_delete_is_a_typed_conflict() {
    let n = nats().await;
    let kv = bucket(&n.url).await;
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
    let kv = bucket(&n.url).await;
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
    let kv = bucket(&n.url).await;
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

#[tokio::test]
async fn an_async_change_acts_again_on_the_record_that_beat_it() {
    let n = nats().await;
    let kv = bucket(&n.url).await;
    save(&kv, "k", &1u32, 0).await.expect("create");
    let current = load::<u32>(&kv, "n", "k").await.expect("load");
    let acted_on = Mutex::new(Vec::new());
    let gone = update_async(&kv, "n", "k", current, |v| {
        let (kv, acted_on, value, revision) = (&kv, &acted_on, v.value, v.revision);
        async move {
            let first = acted_on.lock().expect("lock").is_empty();
            acted_on.lock().expect("lock").push(value);
            if first {
                // Somebody writes while we act: our delete must not land.
                save(kv, "k", &2u32, revision).await?;
            }
            Ok::<_, RecordError>(Change::<u32>::Delete)
        }
    })
    .await
    .expect("update");
    assert_eq!(gone, Updated::Deleted);
    assert_eq!(
        *acted_on.lock().expect("lock"),
        vec![Some(1), Some(2)],
        "acted on what was read, then again on what beat it"
    );
    assert_eq!(load::<u32>(&kv, "n", "k").await.expect("load").value, None);
}
