//! End to end against a real nats-server and a real HTTP receiver: the
//! notifier retries through failures, never webhooks a 200 caller, claims
//! jobs the api never answered, dead-letters what cannot be delivered, and
//! can redrive it (also on an operator's `nats req webhooks.redrive`).

#![allow(clippy::unwrap_used)]

mod failing_receivers;
mod helpers;

use async_nats::jetstream;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use helpers::{NatsServer, Receiver, eventually};
use hmac::{Hmac, Mac};
use notifier::redrive_service::{RedriveReply, Skipped};
use notifier::{Config, DeadLetterV1, Redriven};
use sha2::Sha256;
use std::collections::HashMap;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use wire_contract::headers::with_request_id;
use wire_contract::messages::{JobEventV1, Outcome};
use wire_contract::names::{
    DEAD_LETTER_STREAM, EVENTS_STREAM, EVENTS_SUBJECT, NOTIFIER_CONSUMER, REDRIVE_SUBJECT,
};
use wire_contract::records::{DeliveryRecord, DeliveryState, JobRecord, Reply};
use wire_contract::time::{Clock, SystemClock};
use wire_contract::{Topology, UnixMillis, decode, encode, load, save};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const WAIT: Duration = Duration::from_secs(20);

struct Harness {
    config: Config,
    topology: Topology,
    receiver: Receiver,
    shutdown: CancellationToken,
    run: tokio::task::JoinHandle<Result<(), notifier::Error>>,
    // Last: dropped (killed) after everything that talks to it.
    nats: NatsServer,
}

impl Harness {
    async fn start() -> Self {
        Self::start_with(&[]).await
    }

