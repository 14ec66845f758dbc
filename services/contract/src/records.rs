//! Records kept in KV buckets: the durable state of jobs, messages, the
//! upstream budget and webhook deliveries.

use crate::claimants::{Claimant, Share};
use crate::messages::Outcome;
use crate::time::UnixMillis;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How the api answered a job's caller. Set exactly once, by compare-and-set
/// on the job record: that single write is what makes "200 or webhook,
/// never both, never neither" hold when a signature lands at the deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// Answered 200 with the signature: no webhook. Claimed by the api
    /// before it answers, and the 200 is sent only once the claim is known
    /// to be stored; when that stays unknown the api answers 202 instead
    /// and corrects its own claim to `Deferred` ([`JobRecord::answered_202`]).
    /// So the notifier takes `Immediate` as final only after the reply
    /// grace.
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
    /// The configured caller that asked (`None` when the gateway is open):
    /// only its key reads the job's status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
}

impl JobRecord {
    /// The record with its reply decided as `want`; `None` when it was
    /// already decided (whoever writes first wins, the other reads the
    /// verdict). The one transition of `reply`, used by the api (200, 202,
    /// 503) and the notifier (a job the api never answered).
    pub fn replied(&self, want: Reply) -> Option<JobRecord> {
        self.reply.is_none().then(|| JobRecord {
            reply: Some(want),
            ..self.clone()
        })
    }

    /// The record once the api has answered 202 although it may have
    /// claimed `Immediate` (its claim's acknowledgement did not come in
    /// time, so it could not give the 200): the api alone knows what it
    /// answered, so it may overrule its own claim. `None` when the reply
    /// is already `Deferred`, or `Withdrawn` (which a 202 never follows).
    pub fn answered_202(&self) -> Option<JobRecord> {
        match self.reply {
            None | Some(Reply::Immediate) => Some(JobRecord {
                reply: Some(Reply::Deferred),
                ..self.clone()
            }),
            Some(Reply::Deferred | Reply::Withdrawn) => None,
        }
    }

    /// The record rewritten unchanged, so that the jobs bucket's age limit
    /// (`JOB_RETENTION`, counted from a record's last write) starts again:
    /// a job still pending keeps its record. Asked for by the signer, which
    /// knows what is pending ([`crate::job_keeping`]); written by the api.
    pub fn kept(&self) -> Option<JobRecord> {
        Some(self.clone())
    }

    /// Whether a webhook is owed: `Some(false)` when there is no URL or the
    /// caller got a 200 or a 503, `Some(true)` once the reply is deferred,
    /// `None` while the reply is undecided.
    pub fn owes_webhook(&self) -> Option<bool> {
        if self.webhook_url.is_none() {
            return Some(false);
        }
        match self.reply? {
            Reply::Deferred => Some(true),
            Reply::Immediate | Reply::Withdrawn => Some(false),
        }
    }
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
    /// The job's trace context (the signer span that took it in), so the
    /// upstream attempt and the job's event continue the job's trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<crate::headers::TraceContext>,
}

/// A signer's temporary claim on a work item while it calls the upstream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The replica holding it.
    pub owner: String,
    /// After this instant another replica may take the item.
    pub until: UnixMillis,
}

/// Jobs a [`WorkItem`] keeps in itself, for traces and log samples.
pub const FIRST_JOBS_KEPT: usize = 4;

/// A message still to be signed, with its attempt history. Key: message key,
/// in [`crate::names::WORK_BUCKET`]. Kept in JetStream so backoff and
/// fairness survive restarts and are shared by replicas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkItem {
    /// The message.
    pub message: String,
    /// The first few jobs taken in (at most [`FIRST_JOBS_KEPT`]): the
    /// upstream attempt's span continues the first one's trace and links to
    /// the others, and logs sample their request ids. Every job, these
    /// included, waits in the waiting stream ([`crate::waiting`]), which is
    /// what finishing the message tells: a join never rewrites a record that
    /// grows with the jobs before it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub first_jobs: Vec<WaitingJob>,
    /// Jobs taken in for it so far, for logs and the status page (a sign
    /// request redelivered to the signer counts again).
    #[serde(default)]
    pub joins: u64,
    /// Jobs kept in the item itself by versions before the waiting stream
    /// (field `jobs`); finishing the message tells them too, so items
    /// written before an upgrade, or by an older replica during one, lose
    /// nobody.
    ///
    /// Always written, empty: versions before the waiting stream require the
    /// field, so during a rolling upgrade they can still read new items.
    /// Jobs waiting in the stream for a message such a replica finishes are
    /// told by the signers' sweep ([`crate::waiting`]).
    #[serde(default, rename = "jobs")]
    pub legacy_jobs: Vec<WaitingJob>,
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
    /// The configured callers with jobs for it, by name (bounded by the
    /// configuration; empty on an open gateway): whom a call for it is made
    /// on behalf of, for the fair share.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub callers: BTreeMap<String, Share>,
}

