//! The signer answers questions about its own records, so that no other
//! service reads them: what a caller of a message can expect (the api's
//! `202` estimates and its backlog refusals, a pending job's attempts) and
//! the signer's part of the status page. Request/reply in a queue group:
//! any one replica answers, each from its own view of the work bucket and
//! the shared budget.

use crate::budget::Call;
use crate::estimate::{self, Part, Pending};
use crate::shared_budget::SharedBudget;
use crate::work_view::WorkView;
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use wire_contract::claimants::Claimant;
use wire_contract::pause::pause;
use wire_contract::records::{RecentCalls, WorkItem};
use wire_contract::signer_answers::{
    BacklogAnswerV1, BacklogQuestionV1, BudgetV1, CallV1, CallerBacklogV1, MAX_RECENT_KEYS,
    PendingSampleV1, PendingV1, QueuedV1, SignerStatusV1, SlotV1,
};
use wire_contract::time::Clock;
use wire_contract::{Topology, UnixMillis, decode, encode, load, names};

/// What answering needs.
pub struct Answers {
    /// Streams and buckets.
    pub topo: Topology,
    /// Pending messages.
    pub view: Arc<WorkView>,
    /// The shared budget.
    pub budget: SharedBudget,
    /// Time source.
    pub clock: Arc<dyn Clock>,
}

/// Rows of pending work and calls shown on the status page.
const SAMPLE: usize = 20;

impl Answers {
    /// Answer until `shutdown`, resubscribing if the subscription ends.
    pub async fn serve(self: Arc<Self>, shutdown: CancellationToken) {
        let client = self.topo.js.client();
        while !shutdown.is_cancelled() {
            let subs = futures::future::try_join(
                client.queue_subscribe(names::BACKLOG_SUBJECT, names::SIGNER_ANSWERS_GROUP.into()),
                client.queue_subscribe(names::STATUS_SUBJECT, names::SIGNER_ANSWERS_GROUP.into()),
            )
            .await;
            let (backlog, status) = match subs {
                Ok(subs) => subs,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot subscribe to questions; retrying");
                    if pause(&shutdown, Duration::from_secs(1)).await {
                        continue;
                    }
                    return;
                }
            };
            let mut questions = futures::stream::select(backlog, status);
            loop {
                let question = tokio::select! {
                    q = questions.next() => q,
                    _ = shutdown.cancelled() => return,
                };
                let Some(question) = question else { break };
                let Some(reply) = question.reply.clone() else {
                    continue;
                };
                let me = Arc::clone(&self);
                let client = client.clone();
                tokio::spawn(async move {
                    let answer = if question.subject.as_str() == names::BACKLOG_SUBJECT {
                        match decode::<BacklogQuestionV1>("backlog question", &question.payload) {
                            Ok(q) => me.backlog(&q).await.map(|a| encode(&a)),
                            Err(e) => {
                                tracing::debug!(error = %e, "undecodable backlog question");
                                return;
                            }
                        }
                    } else {
                        me.status().await.map(|a| encode(&a))
                    };
                    match answer {
                        Ok(bytes) => {
                            let _ = client.publish(reply, bytes).await;
                        }
                        Err(e) => tracing::debug!(error = %e, "cannot answer a question now"),
                    }
                });
            }
        }
    }

    async fn backlog(
        &self,
        q: &BacklogQuestionV1,
    ) -> Result<BacklogAnswerV1, wire_contract::RecordError> {
        let (now, calls) = self.budget.snapshot(self.clock.as_ref()).await?;
        let local_now = self.clock.now();
        let items = self.view.items();
        Ok(answer_backlog(
            &self.budget.budget(),
            now,
            local_now,
            &calls,
            &items,
            q,
        ))
    }

    async fn status(&self) -> Result<SignerStatusV1, wire_contract::RecordError> {
        let (now, calls) = self.budget.snapshot(self.clock.as_ref()).await?;
        let recent =
            load::<RecentCalls>(&self.topo.limiter, "recent calls", names::RECENT_CALLS_KEY)
                .await?
                .value
                .unwrap_or_default();
        let local_now = self.clock.now();
        let items = self.view.items();
        Ok(status_of(
            &self.budget.budget(),
            now,
            local_now,
            &calls,
            &items,
            &recent,
        ))
    }
}

