//! The caller's reply, decided once per job by compare-and-set.
//!
//! "Exactly one of a 200 or a webhook" rests on one field of the job record:
//! the api claims `immediate` when it has the signature in time, `deferred`
//! at its deadline, `withdrawn` after answering 503; the notifier delivers
//! only for `deferred` (and claims it for a job the api never answered).
//! Whoever writes first wins; the other reads the verdict. The one
//! exception: the api overrules its own `immediate` claim when it could not
//! confirm it in time and answered 202 ([`answered_202`]).

use crate::state::AppState;
use std::time::Duration;
use wire_contract::records::{JobRecord, Reply};
use wire_contract::{RecordError, Updated, update, with_patience};

/// Set the job's reply to `want` unless already decided; returns whether
/// the job's reply is now `want`.
pub async fn claim_reply(state: &AppState, job_id: &str, want: Reply) -> Result<bool, RecordError> {
    let done = update(
        &state.topo.jobs,
        "job",
        job_id,
        |job: Option<&JobRecord>| job?.replied(want),
    )
    .await?;
    Ok(done.value().and_then(|j| j.reply) == Some(want))
}

/// Make sure a job whose caller was answered 202 after an unconfirmed
/// `Immediate` claim is owed a webhook: the claim may still land after the
/// api stopped waiting for it, so overrule it ([`JobRecord::answered_202`]).
/// Retried through NATS trouble: it must land within the notifier's
/// `REPLY_GRACE`, after which the notifier takes `Immediate` as final.
pub async fn answered_202(jobs: async_nats::jetstream::kv::Store, job_id: String) {
    let started = std::time::Instant::now();
    let written = with_patience(Duration::from_secs(30), || {
        update(&jobs, "job", &job_id, |current: Option<&JobRecord>| {
            current?.answered_202()
        })
    })
    .await;
    let elapsed_ms = started.elapsed().as_millis() as u64;
    match written {
        Ok(Updated::Written(_)) => {
            metrics::counter!("sign_reply_corrections_total").increment(1);
            tracing::warn!(
                job_id,
                elapsed_ms,
                "answered 202 after an unconfirmed 200 claim; the job is owed a webhook"
            );
        }
        Ok(_) => {} // Already deferred: the notifier claimed it first.
        Err(e) => {
            tracing::error!(job_id, elapsed_ms, error = %e, "answered 202 but could not mark the job as owed a webhook; the caller may get none");
        }
    }
}

/// Mark a job whose caller was answered 503 as withdrawn (no webhook),
/// creating the record if its own write never landed. Retried through NATS
/// trouble for a while: it must win before the job's outcome reaches the
/// notifier.
pub async fn withdraw(jobs: async_nats::jetstream::kv::Store, job: JobRecord) {
    let fresh = JobRecord { reply: None, ..job };
    let written = with_patience(Duration::from_secs(30), || {
        update(&jobs, "job", &fresh.id, |current: Option<&JobRecord>| {
            current.unwrap_or(&fresh).replied(Reply::Withdrawn)
        })
    })
    .await;
    match written {
        Ok(Updated::Written(_)) => tracing::info!(job_id = %fresh.id, "job withdrawn after a 503"),
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(job_id = %fresh.id, error = %e, "could not withdraw a job answered 503; a webhook may follow");
        }
    }
}
