//! Keeping the records of jobs still pending, when the signer asks
//! (`sign.jobs.keep`, see [`wire_contract::job_keeping`]): the job records
//! are the api's, so the api rewrites them; the signer knows which are
//! still pending. Any one api replica answers (queue group).

use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use wire_contract::consume::consume;
use wire_contract::job_keeping::{KEEP_BATCH, KeepJobsV1, KeptJobsV1, rewrite_due};
use wire_contract::names::{API_ANSWERS_GROUP, KEEP_JOBS_SUBJECT};
use wire_contract::records::JobRecord;
use wire_contract::time::{Clock, SystemClock};
use wire_contract::{Topology, Updated, decode, encode, load, update_versioned};

/// Records rewritten at once.
const PARALLEL: usize = 16;

/// Answer keep requests until `shutdown` (the one consumer loop
/// resubscribes whatever NATS does).
pub async fn serve(topo: Topology, shutdown: CancellationToken) {
    let client = topo.js.client();
    consume(
        "keep-jobs",
        &shutdown,
        || {
            let client = client.clone();
            async move {
                let sub = client
                    .queue_subscribe(KEEP_JOBS_SUBJECT, API_ANSWERS_GROUP.into())
                    .await?;
                Ok(sub.map(Ok))
            }
        },
        |request| {
            let (topo, client) = (&topo, &client);
            async move {
                let Some(reply) = request.reply.clone() else {
                    return;
                };
                // An undecodable request is answered (nothing kept) rather
                // than left to time out.
                let ids = decode::<KeepJobsV1>("keep request", &request.payload)
                    .map(|r| r.ids)
                    .unwrap_or_default();
                let kept = keep(topo, ids).await;
                if let Err(e) = client.publish(reply, encode(&kept)).await {
                    tracing::debug!(error = %e, "could not answer a keep request");
                }
            }
        },
    )
    .await;
}

/// Rewrite `ids`' records unchanged (at most [`KEEP_BATCH`]) unless written
/// lately; a NATS error on one leaves it for the signer's next request.
pub async fn keep(topo: &Topology, mut ids: Vec<String>) -> KeptJobsV1 {
    ids.truncate(KEEP_BATCH);
    let retention = topo.job_retention;
    let outcomes: Vec<_> = futures::stream::iter(ids)
        .map(|id| async move {
            let current = load::<JobRecord>(&topo.jobs, "job record", &id).await?;
            let now = SystemClock.now();
            update_versioned(&topo.jobs, "job record", &id, current, |v| {
                if rewrite_due(v.written, now, retention) {
                    v.value.as_ref().and_then(JobRecord::kept)
                } else {
                    None
                }
            })
            .await
        })
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    let mut answer = KeptJobsV1::default();
    let mut first_error = None;
    for outcome in outcomes {
        match outcome {
            Ok(Updated::Written(_)) => answer.kept += 1,
            Ok(Updated::Unchanged(Some(_))) => answer.fresh += 1,
            Ok(_) => answer.missing += 1,
            Err(e) => {
                answer.failed += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error {
        tracing::warn!(failed = answer.failed, first_error = %e, "could not keep some job records; the signer asks again");
    }
    for (outcome, n) in [
        ("kept", answer.kept),
        ("fresh", answer.fresh),
        ("missing", answer.missing),
        ("failed", answer.failed),
    ] {
        ::metrics::counter!("sign_job_records_kept_total", "outcome" => outcome).increment(n);
    }
    answer
}
