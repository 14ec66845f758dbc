//! ops/prometheus's rules in a real Prometheus scraping a real system: a
//! burst against a webhook receiver that answers every webhook `500` and a
//! short backlog horizon. The webhook alerts and the refusal alert fire, the
//! saturation rule reads the full budget, every rule evaluates without
//! error, every series the rules read is one the services export, and every
//! dashboard query parses.

use crate::client::burst;
use crate::prometheus_rules::{dashboard_exprs, metric_names, rule_exprs};
use crate::prometheus_server::Prometheus;
use crate::system::{Options, spawn_system};
use std::collections::BTreeSet;
use std::time::Duration;

/// Series names in a Prometheus text exposition.
fn exported(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn prometheus_alerts_fire_for_failing_webhooks_and_the_saturation_rule_reads_the_budget() {
    // A 12 s horizon at 10 calls per 3 s takes about 20 of 40 new messages
    // and refuses the rest (SignRequestsRefused).
    // Circuits kept closed: every attempt at the failing receiver is sent,
    // as WebhookFailureRateHigh counts sent attempts (an open circuit's
    // are WebhookCircuitsOpen's, tested by promtool).
    let sys = spawn_system(Options {
        failing_receiver: true,
        backlog_horizon: "12s",
        notifier_env: vec![("WEBHOOK_CIRCUIT_FAILURES", "1000".into())],
        ..Options::default()
    })
    .await;
    let prom = Prometheus::start(&sys.metrics_targets()).await;
    prom.until(Duration::from_secs(20), "every target scraped", || async {
        let up = prom.values("up").await;
        if up.len() == 3 && up.iter().all(|v| *v == 1.0) {
            Ok(())
        } else {
            Err(format!("up = {up:?}"))
        }
    })
    .await;

    let messages: Vec<String> = (0..40).map(|i| format!("prometheus-{i}")).collect();
    let answers = burst(&sys, &messages).await;
    let count = |s: u16| answers.iter().filter(|a| a.status == s).count();
    assert!(
        count(202) > 0 && count(503) > 0,
        "want some 202s (failing webhooks) and some 503s (refusals): {} 200, {} 202, {} 503",
        count(200),
        count(202),
        count(503)
    );

    // 10 of 10 slots taken in the burst's first window.
    let saturation = prom
        .until(Duration::from_secs(30), "a saturated budget", || async {
            let v = prom.values("gateway:limiter_saturation:ratio").await;
            if v == [1.0] {
                Ok(v)
            } else {
                Err(format!("gateway:limiter_saturation:ratio = {v:?}"))
            }
        })
        .await;
    assert_eq!(saturation, [1.0]);
    assert_eq!(prom.values("gateway:limiter_slots_limit:max").await, [10.0]);

    let wanted = [
        "WebhookFailureRateHigh",
        "WebhookDeadLetters",
        "SignRequestsRefused",
    ];
    prom.until(
        Duration::from_secs(90),
        "the webhook and refusal alerts firing",
        || async {
            let firing = prom.firing().await;
            if wanted.iter().all(|w| firing.iter().any(|f| f == w)) {
                Ok(())
            } else {
                Err(format!("firing: {firing:?}"))
            }
        },
    )
    .await;
    assert!(
        sys.receiver.deliveries().len() >= 10,
        "the receiver saw the attempts it failed"
    );

    // Every rule evaluated without error (e.g. no many-to-many matches).
    let groups = prom.api("rules", &[]).await;
    let rules: Vec<serde_json::Value> = groups["groups"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .collect();
    assert_eq!(rules.len(), rule_exprs().len(), "every rule loaded");
    for rule in &rules {
        assert_eq!(rule["health"], "ok", "{rule}");
    }

    // The rules read only series the services export (or Prometheus's `up`).
    let mut scraped: BTreeSet<String> = BTreeSet::from(["up".to_owned()]);
    for service in ["api", "signer", "notifier"] {
        scraped.extend(exported(&sys.metrics(service).await));
    }
    let recorded = crate::prometheus_rules::recorded_names();
    let read: BTreeSet<String> = rule_exprs().iter().flat_map(|e| metric_names(e)).collect();
    let missing: Vec<&String> = read
        .iter()
        .filter(|n| !recorded.contains(*n) && !scraped.contains(*n))
        .collect();
    assert!(
        missing.is_empty(),
        "rules read series nobody exports: {missing:?}"
    );

    // Every dashboard query parses in the real Prometheus.
    for expr in dashboard_exprs() {
        if let Err(e) = prom.parses(&expr).await {
            panic!("dashboard query `{expr}` does not parse: {e}");
        }
        // And it has data after this burst.
        assert!(
            !prom.values(&expr).await.is_empty(),
            "dashboard query `{expr}` has no data"
        );
    }
}
