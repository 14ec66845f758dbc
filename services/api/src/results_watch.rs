//! One shared watch on the results bucket, fanned out to waiting requests.
//!
//! Each KV watch is a consumer on the server, so requests do not open their
//! own: they subscribe to this broadcast and filter by message key. The
//! watch is recreated when it fails; a request that misses an update still
//! reads the bucket directly at its deadline.

use async_nats::jetstream::kv;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use wire_contract::mirror::follow_puts;
use wire_contract::records::ResultRecord;

/// A result as it lands: (message key, record).
pub type Landed = (String, ResultRecord);

/// Start following the results bucket; returns the sender to subscribe to.
pub fn spawn(store: kv::Store, shutdown: CancellationToken) -> broadcast::Sender<Landed> {
    let (tx, _) = broadcast::channel(4096);
    let sender = tx.clone();
    tokio::spawn(follow_puts(store, "result", shutdown, move |key, record: ResultRecord| {
        // No receivers is fine: nobody is waiting.
        let _ = tx.send((key, record));
    }));
    sender
}
