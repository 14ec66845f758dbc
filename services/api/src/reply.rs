//! The caller's reply, decided once per job by compare-and-set.
//!
//! "Exactly one of a 200 or a webhook" rests on one field of the job record:
//! the api claims `immediate` when it has the signature in time, `deferred`
//! at its deadline, `withdrawn` after answering 503; the notifier delivers
//! only for `deferred` (and claims it for a job the api never answered).
//! Whoever writes first wins; the other reads the verdict.

use crate::state::AppState;
use std::time::Duration;
use wire_contract::records::{JobRecord, Reply};
use wire_contract::{RecordError, load, save};

/// Set the job's reply to `want` unless already decided; returns whether
/// the job's reply is now `want`.
pub async fn claim_reply(state: &AppState, job_id: &str, want: Reply) -> Result<bool, RecordError> {
    loop {
        let v = load::<JobRecord>(&state.topo.jobs, "job", job_id).await?;
        let Some(mut job) = v.value else {
            return Ok(false);
        };
        if let Some(reply) = job.reply {
            return Ok(reply == want);
        }
        job.reply = Some(want);
        match save(&state.topo.jobs, job_id, &job, v.revision).await {
            Ok(_) => return Ok(true),
            Err(RecordError::Conflict) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Mark a job whose caller was answered 503 as withdrawn (no webhook),
/// creating the record if its own write never landed. Retried for a while:
/// it must win before the job's outcome reaches the notifier.
pub async fn withdraw(jobs: async_nats::jetstream::kv::Store, mut job: JobRecord) {
    for _ in 0..60 {
        if let Ok(v) = load::<JobRecord>(&jobs, "job", &job.id).await {
            let mut record = v.value.unwrap_or_else(|| job.clone());
            if record.reply.is_some() {
                return;
            }
            record.reply = Some(Reply::Withdrawn);
            match save(&jobs, &job.id, &record, v.revision).await {
                Ok(_) => {
                    tracing::info!(job_id = %job.id, "job withdrawn after a 503");
                    return;
                }
                Err(RecordError::Conflict) => continue,
                Err(_) => {}
            }
        }
        job.reply = None;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tracing::warn!(job_id = %job.id, "could not withdraw a job answered 503; a webhook may follow");
}
