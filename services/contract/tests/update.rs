//! `update` against a real nats-server: conflicts are detected by type (for
//! puts and deletes), retried with a fresh read, and a change function that
//! keeps the record writes nothing.

use async_nats::jetstream::{self, kv};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use wire_contract::{Change, RecordError, Updated, load, remove, save, update};

struct Nats {
    child: Child,
    dir: std::path::PathBuf,
    url: String,
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn nats() -> Nats {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let dir = std::env::temp_dir().join(format!("contract-update-{}-{port}", std::process::id()));
    let child = Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server must be on PATH (scripts/install-nats-server.sh)");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nats-server did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Nats {
        child,
        dir,
        url: format!("nats://127.0.0.1:{port}"),
    }
}

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
