//! Shedding under overload, with real processes: when every place for
//! NATS work is taken, a request is answered `503` problem+json at once
//! (`/problems/overloaded`, `Retry-After`) instead of queueing into a late
//! answer; the held request still answers within 2 s, and the place is
//! free again after.

use crate::client::sign;
use crate::stall_proxy::Way;
use crate::system::{Options, spawn_system};
use std::time::Duration;

#[tokio::test]
async fn with_every_place_taken_a_request_is_shed_at_once() {
    // One place; a request waits at most 200 ms for it.
    let sys = spawn_system(Options {
        api_link_stalls: true,
        api_env: vec![
            ("MAX_ACCEPTING", "1".into()),
            ("SHED_AFTER", "200ms".into()),
        ],
        ..Options::default()
    })
    .await;
    let link = sys.api_link.as_ref().expect("a link that stalls");
    // The first request's publish stalls the api's NATS link for 1.5 s:
    // it holds the only place meanwhile.
    link.arm(
        None,
        (b"sign.requests".to_vec(), Way::Out),
        Duration::from_millis(1_500),
    );
    let held = {
        let (http, api_url, hook) = (
            sys.http.clone(),
            sys.api_url.clone(),
            sys.receiver.url.clone(),
        );
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let response = http
                .get(format!("{api_url}/crypto/sign"))
                .query(&[
                    ("message", "holds the place"),
                    ("webhook_url", hook.as_str()),
                ])
                .send()
                .await
                .expect("answered");
            (response.status().as_u16(), started.elapsed())
        })
    };
    link.stalling(Duration::from_secs(5)).await;

    let shed = sign(&sys, "finds no place").await;
    assert_eq!(shed.status, 503, "{}", shed.body);
    assert_eq!(shed.body["type"], "/problems/overloaded", "{}", shed.body);
    assert_eq!(shed.content_type, "application/problem+json");
    assert_eq!(shed.retry_after.as_deref(), Some("1"));
    assert!(
        shed.elapsed < Duration::from_millis(700),
        "shed after {:?}, not at once",
        shed.elapsed
    );

    let (status, took) = held.await.expect("the held request");
    assert!(matches!(status, 200 | 202 | 503), "{status}");
    assert!(
        took < Duration::from_secs(2),
        "the held request took {took:?}"
    );
    link.flowing().await;
    let after = sign(&sys, "after the stall").await;
    assert!(
        matches!(after.status, 200 | 202),
        "{} {}",
        after.status,
        after.body
    );
    let metrics = sys.metrics("api").await;
    assert!(
        metrics.contains(r#"sign_jobs_refused_total{reason="overloaded"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_request_on_a_connection_opened_long_before_is_not_taken_for_late() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sys = spawn_system(Options::default()).await;
    let addr = sys.api_url.trim_start_matches("http://").to_owned();
    // A warmed pool: connect now, send 2.5 s later (past the whole accept
    // deadline, were it counted from the connection's accept).
    let mut stream = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let started = std::time::Instant::now();
    let request = format!(
        "GET /crypto/sign?message=warmed-pool HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("read");
    let took = started.elapsed();
    let head = String::from_utf8_lossy(&answer);
    let status = head.split(' ').nth(1).unwrap_or_default().to_owned();
    assert!(
        status == "200" || status == "202",
        "answered {status} after {took:?}: {head}"
    );
    assert!(took < Duration::from_secs(2), "took {took:?}");
}
