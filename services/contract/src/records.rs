//! Records kept in KV buckets: the durable state of jobs, messages, the
//! upstream budget and webhook deliveries.

use crate::messages::Outcome;
use crate::time::UnixMillis;
use serde::{Deserialize, Serialize};

/// How the api answered a job's caller. Set exactly once, by compare-and-set
/// on the job record: that single write is what makes "200 or webhook,
/// never both, never neither" hold when a signature lands at the deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// Answered 200 with the signature: no webhook.
    Immediate,
    /// Answered 202 (or never answered, e.g. the api died): a webhook is owed.
    Deferred,
    /// Answered 503 because accepting took too long, though the job may
    /// have been queued after all: no webhook (the caller was told to retry).
    Withdrawn,
}

/// One caller's request. Key: the job id, in [`crate::names::JOBS_BUCKET`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    /// Job id.
    pub id: String,
    /// The message to sign.
    pub message: String,
    /// Where to POST the outcome if the caller was answered 202.
    pub webhook_url: Option<String>,
    /// Request id for tracing the job across services.
    pub request_id: String,
    /// When the api accepted the request.
    pub created_at: UnixMillis,
    /// How the caller was answered; `None` while the api is still deciding.
    pub reply: Option<Reply>,
}

/// A message's final outcome. Key: message key, in
/// [`crate::names::RESULTS_BUCKET`]. Doubles as the signature cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultRecord {
    /// The message.
    pub message: String,
    /// Signature or permanent failure.
    pub outcome: Outcome,
    /// Upstream attempts it took.
    pub attempts: u32,
    /// When it was decided.
    pub at: UnixMillis,
}

/// A caller waiting for a message's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitingJob {
    /// Job id.
    pub id: String,
    /// Request id, for logs.
    pub request_id: String,
}

/// A signer's temporary claim on a work item while it calls the upstream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The replica holding it.
    pub owner: String,
    /// After this instant another replica may take the item.
    pub until: UnixMillis,
}

/// A message still to be signed, with its attempt history. Key: message key,
/// in [`crate::names::WORK_BUCKET`]. Kept in JetStream so backoff and
/// fairness survive restarts and are shared by replicas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkItem {
    /// The message.
    pub message: String,
    /// Every job waiting for it.
    pub jobs: Vec<WaitingJob>,
    /// When the first job for it arrived.
    pub first_seen: UnixMillis,
    /// Upstream attempts made so far.
    pub attempts: u32,
    /// When the first attempt started (its failure starts the degradation).
    #[serde(default)]
    pub first_attempt: Option<UnixMillis>,
    /// When the last attempt started.
    pub last_attempt: Option<UnixMillis>,
    /// Last failure, for the status resource and logs.
    pub last_error: Option<String>,
    /// Set while a signer is calling the upstream for it.
    pub lease: Option<Lease>,
}

/// Start times of recent upstream calls. Key: [`crate::names::LIMITER_KEY`].
/// Every call is appended here, by compare-and-set, before it is sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimiterState {
    /// Start times, oldest first; entries older than the window are pruned.
    pub calls: Vec<UnixMillis>,
}

/// Where a job's webhook stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Not yet delivered; retries go on.
    Pending,
    /// A 2xx was received.
    Delivered,
    /// Given up (schedule exhausted, 410, or refused target).
    Failed,
    /// The caller was answered 200, or gave no webhook URL.
    NotRequired,
}

/// One webhook attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryAttempt {
    /// When it started.
    pub at: UnixMillis,
    /// HTTP status, if a response came.
    pub status: Option<u16>,
    /// Error, if none came or it was not a 2xx.
    pub error: Option<String>,
    /// How long it took.
    pub latency_ms: u64,
}

/// A job's webhook delivery. Key: job id, in [`crate::names::DELIVERIES_BUCKET`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    /// Current state.
    pub state: DeliveryState,
    /// Every attempt so far, oldest first.
    pub attempts: Vec<DeliveryAttempt>,
    /// When the next attempt is due, while pending.
    pub next_attempt_at: Option<UnixMillis>,
}

/// One upstream call, for operators (the status page). Kept, newest last,
/// in [`RecentCalls`] under [`crate::names::RECENT_CALLS_KEY`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallNote {
    /// When it started.
    pub at: UnixMillis,
    /// The message's key.
    pub message_key: String,
    /// `signed`, `retry_later`, `misconfigured` or `rejected`.
    pub outcome: String,
    /// Why, when it was not signed.
    pub detail: Option<String>,
    /// How long it took.
    pub latency_ms: u64,
}

/// The last upstream calls of all replicas (bounded).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentCalls {
    /// Oldest first.
    pub calls: Vec<CallNote>,
}
