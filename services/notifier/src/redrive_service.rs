//! Operator redrive over NATS request/reply, so the `nats` CLI is the whole
//! tool and the notifier grows no HTTP surface:
//!
//! ```text
//! nats req webhooks.redrive <job-id>          # one (or several, space-separated)
//! nats req --timeout 2m webhooks.redrive all  # every dead letter still failed
//! ```
//!
//! Every replica subscribes in the queue group [`QUEUE_GROUP`], so each
//! request is answered once. A job's dead letter is found by a direct get of
//! the last message on `webhooks.dead.<job_id>`; `all` lists the stream's
//! subjects. Each letter goes through [`crate::redrive`], and the reply says
//! what became of every id ([`RedriveReply`]).

use crate::dead_letter::{self, DeadLetterV1, Redriven};
use async_nats::jetstream::stream::{DirectGetErrorKind, Stream};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use wire_contract::consume::consume;
use wire_contract::names::{
    DEAD_LETTER_STREAM, DEAD_LETTER_SUBJECT, DEAD_LETTER_SUBJECTS, REDRIVE_SUBJECT,
};
use wire_contract::records::DeliveryState;
use wire_contract::{Topology, decode, encode};

/// Queue group of the redrive subscription: one replica answers each request.
pub const QUEUE_GROUP: &str = "notifier";
/// Redrives in flight at once while answering `all`.
const PARALLEL: usize = 16;

/// What an operator asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Every dead letter (the latest per job).
    All,
    /// These jobs, in the order given, without repeats.
    Jobs(Vec<String>),
}

/// Parse a request payload: `all`, or job ids separated by spaces, commas or
/// newlines.
///
/// # Errors
///
/// A message for the operator if the payload is empty, not UTF-8, or mixes
/// `all` with ids.
pub fn parse(payload: &[u8]) -> Result<Request, String> {
    let text = std::str::from_utf8(payload).map_err(|_| "the request is not UTF-8".to_owned())?;
    let mut seen = BTreeSet::new();
    let ids: Vec<String> = text
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|s| !s.is_empty())
        .filter(|s| seen.insert(*s))
        .map(str::to_owned)
        .collect();
    match ids.as_slice() {
        [] => Err("expected a job id (or several, space-separated) or `all`".to_owned()),
        [one] if one.eq_ignore_ascii_case("all") => Ok(Request::All),
        _ if ids.iter().any(|id| id.eq_ignore_ascii_case("all")) => {
            Err("`all` cannot be combined with job ids".to_owned())
        }
        _ => Ok(Request::Jobs(ids)),
    }
}

/// A job whose dead letter was found but not redriven.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// The job.
    pub id: String,
    /// Why: its delivery state (`delivered`, `pending`, …), or `job_missing`
    /// when the job record has expired and the webhook can no longer be sent.
    pub state: String,
}

/// A job whose redrive failed on a NATS error (trying again may work).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failed {
    /// The job.
    pub id: String,
    /// What went wrong.
    pub error: String,
}

/// The reply to a redrive request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedriveReply {
    /// Jobs reset to a fresh schedule and requeued.
    pub redriven: Vec<String>,
    /// Jobs with a dead letter that were left alone (delivered meanwhile,
    /// already redriven, or expired).
    pub skipped: Vec<Skipped>,
    /// Ids without a dead letter.
    pub not_found: Vec<String>,
    /// Jobs whose redrive hit an error; only present when there are some.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<Failed>,
    /// Entries left out so the reply fits in one NATS message (skipped ones
    /// first); only present when non-zero. Every redrive is also logged.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub omitted: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl RedriveReply {
    /// Drop entries (skipped first, then not found, then redriven, then
    /// errors) until the JSON is at most `max` bytes, counting them in
    /// `omitted`.
    pub fn fit(mut self, max: usize) -> Self {
        /// Drop the second half of `list`; how many were dropped.
        fn halve<T>(list: &mut Vec<T>) -> usize {
            let dropped = list.len().div_ceil(2);
            list.truncate(list.len() - dropped);
            dropped
        }
        while encode(&self).len() > max {
            self.omitted += if !self.skipped.is_empty() {
                halve(&mut self.skipped)
            } else if !self.not_found.is_empty() {
                halve(&mut self.not_found)
            } else if !self.redriven.is_empty() {
                halve(&mut self.redriven)
            } else if !self.errors.is_empty() {
                halve(&mut self.errors)
            } else {
                break;
            };
        }
        self
    }
}

