//! Caller keys and private status, with real processes: two callers (one
//! rotating its key), the admin token, and a caller who has none.

use crate::checks::{Deliveries, all_promises_kept};
use crate::client::{Answer, send, sign_request};
use crate::system::{Options, System, spawn_system};
use sha2::{Digest, Sha256};
use std::time::Duration;

const A_OLD: &str = "team-a-key-being-retired-0123456789";
const A_NEW: &str = "team-a-key-rotated-in-9876543210";
const B: &str = "team-b-key-abcdefabcdefabcdef";
const ADMIN: &str = "operators-token-5555";

fn sha(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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
        r#"[{{"name": "team-a", "key_sha256": ["{}", "{}"]}}, {{"name": "team-b", "key_sha256": ["{}"]}}]"#,
        sha(A_OLD),
        sha(A_NEW),
        sha(B)
    );
    let sys = spawn_system(Options {
        first_try_success: 0.0,
        api_env: vec![("CALLERS", callers), ("ADMIN_TOKEN", ADMIN.into())],
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

    // Every 202 still gets exactly its webhook.
    all_promises_kept(&sys, &answers, Deliveries::ExactlyOnce).await;

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
