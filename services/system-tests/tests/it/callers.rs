//! Caller keys, private status and per-caller webhook secrets, with real
//! processes: two callers (one rotating its key), each with its own webhook
//! secret, the admin token, and a caller who has none.

use crate::client::{Answer, send, sign_request};
use crate::receiver::SECRET_B64;
use crate::system::{Options, System, spawn_system};
use std::time::Duration;

const A_OLD: &str = "team-a-key-being-retired-0123456789";
const A_NEW: &str = "team-a-key-rotated-in-9876543210";
const B: &str = "team-b-key-abcdefabcdefabcdef";
const C: &str = "team-c-key-rate-limited-000111";
const ADMIN: &str = "operators-token-5555";
/// The callers' own webhook secrets (base64 of 32 bytes, after `whsec_`).
const A_SECRET: &str = "dGVhbS1hLXdlYmhvb2stc2VjcmV0LTAxMjM0NTY3ODk=";
const B_SECRET: &str = "dGVhbS1iLXdlYmhvb2stc2VjcmV0LTk4NzY1NDMyMTA=";

fn sha(key: &str) -> String {
    crate::client::key_sha256(key)
}

async fn sign_as(sys: &System, key: Option<&str>, message: &str) -> Answer {
    let request = sign_request(sys, message);
    let request = match key {
        Some(k) => request.bearer_auth(k),
        None => request,
    };
    send(message, request).await
}

