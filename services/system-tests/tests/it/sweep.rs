//! The signer's sweep against a real nats-server: jobs left waiting behind
//! a finished message (no work item, a known result) are told and
//! forgotten; jobs of a message still pending, or still being taken in
//! (no result yet), are left alone.

use crate::nats_nodes::NatsNodes;
use crate::procs::TempDir;
use signer::sweep::sweep_once;
use signer::work_view::WorkView;
use std::time::Duration;
use wire_contract::messages::Outcome;
use wire_contract::records::{ResultRecord, WaitingJob, WorkItem};
use wire_contract::{MessageKey, Topology, UnixMillis, names, save, waiting};

fn job(id: &str) -> WaitingJob {
    WaitingJob {
        id: id.into(),
        request_id: format!("req-{id}"),
        trace: None,
    }
}

#[tokio::test]
async fn jobs_left_behind_a_finished_message_are_told_once_swept() {
    let dir = TempDir::new("sweep");
    let nats = NatsNodes::start(&dir.0, 1).await;
    let client = async_nats::connect(nats.url_list()).await.expect("connect");
    let topo = Topology::ensure(async_nats::jetstream::new(client), 1, Duration::ZERO)
        .await
        .expect("topology");
    let view = WorkView::default();

    // Finished: a result, no work item, two jobs left waiting.
    let finished = MessageKey::of("finished");
    for id in ["left-1", "left-2"] {
        waiting::add(&topo.js, &finished, &job(id), None)
            .await
            .expect("append");
    }
    let result = ResultRecord {
        message: "finished".into(),
        outcome: Outcome::Signed {
            signature: "sig".into(),
        },
        attempts: 1,
        at: UnixMillis(1),
    };
    save(&topo.results, finished.as_str(), &result, 0)
        .await
        .expect("result");
    // Still being taken in: jobs, no item, no result.
    let incoming = MessageKey::of("incoming");
    waiting::add(&topo.js, &incoming, &job("in-1"), None)
        .await
        .expect("append");
    // Pending: an item (in this replica's view) and a result that landed a
    // moment ago; the worker finishes it, not the sweep.
    let pending = MessageKey::of("pending");
    waiting::add(&topo.js, &pending, &job("p-1"), None)
        .await
        .expect("append");
    save(&topo.results, pending.as_str(), &result, 0)
        .await
        .expect("result");
    view.apply(
        pending.as_str(),
        Some(WorkItem::joined(
            None,
            &[job("p-1")],
            [],
            "pending",
            UnixMillis(0),
        )),
    );

    assert_eq!(sweep_once(&topo, &view).await, 1);
    let mut left: Vec<(String, u64)> = waiting::messages_waited_for(&topo.js)
        .await
        .expect("list")
        .into_iter()
        .map(|(k, n)| (k.as_str().to_owned(), n))
        .collect();
    left.sort();
    let mut want = vec![
        (incoming.as_str().to_owned(), 1),
        (pending.as_str().to_owned(), 1),
    ];
    want.sort();
    assert_eq!(left, want, "only the finished message's jobs are gone");
    let events = topo
        .js
        .get_stream(names::EVENTS_STREAM)
        .await
        .expect("events")
        .cached_info()
        .state
        .messages;
    assert_eq!(events, 2, "one event per left-behind job");
    // A second pass finds nothing more to do, and tells nobody twice.
    assert_eq!(sweep_once(&topo, &view).await, 0);
}
