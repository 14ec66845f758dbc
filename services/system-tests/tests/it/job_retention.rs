//! Job records are kept as long as their job is pending (issue 11, item 6):
//! with `JOB_RETENTION` at 10 s, a message the upstream keeps failing for
//! about 30 s still has its job's record, status resource and webhook at
//! the end, because the signer asks the api to rewrite the records of jobs
//! pending for a quarter of the retention or more. With a signer built
//! without the keeping, this test failed: the status resource answered 404
//! after 12.4 s.

use crate::checks::{Deliveries, all_promises_kept};
use crate::client::sign;
use crate::system::{Options, spawn_system};
use std::time::{Duration, Instant};

const RETENTION: &str = "10s";

#[tokio::test]
async fn a_job_pending_longer_than_the_retention_keeps_its_record_and_gets_its_webhook() {
    let sys = spawn_system(Options {
        first_try_success: 0.0,
        // 30 minutes at the simulator's 60x: a message stays broken ~30 s.
        sim_env: vec![("SIM_DEGRADED_MIN", "30m"), ("SIM_DEGRADED_MAX", "31m")],
        common_env: vec![("JOB_RETENTION", RETENTION.into())],
        ..Options::default()
    })
    .await;
    let started = Instant::now();
    let a = sign(&sys, "a message broken for half a minute").await;
    assert_eq!(a.status, 202, "{}", a.body);
    let location = a.location.clone().expect("Location");

    // Past twice the retention, still pending: the record is still there.
    let mut last = serde_json::Value::Null;
    while started.elapsed() < Duration::from_secs(22) {
        let response = sys
            .http
            .get(format!("{}{}", sys.api_url, location))
            .send()
            .await
            .expect("status");
        assert_eq!(
            response.status(),
            200,
            "the job's record expired while pending, after {:?} (last seen: {last})",
            started.elapsed()
        );
        last = response.json().await.expect("status json");
        assert_eq!(last["status"], "pending", "{last}");
        // Polling the status resource is what a caller does; once a second.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // And at the end, the webhook, exactly once.
    all_promises_kept(&sys, std::slice::from_ref(&a), Deliveries::ExactlyOnce).await;
    let kept = sys.metrics("api").await;
    assert!(
        kept.lines().any(
            |l| l.starts_with(r#"sign_job_records_kept_total{outcome="kept"} "#)
                && !l.ends_with(" 0")
        ),
        "the api kept the record: {kept}"
    );
}