impl WorkItem {
    /// `prev` with `jobs` taken in too, or a new item for `message` if there
    /// was none. The jobs themselves are appended to the waiting stream
    /// before this is written; here they are only counted, and kept while
    /// fewer than [`FIRST_JOBS_KEPT`] are.
    /// `claimants` are the callers the jobs are for (none on an open
    /// gateway).
    pub fn joined<'a>(
        prev: Option<&WorkItem>,
        jobs: &[WaitingJob],
        claimants: impl IntoIterator<Item = &'a Claimant>,
        message: &str,
        now: UnixMillis,
    ) -> WorkItem {
        let mut next = match prev {
            Some(item) => item.clone(),
            None => WorkItem {
                message: message.to_owned(),
                first_jobs: Vec::new(),
                joins: 0,
                legacy_jobs: Vec::new(),
                first_seen: now,
                attempts: 0,
                first_attempt: None,
                last_attempt: None,
                last_error: None,
                lease: None,
                callers: BTreeMap::new(),
            },
        };
        next.joins += jobs.len() as u64;
        for c in claimants {
            let share = next.callers.entry(c.name.clone()).or_insert(Share {
                weight: c.weight,
                jobs: 0,
            });
            share.weight = c.weight;
            share.jobs += 1;
        }
        let room = FIRST_JOBS_KEPT.saturating_sub(next.first_jobs.len());
        next.first_jobs.extend(jobs.iter().take(room).cloned());
        next
    }

    /// Jobs taken in for it so far (older versions' kept jobs included).
    pub fn jobs(&self) -> u64 {
        self.joins + self.legacy_jobs.len() as u64
    }

    /// The jobs it keeps in itself, oldest first: the first few, then any
    /// kept by older versions.
    pub fn kept_jobs(&self) -> impl Iterator<Item = &WaitingJob> {
        self.first_jobs.iter().chain(&self.legacy_jobs)
    }

    /// Leased to `owner` until `until` for an attempt starting `now`: the
    /// attempt counts from here, whether or not the call gets sent.
    pub fn leased(&self, owner: &str, now: UnixMillis, until: UnixMillis) -> WorkItem {
        WorkItem {
            attempts: self.attempts + 1,
            first_attempt: self.first_attempt.or(Some(now)),
            last_attempt: Some(now),
            lease: Some(Lease {
                owner: owner.to_owned(),
                until,
            }),
            ..self.clone()
        }
    }

    /// `owner`'s lease extended to `until`; `None` when the lease is gone or
    /// another's.
    pub fn lease_renewed(&self, owner: &str, until: UnixMillis) -> Option<WorkItem> {
        let lease = self.lease.as_ref().filter(|l| l.owner == owner)?;
        Some(WorkItem {
            lease: Some(Lease {
                until,
                ..lease.clone()
            }),
            ..self.clone()
        })
    }

    /// Given back by `owner` after a failed attempt, keeping its history;
    /// `None` when another replica holds the lease now (ours lapsed).
    pub fn released(&self, owner: &str, reason: &str) -> Option<WorkItem> {
        if self.lease.as_ref().is_some_and(|l| l.owner != owner) {
            return None;
        }
        Some(WorkItem {
            lease: None,
            last_error: Some(reason.to_owned()),
            ..self.clone()
        })
    }
}