/// The reply to a request that could not be carried out at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedriveError {
    /// What is wrong.
    pub error: String,
}

/// Answer redrive requests on [`REDRIVE_SUBJECT`] until `shutdown`. A
/// request being answered is finished first (a redrive is never cut between
/// resetting the record and publishing the event).
pub async fn serve(topology: Topology, shutdown: CancellationToken) {
    let client = topology.js.client();
    let (topology, client) = (&topology, &client);
    consume(
        REDRIVE_SUBJECT,
        &shutdown,
        move || async move {
            let requests = client
                .queue_subscribe(REDRIVE_SUBJECT, QUEUE_GROUP.to_owned())
                .await?;
            Ok(requests.map(Ok))
        },
        move |request| respond(topology, client, request),
    )
    .await;
}

/// Carry out one request and reply to it.
async fn respond(topology: &Topology, client: &async_nats::Client, request: async_nats::Message) {
    let answer = match answer(topology, &request.payload).await {
        Ok(reply) => encode(&reply.fit(client.max_payload())),
        Err(error) => encode(&error),
    };
    let Some(reply_to) = request.reply else {
        return;
    };
    if let Err(err) = client.publish(reply_to, answer).await {
        warn!(error = %err, "could not reply to a redrive request");
    }
}

/// Carry out one request.
async fn answer(topology: &Topology, payload: &[u8]) -> Result<RedriveReply, RedriveError> {
    let request = match parse(payload) {
        Ok(request) => request,
        Err(error) => {
            warn!(%error, "malformed redrive request");
            return Err(RedriveError { error });
        }
    };
    info!(?request, "redrive requested");
    match carry_out(topology, request).await {
        Ok(reply) => {
            info!(
                redriven = reply.redriven.len(),
                skipped = reply.skipped.len(),
                not_found = reply.not_found.len(),
                errors = reply.errors.len(),
                "redrive done"
            );
            Ok(reply)
        }
        Err(error) => {
            warn!(%error, "redrive request failed");
            Err(RedriveError { error })
        }
    }
}

/// What became of one job id.
enum Outcome {
    Redriven,
    Skipped(String),
    NotFound,
    Failed(String),
}

/// Redrive what `request` names. `Err` only if the dead-letter stream cannot
/// be reached or listed at all.
async fn carry_out(topology: &Topology, request: Request) -> Result<RedriveReply, String> {
    let stream = topology
        .js
        .get_stream(DEAD_LETTER_STREAM)
        .await
        .map_err(|e| format!("dead-letter stream {DEAD_LETTER_STREAM}: {e}"))?;
    let ids = match request {
        Request::Jobs(ids) => ids,
        Request::All => {
            let mut subjects: Vec<String> = stream
                .info_with_subjects(DEAD_LETTER_SUBJECTS)
                .await
                .map_err(|e| format!("listing dead letters: {e}"))?
                .map_ok(|(subject, _count)| subject)
                .try_collect()
                .await
                .map_err(|e| format!("listing dead letters: {e}"))?;
            subjects.sort();
            let prefix = format!("{DEAD_LETTER_SUBJECT}.");
            subjects
                .iter()
                .filter_map(|s| s.strip_prefix(&prefix).map(str::to_owned))
                .collect()
        }
    };
    let outcomes: Vec<(String, Outcome)> = futures::stream::iter(ids)
        .map(|id| {
            let stream = &stream;
            async move {
                let outcome = redrive_one(topology, stream, &id).await;
                (id, outcome)
            }
        })
        .buffered(PARALLEL)
        .collect()
        .await;
    let mut reply = RedriveReply::default();
    for (id, outcome) in outcomes {
        match outcome {
            Outcome::Redriven => reply.redriven.push(id),
            Outcome::Skipped(state) => reply.skipped.push(Skipped { id, state }),
            Outcome::NotFound => reply.not_found.push(id),
            Outcome::Failed(error) => reply.errors.push(Failed { id, error }),
        }
    }
    Ok(reply)
}

