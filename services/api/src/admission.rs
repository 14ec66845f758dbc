//! Backpressure at the door: what a new message can expect, and whether to
//! take it at all. The signer answers from its own work and budget
//! (`sign.ask.backlog`); the api reads neither.

use crate::problem::ApiError;
use crate::state::AppState;
use std::time::Duration;
use tokio::time::{Instant, timeout_at};
use wire_contract::signer_answers::{BacklogQuestionV1, MAX_RECENT_KEYS, ask_backlog};

/// What a caller can expect, as the signer estimates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    /// Until the new message's first upstream call.
    pub first_call_in: Duration,
    /// Until the whole backlog (with the new message) is likely cleared.
    pub clear_in: Duration,
    /// One budget slot's worth of time.
    pub slot_every: Duration,
}

/// What the signer said of a message: an estimate for a new one, and for
/// any message how soon its next upstream call can start at the earliest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expectations {
    /// For a new message (`None` when it is queued already, or no signer
    /// answered in time: no estimate, no refusal).
    pub estimate: Option<Estimate>,
    /// No call for it can start sooner, so no signature can land sooner
    /// (`None` when unknown).
    pub call_in: Option<Duration>,
}

/// Expectations for a message.
/// Refuses a new message (503) when the backlog could not be cleared within
/// the horizon, and a queued one (429) when `MAX_JOBS_PER_MESSAGE` jobs
/// already wait for it.
pub async fn expectations(
    state: &AppState,
    key: &str,
    by: Instant,
) -> Result<Expectations, ApiError> {
    // Long enough for the signer to record the work item (milliseconds
    // usually), short enough that messages finished since are not counted.
    const UNSEEN_FOR: Duration = Duration::from_secs(2);
    let recent_keys: Vec<String> = {
        let mut recent = state.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.retain(|_, at| at.elapsed() < UNSEEN_FOR);
        let mut keys: Vec<(&String, &std::time::Instant)> =
            recent.iter().filter(|(k, _)| k.as_str() != key).collect();
        keys.sort_by_key(|(_, at)| std::cmp::Reverse(**at));
        let keys = keys
            .into_iter()
            .take(MAX_RECENT_KEYS)
            .map(|(k, _)| k.clone())
            .collect();
        recent.insert(key.to_owned(), std::time::Instant::now());
        keys
    };
    let question = BacklogQuestionV1 {
        message_key: key.to_owned(),
        recent_keys,
    };
    let client = state.topo.js.client();
    let answer = match timeout_at(by, ask_backlog(&client, &question)).await {
        Ok(Ok(answer)) => answer,
        _ => return Ok(Expectations::default()),
    };
    if let Some(queued) = &answer.queued {
        let cap = state.config.max_jobs_per_message;
        if queued.jobs >= cap {
            metrics::counter!("sign_jobs_refused_total", "reason" => "too_many_jobs").increment(1);
            return Err(ApiError::TooManyJobs {
                waiting: queued.jobs,
                cap,
                retry_after: crate::sign::retry_after_secs(Some(Duration::from_millis(
                    answer.slot_every_ms,
                ))),
            });
        }
        return Ok(Expectations {
            estimate: None,
            call_in: Some(Duration::from_millis(queued.next_call_in_ms)),
        });
    }
    let estimate = Estimate {
        first_call_in: Duration::from_millis(answer.first_call_in_ms),
        clear_in: Duration::from_millis(answer.clear_in_ms),
        slot_every: Duration::from_millis(answer.slot_every_ms),
    };
    let horizon = state.config.backlog_horizon;
    if estimate.clear_in > horizon {
        metrics::counter!("sign_jobs_refused_total", "reason" => "backlog_full").increment(1);
        let over = (estimate.clear_in - horizon).as_secs().max(1);
        return Err(ApiError::Overloaded {
            clear_in_secs: estimate.clear_in.as_secs(),
            horizon_secs: horizon.as_secs(),
            retry_after: over.min(3600),
        });
    }
    Ok(Expectations {
        estimate: Some(estimate),
        call_in: Some(estimate.first_call_in),
    })
}
