//! What other services may ask the signer, and its answers (request/reply
//! on [`crate::names::BACKLOG_SUBJECT`] and [`crate::names::STATUS_SUBJECT`],
//! answered by any signer replica). The signer's work items and limiter
//! are its own records: nobody else reads them, they ask here.

use crate::records::CallNote;
use crate::time::UnixMillis;
use serde::{Deserialize, Serialize};

/// Questions the api sends at most this many of its recently published
/// message keys with; more are counted as unseen.
pub const MAX_RECENT_KEYS: usize = 256;

/// "What can a caller of this message expect?" (api -> signer).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BacklogQuestionV1 {
    /// The message asked about.
    pub message_key: String,
    /// Keys the asker published moments ago (newest first, at most
    /// [`MAX_RECENT_KEYS`]): those not yet queued are counted as never tried.
    #[serde(default)]
    pub recent_keys: Vec<String>,
    /// The configured caller asking, with its weight (`None` on an open
    /// gateway): the answer then says what its share of the budget gives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<crate::claimants::Claimant>,
}

/// The asked message, while it is pending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedV1 {
    /// Upstream attempts so far.
    pub attempts: u32,
    /// The last failure.
    pub last_error: Option<String>,
    /// A call for it is in flight.
    pub in_flight: bool,
    /// Jobs the signer has taken in for it so far (a redelivered request
    /// counts again; requests still queued are not counted yet).
    #[serde(default)]
    pub jobs: u64,
    /// No upstream call for it can start sooner: the next free budget slot
    /// after those the messages ahead of it take first (0 while a call is
    /// in flight). A lower bound: a retry also waits out its backoff.
    #[serde(default)]
    pub next_call_in_ms: u64,
}

/// The signer's answer to a [`BacklogQuestionV1`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BacklogAnswerV1 {
    /// The asked message if it is pending; `None` if it is not (yet).
    pub queued: Option<QueuedV1>,
    /// Pending messages never tried (the asker's unseen keys included).
    pub untried: usize,
    /// Pending messages tried and waiting for a retry.
    pub retrying: usize,
    /// Until a new message's first upstream call, by the signer's own budget.
    pub first_call_in_ms: u64,
    /// Until the backlog, a new message included, is likely cleared.
    pub clear_in_ms: u64,
    /// One budget slot's worth of time (the window over the limit): how
    /// long a caller should wait before polling again is worth it.
    pub slot_every_ms: u64,
    /// The asking caller's own backlog and what its share gives it, when
    /// the question named a caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<CallerBacklogV1>,
}

/// One caller's pending work and its expectations at its fair share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallerBacklogV1 {
    /// Its jobs taken in and waiting for a signature (requests still
    /// queued to the signer are not counted yet).
    pub pending_jobs: u64,
    /// Pending messages it has jobs for.
    pub messages: usize,
    /// Until a new message of its own gets its first upstream call.
    pub first_call_in_ms: u64,
    /// Until its own backlog, a new message included, is likely cleared.
    pub clear_in_ms: u64,
}

/// One pending message on the status page (bounded sample).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingSampleV1 {
    /// Its key.
    pub message_key: String,
    /// The first 60 characters of the message.
    pub message: String,
    /// Jobs waiting for it.
    pub jobs: usize,
    /// Upstream attempts so far.
    pub attempts: u32,
    /// Since it arrived.
    pub waiting_s: u64,
    /// A call for it is in flight.
    pub in_flight: bool,
    /// The last failure.
    pub last_error: Option<String>,
}

/// Pending work, for the status page.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingV1 {
    /// Pending messages.
    pub messages: usize,
    /// Never tried.
    pub untried: usize,
    /// Tried, waiting for a retry.
    pub retrying: usize,
    /// Age of the oldest.
    pub oldest_age_s: Option<u64>,
    /// The oldest few (at most 20).
    pub oldest: Vec<PendingSampleV1>,
}

/// One taken budget slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotV1 {
    /// When the call started (server time).
    pub used_at: String,
    /// Until it stops counting against a new call.
    pub frees_in_ms: u64,
}

/// The budget, for the status page.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BudgetV1 {
    /// Calls per window.
    pub limit: u32,
    /// The window.
    pub window_s: f64,
    /// Slots a call starting now would find taken.
    pub used: usize,
    /// The taken slots (at most `limit`), soonest free first.
    pub slots: Vec<SlotV1>,
}

/// A recent upstream call, for the status page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallV1 {
    /// When it started.
    pub at: String,
    /// Seconds ago.
    pub ago_s: u64,
    /// The message's key.
    pub message_key: String,
    /// `signed`, `retry_later`, `misconfigured` or `rejected`.
    pub outcome: String,
    /// Why, when not signed.
    pub detail: Option<String>,
    /// How long it took.
    pub latency_ms: u64,
}

impl CallV1 {
    /// A recorded call as shown at `now`.
    pub fn of(note: &CallNote, now: UnixMillis) -> Self {
        Self {
            at: note.at.to_rfc3339(),
            ago_s: now.since(note.at).as_secs(),
            message_key: note.message_key.clone(),
            outcome: note.outcome.clone(),
            detail: note.detail.clone(),
            latency_ms: note.latency_ms,
        }
    }
}

/// The signer's part of the status page (signer -> api, on request).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SignerStatusV1 {
    /// Pending work.
    pub pending: PendingV1,
    /// The budget window.
    pub budget: BudgetV1,
    /// The last upstream calls, newest first (at most 20).
    pub upstream_calls: Vec<CallV1>,
}

/// Why a question got no answer.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    /// No signer answered (none running, or NATS unreachable).
    #[error("no answer: {0}")]
    NoAnswer(String),
    /// The answer is not what this version expects.
    #[error(transparent)]
    Codec(#[from] crate::CodecError),
}

/// Ask a signer what a caller of a message can expect.
///
/// # Errors
/// [`AskError`] when no signer answers or the answer does not decode.
pub async fn ask_backlog(
    client: &async_nats::Client,
    question: &BacklogQuestionV1,
) -> Result<BacklogAnswerV1, AskError> {
    ask(
        client,
        crate::names::BACKLOG_SUBJECT,
        "backlog answer",
        question,
    )
    .await
}

/// Ask a signer for its part of the status page.
///
/// # Errors
/// [`AskError`] when no signer answers or the answer does not decode.
pub async fn ask_status(client: &async_nats::Client) -> Result<SignerStatusV1, AskError> {
    ask(client, crate::names::STATUS_SUBJECT, "signer status", &()).await
}

/// Ask the signer `question` on `subject` and decode its answer.
async fn ask<Q: Serialize, A: serde::de::DeserializeOwned>(
    client: &async_nats::Client,
    subject: &'static str,
    what: &'static str,
    question: &Q,
) -> Result<A, AskError> {
    let reply = client
        .request(subject, crate::encode(question))
        .await
        .map_err(|e| AskError::NoAnswer(e.to_string()))?;
    Ok(crate::decode(what, &reply.payload)?)
}
