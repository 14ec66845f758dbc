//! Backpressure at the door: what a new message can expect, and whether to
//! take it at all. The signer answers from its own work and budget
//! (`sign.ask.backlog`); the api reads neither.

use crate::problem::ApiError;
use crate::state::AppState;
use service_kit::callers::Caller;
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

/// Expectations for a message of `caller` (`None`: an open gateway).
/// Refuses (429) a caller that has `max_pending` jobs waiting already, and
/// a queued message that has `MAX_JOBS_PER_MESSAGE`; refuses a new message
/// (503) when the caller's own backlog could not be cleared within the
/// horizon at its share of the budget, or the whole backlog within
/// `BACKLOG_HORIZON_TOTAL`.
pub async fn expectations(
    state: &AppState,
    key: &str,
    caller: Option<&Caller>,
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
        caller: caller.map(Caller::claimant),
    };
    let client = state.topo.js.client();
    let answer = match timeout_at(by, ask_backlog(&client, &question)).await {
        Ok(Ok(answer)) => answer,
        _ => return Ok(Expectations::default()),
    };
    let slot_every = Duration::from_millis(answer.slot_every_ms);
    let mine = caller.zip(answer.caller.as_ref());
    if let Some((c, mine)) = mine
        && let Some(cap) = c.max_pending
        && mine.pending_jobs >= cap
    {
        refused("too_many_pending", Some(&c.name));
        return Err(ApiError::TooManyPending {
            caller: c.name.clone(),
            pending: mine.pending_jobs,
            cap,
            retry_after: crate::sign::retry_after_secs(Some(slot_every)),
        });
    }
    if let Some(queued) = &answer.queued {
        let cap = state.config.max_jobs_per_message;
        if queued.jobs >= cap {
            refused("too_many_jobs", caller.map(|c| &c.name));
            return Err(ApiError::TooManyJobs {
                waiting: queued.jobs,
                cap,
                retry_after: crate::sign::retry_after_secs(Some(slot_every)),
            });
        }
        // Its next call comes in its owner's order, or in this caller's
        // turn, whichever is first.
        let mut call_in = Duration::from_millis(queued.next_call_in_ms);
        if let Some((_, mine)) = mine {
            call_in = call_in.min(Duration::from_millis(mine.first_call_in_ms));
        }
        return Ok(Expectations {
            estimate: None,
            call_in: Some(call_in),
        });
    }
    let everyone = Duration::from_millis(answer.clear_in_ms);
    let mut estimate = Estimate {
        first_call_in: Duration::from_millis(answer.first_call_in_ms),
        clear_in: everyone,
        slot_every,
    };
    let horizon = state.config.backlog_horizon;
    if let Some((c, mine)) = mine {
        // At its share: what this caller can expect, whatever others sent.
        estimate.first_call_in = Duration::from_millis(mine.first_call_in_ms);
        estimate.clear_in = Duration::from_millis(mine.clear_in_ms);
        if estimate.clear_in > horizon {
            refused("caller_backlog_full", Some(&c.name));
            return Err(ApiError::CallerOverloaded {
                caller: c.name.clone(),
                clear_in_secs: estimate.clear_in.as_secs(),
                horizon_secs: horizon.as_secs(),
                retry_after: retry_after_over(estimate.clear_in, horizon),
            });
        }
    }
    // The whole backlog: on an open gateway everyone is one caller, held
    // to the horizon; with callers, to the (longer) total horizon.
    let total = if caller.is_some() {
        state.config.backlog_horizon_total
    } else {
        horizon
    };
    if everyone > total {
        refused("backlog_full", caller.map(|c| &c.name));
        return Err(ApiError::Overloaded {
            clear_in_secs: everyone.as_secs(),
            horizon_secs: total.as_secs(),
            retry_after: retry_after_over(everyone, total),
        });
    }
    Ok(Expectations {
        estimate: Some(estimate),
        call_in: Some(estimate.first_call_in),
    })
}

/// Count a refusal, by reason and (configured, so bounded) caller.
pub(crate) fn refused(reason: &'static str, caller: Option<&String>) {
    match caller {
        Some(name) => metrics::counter!("sign_jobs_refused_total", "reason" => reason, "caller" => name.clone()).increment(1),
        None => metrics::counter!("sign_jobs_refused_total", "reason" => reason).increment(1),
    }
}

/// Seconds until the backlog could be back within `horizon` (1 s to 1 h).
fn retry_after_over(clear_in: Duration, horizon: Duration) -> u64 {
    clear_in.saturating_sub(horizon).as_secs().clamp(1, 3600)
}
