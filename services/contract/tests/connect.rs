//! `connect` takes a comma-separated server list and reaches the servers
//! that answer.

mod common;

use common::{free_port, nats};
use std::time::Duration;

#[tokio::test]
async fn a_server_list_with_a_dead_first_entry_still_connects() {
    let n = nats().await;
    let dead = format!("nats://127.0.0.1:{}", free_port());
    let list = format!("{dead},{}", n.url);
    let topo = tokio::time::timeout(
        Duration::from_secs(20),
        wire_contract::connect(
            &wire_contract::NatsSettings {
                url: list,
                replicas: 1,
                signature_retention: std::time::Duration::ZERO,
                job_retention: wire_contract::topology::JOB_RETENTION,
            },
            "connect-test",
            Duration::from_secs(10),
        ),
    )
    .await
    .expect("connected in time")
    .expect("connected");
    topo.check()
        .await
        .expect("every stream and bucket is there");
}
