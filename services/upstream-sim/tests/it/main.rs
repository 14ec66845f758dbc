//! End-to-end tests of the simulator over real HTTP.

mod helpers;

use std::time::Duration;

use helpers::{KEY, config, spawn};
use reqwest::StatusCode;

#[tokio::test]
async fn requires_the_key() {
    let sim = spawn(config()).await;
    let url = format!("{}/crypto/sign?message=hello", sim.base);
    let none = sim.client.get(&url).send().await.expect("send");
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    let wrong = sim
        .client
        .get(&url)
        .header("Authorization", "nope")
        .send()
        .await
        .expect("send");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);

    let root = format!("{}/", sim.base);
    let welcome = sim
        .client
        .get(&root)
        .header("Authorization", KEY)
        .send()
        .await
        .expect("send");
    assert_eq!(welcome.status(), StatusCode::OK);
    let anonymous = sim.client.get(&root).send().await.expect("send");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let health = sim
        .client
        .get(format!("{}/healthz", sim.base))
        .send()
        .await
        .expect("send");
    assert_eq!(health.text().await.expect("body"), "ok");

    // Unauthorised calls are audited but do not count toward the limit.
    let summary = sim.get_json("/admin/audit/summary").await;
    assert_eq!(summary["calls"], 2);
    assert_eq!(summary["by_outcome"]["unauthorized"], 2);
    assert_eq!(summary["max_in_window"], 0);
    sim.stop().await;
}

#[tokio::test]
async fn signs_verifiably() {
    let sim = spawn(config()).await;
    let message = "héllo wörld & more";
    let response = sim.sign(message).await.expect("send");
    assert_eq!(response.status(), StatusCode::OK);
    let signature = response.text().await.expect("body");
    assert!(sim.verify(message, &signature).await);
    assert!(!sim.verify("another message", &signature).await);
    assert!(!sim.verify(message, "<html>oops</html>").await);

    let missing = sim
        .client
        .get(format!("{}/crypto/sign", sim.base))
        .header("Authorization", KEY)
        .send()
        .await
        .expect("send");
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);

    let calls = sim.get_json("/admin/audit").await;
    let calls = calls["calls"].as_array().expect("calls");
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0]["message"], message);
    assert_eq!(calls[0]["outcome"], "signed");
    assert_eq!(calls[0]["status"], 200);
    assert!(
        calls[0]["arrived_at"]
            .as_str()
            .expect("rfc3339")
            .ends_with('Z')
    );
    assert_eq!(calls[1]["outcome"], "bad_request");
    sim.stop().await;
}

#[tokio::test]
async fn answers_429_over_the_limit_in_a_sliding_window() {
    let mut config = config();
    config.audit.limit = 3;
    config.audit.window = Duration::from_secs(2);
    let sim = spawn(config).await;

    for i in 0..3 {
        let response = sim.sign(&format!("m{i}")).await.expect("send");
        assert_eq!(response.status(), StatusCode::OK);
    }
    let over = sim.sign("m3").await.expect("send");
    assert_eq!(over.status(), StatusCode::TOO_MANY_REQUESTS);

    let summary = sim.get_json("/admin/audit/summary").await;
    assert_eq!(summary["violations"], 1);
    assert_eq!(summary["max_in_window"], 4);
    assert_eq!(summary["successes"], 3);
    assert_eq!(summary["failures"], 1);
    assert_eq!(summary["limit"], 3);
    assert_eq!(summary["window_ms"], 2000);
    assert_eq!(summary["distinct_messages"], 4);
    assert_eq!(summary["signed_messages"], 3);

    // Once the window has slid past, calls are admitted again.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(sim.sign("m3").await.expect("send").status(), StatusCode::OK);

    // Reset clears the audit.
    let reset = sim
        .client
        .post(format!("{}/admin/reset", sim.base))
        .send()
        .await
        .expect("send");
    assert_eq!(reset.status(), StatusCode::NO_CONTENT);
    assert_eq!(sim.get_json("/admin/audit/summary").await["calls"], 0);
    sim.stop().await;
}

#[tokio::test]
async fn counts_but_allows_violations_when_not_enforcing() {
    let mut config = config();
    config.audit.limit = 1;
    config.audit.enforce_limit = false;
    let sim = spawn(config).await;
    for _ in 0..3 {
        assert_eq!(
            sim.sign("same").await.expect("send").status(),
            StatusCode::OK
        );
    }
    let summary = sim.get_json("/admin/audit/summary").await;
    assert_eq!(summary["violations"], 2);
    assert_eq!(summary["successes"], 3);
    sim.stop().await;
}

