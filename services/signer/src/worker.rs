//! The paced loop: ask the scheduler, claim the message, take a budget slot,
//! call the upstream, record what happened.
//!
//! Calls run concurrently (a hanging upstream call must not stop the next
//! slot from being used); a message with a call in flight is leased, so no
//! replica picks it twice. The lease outlives the call timeout and is
//! renewed while its holder still works on the message (slow bookkeeping
//! must not hand a signed message to another replica), so a replica that
//! dies mid-call hands the message back when the lease expires.
//!
//! Every call has a hard deadline, `call_timeout` from just before its
//! claim: the limiter counts a call as able to reach the upstream until
//! then, so nothing may be sent after it.

use crate::budget::Admission;
use crate::complete::complete_with_retry;
use crate::health::Health;
use crate::job_traces;
use crate::scheduler::{self, Candidate, Next, RetryPolicy};
use crate::shared_budget::{SharedBudget, Slot, Taken};
use crate::upstream::{CallOutcome, Upstream};
use crate::work_view::WorkView;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span};
use wire_contract::messages::Outcome;
use wire_contract::pause::pause;
use wire_contract::records::{CallNote, RecentCalls, ResultRecord, WorkItem};
use wire_contract::time::Clock;
use wire_contract::{
    MessageKey, RecordError, Topology, UnixMillis, Updated, load, names, save, update,
    with_patience,
};

/// Calls kept in the recent-calls log (status page, fair share).
const RECENT_KEPT: usize = scheduler::FAIR_MEMORY;

/// Everything the loop needs.
pub struct Worker {
    /// Streams and buckets.
    pub topo: Topology,
    /// The upstream client.
    pub upstream: Upstream,
    /// The shared budget.
    pub budget: SharedBudget,
    /// Retry timing.
    pub policy: RetryPolicy,
    /// Time source.
    pub clock: Arc<dyn Clock>,
    /// Pending messages.
    pub view: Arc<WorkView>,
    /// Readiness flags.
    pub health: Arc<Health>,
    /// This replica's name.
    pub signer_id: String,
    /// Per-call timeout (bounds the lease).
    pub call_timeout: Duration,
    /// Pause after a credentials error.
    pub auth_retry_interval: Duration,
    /// Calls in flight here: message key -> the caller charged.
    in_flight: Mutex<HashMap<String, Option<String>>>,
    paused_until: Mutex<Option<UnixMillis>>,
}

/// A message this replica holds the lease on, with a budget slot.
struct Claimed {
    key: MessageKey,
    item: WorkItem,
    slot: Slot,
    /// The caller charged for the call.
    on_behalf: Option<String>,
    /// Nothing may be sent after this.
    deadline: tokio::time::Instant,
}