/// An instant in NATS server time. A slot is stamped by the server that
/// stores the write adding or ending it, so replicas' clocks never enter the
/// limiter: [`Stamp::Written`] means "when this revision was stored", and
/// the next writer replaces it with the entry's timestamp
/// ([`LimiterState::materialized`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stamp {
    /// The time the server stored the revision that holds this value.
    Written,
    /// A known server time.
    At(UnixMillis),
}

impl Stamp {
    /// The instant, given when the holding revision was stored.
    pub fn at(self, written: UnixMillis) -> UnixMillis {
        match self {
            Stamp::Written => written,
            Stamp::At(t) => t,
        }
    }
}

/// One upstream call's place in the budget: reserved before it is sent,
/// ended once it is over (answer, timeout or error). The upstream counts it
/// at some instant between the two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallSlot {
    /// Chosen by the replica that reserves it, to find it again.
    pub id: u64,
    /// When the reservation was stored.
    pub start: Stamp,
    /// When the end was stored; `None` while the call may be in flight.
    pub end: Option<Stamp>,
}

/// The upstream calls that still count, shared by every signer replica.
/// Key: [`crate::names::LIMITER_KEY`]. Every call is reserved here, by
/// compare-and-set, before it is sent; the transitions below are the only
/// ways it changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimiterState {
    /// Start times written by versions before slots had ends. Read as calls
    /// still in flight; never written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calls: Vec<UnixMillis>,
    /// Calls that may still count, oldest first.
    #[serde(default)]
    pub slots: Vec<CallSlot>,
    /// No call may start before this server time: set when the state was
    /// found lost and calls might have been made that it no longer shows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<UnixMillis>,
}

impl LimiterState {
    /// This state as stored by a revision written at `written` (server
    /// time): every [`Stamp::Written`] becomes that instant and old-format
    /// start times become slots, so the result can be written again.
    pub fn materialized(mut self, written: UnixMillis) -> Self {
        for (i, start) in std::mem::take(&mut self.calls).into_iter().enumerate() {
            self.slots.push(CallSlot {
                id: i as u64,
                start: Stamp::At(start),
                end: None,
            });
        }
        for slot in &mut self.slots {
            slot.start = Stamp::At(slot.start.at(written));
            slot.end = slot.end.map(|e| Stamp::At(e.at(written)));
        }
        self.slots.sort_by_key(|s| s.start.at(written));
        self
    }

    /// A new slot `id` whose start is this write's time.
    pub fn reserving(mut self, id: u64) -> Self {
        self.slots.push(CallSlot {
            id,
            start: Stamp::Written,
            end: None,
        });
        self
    }

    /// Slot `id` ended at this write's time. `None` when there is nothing
    /// to write: the slot is gone (pruned, or the state was lost) or ended.
    pub fn ending(mut self, id: u64) -> Option<Self> {
        let slot = self
            .slots
            .iter_mut()
            .find(|s| s.id == id && s.end.is_none())?;
        slot.end = Some(Stamp::Written);
        Some(self)
    }

    /// Without slot `id`, for a reservation whose call was never sent.
    /// `None` when it is not there.
    pub fn cancelling(mut self, id: u64) -> Option<Self> {
        let before = self.slots.len();
        self.slots.retain(|s| s.id != id);
        (self.slots.len() < before).then_some(self)
    }

    /// The server time slot `id` started, if it is here.
    pub fn start_of(&self, id: u64, written: UnixMillis) -> Option<UnixMillis> {
        self.slots
            .iter()
            .find(|s| s.id == id)
            .map(|s| s.start.at(written))
    }
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
    /// The caller it was made on behalf of (charged to, for the fair
    /// share); `None` on an open gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_behalf: Option<String>,
}

/// The last upstream calls of all replicas (bounded).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentCalls {
    /// Oldest first.
    pub calls: Vec<CallNote>,
}

