//! One shared watch on the results bucket, fanned out to waiting requests.
//!
//! Each KV watch is a consumer on the server, so requests do not open their
//! own: they subscribe to this broadcast and filter by message key. The
//! watch is recreated when it fails; a request that misses an update still
//! reads the bucket directly at its deadline.

use crate::result_cache::ResultCache;
use async_nats::jetstream::kv;
use std::sync::Arc;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use wire_contract::mirror::follow_puts;
use wire_contract::records::ResultRecord;

/// A result as it lands: (message key, record).
pub type Landed = (String, ResultRecord);

/// Start following the results bucket; returns the sender to subscribe to.
/// Every result also goes into `cache`.
pub fn spawn(
    store: kv::Store,
    cache: Arc<ResultCache>,
    shutdown: CancellationToken,
) -> broadcast::Sender<Landed> {
    let (tx, _) = broadcast::channel(4096);
    let sender = tx.clone();
    tokio::spawn(follow_puts(
        store,
        "result",
        shutdown,
        move |key, record: ResultRecord| {
            cache.insert(&key, record.outcome.clone());
            // No receivers is fine: nobody is waiting.
            let _ = tx.send((key, record));
        },
    ));
    sender
}