    async fn start_with(overrides: &[(&'static str, &str)]) -> Self {
        // `RUST_LOG=notifier=debug cargo test -p notifier -- --nocapture` to watch.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let nats = NatsServer::start().await;
        let client = async_nats::connect(nats.url.as_str()).await.unwrap();
        let topology = Topology::ensure(jetstream::new(client), 1, Duration::ZERO)
            .await
            .unwrap();
        let receiver = Receiver::start().await;
        let vars: HashMap<&str, String> = [
            ("NATS_URL", nats.url.clone()),
            ("WEBHOOK_SECRET", SECRET.to_owned()),
            ("WEBHOOK_REQUIRE_SECRET", "true".to_owned()),
            ("WEBHOOK_RETRY_SCHEDULE", "0s,100ms,100ms,100ms".to_owned()),
            ("WEBHOOK_RETRY_JITTER", "0".to_owned()),
            ("WEBHOOK_ALLOWED_CIDRS", "127.0.0.0/8".to_owned()),
            ("WEBHOOK_TIMEOUT", "5s".to_owned()),
            ("REPLY_GRACE", "2s".to_owned()),
            ("NOTIFIER_ID", "it".to_owned()),
            // Circuits stay closed unless a test is about them: the others
            // count every attempt at the receiver.
            ("WEBHOOK_CIRCUIT_FAILURES", "1000".to_owned()),
        ]
        .into_iter()
        .chain(overrides.iter().map(|(k, v)| (*k, (*v).to_owned())))
        .collect();
        let config = Config::from_env_with(&notifier::config::Env::from_map(vars)).unwrap();
        let shutdown = CancellationToken::new();
        let run = tokio::spawn(notifier::run(
            config.clone(),
            topology.clone(),
            shutdown.clone(),
        ));
        Self {
            config,
            topology,
            receiver,
            shutdown,
            run,
            nats,
        }
    }

    /// Store a job record and publish its outcome event, as api and signer would.
    async fn job(
        &self,
        id: &str,
        hook: Option<&str>,
        reply: Option<Reply>,
        created_at: UnixMillis,
    ) {
        let record = JobRecord {
            id: id.to_owned(),
            message: format!("message of {id}"),
            webhook_url: hook.map(|h| self.receiver.url(h)),
            request_id: format!("req-{id}"),
            created_at,
            reply,
            caller: None,
        };
        save(&self.topology.jobs, id, &record, 0).await.unwrap();
        self.publish(id, format!("sig-{id}")).await;
    }

    async fn publish(&self, id: &str, signature: String) {
        let event = JobEventV1 {
            job_id: id.to_owned(),
            message: format!("message of {id}"),
            outcome: Outcome::Signed { signature },
        };
        self.topology
            .js
            .publish_with_headers(
                EVENTS_SUBJECT,
                with_request_id(&format!("req-{id}")),
                encode(&event),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }

    /// Wait until `id`'s delivery record is in `state`.
    async fn settled(&self, id: &str, state: DeliveryState) -> DeliveryRecord {
        let deliveries = self.topology.deliveries.clone();
        eventually(&format!("{id} to be {state:?}"), WAIT, || {
            let deliveries = deliveries.clone();
            async move {
                let r = load::<DeliveryRecord>(&deliveries, "delivery", id)
                    .await
                    .ok()?
                    .value?;
                (r.state == state).then_some(r)
            }
        })
        .await
    }

    /// Wait until the consumer has nothing pending or unacknowledged.
    async fn drained(&self) {
        self.drained_within(WAIT).await;
    }

    /// The same, waiting up to `limit`.
    async fn drained_within(&self, limit: Duration) {
        let js = self.topology.js.clone();
        eventually("the notifier to settle every event", limit, || {
            let js = js.clone();
            async move {
                let stream = js.get_stream(EVENTS_STREAM).await.ok()?;
                let info = stream.consumer_info(NOTIFIER_CONSUMER).await.ok()?;
                (info.num_pending == 0 && info.num_ack_pending == 0).then_some(())
            }
        })
        .await;
    }

    async fn stop(&mut self) {
        self.shutdown.cancel();
        let result = tokio::time::timeout(Duration::from_secs(15), &mut self.run).await;
        assert!(
            matches!(result, Ok(Ok(Ok(())))),
            "run must return Ok on shutdown: {result:?}"
        );
    }

    /// Start a new notifier (after [`Harness::stop`]), as a restart would.
    fn respawn(&mut self) {
        self.shutdown = CancellationToken::new();
        self.run = tokio::spawn(notifier::run(
            self.config.clone(),
            self.topology.clone(),
            self.shutdown.clone(),
        ));
    }

    /// Wait until `id`'s delivery record has `count` attempts.
    async fn attempted(&self, id: &str, count: usize) -> DeliveryRecord {
        let deliveries = self.topology.deliveries.clone();
        eventually(&format!("{id} to have {count} attempts"), WAIT, || {
            let deliveries = deliveries.clone();
            async move {
                let r = load::<DeliveryRecord>(&deliveries, "delivery", id)
                    .await
                    .ok()?
                    .value?;
                (r.attempts.len() == count).then_some(r)
            }
        })
        .await
    }

    /// Ask the notifier to redrive, as `nats req webhooks.redrive <payload>`
    /// does, and decode the reply.
    async fn redrive_request(&self, payload: &str) -> serde_json::Value {
        let reply = self
            .topology
            .js
            .client()
            .request(REDRIVE_SUBJECT, payload.to_owned().into())
            .await
            .unwrap();
        serde_json::from_slice(&reply.payload).unwrap()
    }
}

/// The `webhook-id` header of each request.
fn webhook_ids(requests: &[helpers::Received]) -> Vec<String> {
    requests
        .iter()
        .map(|r| {
            r.headers
                .get("webhook-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        })
        .collect()
}

fn now() -> UnixMillis {
    SystemClock.now()
}

/// Verify a `webhook-signature` independently, from the spec's definition.
fn signature_ok(headers: &axum::http::HeaderMap, body: &[u8]) -> bool {
    let h = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let key = STANDARD
        .decode(SECRET.trim_start_matches("whsec_"))
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.", h("webhook-id"), h("webhook-timestamp")).as_bytes());
    mac.update(body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    h("webhook-signature").split(' ').any(|s| s == expected)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_owed_to_202_callers_only_and_retried_until_delivered() {
    let mut it = Harness::start().await;

    // Answered 202; the receiver fails three times with 500, then takes it.
    it.receiver.script("flaky", 3, 500);
    it.job("job-deferred", Some("flaky"), Some(Reply::Deferred), now())
        .await;
    // Answered 200: no webhook, ever.
    it.job(
        "job-immediate",
        Some("immediate"),
        Some(Reply::Immediate),
        now(),
    )
    .await;
    // Never answered (the api died): claimed after the grace, then delivered.
    it.job(
        "job-orphan",
        Some("orphan"),
        None,
        now().minus(Duration::from_secs(10)),
    )
    .await;
    // Still inside the grace when the api answers 200: no webhook.
    it.job("job-late-200", Some("late-200"), None, now()).await;
    let late = load::<JobRecord>(&it.topology.jobs, "job", "job-late-200")
        .await
        .unwrap();
    let mut answered = late.value.unwrap();
    answered.reply = Some(Reply::Immediate);
    save(&it.topology.jobs, "job-late-200", &answered, late.revision)
        .await
        .unwrap();

    // Claimed 200 but unconfirmed in time, so answered 202 after all: the
    // api overrules its own claim within the grace, and a webhook is owed.
    it.job(
        "job-corrected",
        Some("corrected"),
        Some(Reply::Immediate),
        now(),
    )
    .await;
    let claimed = load::<JobRecord>(&it.topology.jobs, "job", "job-corrected")
        .await
        .unwrap();
    let corrected = claimed
        .value
        .as_ref()
        .and_then(JobRecord::answered_202)
        .unwrap();
    save(
        &it.topology.jobs,
        "job-corrected",
        &corrected,
        claimed.revision,
    )
    .await
    .unwrap();

    let record = it.settled("job-deferred", DeliveryState::Delivered).await;
    let statuses: Vec<Option<u16>> = record.attempts.iter().map(|a| a.status).collect();
    assert_eq!(statuses, vec![Some(500), Some(500), Some(500), Some(200)]);
    assert_eq!(record.next_attempt_at, None);

    let requests = it.receiver.requests("flaky");
    assert_eq!(requests.len(), 4, "exactly four attempts, one successful");
    for r in &requests {
        let header = |n: &str| {
            r.headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        assert_eq!(
            header("webhook-id"),
            "job-deferred",
            "same webhook-id on every attempt"
        );
        assert_eq!(header("x-request-id"), "req-job-deferred");
        assert_eq!(header("content-type"), "application/json");
        assert!(header("user-agent").starts_with("signing-gateway-webhooks/"));
        let sent_at: u64 = header("webhook-timestamp").parse().unwrap();
        assert!(sent_at.abs_diff(now().0 / 1000) < 60);
        assert!(signature_ok(&r.headers, &r.body), "signature verifies");
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["type"], "signature.completed");
        assert_eq!(body["data"]["id"], "job-deferred");
        assert_eq!(body["data"]["message"], "message of job-deferred");
        assert_eq!(body["data"]["signature"], "sig-job-deferred");
        assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
    }

    // The same event again (a redelivery after a crash looks like this):
    // the record says Delivered, so nothing is sent.
    it.publish("job-deferred", "sig-job-deferred".into()).await;
    it.drained().await;
    assert_eq!(
        it.receiver.requests("flaky").len(),
        4,
        "a settled delivery is not repeated"
    );

    let record = it
        .settled("job-immediate", DeliveryState::NotRequired)
        .await;
    assert!(record.attempts.is_empty());
    assert!(it.receiver.requests("immediate").is_empty());

    it.settled("job-corrected", DeliveryState::Delivered).await;
    assert_eq!(it.receiver.requests("corrected").len(), 1);

    it.settled("job-orphan", DeliveryState::Delivered).await;
    assert_eq!(it.receiver.requests("orphan").len(), 1);
    let claimed = load::<JobRecord>(&it.topology.jobs, "job", "job-orphan")
        .await
        .unwrap()
        .value
        .unwrap();
    assert_eq!(
        claimed.reply,
        Some(Reply::Deferred),
        "the notifier claimed the unanswered job"
    );

    it.settled("job-late-200", DeliveryState::NotRequired).await;
    assert!(it.receiver.requests("late-200").is_empty());

    it.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undeliverable_webhooks_are_dead_lettered_and_can_be_redriven() {
    let mut it = Harness::start().await;

    // 410 Gone: no retries, dead-lettered.
    it.receiver.script("gone", 1, 410);
    it.job("job-gone", Some("gone"), Some(Reply::Deferred), now())
        .await;
    let record = it.settled("job-gone", DeliveryState::Failed).await;
    assert_eq!(record.attempts.len(), 1);
    assert_eq!(record.attempts[0].status, Some(410));

    // Always 500: the whole schedule (4 attempts), then dead-lettered.
    it.receiver.script("down", usize::MAX, 500);
    it.job("job-down", Some("down"), Some(Reply::Deferred), now())
        .await;
    let record = it.settled("job-down", DeliveryState::Failed).await;
    assert_eq!(record.attempts.len(), 4);
    assert_eq!(it.receiver.requests("down").len(), 4);

    // A private address outside the allow-list: refused, never called.
    let refused = JobRecord {
        id: "job-refused".into(),
        message: "message of job-refused".into(),
        webhook_url: Some("http://10.0.0.1/hook".into()),
        request_id: "req-job-refused".into(),
        created_at: now(),
        reply: Some(Reply::Deferred),
        caller: None,
    };
    save(&it.topology.jobs, "job-refused", &refused, 0)
        .await
        .unwrap();
    it.publish("job-refused", "sig".into()).await;
    let record = it.settled("job-refused", DeliveryState::Failed).await;
    assert_eq!(record.attempts.len(), 1);
    let error = record.attempts[0].error.clone().unwrap_or_default();
    assert!(
        error.starts_with("refused target:") && error.contains("private"),
        "{error}"
    );

    // The dead letters carry what an operator needs.
    let letters = dead_letters(&it.topology, 3).await;
    let gone = letters.get("job-gone").unwrap();
    assert_eq!(
        gone.webhook_url.as_deref(),
        Some(it.receiver.url("gone").as_str())
    );
    assert_eq!(gone.request_id, "req-job-gone");
    assert_eq!(gone.attempts.len(), 1);
    assert_eq!(gone.payload.data.id, "job-gone");
    assert!(gone.last_error.as_deref().unwrap_or("").contains("410"));
    assert_eq!(letters.get("job-down").unwrap().attempts.len(), 4);
    assert!(
        letters
            .get("job-refused")
            .unwrap()
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("refused target")
    );

    // The receiver is back: an operator redrives the 410 one.
    assert_eq!(
        notifier::redrive(&it.topology, gone).await.unwrap(),
        Redriven::Requeued
    );
    let record = it.settled("job-gone", DeliveryState::Delivered).await;
    assert_eq!(record.attempts.len(), 1);
    assert_eq!(it.receiver.requests("gone").len(), 2);
    // A second redrive of a delivered job does nothing.
    assert_eq!(
        notifier::redrive(&it.topology, gone).await.unwrap(),
        Redriven::NotFailed(DeliveryState::Delivered)
    );

    it.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_and_redrives_carry_the_jobs_trace() {
    use futures::StreamExt;
    use wire_contract::headers::{TraceContext, request_id_of, trace_of};
    use wire_contract::names::DEAD_LETTER_SUBJECTS;
    let mut it = Harness::start().await;
    it.receiver.script("gone", 1, 410);
    it.job("job-gone", Some("gone"), Some(Reply::Deferred), now())
        .await;
    it.settled("job-gone", DeliveryState::Failed).await;
    let letters = dead_letters(&it.topology, 1).await;
    // Traces are off in this process, so the letter carries none; give it
    // the job's trace as a traced notifier would have.
    let trace = TraceContext::new(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        Some("k=v"),
    );
    let traced = DeadLetterV1 {
        trace: trace.clone(),
        ..letters.get("job-gone").unwrap().clone()
    };
    // Core subscriptions see JetStream publishes too (the events stream is
    // a work queue: the notifier would take the stored copy).
    let client = it.topology.js.client();
    let mut letters_seen = client.subscribe(DEAD_LETTER_SUBJECTS).await.unwrap();
    let mut events_seen = client.subscribe(EVENTS_SUBJECT).await.unwrap();
    client.flush().await.unwrap();

    notifier::dead_letter::publish(&it.topology.js, &traced, 1_000)
        .await
        .unwrap();
    let letter = tokio::time::timeout(WAIT, letters_seen.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(trace_of(letter.headers.as_ref()), trace, "dead letter");
    assert_eq!(request_id_of(letter.headers.as_ref()), "req-job-gone");

    assert_eq!(
        notifier::redrive(&it.topology, &traced).await.unwrap(),
        Redriven::Requeued
    );
    let event = tokio::time::timeout(WAIT, events_seen.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(trace_of(event.headers.as_ref()), trace, "redriven event");
    assert_eq!(request_id_of(event.headers.as_ref()), "req-job-gone");
    it.settled("job-gone", DeliveryState::Delivered).await;
    it.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_retry_schedule_runs_to_its_end_without_jetstream_giving_up() {
    // Every retry comes back from the retry index: none of the consumers'
    // delivery caps may end a schedule early, leaving the job pending for
    // ever, neither delivered nor dead-lettered.
    const ATTEMPTS: usize = 20;
    let schedule = std::iter::once("0s")
        .chain(std::iter::repeat_n("10ms", ATTEMPTS - 1))
        .collect::<Vec<_>>()
        .join(",");
    let mut it = Harness::start_with(&[("WEBHOOK_RETRY_SCHEDULE", &schedule)]).await;
    it.receiver.script("down", usize::MAX, 500);
    it.job("job-long", Some("down"), Some(Reply::Deferred), now())
        .await;
    let record = it.settled("job-long", DeliveryState::Failed).await;
    assert_eq!(record.attempts.len(), ATTEMPTS);
    assert_eq!(it.receiver.requests("down").len(), ATTEMPTS);
    it.stop().await;
}

/// The first `count` dead letters, by job id.
async fn dead_letters(topology: &Topology, count: u64) -> HashMap<String, DeadLetterV1> {
    let stream = topology.js.get_stream(DEAD_LETTER_STREAM).await.unwrap();
    let mut letters = HashMap::new();
    for seq in 1..=count {
        let message = stream.get_raw_message(seq).await.unwrap();
        let letter: DeadLetterV1 = decode("dead letter", &message.payload).unwrap();
        letters.insert(letter.job_id.clone(), letter);
    }
    letters
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_resume_after_a_nats_server_restart() {
    let mut it = Harness::start().await;
    it.job("job-before", Some("before"), Some(Reply::Deferred), now())
        .await;
    it.settled("job-before", DeliveryState::Delivered).await;

    it.nats.restart().await;
    // The test's own client reconnects too; publishing retries until it has.
    let record = JobRecord {
        id: "job-after".into(),
        message: "message of job-after".into(),
        webhook_url: Some(it.receiver.url("after")),
        request_id: "req-job-after".into(),
        created_at: now(),
        reply: Some(Reply::Deferred),
        caller: None,
    };
    let jobs = it.topology.jobs.clone();
    eventually(
        "the job record to be stored after the restart",
        WAIT,
        || {
            let (jobs, record) = (jobs.clone(), record.clone());
            async move { save(&jobs, "job-after", &record, 0).await.ok() }
        },
    )
    .await;
    it.publish("job-after", "sig-job-after".into()).await;

    let delivered = it.settled("job-after", DeliveryState::Delivered).await;
    assert_eq!(delivered.attempts.len(), 1);
    assert_eq!(it.receiver.requests("after").len(), 1);

    // The consumer disappears (an operator deleted it, or a server lost it):
    // the notifier recreates it and carries on.
    let events = it
        .topology
        .js
        .get_stream(wire_contract::names::EVENTS_STREAM)
        .await
        .unwrap();
    events
        .delete_consumer(wire_contract::names::NOTIFIER_CONSUMER)
        .await
        .unwrap();
    it.job(
        "job-recreated",
        Some("recreated"),
        Some(Reply::Deferred),
        now(),
    )
    .await;
    it.settled("job-recreated", DeliveryState::Delivered).await;
    assert_eq!(it.receiver.requests("recreated").len(), 1);

    // The record from before the restart survived it, and nothing was re-sent.
    it.settled("job-before", DeliveryState::Delivered).await;
    assert_eq!(it.receiver.requests("before").len(), 1);

    it.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_receiver_holds_no_one_up_and_shutdown_hands_its_work_back() {
    let mut it = Harness::start_with(&[("NOTIFIER_DRAIN_TIMEOUT", "200ms")]).await;
    it.receiver.slow("stuck", Duration::from_secs(30));
    let stuck: Vec<String> = (0..5).map(|i| format!("job-stuck-{i}")).collect();
    for id in &stuck {
        it.job(id, Some("stuck"), Some(Reply::Deferred), now())
            .await;
    }
    // Four in flight to the slow host (the per-host bound), the fifth waits.
    let receiver = &it.receiver;
    eventually("four requests to the slow receiver", WAIT, || async move {
        (receiver.requests("stuck").len() == 4).then_some(())
    })
    .await;

    // Another receiver (another host:port) is served meanwhile.
    let other = Receiver::start().await;
    let fast = JobRecord {
        id: "job-fast".into(),
        message: "message of job-fast".into(),
        webhook_url: Some(other.url("fast")),
        request_id: "req-job-fast".into(),
        created_at: now(),
        reply: Some(Reply::Deferred),
        caller: None,
    };
    save(&it.topology.jobs, "job-fast", &fast, 0).await.unwrap();
    it.publish("job-fast", "sig".into()).await;
    it.settled("job-fast", DeliveryState::Delivered).await;
    assert_eq!(
        it.receiver.requests("stuck").len(),
        4,
        "the per-host bound held"
    );
    // ...and it arrived while every request to the hanging receiver was still
    // held: none has timed out (WEBHOOK_TIMEOUT 5s) and been recorded yet.
    for id in &stuck {
        let record = load::<DeliveryRecord>(&it.topology.deliveries, "delivery", id)
            .await
            .unwrap();
        assert!(record.value.is_none(), "{id} still in flight");
    }

    let started = std::time::Instant::now();
    it.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown is bounded by the drain timeout"
    );
    // No attempt was recorded for the interrupted requests...
    for id in &stuck {
        let record = load::<DeliveryRecord>(&it.topology.deliveries, "delivery", id)
            .await
            .unwrap();
        assert!(record.value.is_none(), "{id}");
    }

    // ...and the messages were handed back (NAKed), not left to the 60 s ack
    // wait: another notifier takes them at once.
    it.receiver.slow("stuck", Duration::ZERO);
    it.respawn();
    let started = std::time::Instant::now();
    for id in &stuck {
        it.settled(id, DeliveryState::Delivered).await;
    }
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "redelivered well before the ack wait"
    );
    it.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_redrive_dead_letters_with_a_nats_request() {
    let mut it = Harness::start().await;

    // A receiver that says 410 Gone: one attempt, dead-lettered.
    it.receiver.script("gone", usize::MAX, 410);
    it.job("job-gone", Some("gone"), Some(Reply::Deferred), now())
        .await;
    let record = it.settled("job-gone", DeliveryState::Failed).await;
    assert_eq!(record.attempts.len(), 1);

    // The receiver is fixed; `nats req webhooks.redrive job-gone`.
    it.receiver.script("gone", 0, 200);
    let reply = it.redrive_request("job-gone").await;
    assert_eq!(
        reply,
        serde_json::json!({"redriven": ["job-gone"], "skipped": [], "not_found": []})
    );
    let record = it.settled("job-gone", DeliveryState::Delivered).await;
    assert_eq!(record.attempts.len(), 1, "a fresh schedule after a redrive");
    assert_eq!(record.attempts[0].status, Some(200));
    let requests = it.receiver.requests("gone");
    assert_eq!(
        webhook_ids(&requests),
        vec!["job-gone", "job-gone"],
        "same webhook-id"
    );
    assert!(signature_ok(&requests[1].headers, &requests[1].body));

    // Asking again: the dead letter is still there but the job is delivered.
    let reply: RedriveReply =
        serde_json::from_value(it.redrive_request("job-gone no-such-job").await).unwrap();
    assert!(reply.redriven.is_empty());
    assert_eq!(
        reply.skipped,
        vec![Skipped {
            id: "job-gone".into(),
            state: "delivered".into()
        }]
    );
    assert_eq!(reply.not_found, vec!["no-such-job"]);

    // `all` redrives every dead letter still failed, and only those.
    it.receiver.script("down", usize::MAX, 500);
    it.job("job-down", Some("down"), Some(Reply::Deferred), now())
        .await;
    it.settled("job-down", DeliveryState::Failed).await;
    it.receiver.script("down", 0, 200);
    let reply: RedriveReply = serde_json::from_value(it.redrive_request("all").await).unwrap();
    assert_eq!(reply.redriven, vec!["job-down"]);
    assert_eq!(reply.skipped.len(), 1);
    assert_eq!(reply.skipped[0].id, "job-gone");
    assert!(reply.not_found.is_empty() && reply.errors.is_empty());
    it.settled("job-down", DeliveryState::Delivered).await;
    assert_eq!(
        it.receiver.requests("down").len(),
        5,
        "4 failed + 1 redriven"
    );

    // A request that names nothing is answered with an error, not ignored.
    let reply = it.redrive_request(" ").await;
    assert!(
        reply["error"].as_str().unwrap().contains("job id"),
        "{reply}"
    );

    it.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_in_the_middle_of_a_backoff_still_delivers_on_schedule() {
    const GAP: Duration = Duration::from_secs(3);
    let mut it = Harness::start_with(&[("WEBHOOK_RETRY_SCHEDULE", "0s,3s,3s")]).await;
    it.receiver.script("backoff", 1, 500);
    it.job("job-backoff", Some("backoff"), Some(Reply::Deferred), now())
        .await;

    // The first attempt failed and is recorded; the next is due 3 s later.
    let first = it.attempted("job-backoff", 1).await;
    assert_eq!(first.state, DeliveryState::Pending);
    let due = first.next_attempt_at.unwrap();
    assert!(due >= first.attempts[0].at.plus(GAP));

    // The notifier goes away and another one comes up, inside the backoff.
    it.stop().await;
    it.respawn();
    let restarted = now();
    assert!(
        restarted < due,
        "the restart happened before the retry was due"
    );

    let record = it.settled("job-backoff", DeliveryState::Delivered).await;
    let statuses: Vec<Option<u16>> = record.attempts.iter().map(|a| a.status).collect();
    assert_eq!(statuses, vec![Some(500), Some(200)]);
    let gap = record.attempts[1].at.since(record.attempts[0].at);
    let tolerance = Duration::from_millis(100);
    assert!(gap + tolerance >= GAP, "not before the schedule: {gap:?}");
    assert!(
        gap < GAP + Duration::from_secs(5),
        "not much after the schedule either: {gap:?}"
    );
    assert!(
        record.attempts[1].at.since(restarted) + tolerance >= due.since(restarted),
        "the new notifier waited for the due time instead of retrying at start"
    );
    let requests = it.receiver.requests("backoff");
    assert_eq!(webhook_ids(&requests), vec!["job-backoff", "job-backoff"]);

    it.stop().await;
}
