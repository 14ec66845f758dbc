//! One shared watch on the results bucket, fanned out to waiting requests.
//!
//! Each KV watch is a consumer on the server, so requests do not open their
//! own: they subscribe to this broadcast and filter by message key. The
//! watch is recreated when it fails; a request that misses an update still
//! reads the bucket directly at its deadline.

use async_nats::jetstream::kv::{self, Operation};
use futures::StreamExt;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use wire_contract::decode;
use wire_contract::records::ResultRecord;

/// A result as it lands: (message key, record).
pub type Landed = (String, ResultRecord);

/// Start following the results bucket; returns the sender to subscribe to.
pub fn spawn(store: kv::Store, shutdown: CancellationToken) -> broadcast::Sender<Landed> {
    let (tx, _) = broadcast::channel(4096);
    let sender = tx.clone();
    tokio::spawn(async move {
        while !shutdown.is_cancelled() {
            let mut watch = match store.watch_all().await {
                Ok(w) => w,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch results; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(500)) => continue,
                        _ = shutdown.cancelled() => return,
                    }
                }
            };
            loop {
                let next = tokio::select! {
                    n = watch.next() => n,
                    _ = shutdown.cancelled() => return,
                };
                match next {
                    Some(Ok(entry)) if entry.operation == Operation::Put => {
                        match decode::<ResultRecord>("result", &entry.value) {
                            Ok(record) => {
                                // No receivers is fine: nobody is waiting.
                                let _ = tx.send((entry.key, record));
                            }
                            Err(e) => tracing::error!(key = %entry.key, error = %e, "undecodable result"),
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "results watch failed; recreating");
                        break;
                    }
                    None => break,
                }
            }
        }
    });
    sender
}
