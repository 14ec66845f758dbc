//! Callers share the budget, with real processes: a caller that floods
//! neither holds up another's first tries nor fills its backlog, and is
//! held to its own caps (pending jobs, its own backlog horizon) while the
//! other is not.

use crate::client::{Answer, send, sign_request};
use crate::system::{Options, System, spawn_system};
use std::collections::HashMap;
use std::time::{Duration, Instant};

const A: &str = "fair-share-key-of-a-0123456789";
const B: &str = "fair-share-key-of-b-9876543210";

fn sha(key: &str) -> String {
    crate::client::key_sha256(key)
}

async fn sign_as(sys: &System, key: &str, message: &str) -> Answer {
    send(message, sign_request(sys, message).bearer_auth(key)).await
}

async fn wave(sys: &System, key: &str, messages: &[String]) -> Vec<Answer> {
    futures::future::join_all(messages.iter().map(|m| sign_as(sys, key, m))).await
}

/// When each of `messages` first reached the upstream (simulator's clock,
/// Unix ms), waiting until all have; a wait that runs out fails.
async fn first_tries(sys: &System, messages: &[String], within: Duration) -> HashMap<String, u64> {
    let until = Instant::now() + within;
    loop {
        let mut first: HashMap<String, u64> = HashMap::new();
        for call in sys.audit_calls().await {
            if let (Some(m), Some(at)) = (call["message"].as_str(), call["arrived_at_ms"].as_u64())
                && messages.iter().any(|x| x == m)
            {
                let e = first.entry(m.to_owned()).or_insert(at);
                *e = (*e).min(at);
            }
        }
        if first.len() == messages.len() {
            return first;
        }
        assert!(
            Instant::now() < until,
            "only {} of {} messages reached the upstream within {within:?}",
            first.len(),
            messages.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[tokio::test]
async fn a_flooding_caller_is_capped_and_does_not_hold_up_another() {
    // A: weight 1, at most 60 jobs pending. B: weight 2. A window is 3 s.
    let callers = format!(
        r#"[{{"name": "a", "key_sha256": ["{}"], "max_pending": 60}},
            {{"name": "b", "key_sha256": ["{}"], "weight": 2}}]"#,
        sha(A),
        sha(B)
    );
    let sys = spawn_system(Options {
        api_env: vec![("CALLERS", callers.clone())],
        notifier_env: vec![("CALLERS", callers)],
        ..Options::default()
    })
    .await;
    let window = Duration::from_secs(3);

    // A floods: 150 messages in five waves of 30. Past 60 pending jobs it
    // is refused with 429. The signer counts jobs as it takes them in, and
    // a wave's requests ask at once, so a wave can pass the cap by its
    // size; jobs signed meanwhile leave room for more.
    let a_messages: Vec<String> = (0..150).map(|i| format!("flood from a {i}")).collect();
    let mut a_answers = Vec::new();
    for chunk in a_messages.chunks(30) {
        a_answers.extend(wave(&sys, A, chunk).await);
    }
    let accepted: Vec<&Answer> = a_answers
        .iter()
        .filter(|a| a.status == 200 || a.status == 202)
        .collect();
    let refused: Vec<&Answer> = a_answers.iter().filter(|a| a.status == 429).collect();
    assert_eq!(
        accepted.len() + refused.len(),
        a_answers.len(),
        "only 200, 202 or 429: {:?}",
        a_answers.iter().map(|a| a.status).collect::<Vec<_>>()
    );
    assert!(
        !refused.is_empty(),
        "150 sent, none refused over a cap of 60"
    );
    assert!(accepted.len() <= 60 + 2 * 30, "{}", accepted.len());
    assert!(accepted.len() >= 60, "accepted only {}", accepted.len());
    for r in &refused {
        assert_eq!(r.body["type"], "/problems/too-many-pending", "{}", r.body);
        assert_eq!(r.content_type, "application/problem+json");
        assert!(r.retry_after.is_some(), "{}", r.body);
    }

    // B sends a few while A's backlog still needs many windows.
    let b_sent = now_ms();
    let b_messages: Vec<String> = (0..3).map(|i| format!("a few from b {i}")).collect();
    for answer in wave(&sys, B, &b_messages).await {
        assert!(
            answer.status == 200 || answer.status == 202,
            "B is not A: {} {}",
            answer.status,
            answer.body
        );
    }
    let b_first = first_tries(&sys, &b_messages, 10 * window).await;
    let b_last_first = b_first.values().copied().max().unwrap_or(0);
    let waited = Duration::from_millis(b_last_first.saturating_sub(b_sent));
    println!(
        "A: {} accepted, {} refused; B's first tries within {waited:?} of sending",
        accepted.len(),
        refused.len()
    );
    // Before fair share B's messages queued behind A's: 60 and more first
    // tries at 10 a window, 18 s at least. Now they come in B's turns.
    assert!(
        waited <= 3 * window,
        "B's first tries took {waited:?}, over three windows"
    );
    // And they overtook A's backlog: A still had messages never tried.
    let accepted_a: Vec<String> = accepted.iter().map(|a| a.message.clone()).collect();
    let a_first = first_tries(&sys, &accepted_a, Duration::from_secs(120)).await;
    let a_after = a_first.values().filter(|at| **at > b_last_first).count();
    assert!(
        a_after > 10,
        "A had only {a_after} first tries left after B's"
    );
}

#[tokio::test]
async fn a_caller_over_its_own_horizon_is_refused_while_another_is_not() {
    let callers = format!(
        r#"[{{"name": "a", "key_sha256": ["{}"]}}, {{"name": "b", "key_sha256": ["{}"]}}]"#,
        sha(A),
        sha(B)
    );
    // Nothing signs (every call fails, then the message stays degraded),
    // so backlogs only grow. A caller's own backlog may take 15 s at its
    // share; the whole may take 10 minutes.
    let sys = spawn_system(Options {
        first_try_success: 0.0,
        backlog_horizon: "15s",
        api_env: vec![
            ("CALLERS", callers.clone()),
            ("BACKLOG_HORIZON_TOTAL", "10m".into()),
        ],
        notifier_env: vec![("CALLERS", callers)],
        ..Options::default()
    })
    .await;
    let mut refusal = None;
    let mut sent = 0;
    for round in 0..10 {
        let chunk: Vec<String> = (0..20)
            .map(|i| format!("a's backlog {round}-{i}"))
            .collect();
        sent += chunk.len();
        let answers = wave(&sys, A, &chunk).await;
        if let Some(r) = answers.into_iter().find(|a| a.status == 503) {
            refusal = Some(r);
            break;
        }
    }
    let refusal = refusal.unwrap_or_else(|| panic!("{sent} messages and A was never refused"));
    assert_eq!(
        refusal.body["type"], "/problems/caller-backlog-full",
        "{}",
        refusal.body
    );
    assert_eq!(refusal.content_type, "application/problem+json");
    assert!(refusal.retry_after.is_some());
    println!(
        "A refused after {sent} messages: {}",
        refusal.body["detail"]
    );
    // B's own backlog is empty: it is accepted, though the whole backlog
    // is over B's horizon (an open gateway would refuse everyone now).
    for i in 0..2 {
        let b = sign_as(&sys, B, &format!("b while a is full {i}")).await;
        assert_eq!(b.status, 202, "{}", b.body);
    }
}