impl Worker {
    /// Assemble a worker.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        topo: Topology,
        upstream: Upstream,
        budget: SharedBudget,
        policy: RetryPolicy,
        clock: Arc<dyn Clock>,
        view: Arc<WorkView>,
        health: Arc<Health>,
        signer_id: String,
        call_timeout: Duration,
        auth_retry_interval: Duration,
    ) -> Self {
        Self {
            topo,
            upstream,
            budget,
            policy,
            clock,
            view,
            health,
            signer_id,
            call_timeout,
            auth_retry_interval,
            in_flight: Mutex::new(HashMap::new()),
            paused_until: Mutex::new(None),
        }
    }

    fn lease_span(&self) -> Duration {
        self.call_timeout + Duration::from_secs(5)
    }

    /// Run until `shutdown`, then wait for calls in flight to be recorded.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        // Every outcome's series exists from the start at 0: a counter born
        // at 1 shows no increase to Prometheus, so a first `misconfigured`
        // call would not alert (ops/prometheus: UpstreamCredentialsRejected).
        for outcome in ["signed", "retry_later", "misconfigured", "rejected"] {
            metrics::counter!("upstream_calls_total", "outcome" => outcome).increment(0);
        }
        let mut calls = JoinSet::new();
        while !shutdown.is_cancelled() {
            while calls.try_join_next().is_some() {}
            let now = self.clock.now();
            let (candidates, in_flight): (Vec<Candidate<String>>, Vec<Option<String>>) = {
                let in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
                let candidates = crate::work_view::candidates(&self.view, &in_flight);
                (candidates, in_flight.values().cloned().collect())
            };
            let admission = match self.budget.peek(self.clock.as_ref()).await {
                Ok((admission, occupied)) => {
                    metrics::gauge!("limiter_slots_used").set(occupied as f64);
                    // The budget's size, so saturation and drain time can
                    // be computed from the scrape alone (ops/prometheus).
                    metrics::gauge!("limiter_slots_limit")
                        .set(f64::from(self.budget.budget().limit));
                    metrics::gauge!("limiter_window_seconds")
                        .set(self.budget.budget().window.as_secs_f64());
                    metrics::gauge!("sign_pending_messages").set(candidates.len() as f64);
                    let oldest = candidates.iter().map(|c| c.first_seen).min();
                    metrics::gauge!("sign_oldest_pending_age_seconds")
                        .set(oldest.map(|t| now.since(t).as_secs_f64()).unwrap_or(0.0));
                    admission
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the budget");
                    pause(&shutdown, Duration::from_millis(500)).await;
                    continue;
                }
            };
            let paused = *self.paused_until.lock().unwrap_or_else(|p| p.into_inner());
            // Ended calls of every replica, then this one's in flight (the
            // newest charges); read only when a call could start now.
            let may_call = matches!(admission, Admission::Now) && paused.is_none_or(|p| p <= now);
            let mut charges = if may_call {
                self.recent_charges(&candidates).await
            } else {
                Vec::new()
            };
            charges.extend(in_flight);
            let served = scheduler::served(charges.iter(), scheduler::FAIR_MEMORY);
            match scheduler::next(now, &candidates, admission, &self.policy, paused, &served) {
                Next::Call { key, on_behalf } => match self.claim(&key, on_behalf).await {
                    Ok(Some(claimed)) => {
                        let me = Arc::clone(&self);
                        calls.spawn(async move { me.call(claimed).await });
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(message_key = %key, error = %e, "claim failed");
                        pause(&shutdown, Duration::from_millis(200)).await;
                    }
                },
                Next::Idle { until } => {
                    let wait = until
                        .map(|t| t.since(now))
                        .unwrap_or(Duration::from_secs(5));
                    tokio::select! {
                        _ = tokio::time::sleep(wait.max(Duration::from_millis(1))) => {}
                        _ = self.view.changed() => {}
                        _ = shutdown.cancelled() => {}
                    }
                }
            }
        }
        // Calls in flight finish within their timeout; record their outcome
        // rather than leave the message leased until the lease runs out.
        let drain = async { while calls.join_next().await.is_some() {} };
        let _ = tokio::time::timeout(self.lease_span(), drain).await;
    }

    /// Lease `key` for one call and take a budget slot for it. `None` when
    /// the message is gone, not due, held elsewhere, or no slot is free.
    async fn claim(
        &self,
        key: &str,
        on_behalf: Option<String>,
    ) -> Result<Option<Claimed>, RecordError> {
        let mkey = MessageKey::of_key(key);
        // One pass: a conflict means another replica got there first, and
        // the scheduler decides again on the next turn of the loop. The
        // deadline counts from before the claim is written, so the
        // work bucket's last write bounds every call's end (what the
        // limiter relies on if its own state is lost).
        let deadline = tokio::time::Instant::now() + self.call_timeout;
        let v = load::<WorkItem>(&self.topo.work, "work item", key).await?;
        let Some(item) = v.value else {
            self.view.apply(key, None);
            return Ok(None);
        };
        if let Some(result) = load::<ResultRecord>(&self.topo.results, "result", key)
            .await?
            .value
        {
            // Signed by another replica or before a restart: just finish.
            let now = self.clock.now();
            if let Err(e) = complete_with_retry(
                &self.topo,
                &mkey,
                &item.message,
                result.outcome,
                result.attempts,
                now,
                Duration::from_secs(5),
            )
            .await
            {
                tracing::warn!(message_key = %key, error = %e, "finishing a known result failed");
            }
            return Ok(None);
        }
        let now = self.clock.now();
        let candidate = Candidate {
            key: (),
            attempts: item.attempts,
            first_seen: item.first_seen,
            first_attempt: item.first_attempt,
            last_attempt: item.last_attempt,
            leased_until: item.lease.as_ref().map(|l| l.until),
            callers: Vec::<((), u32)>::new(),
        };
        if candidate.eligible_at(&self.policy) > now {
            self.view.apply(key, Some(item));
            return Ok(None);
        }
        let leased = item.leased(&self.signer_id, now, now.plus(self.lease_span()));
        let revision = match save(&self.topo.work, key, &leased, v.revision).await {
            Ok(r) => r,
            Err(RecordError::Conflict) => {
                self.view.poke();
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        self.in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_owned(), on_behalf.clone());
        match self.budget.take(self.clock.as_ref()).await {
            Ok(Taken::Slot(slot)) => Ok(Some(Claimed {
                key: mkey,
                item: leased,
                slot,
                on_behalf,
                deadline,
            })),
            Ok(Taken::NotBefore(_)) => {
                // Another replica took the slot first: give the lease back.
                self.unlease(key, revision, item).await;
                Ok(None)
            }
            Err(e) => {
                self.unlease(key, revision, item).await;
                Err(e)
            }
        }
    }

    /// Undo a claim that got no budget slot (no call was made).
    async fn unlease(&self, key: &str, revision: u64, before: WorkItem) {
        if let Err(e) = save(&self.topo.work, key, &before, revision).await {
            // The lease simply expires; the attempt counts as made.
            tracing::debug!(message_key = %key, error = %e, "could not undo a claim");
        }
        self.in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
        self.view.poke();
    }

    /// Who the recent calls of every replica were charged to, oldest first;
    /// read only when callers compete (one caller's order needs no tally).
    /// Best effort: an unreadable log costs fairness for one decision,
    /// never the budget.
    async fn recent_charges(&self, candidates: &[Candidate<String>]) -> Vec<Option<String>> {
        let mut callers: HashSet<Option<&str>> = HashSet::new();
        for c in candidates {
            if c.callers.is_empty() {
                callers.insert(None);
            }
            callers.extend(c.callers.iter().map(|(name, _)| Some(name.as_str())));
            if callers.len() > 1 {
                break;
            }
        }
        if callers.len() <= 1 {
            return Vec::new();
        }
        match load::<RecentCalls>(&self.topo.limiter, "recent calls", names::RECENT_CALLS_KEY).await
        {
            Ok(v) => v
                .value
                .map(|r| r.calls.into_iter().map(|c| c.on_behalf).collect())
                .unwrap_or_default(),
            Err(e) => {
                tracing::debug!(error = %e, "recent calls unreadable; fair share from this replica's calls only");
                Vec::new()
            }
        }
    }

    /// One upstream attempt, in its span ([`job_traces::attempt_span`]).
    async fn call(self: Arc<Self>, claimed: Claimed) {
        let span = job_traces::attempt_span(&claimed.key, &claimed.item);
        self.attempt(claimed).instrument(span).await;
    }

    async fn attempt(self: Arc<Self>, claimed: Claimed) {
        let Claimed {
            key,
            item,
            slot,
            on_behalf,
            deadline,
        } = claimed;
        let lease = Renewal::start(&self, &key);
        let started = std::time::Instant::now();
        let Some(outcome) = self.upstream.sign(&item.message, deadline).await else {
            // Too late to send: nothing reached the upstream.
            tracing::warn!(message_key = %key, "call deadline passed before sending; slot withdrawn");
            let record = self.release(&key, "not sent: deadline passed".to_owned());
            let no_call = async {};
            self.wind_up(&key, lease, self.budget.cancel(slot.id), record, no_call)
                .await;
            return;
        };
        let latency_ms = started.elapsed().as_millis() as u64;
        Span::current()
            .record("outcome", outcome_label(&outcome))
            .record("latency_ms", latency_ms);
        metrics::counter!("upstream_calls_total", "outcome" => outcome_label(&outcome))
            .increment(1);
        metrics::histogram!("upstream_call_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        // Counts and a few ids, never a list that grows with traffic.
        let sample: Vec<&str> = item
            .kept_jobs()
            .take(3)
            .map(|j| j.request_id.as_str())
            .collect();
        tracing::info!(message_key = %key, attempt = item.attempts, jobs = item.jobs(), request_ids_sample = ?sample, latency_ms, outcome = ?short(&outcome), "upstream call");
        let now = self.clock.now();
        // The slot's end and the outcome are written together; the outcome
        // (a signature) before anything cosmetic such as the recent-calls
        // note, and under a lease that is kept alive until it is stored.
        let record = async {
            match &outcome {
                CallOutcome::Signed(signature) => {
                    self.health.set_credentials_ok(true);
                    let signature = signature.clone();
                    self.finish(&key, &item, Outcome::Signed { signature }, now)
                        .await;
                }
                CallOutcome::Rejected(reason) => {
                    self.health.set_credentials_ok(true);
                    let reason = reason.clone();
                    self.finish(&key, &item, Outcome::Failed { reason }, now)
                        .await;
                }
                CallOutcome::RetryLater(reason) => self.release(&key, reason.clone()).await,
                CallOutcome::Misconfigured(reason) => {
                    tracing::error!(message_key = %key, reason, "UPSTREAM REJECTS OUR CREDENTIALS: check UPSTREAM_API_KEY; jobs are kept and retried slowly");
                    self.health.set_credentials_ok(false);
                    *self.paused_until.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some(now.plus(self.auth_retry_interval));
                    self.release(&key, reason.clone()).await;
                }
            }
        };
        let note = self.note(&key, &outcome, latency_ms, on_behalf);
        self.wind_up(&key, lease, self.budget.end(slot.id), record, note)
            .await;
    }

    /// The end of every call, however it went: settle the budget slot
    /// (`slot`: its end, or its withdrawal) and `record` what happened, the
    /// two together and under the lease; then stop renewing the lease,
    /// `note` the call, and give the message back to the scheduler.
    async fn wind_up(
        &self,
        key: &MessageKey,
        lease: Renewal,
        slot: impl Future<Output = ()>,
        record: impl Future<Output = ()>,
        note: impl Future<Output = ()>,
    ) {
        tokio::join!(slot, record);
        lease.stop().await;
        // The charge is in the recent-calls log before it leaves the
        // in-flight set, so no decision misses it.
        note.await;
        self.in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key.as_str());
        self.view.poke();
    }

    /// Renew this replica's lease on `key` until `stop`, so that a slow
    /// write of the outcome cannot let the lease lapse and another replica
    /// call the upstream again for a message already signed.
    async fn keep_lease(self: Arc<Self>, key: MessageKey, stop: CancellationToken) {
        let every = self.lease_span() / 3;
        loop {
            if !pause(&stop, every).await {
                return;
            }
            let until = self.clock.now().plus(self.lease_span());
            let renewed = update(
                &self.topo.work,
                "work item",
                key.as_str(),
                |item: Option<&WorkItem>| item?.lease_renewed(&self.signer_id, until),
            )
            .await;
            match renewed {
                Ok(Updated::Written(_)) => {}
                // Finished, or no longer ours: nothing left to keep.
                Ok(_) => return,
                Err(e) => {
                    tracing::debug!(message_key = %key, error = %e, "lease renewal failed; retrying")
                }
            }
        }
    }

    /// Append the call to the recent-calls log the status page shows. Best
    /// effort: a lost note costs nothing but a line on a dashboard.
    async fn note(
        &self,
        key: &MessageKey,
        outcome: &CallOutcome,
        latency_ms: u64,
        on_behalf: Option<String>,
    ) {
        let (label, detail) = match outcome {
            CallOutcome::Signed(_) => ("signed", None),
            CallOutcome::RetryLater(r) => ("retry_later", Some(r.clone())),
            CallOutcome::Misconfigured(r) => ("misconfigured", Some(r.clone())),
            CallOutcome::Rejected(r) => ("rejected", Some(r.clone())),
        };
        let note = CallNote {
            at: self.clock.now().minus(Duration::from_millis(latency_ms)),
            message_key: key.to_string(),
            outcome: label.to_owned(),
            detail,
            latency_ms,
            on_behalf,
        };
        let noted = update(
            &self.topo.limiter,
            "recent calls",
            names::RECENT_CALLS_KEY,
            |recent: Option<&RecentCalls>| {
                Some(RecentCalls::noted(recent, note.clone(), RECENT_KEPT))
            },
        )
        .await;
        if let Err(e) = noted {
            tracing::debug!(message_key = %key, error = %e, "recent-calls note lost");
        }
    }

    async fn finish(&self, key: &MessageKey, item: &WorkItem, outcome: Outcome, now: UnixMillis) {
        let span = tracing::info_span!("result write", jobs = item.jobs());
        if let Err(e) = complete_with_retry(
            &self.topo,
            key,
            &item.message,
            outcome,
            item.attempts,
            now,
            Duration::from_secs(120),
        )
        .instrument(span)
        .await
        {
            tracing::error!(message_key = %key, error = %e, "could not store an outcome; the message will be retried when its lease expires");
        }
    }

    /// Give the message back for a later attempt, keeping its history (not
    /// if another replica holds it now: our lease lapsed). Retried through
    /// NATS trouble until the lease would have expired anyway.
    async fn release(&self, key: &MessageKey, reason: String) {
        let released = with_patience(self.lease_span(), || {
            update(
                &self.topo.work,
                "work item",
                key.as_str(),
                |item: Option<&WorkItem>| item?.released(&self.signer_id, &reason),
            )
        })
        .await;
        if let Err(e) = released {
            tracing::warn!(message_key = %key, error = %e, "release failed; the lease will expire");
        }
    }
}

/// A lease being renewed in the background ([`Worker::keep_lease`]) while
/// its holder works on the message.
struct Renewal {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Renewal {
    fn start(worker: &Arc<Worker>, key: &MessageKey) -> Self {
        let stop = CancellationToken::new();
        let task = tokio::spawn(Arc::clone(worker).keep_lease(key.clone(), stop.clone()));
        Self { stop, task }
    }

    /// Stop renewing, and wait until no renewal is in flight.
    async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

fn outcome_label(outcome: &CallOutcome) -> &'static str {
    match outcome {
        CallOutcome::Signed(_) => "signed",
        CallOutcome::RetryLater(_) => "retry_later",
        CallOutcome::Misconfigured(_) => "misconfigured",
        CallOutcome::Rejected(_) => "rejected",
    }
}

fn short(outcome: &CallOutcome) -> String {
    match outcome {
        CallOutcome::Signed(_) => "signed".to_owned(),
        CallOutcome::RetryLater(r) => format!("retry later: {r}"),
        CallOutcome::Misconfigured(r) => format!("misconfigured: {r}"),
        CallOutcome::Rejected(r) => format!("rejected: {r}"),
    }
}
