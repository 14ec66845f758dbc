//! Messages published on the streams (versioned; the name says the version).

use serde::{Deserialize, Serialize};

/// One accepted caller asking for a message's signature: api -> signer.
/// Published with `Nats-Msg-Id = job_id`, so a retried publish is deduplicated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignRequestV1 {
    /// The caller's job id (one per caller, even for identical messages).
    pub job_id: String,
    /// The message to sign.
    pub message: String,
    /// The configured caller it is for (`None` on an open gateway): the
    /// scheduler's fair share divides the budget among callers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<crate::claimants::Claimant>,
}

/// How a message's signing ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// The upstream signed it.
    Signed {
        /// The signature exactly as the upstream returned it.
        signature: String,
    },
    /// The upstream rejected it for good (a 4xx other than 401/403/429).
    Failed {
        /// Why, for the caller.
        reason: String,
    },
}

impl Outcome {
    /// The webhook event type for this outcome.
    pub fn event_type(&self) -> &'static str {
        match self {
            Outcome::Signed { .. } => "signature.completed",
            Outcome::Failed { .. } => "signature.failed",
        }
    }
}

/// A job's outcome: signer -> notifier. Published with
/// `Nats-Msg-Id = job_id`, one event per job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobEventV1 {
    /// The job this outcome belongs to.
    pub job_id: String,
    /// The message that was signed.
    pub message: String,
    /// Signature or failure.
    pub outcome: Outcome,
}
