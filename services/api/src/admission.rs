//! Backpressure at the door: what a new message can expect, and whether to
//! take it at all (the arithmetic is in [`crate::backlog`]).

use crate::backlog::{Estimate, Pace, Pending};
use crate::problem::ApiError;
use crate::state::AppState;
use std::time::Duration;
use tokio::time::{Instant, timeout_at};
use wire_contract::records::LimiterState;
use wire_contract::time::{Clock, SystemClock};
use wire_contract::{load, names};

/// Expectations for a new message, or `None` when it is already queued or
/// the budget cannot be read in time (no estimate, no refusal).
/// Refuses (503) when the backlog could not be cleared within the horizon.
pub async fn expectations(
    state: &AppState,
    key: &str,
    by: Instant,
) -> Result<Option<Estimate>, ApiError> {
    // Long enough for the signer to record the work item (milliseconds
    // usually), short enough that messages finished since are not counted.
    const UNSEEN_FOR: Duration = Duration::from_secs(2);
    let counts = {
        let items = state.work.items();
        if items.contains_key(key) {
            return Ok(None);
        }
        let mut recent = state.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.retain(|_, at| at.elapsed() < UNSEEN_FOR);
        let unseen = recent
            .keys()
            .filter(|k| k.as_str() != key && !items.contains_key(*k))
            .count();
        recent.insert(key.to_owned(), std::time::Instant::now());
        let untried = items.values().filter(|w| w.attempts == 0).count() + unseen;
        Pending {
            untried,
            retrying: items.len() + unseen - untried,
        }
    };
    let calls = match timeout_at(
        by,
        load::<LimiterState>(&state.topo.limiter, "limiter state", names::LIMITER_KEY),
    )
    .await
    {
        Ok(Ok(v)) => v
            .value
            .unwrap_or_default()
            .starts(v.written.unwrap_or_default()),
        _ => return Ok(None),
    };
    let pace = Pace {
        limit: state.config.rate_limit,
        window: state.config.rate_window,
    };
    let estimate = pace.estimate(SystemClock.now(), &calls, counts);
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
    Ok(Some(estimate))
}