impl RecentCalls {
    /// `prev` with `note` added, keeping the newest `keep`.
    pub fn noted(prev: Option<&RecentCalls>, note: CallNote, keep: usize) -> RecentCalls {
        let mut calls = prev.map(|r| r.calls.clone()).unwrap_or_default();
        calls.push(note);
        let excess = calls.len().saturating_sub(keep);
        calls.drain(..excess);
        RecentCalls { calls }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(reply: Option<Reply>, url: Option<&str>) -> JobRecord {
        JobRecord {
            id: "j".into(),
            message: "m".into(),
            webhook_url: url.map(str::to_owned),
            request_id: "r".into(),
            created_at: UnixMillis(1),
            reply,
            caller: None,
        }
    }

    #[test]
    fn a_reply_is_decided_once() {
        let undecided = job(None, Some("https://x/hook"));
        let deferred = undecided.replied(Reply::Deferred).expect("undecided");
        assert_eq!(deferred.reply, Some(Reply::Deferred));
        assert_eq!(deferred.replied(Reply::Immediate), None);
        assert_eq!(deferred.replied(Reply::Deferred), None);
    }

    #[test]
    fn a_202_overrules_the_apis_own_unconfirmed_200_claim_and_nothing_else() {
        let url = Some("https://x/hook");
        for before in [None, Some(Reply::Immediate)] {
            let after = job(before, url).answered_202().expect("corrected");
            assert_eq!(after.reply, Some(Reply::Deferred), "from {before:?}");
            assert_eq!(after.owes_webhook(), Some(true));
        }
        assert_eq!(job(Some(Reply::Deferred), url).answered_202(), None);
        assert_eq!(job(Some(Reply::Withdrawn), url).answered_202(), None);
    }

    #[test]
    fn a_webhook_is_owed_only_to_a_deferred_job_with_a_url() {
        let url = Some("https://x/hook");
        assert_eq!(job(None, url).owes_webhook(), None);
        assert_eq!(job(Some(Reply::Deferred), url).owes_webhook(), Some(true));
        assert_eq!(job(Some(Reply::Immediate), url).owes_webhook(), Some(false));
        assert_eq!(job(Some(Reply::Withdrawn), url).owes_webhook(), Some(false));
        assert_eq!(job(Some(Reply::Deferred), None).owes_webhook(), Some(false));
        assert_eq!(job(None, None).owes_webhook(), Some(false));
    }

    fn waiting(id: &str) -> WaitingJob {
        WaitingJob {
            id: id.into(),
            request_id: format!("r-{id}"),
            trace: None,
        }
    }

    #[test]
    fn joining_creates_once_then_counts_and_keeps_only_the_first_few() {
        let first = WorkItem::joined(None, &[waiting("a")], [], "msg", UnixMillis(5));
        assert_eq!(first.first_jobs, vec![waiting("a")]);
        assert_eq!(first.joins, 1);
        assert_eq!(first.first_seen, UnixMillis(5));
        assert_eq!(first.attempts, 0);
        let many: Vec<WaitingJob> = (0..10).map(|i| waiting(&format!("b{i}"))).collect();
        let later = WorkItem::joined(Some(&first), &many, [], "msg", UnixMillis(9));
        assert_eq!(later.joins, 11);
        assert_eq!(later.first_seen, UnixMillis(5));
        assert_eq!(later.first_jobs.len(), FIRST_JOBS_KEPT);
        assert_eq!(later.first_jobs[..2], [waiting("a"), waiting("b0")]);
        let full = WorkItem::joined(Some(&later), &[waiting("c")], [], "msg", UnixMillis(10));
        assert_eq!((full.joins, &full.first_jobs), (12, &later.first_jobs));
    }

    #[test]
    fn joining_tallies_each_callers_jobs_and_keeps_its_latest_weight() {
        let a = Claimant {
            name: "a".into(),
            weight: 1,
        };
        let b = Claimant {
            name: "b".into(),
            weight: 3,
        };
        let first = WorkItem::joined(
            None,
            &[waiting("1"), waiting("2")],
            [&a, &a],
            "m",
            UnixMillis(0),
        );
        let a2 = Claimant {
            weight: 2,
            ..a.clone()
        };
        let later = WorkItem::joined(
            Some(&first),
            &[waiting("3"), waiting("4")],
            [&b, &a2],
            "m",
            UnixMillis(1),
        );
        assert_eq!(
            later.callers.into_iter().collect::<Vec<_>>(),
            vec![
                ("a".to_owned(), Share { weight: 2, jobs: 3 }),
                ("b".to_owned(), Share { weight: 3, jobs: 1 })
            ]
        );
        let open = WorkItem::joined(None, &[waiting("5")], [], "m", UnixMillis(0));
        let text = serde_json::to_string(&open).expect("encodes");
        assert!(!text.contains("callers"), "no field when open: {text}");
    }

    #[test]
    fn an_item_written_before_the_waiting_stream_keeps_its_jobs() {
        let old = r#"{"message":"m","jobs":[{"id":"a","request_id":"r-a"}],"first_seen":1,"attempts":2,"last_attempt":null,"last_error":null,"lease":null}"#;
        let item: WorkItem = serde_json::from_str(old).expect("decodes");
        assert_eq!(item.legacy_jobs, vec![waiting("a")]);
        assert_eq!(
            (item.first_jobs.len(), item.joins, item.attempts),
            (0, 0, 2)
        );
        let new = WorkItem::joined(None, &[waiting("b")], [], "m", UnixMillis(0));
        let text = serde_json::to_string(&new).expect("encodes");
        assert!(
            text.contains(r#""jobs":[]"#),
            "older versions need the field: {text}"
        );
    }

    #[test]
    fn a_lease_counts_the_attempt_and_only_its_owner_renews_or_releases_it() {
        let item = WorkItem::joined(None, &[waiting("a")], [], "msg", UnixMillis(0));
        let leased = item.leased("s1", UnixMillis(10), UnixMillis(25));
        assert_eq!(leased.attempts, 1);
        assert_eq!(leased.first_attempt, Some(UnixMillis(10)));
        assert_eq!(leased.last_attempt, Some(UnixMillis(10)));
        let again = leased.leased("s1", UnixMillis(40), UnixMillis(55));
        assert_eq!(again.attempts, 2);
        assert_eq!(again.first_attempt, Some(UnixMillis(10)));
        assert_eq!(again.last_attempt, Some(UnixMillis(40)));
        let renewed = leased.lease_renewed("s1", UnixMillis(99)).expect("ours");
        assert_eq!(
            renewed.lease.as_ref().map(|l| l.until),
            Some(UnixMillis(99))
        );
        assert_eq!(leased.lease_renewed("s2", UnixMillis(99)), None);
        assert_eq!(item.lease_renewed("s1", UnixMillis(99)), None);
        assert_eq!(leased.released("s2", "502"), None);
        let released = leased.released("s1", "502").expect("ours");
        assert_eq!(released.lease, None);
        assert_eq!(released.last_error.as_deref(), Some("502"));
        assert_eq!(released.attempts, 1);
    }

    #[test]
    fn recent_calls_keep_the_newest() {
        let note = |i: u64| CallNote {
            at: UnixMillis(i),
            message_key: "k".into(),
            outcome: "signed".into(),
            detail: None,
            latency_ms: 1,
            on_behalf: None,
        };
        let mut r = RecentCalls::noted(None, note(0), 3);
        for i in 1..5 {
            r = RecentCalls::noted(Some(&r), note(i), 3);
        }
        let ats: Vec<u64> = r.calls.iter().map(|c| c.at.0).collect();
        assert_eq!(ats, vec![2, 3, 4]);
    }

    #[test]
    fn limiter_slots_are_stamped_by_the_write_that_holds_them() {
        let s = LimiterState::default().reserving(7);
        assert_eq!(s.slots[0].start, Stamp::Written);
        let read = s.materialized(UnixMillis(100));
        assert_eq!(read.start_of(7, UnixMillis(999)), Some(UnixMillis(100)));
        let ended = read.clone().ending(7).expect("in flight");
        let read = ended.materialized(UnixMillis(150));
        assert_eq!(read.slots[0].end, Some(Stamp::At(UnixMillis(150))));
        assert_eq!(read.clone().ending(7), None, "ended once");
        assert_eq!(read.clone().ending(8), None, "not ours");
        assert!(read.clone().cancelling(7).expect("there").slots.is_empty());
        assert_eq!(read.cancelling(8), None);
        let legacy = LimiterState {
            calls: vec![UnixMillis(3)],
            ..LimiterState::default()
        }
        .materialized(UnixMillis(10));
        assert!(legacy.calls.is_empty());
        assert_eq!(legacy.slots[0].start, Stamp::At(UnixMillis(3)));
        assert_eq!(legacy.slots[0].end, None);
    }
}
