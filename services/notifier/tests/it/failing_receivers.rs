//! Issue 11's test of webhook retries that hold nothing: 12,000 jobs whose
//! webhooks keep failing, then a healthy job's webhook still arrives within
//! a second of its outcome, both right after the failing ones' first
//! attempts and while their retries fall due; and a healthy receiver's
//! retry, due among theirs, goes out within a second of its time.

use super::*;
use futures::StreamExt;
use helpers::Receiver;
use std::time::Instant;
use wire_contract::names::{RETRY_CONSUMER, RETRY_STREAM};
use wire_contract::notifier_answers::ask_webhook_status;

const FAILING: usize = 12_000;
/// How long the healthy webhook may take from its event to the receiver.
const PROMPT: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twelve_thousand_failing_webhooks_hold_up_no_one_elses() {
    let mut it = Harness::start_with(&[
        // A schedule that outlasts the test: held as delayed NAKs, the
        // failing deliveries would fill the consumer all along.
        ("WEBHOOK_RETRY_SCHEDULE", "0s,15s,15s,15s,1h"),
        ("WEBHOOK_CIRCUIT_FAILURES", "5"),
        ("WEBHOOK_CIRCUIT_OPEN", "10s"),
        ("WEBHOOK_CIRCUIT_OPEN_MAX", "10s"),
    ])
    .await;
    // Another port: another destination than the healthy hooks'.
    let failing = Receiver::start().await;
    failing.script("down", usize::MAX, 500);
    let down = failing.url("down");
    // A healthy receiver that fails once: its retry falls due among the
    // failing ones' (15 s after its first attempt, like theirs).
    it.receiver.script("flaky", 1, 500);
    it.job("flaky", Some("flaky"), Some(Reply::Deferred), now())
        .await;

    let started = Instant::now();
    let (jobs, js) = (&it.topology.jobs, &it.topology.js);
    futures::stream::iter(0..FAILING)
        .map(|i| {
            let id = format!("failing-{i}");
            let record = JobRecord {
                id: id.clone(),
                message: "a message".into(),
                webhook_url: Some(down.clone()),
                request_id: format!("req-{id}"),
                created_at: now(),
                reply: Some(Reply::Deferred),
                caller: None,
            };
            let event = JobEventV1 {
                job_id: id.clone(),
                message: "a message".into(),
                outcome: Outcome::Signed {
                    signature: "sig".into(),
                },
            };
            async move {
                save(jobs, &id, &record, 0).await.unwrap();
                js.publish_with_headers(
                    EVENTS_SUBJECT,
                    with_request_id(&record.request_id),
                    encode(&event),
                )
                .await
                .unwrap()
                .await
                .unwrap();
            }
        })
        .buffer_unordered(64)
        .collect::<()>()
        .await;
    println!("{FAILING} failing jobs stored in {:?}", started.elapsed());

    // Every event is taken and acked: waiting retries hold no place.
    it.drained_within(Duration::from_secs(60)).await;
    println!("all first attempts made after {:?}", started.elapsed());
    let sent = failing.requests("down").len();
    assert!(
        sent < 100,
        "the failing receiver's circuit opened: it got {sent} requests, not {FAILING}"
    );
    // Each has its next attempt on the retry index, none was dropped.
    for i in (0..FAILING).step_by(FAILING / 100) {
        let id = format!("failing-{i}");
        let record = load::<DeliveryRecord>(&it.topology.deliveries, "delivery", &id)
            .await
            .unwrap()
            .value
            .unwrap();
        assert_eq!(record.state, DeliveryState::Pending, "{id}");
        assert_eq!(record.attempts.len(), 1, "{id}");
        assert!(record.next_attempt_at > Some(record.attempts[0].at), "{id}");
    }
    let client = it.topology.js.client();
    let statuses = ask_webhook_status(&client, Duration::from_millis(500))
        .await
        .unwrap();
    let open: usize = statuses.iter().map(|s| s.circuits_open).sum();
    assert!(open >= 1, "the open circuit is reported: {statuses:?}");
    let port = down
        .split(':')
        .nth(2)
        .and_then(|p| p.split('/').next())
        .unwrap();
    assert!(
        statuses
            .iter()
            .flat_map(|s| &s.open)
            .any(|c| c.destination.ends_with(&format!(":{port}"))),
        "the failing destination is named: {statuses:?}"
    );

    let took = it.healthy_webhook("healthy-1").await;
    println!("healthy webhook after the failing ones' first attempts: {took:?}");
    assert!(took < PROMPT, "a healthy webhook took {took:?}");

    // Now while their retries fall due.
    it.retries_falling_due().await;
    let took = it.healthy_webhook("healthy-2").await;
    println!("healthy webhook while the retries fall due: {took:?}");
    assert!(took < PROMPT, "a healthy webhook took {took:?}");

    // The flaky receiver's retry, due among the failing ones' retries.
    let record = it.settled("flaky", DeliveryState::Delivered).await;
    let due = record.attempts[0].at.plus(Duration::from_secs(15));
    let requests = it.receiver.requests("flaky");
    let arrived = requests[1]
        .at
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    // Counted from the first attempt's start: a few ms earlier than due.
    let late = Duration::from_millis((arrived.as_millis() as u64).saturating_sub(due.0));
    println!("the healthy retry arrived {late:?} after it was due");
    assert!(
        late < PROMPT,
        "a healthy retry came {late:?} after it was due"
    );

    // The failing ones keep their schedule without being sent.
    it.attempted("failing-0", 2).await;
    let sent = failing.requests("down").len();
    assert!(
        sent < 100,
        "their second attempts were not sent: {sent} requests"
    );
    it.stop().await;
}

impl Harness {
    /// Wait until the retry consumer has begun taking due deliveries.
    async fn retries_falling_due(&self) {
        let js = self.topology.js.clone();
        eventually("retries to fall due", Duration::from_secs(60), || {
            let js = js.clone();
            async move {
                let stream = js.get_stream(RETRY_STREAM).await.ok()?;
                let info = stream.consumer_info(RETRY_CONSUMER).await.ok()?;
                (info.num_ack_pending + info.num_pending as usize > 100).then_some(())
            }
        })
        .await;
    }

    /// Publish a job owed a webhook to a healthy hook; how long until the
    /// receiver had it (measured to within the poll's 20 ms).
    async fn healthy_webhook(&self, id: &str) -> Duration {
        let started = Instant::now();
        self.job(id, Some(id), Some(Reply::Deferred), now()).await;
        let receiver = &self.receiver;
        eventually(
            &format!("{id}'s webhook"),
            Duration::from_secs(30),
            || async move { (!receiver.requests(id).is_empty()).then_some(()) },
        )
        .await;
        started.elapsed()
    }
}