/// GET `path` on the api with `token`: status and JSON body.
async fn read(sys: &System, path: &str, token: Option<&str>) -> (u16, serde_json::Value) {
    let request = sys.http.get(format!("{}{path}", sys.api_url));
    let request = match token {
        Some(t) => request.bearer_auth(t),
        None => request,
    };
    let response = request.send().await.expect("api answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

#[tokio::test]
async fn each_caller_needs_its_key_and_reads_only_its_own_jobs() {
    let callers = format!(
        r#"[{{"name": "team-a", "key_sha256": ["{}", "{}"], "webhook_secret": "whsec_{A_SECRET}"}},
            {{"name": "team-b", "key_sha256": ["{}"], "webhook_secret": "whsec_{B_SECRET}"}},
            {{"name": "team-c", "key_sha256": ["{}"], "rate_per_s": 1, "burst": 2}}]"#,
        sha(A_OLD),
        sha(A_NEW),
        sha(B),
        sha(C)
    );
    let sys = spawn_system(Options {
        first_try_success: 0.0,
        api_env: vec![("CALLERS", callers.clone()), ("ADMIN_TOKEN", ADMIN.into())],
        notifier_env: vec![("CALLERS", callers)],
        ..Options::default()
    })
    .await;

    // No key, or a wrong one: 401 problem+json, nothing accepted.
    for key in [None, Some("guess"), Some(sha(B).as_str())] {
        let a = sign_as(&sys, key, "not allowed").await;
        assert_eq!(a.status, 401, "{key:?}: {}", a.body);
        assert_eq!(a.content_type, "application/problem+json");
        assert_eq!(a.body["type"], "/problems/unauthorized");
    }
    // Both of A's keys work while it rotates; B's works.
    let answers = vec![
        sign_as(&sys, Some(A_OLD), "from a, old key").await,
        sign_as(&sys, Some(A_NEW), "from a, new key").await,
        sign_as(&sys, Some(B), "from b").await,
    ];
    for a in &answers {
        assert_eq!(a.status, 202, "{}", a.body);
    }
    let job = |i: usize| {
        answers[i]
            .location
            .clone()
            .expect("202 carries its Location")
    };

    // A job is its caller's: another caller's key sees no such job.
    assert_eq!(read(&sys, &job(0), Some(A_NEW)).await.0, 200);
    assert_eq!(read(&sys, &job(1), Some(A_OLD)).await.0, 200);
    assert_eq!(read(&sys, &job(2), Some(B)).await.0, 200);
    assert_eq!(read(&sys, &job(0), Some(B)).await.0, 404);
    assert_eq!(read(&sys, &job(2), Some(A_NEW)).await.0, 404);
    assert_eq!(read(&sys, &job(0), None).await.0, 401);
    assert_eq!(read(&sys, &job(2), Some(ADMIN)).await.0, 200);
    // Probes and the API document stay open.
    assert_eq!(read(&sys, "/readyz", None).await.0, 200);
    assert_eq!(read(&sys, "/openapi.json", None).await.0, 200);

    // C may send 2 at once, then 1 a second: of 5 at once, 3 are refused
    // at once with 429 and Retry-After; A and B are not slowed.
    let c_messages: Vec<String> = (0..5).map(|i| format!("from c {i}")).collect();
    let c_answers =
        futures::future::join_all(c_messages.iter().map(|m| sign_as(&sys, Some(C), m))).await;
    let refused: Vec<&Answer> = c_answers.iter().filter(|a| a.status == 429).collect();
    assert_eq!(
        refused.len(),
        3,
        "{:?}",
        c_answers.iter().map(|a| a.status).collect::<Vec<_>>()
    );
    for a in &refused {
        assert_eq!(a.body["type"], "/problems/rate-limited", "{}", a.body);
        assert_eq!(a.content_type, "application/problem+json");
        assert!(a.retry_after.is_some());
        assert!(
            a.elapsed < Duration::from_millis(500),
            "refused at once: {:?}",
            a.elapsed
        );
    }
    let c_metrics = sys.metrics("api").await;
    assert!(
        c_metrics.contains(r#"caller_requests_refused_total{caller="team-c",reason="rate"} 3"#),
        "{c_metrics}"
    );

    // Every 202 gets exactly its webhook, signed with its caller's own
    // secret: it verifies with that one, not with the other caller's nor
    // with the global one.
    let ids: Vec<String> = answers.iter().map(Answer::id).collect();
    let got = sys
        .receiver
        .wait_until(Duration::from_secs(60), |ds| {
            ids.iter().all(|id| ds.iter().any(|d| d.webhook_id == *id))
        })
        .await;
    for (i, id) in ids.iter().enumerate() {
        let mine: Vec<_> = got.iter().filter(|d| d.webhook_id == *id).collect();
        assert_eq!(mine.len(), 1, "job {i} got {} webhooks", mine.len());
        let (own, other) = if i < 2 {
            (A_SECRET, B_SECRET)
        } else {
            (B_SECRET, A_SECRET)
        };
        assert!(
            mine[0].verifies_with(own),
            "job {i}: not signed with its caller's secret"
        );
        assert!(
            !mine[0].verifies_with(other),
            "job {i}: verifies with the other caller's secret"
        );
        assert!(
            !mine[0].verifies_with(SECRET_B64),
            "job {i}: verifies with the global secret"
        );
        assert_eq!(mine[0].body["data"]["message"], answers[i].message.as_str());
    }

    // The status figures: counts for anyone, details for the operators.
    let (code, open) = read(&sys, "/status.json", Some(A_NEW)).await;
    assert_eq!(code, 200);
    assert_eq!(open["details"], false, "{open}");
    assert!(
        open["webhooks"]["delivered_since_start"].as_u64() >= Some(3),
        "{open}"
    );
    let text = open.to_string();
    for (i, a) in answers.iter().enumerate() {
        assert!(
            !text.contains(&a.id()),
            "job id {i} shown without the token"
        );
        assert!(
            !text.contains(&a.message),
            "message {i} shown without the token"
        );
    }
    assert_eq!(open["upstream_calls"], serde_json::json!([]));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, admin) = read(&sys, "/status.json", Some(ADMIN)).await;
        assert_eq!(admin["details"], true, "{admin}");
        let recent = admin["webhooks"]["recent"].to_string();
        if answers.iter().all(|a| recent.contains(&a.id()))
            && admin["upstream_calls"]
                .as_array()
                .is_some_and(|c| !c.is_empty())
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the admin's view lacks the deliveries or calls: {admin}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