/// The answer to `q`, from the pending work and the calls that count.
/// `now` is server time (the budget's), `local_now` this replica's (the
/// work items' stamps).
pub fn answer_backlog(
    budget: &crate::budget::Budget,
    now: UnixMillis,
    local_now: UnixMillis,
    calls: &[Call],
    items: &HashMap<String, WorkItem>,
    q: &BacklogQuestionV1,
) -> BacklogAnswerV1 {
    let unseen = q
        .recent_keys
        .iter()
        .take(MAX_RECENT_KEYS)
        .filter(|k| k.as_str() != q.message_key && !items.contains_key(k.as_str()))
        .count();
    let untried = items.values().filter(|w| w.attempts == 0).count() + unseen;
    let pending = Pending {
        untried,
        retrying: items.len() + unseen - untried,
    };
    let e = estimate::estimate(budget, now, calls, pending);
    BacklogAnswerV1 {
        queued: items.get(&q.message_key).map(|w| {
            let in_flight = w.lease.as_ref().is_some_and(|l| l.until > local_now);
            // Never-tried messages go first, oldest first: an untried
            // message waits for the older untried ones, a retry for all.
            let ahead = if w.attempts == 0 {
                items
                    .values()
                    .filter(|o| o.attempts == 0 && o.first_seen < w.first_seen)
                    .count()
            } else {
                pending.untried
            };
            let next_call_in = if in_flight {
                Duration::ZERO
            } else {
                estimate::slot(budget, now, calls, ahead).since(now)
            };
            QueuedV1 {
                attempts: w.attempts,
                last_error: w.last_error.clone(),
                in_flight,
                jobs: w.jobs(),
                next_call_in_ms: next_call_in.as_millis() as u64,
            }
        }),
        untried: pending.untried,
        retrying: pending.retrying,
        first_call_in_ms: e.first_call_in.as_millis() as u64,
        clear_in_ms: e.clear_in.as_millis() as u64,
        slot_every_ms: (budget.period() / budget.limit.max(1)).as_millis() as u64,
        caller: q
            .caller
            .as_ref()
            .map(|c| caller_backlog(budget, now, calls, items, c, pending)),
    }
}

/// `caller`'s own pending work, and what its share of the budget gives a
/// new message of its own ([`estimate::estimate_for`]).
fn caller_backlog(
    budget: &crate::budget::Budget,
    now: UnixMillis,
    calls: &[Call],
    items: &HashMap<String, WorkItem>,
    caller: &Claimant,
    all: Pending,
) -> CallerBacklogV1 {
    let mut weights: HashMap<Option<&str>, u32> = HashMap::new();
    weights.insert(Some(caller.name.as_str()), caller.weight);
    let (mut mine, mut jobs, mut messages) = (Pending::default(), 0u64, 0usize);
    for w in items.values() {
        if w.callers.is_empty() {
            weights.insert(None, 1);
        }
        for (name, share) in &w.callers {
            weights.entry(Some(name.as_str())).or_insert(share.weight);
        }
        if let Some(share) = w.callers.get(&caller.name) {
            jobs += share.jobs;
            messages += 1;
            if w.attempts == 0 {
                mine.untried += 1;
            } else {
                mine.retrying += 1;
            }
        }
    }
    let part = Part {
        mine,
        weight: caller.weight,
        total_weight: weights.values().sum(),
    };
    let e = estimate::estimate_for(budget, now, calls, part, all);
    CallerBacklogV1 {
        pending_jobs: jobs,
        messages,
        first_call_in_ms: e.first_call_in.as_millis() as u64,
        clear_in_ms: e.clear_in.as_millis() as u64,
    }
}

