//! "A 200 or a webhook, never both, never neither" when the api's link to
//! NATS stalls at the wrong moment: while the request is accepted, while the
//! result lands, around the reply claim. The api answers 200 only once its
//! claim is known to be stored; when in doubt it answers 202 and overrules
//! its own claim, which the notifier takes as final only after the grace.

use crate::client::{Answer, sign};
use crate::stall_proxy::{Sign, Way};
use crate::system::{Options, System, spawn_system};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use wire_contract::MessageKey;
use wire_contract::mirror::Mirror;
use wire_contract::names::DELIVERIES_BUCKET;
use wire_contract::records::{DeliveryRecord, DeliveryState};

/// Where the stall starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Moment {
    /// Accepting: the api publishes the request.
    Accept,
    /// Just after the result lands: the api's watch receives it.
    Result,
    /// The reply claim's read of the job record, just after the result
    /// (the claim is then never written if the api stops waiting).
    ClaimRead,
    /// The reply claim's write.
    ClaimWrite,
}

impl Moment {
    const ALL: [Moment; 4] = [
        Self::Accept,
        Self::Result,
        Self::ClaimRead,
        Self::ClaimWrite,
    ];

    /// The bytes the api exchanges with NATS at this moment for `message`
    /// (and what must pass before them).
    fn sign(self, message: &str) -> (Option<Sign>, Sign) {
        let landed = (
            format!("$KV.sign_results.{}", MessageKey::of(message)).into_bytes(),
            Way::In,
        );
        match self {
            Self::Accept => (None, (b"sign.requests".to_vec(), Way::Out)),
            Self::Result => (None, landed),
            Self::ClaimRead => (Some(landed), (b"KV_sign_jobs".to_vec(), Way::Out)),
            Self::ClaimWrite => (None, (br#""reply":"immediate""#.to_vec(), Way::Out)),
        }
    }
}

/// Requests per moment.
const EACH: usize = 3;
/// Longer than the whole 2 s: whatever the api was waiting for when the
/// stall started does not come back before its answer is due.
const STALL: Duration = Duration::from_millis(2_500);

#[tokio::test]
async fn stalls_of_the_apis_nats_link_never_give_a_caller_both_or_neither() {
    let sys = spawn_system(Options {
        first_try_success: 1.0,
        seed: 31,
        api_link_stalls: true,
        ..Options::default()
    })
    .await;
    let link = sys.api_link.as_ref().expect("a link that stalls");
    let mut answers = Vec::new();
    let mut fired = BTreeMap::new();
    for moment in Moment::ALL {
        for i in 0..EACH {
            let message = format!("stall-{moment:?}-{i}");
            let (after, trigger) = moment.sign(&message);
            link.arm(after, trigger, STALL);
            answers.push(sign(&sys, &message).await);
            if link.disarm() {
                *fired.entry(moment).or_insert(0) += 1;
            }
            link.flowing().await;
        }
    }
    let counts = answers.iter().fold(BTreeMap::new(), |mut m, a| {
        *m.entry(a.status).or_insert(0) += 1;
        m
    });
    eprintln!("answers under stalls: {counts:?}; stalls started at {fired:?}");

    for a in &answers {
        eprintln!(
            "{}: {} {:?} {}",
            a.message, a.status, a.elapsed, a.body["detail"]
        );
    }
    for a in &answers {
        assert!(
            a.elapsed < Duration::from_secs(2),
            "{} took {:?}",
            a.message,
            a.elapsed
        );
        assert!(
            matches!(a.status, 200 | 202 | 503),
            "{}: {} {}",
            a.message,
            a.status,
            a.body
        );
    }
    let jobs: Vec<&Answer> = answers.iter().filter(|a| a.status != 503).collect();
    let refused: Vec<&Answer> = answers.iter().filter(|a| a.status == 503).collect();
    // Every job's delivery settles: Delivered for a 202, NotRequired for a
    // 200 (the notifier decides after the grace, so a late claim of either
    // side has been seen by then).
    let settled = settled_deliveries(&sys, &jobs).await;
    let webhooks = sys.receiver.deliveries();
    for a in &jobs {
        let id = a.id();
        let sent = webhooks
            .iter()
            .filter(|d| d.body["data"]["id"].as_str() == Some(id.as_str()))
            .count();
        match a.status {
            200 => {
                assert_eq!(
                    sent, 0,
                    "{} was answered 200 and got a webhook too",
                    a.message
                );
                assert_eq!(settled[&id], DeliveryState::NotRequired, "{}", a.message);
            }
            _ => {
                assert_eq!(
                    sent, 1,
                    "{} was answered 202 and got {sent} webhooks",
                    a.message
                );
                assert_eq!(settled[&id], DeliveryState::Delivered, "{}", a.message);
            }
        }
    }
    // A 503 (told to retry) gets no webhook either, though its job may
    // have been queued: the api withdraws it.
    for a in &refused {
        let sent = webhooks
            .iter()
            .filter(|d| d.body["data"]["message"].as_str() == Some(a.message.as_str()))
            .count();
        assert_eq!(sent, 0, "{} was answered 503 and got a webhook", a.message);
    }
    // The stalls did hit the claim, the case this is about: the api
    // answered 202 though the signature had landed, and overruled its
    // own claim.
    assert!(
        fired.get(&Moment::ClaimRead).is_some_and(|&n| n > 0)
            && fired.get(&Moment::ClaimWrite).is_some_and(|&n| n > 0),
        "the stalls never hit the reply claim: {fired:?}"
    );
    let metrics = sys.metrics("api").await;
    let corrections: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("sign_reply_corrections_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(
        corrections >= 1.0,
        "no 202 after an unconfirmed claim:\n{metrics}"
    );
}

/// Wait (bounded) until every job's delivery record has left `Pending`,
/// following the deliveries bucket as it changes.
async fn settled_deliveries(sys: &System, jobs: &[&Answer]) -> BTreeMap<String, DeliveryState> {
    let client = async_nats::connect(sys.nats_url()).await.expect("nats");
    let deliveries = async_nats::jetstream::new(client)
        .get_key_value(DELIVERIES_BUCKET)
        .await
        .expect("deliveries bucket");
    let mirror = Arc::new(Mirror::<DeliveryRecord>::default());
    let stop = CancellationToken::new();
    let following = tokio::spawn({
        let (mirror, stop) = (Arc::clone(&mirror), stop.clone());
        async move { mirror.follow(deliveries, "delivery", stop).await }
    });
    let all_settled = async {
        loop {
            let settled: BTreeMap<String, DeliveryState> = {
                let items = mirror.items();
                jobs.iter()
                    .filter_map(|a| {
                        let r = items.get(&a.id())?;
                        (r.state != DeliveryState::Pending).then(|| (a.id(), r.state))
                    })
                    .collect()
            };
            if settled.len() == jobs.len() {
                return settled;
            }
            mirror.changed().await;
        }
    };
    let settled = tokio::time::timeout(Duration::from_secs(60), all_settled).await;
    stop.cancel();
    let _ = following.await;
    settled.unwrap_or_else(|_| panic!("deliveries still unsettled after 60 s\n{}", sys.logs()))
}