#[tokio::test]
async fn degraded_messages_recover_after_their_scaled_duration() {
    let mut config = config();
    config.failure.first_try_success = 0.0;
    config.failure.degraded_min = Duration::from_secs(30);
    config.failure.degraded_max = Duration::from_secs(30);
    config.failure.time_scale = 30.0; // 30 s become 1 s.
    let sim = spawn(config).await;

    assert_eq!(
        sim.sign("flaky").await.expect("send").status(),
        StatusCode::BAD_GATEWAY
    );
    assert_eq!(
        sim.sign("flaky").await.expect("send").status(),
        StatusCode::BAD_GATEWAY
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let recovered = sim.sign("flaky").await.expect("send");
    assert_eq!(recovered.status(), StatusCode::OK);
    let signature = recovered.text().await.expect("body");
    assert!(sim.verify("flaky", &signature).await);

    let summary = sim.get_json("/admin/audit/summary").await;
    assert_eq!(summary["by_outcome"]["degraded"], 2);
    assert_eq!(summary["signed_messages"], 1);
    sim.stop().await;
}

#[tokio::test]
async fn chaos_reset_is_a_transport_error() {
    let mut config = config();
    config.chaos.reset_p = 1.0;
    let sim = spawn(config).await;
    let error = sim.sign("cut").await.expect_err("connection cut");
    assert!(!error.is_status(), "{error:?}");
    let calls = sim.get_json("/admin/audit").await;
    assert_eq!(calls["calls"][0]["outcome"], "reset");
    assert_eq!(calls["calls"][0]["status"], serde_json::Value::Null);
    sim.stop().await;
}

#[tokio::test]
async fn chaos_garbage_and_500() {
    let mut config = config();
    config.chaos.garbage_p = 1.0;
    let sim = spawn(config).await;
    let response = sim.sign("g").await.expect("send");
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.text().await.expect("body");
    assert!(!sim.verify("g", &body).await);
    sim.stop().await;

    let mut config = helpers::config();
    config.chaos.status_500_p = 1.0;
    let sim = spawn(config).await;
    let response = sim.sign("e").await.expect("send");
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    sim.stop().await;
}

#[tokio::test]
async fn chaos_latency_delays_the_answer() {
    let mut config = config();
    config.chaos.latency_p = 1.0;
    config.chaos.latency = Duration::from_millis(300);
    let sim = spawn(config).await;
    let _warm = sim.client.get(format!("{}/healthz", sim.base)).send().await;
    let start = std::time::Instant::now();
    assert_eq!(
        sim.sign("slow").await.expect("send").status(),
        StatusCode::OK
    );
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert_eq!(
        sim.get_json("/admin/audit").await["calls"][0]["delay_ms"],
        300
    );
    sim.stop().await;
}

#[tokio::test]
async fn hanging_calls_time_out_and_do_not_block_shutdown() {
    let mut config = config();
    config.chaos.hang_p = 1.0;
    let sim = spawn(config).await;
    let hanging = sim
        .client
        .get(format!("{}/crypto/sign?message=stuck", sim.base))
        .header("Authorization", KEY)
        .timeout(Duration::from_millis(300))
        .send()
        .await
        .expect_err("no answer");
    assert!(hanging.is_timeout(), "{hanging:?}");

    // A hang still in flight when shutdown starts is released.
    let client = sim.client.clone();
    let url = format!("{}/crypto/sign?message=stuck2", sim.base);
    let in_flight =
        tokio::spawn(async move { client.get(url).header("Authorization", KEY).send().await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    sim.stop().await;
    let result = in_flight.await.expect("task");
    assert!(result.is_err(), "a hang ends with a cut connection");
}

#[tokio::test]
async fn webhook_inbox_round_trip() {
    let sim = spawn(config()).await;
    let inbox = format!("{}/webhooks/inbox", sim.base);
    let posted = sim
        .client
        .post(&inbox)
        .header("X-Signature", "sha256=abc")
        .json(&serde_json::json!({"job_id": "j1", "signature": "sig"}))
        .send()
        .await
        .expect("send");
    assert_eq!(posted.status(), StatusCode::NO_CONTENT);
    let text = sim
        .client
        .post(&inbox)
        .body("plain")
        .send()
        .await
        .expect("send");
    assert_eq!(text.status(), StatusCode::NO_CONTENT);

    let listed = sim.get_json("/webhooks/inbox").await;
    let deliveries = listed["deliveries"].as_array().expect("deliveries");
    assert_eq!(deliveries.len(), 2);
    assert_eq!(deliveries[0]["body"]["job_id"], "j1");
    assert_eq!(deliveries[0]["headers"]["x-signature"], "sha256=abc");
    assert_eq!(deliveries[0]["headers"]["content-type"], "application/json");
    assert!(deliveries[0]["received_at_ms"].as_u64().is_some());
    assert_eq!(deliveries[1]["body"], "plain");

    let cleared = sim.client.delete(&inbox).send().await.expect("send");
    assert_eq!(cleared.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        sim.get_json("/webhooks/inbox").await["deliveries"],
        serde_json::json!([])
    );
    sim.stop().await;
}