/// The signer's part of the status page: counts and a few samples, never a
/// list that grows with traffic.
pub fn status_of(
    budget: &crate::budget::Budget,
    now: UnixMillis,
    local_now: UnixMillis,
    calls: &[Call],
    items: &HashMap<String, WorkItem>,
    recent: &RecentCalls,
) -> SignerStatusV1 {
    let untried = items.values().filter(|w| w.attempts == 0).count();
    let oldest = items.values().map(|w| w.first_seen).min();
    let mut sample: Vec<(&String, &WorkItem)> = items.iter().collect();
    sample.sort_by_key(|(_, w)| w.first_seen);
    let oldest_sample = sample
        .into_iter()
        .take(SAMPLE)
        .map(|(k, w)| PendingSampleV1 {
            message_key: k.clone(),
            message: w.message.chars().take(60).collect(),
            jobs: usize::try_from(w.jobs()).unwrap_or(usize::MAX),
            attempts: w.attempts,
            waiting_s: local_now.since(w.first_seen).as_secs(),
            in_flight: w.lease.as_ref().is_some_and(|l| l.until > local_now),
            last_error: w.last_error.clone(),
        })
        .collect();
    let mut slots: Vec<(UnixMillis, UnixMillis)> = calls
        .iter()
        .zip(budget.frees_each(now, calls))
        .filter_map(|(c, frees)| frees.map(|f| (c.start, f)))
        .collect();
    slots.sort_by_key(|(_, f)| *f);
    let slots: Vec<SlotV1> = slots
        .into_iter()
        .rev()
        .take(budget.limit as usize)
        .rev()
        .map(|(start, frees)| SlotV1 {
            used_at: start.to_rfc3339(),
            frees_in_ms: frees.since(now).as_millis() as u64,
        })
        .collect();
    SignerStatusV1 {
        pending: PendingV1 {
            messages: items.len(),
            untried,
            retrying: items.len() - untried,
            oldest_age_s: oldest.map(|t| local_now.since(t).as_secs()),
            oldest: oldest_sample,
        },
        budget: BudgetV1 {
            limit: budget.limit,
            window_s: budget.window.as_secs_f64(),
            used: budget.occupied(now, calls),
            slots,
        },
        upstream_calls: recent
            .calls
            .iter()
            .rev()
            .take(SAMPLE)
            .map(|c| CallV1::of(c, local_now))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::TEST_BUDGET;
    use wire_contract::records::{CallNote, Lease, WaitingJob};

    fn item(attempts: u32, first_seen: u64, leased_until: Option<u64>) -> WorkItem {
        let job = WaitingJob {
            id: "j".into(),
            request_id: "r".into(),
            trace: None,
        };
        WorkItem {
            attempts,
            last_error: (attempts > 0).then(|| "502".to_owned()),
            lease: leased_until.map(|u| Lease {
                owner: "s".into(),
                until: UnixMillis(u),
            }),
            ..WorkItem::joined(None, &[job], [], &"m".repeat(100), UnixMillis(first_seen))
        }
    }

    fn items(n: usize) -> HashMap<String, WorkItem> {
        (0..n)
            .map(|i| (format!("k{i}"), item((i % 2) as u32, i as u64, None)))
            .collect()
    }

    #[test]
    fn a_queued_message_is_reported_with_its_attempts_and_unseen_keys_count_as_untried() {
        let mut work = items(4);
        work.insert("asked".into(), item(2, 0, Some(5_000)));
        let q = BacklogQuestionV1 {
            message_key: "asked".into(),
            recent_keys: vec!["k0".into(), "new1".into(), "new2".into(), "asked".into()],
            caller: None,
        };
        let a = answer_backlog(
            &TEST_BUDGET,
            UnixMillis(1_000),
            UnixMillis(1_000),
            &[],
            &work,
            &q,
        );
        let queued = a.queued.expect("queued");
        assert_eq!(queued.attempts, 2);
        assert!(queued.in_flight);
        assert_eq!(queued.jobs, 1);
        // k0, k2 never tried, plus two unseen keys.
        assert_eq!(a.untried, 4);
        assert_eq!(a.retrying, 3);
        assert_eq!(a.first_call_in_ms, 0);
        assert_eq!(a.slot_every_ms, 6_000);
        let absent = BacklogQuestionV1 {
            message_key: "nope".into(),
            recent_keys: vec![],
            caller: None,
        };
        assert_eq!(
            answer_backlog(
                &TEST_BUDGET,
                UnixMillis(1_000),
                UnixMillis(1_000),
                &[],
                &work,
                &absent
            )
            .queued,
            None
        );
    }

    #[test]
    fn a_queued_message_waits_for_the_untried_ones_ahead_of_it() {
        // A full budget: slots free one by one, from 60 s on.
        let calls: Vec<Call> = (0..10)
            .map(|i| Call {
                start: UnixMillis(i * 1_000),
                end: Some(UnixMillis(i * 1_000 + 500)),
            })
            .collect();
        let now = UnixMillis(10_000);
        let mut work: HashMap<String, WorkItem> = (0..3)
            .map(|i| (format!("older{i}"), item(0, i, None)))
            .collect();
        work.insert("untried".into(), item(0, 100, None));
        work.insert("retrying".into(), item(1, 0, None));
        work.insert("newer".into(), item(0, 200, None));
        work.insert("calling".into(), item(1, 0, Some(20_000)));
        let next_call = |key: &str| {
            let q = BacklogQuestionV1 {
                message_key: key.into(),
                recent_keys: vec!["unseen".into()],
                caller: None,
            };
            let a = answer_backlog(&TEST_BUDGET, now, now, &calls, &work, &q);
            a.queued.expect("queued").next_call_in_ms
        };
        let after = |ahead: usize| {
            estimate::slot(&TEST_BUDGET, now, &calls, ahead)
                .since(now)
                .as_millis() as u64
        };
        // Three older untried ones go first.
        assert_eq!(next_call("untried"), after(3));
        // A retry waits for every untried message, the unseen one included.
        assert_eq!(next_call("retrying"), after(6));
        assert!(after(6) > after(3) && after(3) > after(0));
        // A call in flight may land any moment.
        assert_eq!(next_call("calling"), 0);
    }

    #[test]
    fn a_full_budget_pushes_the_first_call_back() {
        let calls: Vec<Call> = (0..10)
            .map(|_| Call {
                start: UnixMillis(0),
                end: Some(UnixMillis(1_000)),
            })
            .collect();
        let q = BacklogQuestionV1::default();
        let a = answer_backlog(
            &TEST_BUDGET,
            UnixMillis(2_000),
            UnixMillis(2_000),
            &calls,
            &items(0),
            &q,
        );
        assert_eq!(a.first_call_in_ms, 59_000);
    }

    #[test]
    fn the_status_stays_bounded_however_much_is_pending() {
        let calls: Vec<Call> = (0..30)
            .map(|i| Call {
                start: UnixMillis(i * 100),
                end: None,
            })
            .collect();
        let note = CallNote {
            at: UnixMillis(1),
            message_key: "k".into(),
            outcome: "signed".into(),
            detail: None,
            latency_ms: 3,
            on_behalf: None,
        };
        let recent = RecentCalls {
            calls: vec![note; 50],
        };
        let s = status_of(
            &TEST_BUDGET,
            UnixMillis(5_000),
            UnixMillis(5_000),
            &calls,
            &items(5_000),
            &recent,
        );
        assert_eq!(s.pending.messages, 5_000);
        assert_eq!(s.pending.untried, 2_500);
        assert_eq!(s.pending.oldest.len(), 20);
        assert_eq!(s.pending.oldest[0].message.chars().count(), 60);
        assert_eq!(s.pending.oldest_age_s, Some(5));
        assert_eq!(s.budget.slots.len(), 10);
        assert_eq!(s.upstream_calls.len(), 20);
        assert!(s.budget.used >= 10);
    }

    #[test]
    fn a_caller_is_told_its_own_backlog_and_what_its_share_gives_it() {
        use wire_contract::claimants::Claimant;
        let claimant = |name: &str| Claimant {
            name: name.into(),
            weight: 1,
        };
        let (a, b) = (claimant("a"), claimant("b"));
        let job = |i: usize| WaitingJob {
            id: format!("j{i}"),
            request_id: "r".into(),
            trace: None,
        };
        let mut work = HashMap::new();
        // A floods: 600 messages. B has 2, one of them joined twice.
        for i in 0..600 {
            let item = WorkItem::joined(None, &[job(i)], [&a], "m", UnixMillis(i as u64));
            work.insert(format!("a{i}"), item);
        }
        for i in 0..2 {
            let item = WorkItem::joined(None, &[job(i)], [&b], "m", UnixMillis(1_000));
            work.insert(format!("b{i}"), item);
        }
        let twice = WorkItem::joined(work.get("b0"), &[job(9)], [&b], "m", UnixMillis(2_000));
        work.insert("b0".into(), twice);
        let ask = |who: &Claimant| {
            let q = BacklogQuestionV1 {
                message_key: "new".into(),
                recent_keys: vec![],
                caller: Some(who.clone()),
            };
            answer_backlog(
                &TEST_BUDGET,
                UnixMillis(5_000),
                UnixMillis(5_000),
                &[],
                &work,
                &q,
            )
        };
        let for_b = ask(&b);
        let mine = for_b.caller.clone().expect("asked as b");
        assert_eq!((mine.pending_jobs, mine.messages), (3, 2));
        // B's new message is its third: within the first budget window,
        // where everyone's queue would put it an hour out.
        assert_eq!(mine.first_call_in_ms, 0);
        assert!(for_b.first_call_in_ms >= 3_600_000, "{for_b:?}");
        // A's own flood at half the budget: twice the time of the whole.
        let for_a = ask(&a).caller.expect("asked as a");
        assert_eq!(for_a.pending_jobs, 600);
        assert!(for_a.clear_in_ms > mine.clear_in_ms, "{for_a:?} {mine:?}");
        // An open gateway's question names no caller: no caller part.
        let open = BacklogQuestionV1 {
            message_key: "new".into(),
            ..Default::default()
        };
        let a_open = answer_backlog(
            &TEST_BUDGET,
            UnixMillis(5_000),
            UnixMillis(5_000),
            &[],
            &work,
            &open,
        );
        assert_eq!(a_open.caller, None);
    }
}
