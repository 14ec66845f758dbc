//! The product's promises, checked over a set of answers.

use crate::client::Answer;
use crate::system::System;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// How strict to be about duplicate webhook deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deliveries {
    /// Exactly one delivery per 202 job.
    ExactlyOnce,
    /// At least one, all with the same `webhook-id` (a kill -9 of the
    /// notifier between a 2xx and its record can resend; receivers
    /// deduplicate on `webhook-id`).
    OncePerWebhookId,
}

/// Every answer came within 2 s as a 200 or 202; every 200 is a valid
/// signature and gets no webhook; every 202 gets its webhook (verified,
/// signed by us); the upstream saw no violation. Returns the audit summary.
pub async fn all_promises_kept(
    sys: &System,
    answers: &[Answer],
    mode: Deliveries,
) -> serde_json::Value {
    for a in answers {
        assert!(
            a.elapsed < Duration::from_secs(2),
            "answer for {:?} took {:?}",
            a.message,
            a.elapsed
        );
        assert!(
            a.status == 200 || a.status == 202,
            "unexpected {} for {:?}: {}",
            a.status,
            a.message,
            a.body
        );
        if a.status == 200 {
            let sig = a.body["signature"]
                .as_str()
                .expect("200 carries a signature");
            assert!(
                sys.verifies(&a.message, sig).await,
                "200 signature for {:?} does not verify",
                a.message
            );
        } else {
            assert!(a.location.is_some(), "202 without Location");
            assert!(a.retry_after.is_some(), "202 without Retry-After");
        }
    }
    let deferred: BTreeMap<String, &Answer> = answers
        .iter()
        .filter(|a| a.status == 202)
        .map(|a| (a.id(), a))
        .collect();
    let immediate: BTreeSet<String> = answers
        .iter()
        .filter(|a| a.status == 200)
        .map(|a| a.id())
        .collect();
    let got = sys
        .receiver
        .wait_until(Duration::from_secs(180), |ds| {
            let ids: BTreeSet<&str> = ds
                .iter()
                .filter_map(|d| d.body["data"]["id"].as_str())
                .collect();
            deferred.keys().all(|id| ids.contains(id.as_str()))
        })
        .await;
    let mut by_job: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for d in &got {
        by_job
            .entry(d.body["data"]["id"].as_str().unwrap_or_default().to_owned())
            .or_default()
            .push(d.clone());
    }
    for (id, answer) in &deferred {
        let ds = by_job.get(id).unwrap_or_else(|| {
            panic!(
                "no webhook for 202 job {id} ({:?})\n{}",
                answer.message,
                sys.logs()
            )
        });
        let ids: BTreeSet<&str> = ds.iter().map(|d| d.webhook_id.as_str()).collect();
        assert_eq!(
            ids.len(),
            1,
            "job {id} got webhooks with different ids: {ids:?}"
        );
        if mode == Deliveries::ExactlyOnce {
            assert_eq!(ds.len(), 1, "job {id} got {} webhooks", ds.len());
        }
        let d = &ds[0];
        assert!(
            d.signature_valid,
            "webhook for {id} has a bad webhook-signature"
        );
        assert_eq!(d.body["type"], "signature.completed", "{}", d.body);
        assert_eq!(d.body["data"]["message"], answer.message.as_str());
        let sig = d.body["data"]["signature"]
            .as_str()
            .expect("webhook carries the signature");
        assert!(
            sys.verifies(&answer.message, sig).await,
            "webhook signature for {id} does not verify"
        );
    }
    for id in &immediate {
        assert!(
            !by_job.contains_key(id),
            "job {id} was answered 200 and still got a webhook"
        );
    }
    let audit = sys.audit().await;
    assert_eq!(
        audit["violations"], 0,
        "the upstream saw rate-limit violations: {audit}"
    );
    audit
}
