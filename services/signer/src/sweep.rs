//! The safety net behind finishing a message: jobs left waiting behind a
//! finished message are told.
//!
//! Finishing tells a message's waiting jobs right after its result is
//! stored, and a join that finds the result afterwards finishes again. Jobs
//! can still be left in the waiting stream with nobody to tell them: a
//! request whose job was appended but whose work item was not written
//! (a crash, a NATS error) is redelivered and then answered from the
//! result, leaving its first append behind; and during a rolling upgrade a
//! replica of an older version finishes a message telling only the jobs it
//! knows. So every [`SWEEP_EVERY`], each message that has waiting jobs but
//! no work item is looked up: if its result is known, its jobs are told and
//! forgotten. A message still being taken in (jobs appended, item not yet
//! written) has no result, and is left alone.

use crate::complete::tell_waiting;
use crate::keep_pending::{Kept, keep_pending};
use crate::work_view::WorkView;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use wire_contract::records::ResultRecord;
use wire_contract::time::Clock;
use wire_contract::{Topology, load, waiting};

/// How often waiting jobs are checked against finished messages.
pub const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Sweep until `shutdown`: every [`SWEEP_EVERY`], or more often when
/// `JOB_RETENTION` is short enough to need it; each sweep also keeps the
/// records of long-pending jobs ([`crate::keep_pending`]).
pub async fn run(topo: Topology, view: &WorkView, clock: &dyn Clock, shutdown: CancellationToken) {
    let every = wire_contract::job_keeping::sweep_every(topo.job_retention, SWEEP_EVERY);
    let kept = tokio::sync::Mutex::new(Kept::default());
    service_kit::every(every, &shutdown, || async {
        sweep_once(&topo, view).await;
        let mut kept = kept.lock().await;
        keep_pending(&topo, view, &mut kept, clock.now()).await;
    })
    .await;
}

/// One pass; returns how many messages' jobs it told.
pub async fn sweep_once(topo: &Topology, view: &WorkView) -> usize {
    let waited_for = match waiting::messages_waited_for(&topo.js).await {
        Ok(keys) => keys,
        Err(e) => {
            tracing::debug!(error = %e, "cannot list the waiting jobs; next sweep");
            return 0;
        }
    };
    let mut told = 0;
    for (key, jobs) in waited_for {
        if view.items().contains_key(key.as_str()) {
            continue; // pending: it is finished the usual way
        }
        let result = match load::<ResultRecord>(&topo.results, "result", key.as_str()).await {
            Ok(v) => v.value,
            Err(e) => {
                tracing::debug!(message_key = %key, error = %e, "cannot read the result; next sweep");
                continue;
            }
        };
        let Some(result) = result else { continue };
        match tell_waiting(topo, &key, &result.message, result.outcome).await {
            Ok(()) => {
                told += 1;
                tracing::warn!(message_key = %key, jobs, "jobs left waiting behind a finished message were told");
                metrics::counter!("sign_waiting_jobs_swept_total").increment(jobs);
            }
            Err(e) => {
                tracing::warn!(message_key = %key, error = %e, "telling left-behind jobs failed; next sweep")
            }
        }
    }
    told
}
