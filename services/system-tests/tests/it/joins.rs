//! Many callers of one pending message: a join costs the same however many
//! jobs already wait (the work item does not grow; each job is one message
//! on `sign.waiting.<key>`), a cap answers `429`, and when the message is
//! signed every waiting job gets exactly one webhook.

use crate::checks::{Deliveries, all_promises_kept};
use crate::client::{Answer, sign};
use crate::messages;
use crate::system::{Options, System, spawn_system};
use std::time::Duration;
use wire_contract::{MessageKey, names};

/// Send `n` requests for `message`, `at_once` at a time.
async fn joins(sys: &System, message: &str, n: usize, at_once: usize) -> Vec<Answer> {
    let mut answers = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(at_once) {
        answers.extend(futures::future::join_all(chunk.iter().map(|_| sign(sys, message))).await);
    }
    answers
}

/// The NATS records of one message: its work item's size in bytes (0 when
/// gone) and the jobs waiting on its subject.
async fn records_of(sys: &System, message: &str) -> (usize, u64) {
    let client = async_nats::connect(sys.nats_url()).await.expect("nats");
    let js = async_nats::jetstream::new(client);
    let key = MessageKey::of(message);
    let work = js
        .get_key_value(names::WORK_BUCKET)
        .await
        .expect("work bucket");
    let item = work.get(key.as_str()).await.expect("work item read");
    let mut stream = js
        .get_stream(names::WAITING_STREAM)
        .await
        .expect("waiting stream");
    let subject = wire_contract::waiting::subject(&key);
    let info = stream.info().await.expect("stream info");
    let waiting = if info.state.messages == 0 {
        0
    } else {
        use futures::TryStreamExt;
        let counts: Vec<(String, usize)> = stream
            .info_with_subjects(&subject)
            .await
            .expect("subjects")
            .try_collect()
            .await
            .expect("subject counts");
        counts.iter().map(|(_, n)| *n as u64).sum()
    };
    (item.map_or(0, |b| b.len()), waiting)
}

/// Poll `records_of` until `done` holds; fails after `within`.
async fn wait_for_records(
    sys: &System,
    message: &str,
    within: Duration,
    what: &str,
    done: impl Fn((usize, u64)) -> bool,
) -> (usize, u64) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let now = records_of(sys, message).await;
        if done(now) {
            return now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: still {now:?} after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn joins_of_a_pending_message_keep_its_record_small_and_a_cap_answers_429() {
    // A wrong key: the upstream refuses every call, so the message stays
    // pending for the whole test.
    let sys = spawn_system(Options {
        upstream_key: "wrong-key",
        api_env: vec![("MAX_JOBS_PER_MESSAGE", "300".into())],
        ..Options::default()
    })
    .await;
    let message = "one message, many callers";
    let answers = joins(&sys, message, 450, 50).await;
    let accepted = answers.iter().filter(|a| a.status == 202).count();
    let refused: Vec<&Answer> = answers.iter().filter(|a| a.status == 429).collect();
    for a in &answers {
        assert!(a.elapsed < Duration::from_secs(2), "{:?}", a.elapsed);
        assert!(
            a.status == 202 || a.status == 429,
            "{} {}",
            a.status,
            a.body
        );
    }
    eprintln!("{accepted} accepted and {} refused, cap 300", refused.len());
    // The signer counts jobs as it takes them in, so a few more than the cap
    // may get in while their requests are still queued.
    assert!(
        (300..=400).contains(&accepted),
        "{accepted} accepted with a cap of 300"
    );
    assert!(!refused.is_empty(), "no 429 past the cap");
    for a in &refused {
        assert_eq!(a.content_type, "application/problem+json");
        assert_eq!(a.body["type"], "/problems/too-many-jobs", "{}", a.body);
        assert!(a.retry_after.is_some(), "429 without Retry-After");
    }
    // Every accepted job waits once, on the message's own subject, and the
    // work item only counts them: with the jobs inside it, 300 jobs would
    // make it about 30 KB.
    let (item_bytes, waiting) = wait_for_records(
        &sys,
        message,
        Duration::from_secs(20),
        "every accepted job waiting",
        |(_, waiting)| waiting == accepted as u64,
    )
    .await;
    assert!(
        (1..2_048).contains(&item_bytes),
        "work item of {item_bytes} bytes for {waiting} jobs"
    );
}

#[tokio::test]
async fn every_job_of_a_message_joined_hundreds_of_times_gets_exactly_one_webhook() {
    // First tries fail, so the message is degraded for a few (compressed)
    // minutes while its callers pile up; others are signed meanwhile.
    let sys = spawn_system(Options {
        first_try_success: 0.0,
        ..Options::default()
    })
    .await;
    let message = "wanted by many";
    let others = messages("joins-others", 10);
    let (mut answers, other_answers) = futures::future::join(
        joins(&sys, message, 300, 100),
        crate::client::burst(&sys, &others),
    )
    .await;
    answers.extend(other_answers);
    assert!(
        answers
            .iter()
            .filter(|a| a.message == message && a.status == 202)
            .count()
            >= 100,
        "the message was signed before its callers piled up"
    );
    all_promises_kept(&sys, &answers, Deliveries::ExactlyOnce).await;
    // Finished: no job left waiting, no work item.
    wait_for_records(
        &sys,
        message,
        Duration::from_secs(10),
        "records of a finished message gone",
        |records| records == (0, 0),
    )
    .await;
}