/// Find `id`'s latest dead letter and redrive it.
async fn redrive_one(topology: &Topology, stream: &Stream, id: &str) -> Outcome {
    if !is_job_id(id) {
        return Outcome::NotFound;
    }
    let letter = match stream
        .direct_get_last_for_subject(dead_letter::subject(id))
        .await
    {
        Ok(message) => message,
        Err(err) if err.kind() == DirectGetErrorKind::NotFound => return Outcome::NotFound,
        Err(err) => return Outcome::Failed(format!("reading the dead letter: {err}")),
    };
    let letter: DeadLetterV1 = match decode("dead letter", &letter.payload) {
        Ok(letter) => letter,
        Err(err) => return Outcome::Failed(err.to_string()),
    };
    match crate::redrive(topology, &letter).await {
        Ok(Redriven::Requeued) => {
            info!(job_id = id, "dead letter redriven");
            Outcome::Redriven
        }
        Ok(Redriven::NotFailed(state)) => Outcome::Skipped(state_name(state)),
        Ok(Redriven::JobMissing) => Outcome::Skipped("job_missing".to_owned()),
        Err(err) => Outcome::Failed(err.to_string()),
    }
}

/// Whether `id` can be a job id at all: a KV key (`[-/_=.A-Za-z0-9]`, no
/// empty dot-separated part), hence also a subject suffix with no wildcard.
fn is_job_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '/' | '_' | '=' | '.'))
        && id.split('.').all(|part| !part.is_empty())
}

/// `delivered`, `pending`, …: the state as it is written in the record.
fn state_name(state: DeliveryState) -> String {
    serde_json::to_value(state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{state:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jobs(ids: &[&str]) -> Request {
        Request::Jobs(ids.iter().map(|s| (*s).to_owned()).collect())
    }

    #[test]
    fn a_request_names_jobs_or_all() {
        assert_eq!(parse(b"job-1"), Ok(jobs(&["job-1"])));
        assert_eq!(parse(b" job-1\n"), Ok(jobs(&["job-1"])));
        assert_eq!(
            parse(b"a b,c, a"),
            Ok(jobs(&["a", "b", "c"])),
            "separators mix and repeats are dropped"
        );
        assert_eq!(parse(b"all"), Ok(Request::All));
        assert_eq!(parse(b" ALL "), Ok(Request::All));
    }

    #[test]
    fn malformed_requests_are_refused() {
        assert!(parse(b"").is_err());
        assert!(parse(b" , ").is_err());
        assert!(parse(b"all job-1").is_err());
        assert!(parse(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn only_kv_key_shaped_ids_are_looked_up() {
        for ok in [
            "2b1c8d3e-0b7a-4e0f-9a57-0d1c2b3a4f5e",
            "job-1",
            "a.b",
            "x_y=z/w",
        ] {
            assert!(is_job_id(ok), "{ok}");
        }
        for bad in ["", "*", ">", "a.*", "a..b", ".a", "a.", "a b", "ä"] {
            assert!(!is_job_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn states_are_named_as_in_the_record() {
        assert_eq!(state_name(DeliveryState::Delivered), "delivered");
        assert_eq!(state_name(DeliveryState::NotRequired), "not_required");
    }

    #[test]
    fn the_reply_has_the_documented_shape() {
        let reply = RedriveReply {
            redriven: vec!["a".into()],
            skipped: vec![Skipped {
                id: "b".into(),
                state: "delivered".into(),
            }],
            not_found: vec!["c".into()],
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&reply).expect("json"),
            serde_json::json!({
                "redriven": ["a"],
                "skipped": [{"id": "b", "state": "delivered"}],
                "not_found": ["c"],
            })
        );
    }

    #[test]
    fn an_oversized_reply_drops_skipped_entries_first() {
        let reply = RedriveReply {
            redriven: (0..10).map(|i| format!("r{i}")).collect(),
            skipped: (0..1000)
                .map(|i| Skipped {
                    id: format!("s{i}"),
                    state: "delivered".into(),
                })
                .collect(),
            ..Default::default()
        };
        let total = reply.redriven.len() + reply.skipped.len();
        let fitted = reply.fit(1024);
        assert!(encode(&fitted).len() <= 1024);
        assert_eq!(fitted.redriven.len(), 10, "redriven ids are kept");
        assert_eq!(
            fitted.redriven.len() + fitted.skipped.len() + fitted.omitted,
            total
        );
        let small = RedriveReply {
            redriven: vec!["a".into()],
            ..Default::default()
        };
        assert_eq!(small.clone().fit(1024), small);
    }
}
