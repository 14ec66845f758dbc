//! Asking the api to keep the records of jobs still pending (see
//! [`wire_contract::job_keeping`]): job records expire `JOB_RETENTION`
//! after their last write, and a message can stay pending longer. Each
//! sweep, the jobs of every message due a keep are listed from the waiting
//! stream and sent to the api in batches; a message counts as kept only
//! when every batch was answered, so a failure is made up at the next
//! sweep.

use crate::work_view::WorkView;
use std::collections::HashMap;
use wire_contract::job_keeping::{KEEP_BATCH, KeptJobsV1, keep_due, keep_jobs};
use wire_contract::{MessageKey, Topology, UnixMillis, waiting};

/// When this signer last had each pending message's jobs kept.
#[derive(Debug, Default)]
pub struct Kept {
    at: HashMap<String, UnixMillis>,
}

/// One pass at `now`; returns what the api answered, added up.
pub async fn keep_pending(
    topo: &Topology,
    view: &WorkView,
    kept: &mut Kept,
    now: UnixMillis,
) -> KeptJobsV1 {
    let retention = topo.job_retention;
    let due: Vec<String> = {
        let items = view.items();
        kept.at.retain(|key, _| items.contains_key(key));
        items
            .iter()
            .filter(|(key, item)| {
                keep_due(item.first_seen, kept.at.get(*key).copied(), now, retention)
            })
            .map(|(key, _)| key.clone())
            .collect()
    };
    let client = topo.js.client();
    let mut total = KeptJobsV1::default();
    for key in due {
        let message = MessageKey::of_key(&key);
        let ids: Vec<String> = match waiting::list(&topo.js, &message).await {
            Ok(w) => w.jobs.into_iter().map(|j| j.id).collect(),
            Err(e) => {
                tracing::warn!(message_key = %message, error = %e, "cannot list a pending message's jobs to keep them; next sweep");
                continue;
            }
        };
        let mut answers = KeptJobsV1::default();
        let mut complete = true;
        for batch in ids.chunks(KEEP_BATCH) {
            match keep_jobs(&client, batch.to_vec()).await {
                Ok(answer) => answers = answers.plus(answer),
                Err(e) => {
                    // The rest waits for the next sweep: an api that does
                    // not answer is not asked 200 times over.
                    tracing::warn!(message_key = %message, error = %e, "the api did not keep the jobs' records; next sweep");
                    complete = false;
                    break;
                }
            }
        }
        if complete && answers.failed == 0 {
            kept.at.insert(key, now);
        }
        tracing::info!(message_key = %message, jobs = ids.len(), kept = answers.kept, fresh = answers.fresh, missing = answers.missing, failed = answers.failed, "kept the records of a long-pending message's jobs");
        total = total.plus(answers);
    }
    total
}
