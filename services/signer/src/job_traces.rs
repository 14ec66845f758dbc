//! Which trace a signer span belongs to. A message is wanted by every job
//! that asked for it, each with its own trace (its own caller), so one
//! upstream attempt serves many traces. The rule:
//!
//! - an attempt's span is a child of the first job's trace (the oldest: the
//!   one the attempt was scheduled for first) and links to the next
//!   [`MAX_LINKS`] jobs' traces (the work item keeps its first few jobs for
//!   this); `jobs` says how many there were, so the span stays the same size
//!   however many callers share a message;
//! - each job's event (what the notifier continues) carries the current
//!   span when the job is in its trace (the first job: its webhook hangs
//!   under the attempt and the result write), else the job's own stored
//!   context, so every job's webhook stays in that job's own trace.

use service_kit::telemetry;
use tracing::Span;
use wire_contract::MessageKey;
use wire_contract::headers::TraceContext;
use wire_contract::records::{WaitingJob, WorkItem};

/// Links an attempt span carries at most, besides its parent.
pub const MAX_LINKS: usize = 3;

/// The span of one upstream attempt for `item` (its parent and links set;
/// `outcome` and `latency_ms` are recorded by the caller).
pub fn attempt_span(key: &MessageKey, item: &WorkItem) -> Span {
    let span = tracing::info_span!(
        "upstream attempt",
        otel.kind = "client",
        message_key = %key,
        attempt = item.attempts,
        jobs = item.jobs(),
        links = tracing::field::Empty,
        outcome = tracing::field::Empty,
        latency_ms = tracing::field::Empty,
    );
    let (parent, links) = parent_and_links(item.kept_jobs());
    telemetry::continue_trace(&span, parent);
    for trace in &links {
        telemetry::link(&span, trace);
    }
    span.record("links", links.len());
    span
}

/// The trace context `job`'s event carries (see the module's rule). A job
/// taken in while traces were off carries none.
pub fn event_trace(job: &WaitingJob) -> Option<TraceContext> {
    choose(job.trace.as_ref(), telemetry::current_trace())
}

/// The first traced job's context, and at most [`MAX_LINKS`] of the next.
fn parent_and_links<'a>(
    jobs: impl IntoIterator<Item = &'a WaitingJob>,
) -> (Option<&'a TraceContext>, Vec<&'a TraceContext>) {
    let mut traced = jobs.into_iter().filter_map(|j| j.trace.as_ref());
    let parent = traced.next();
    (parent, traced.take(MAX_LINKS).collect())
}

/// `current` when the job (`own`) is in its trace, else `own`.
fn choose(own: Option<&TraceContext>, current: Option<TraceContext>) -> Option<TraceContext> {
    let own = own?;
    match current {
        Some(current) if current.same_trace(own) => Some(current),
        _ => Some(own.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire_contract::UnixMillis;

    fn job(i: usize, trace: bool) -> WaitingJob {
        WaitingJob {
            id: format!("j{i}"),
            request_id: format!("r{i}"),
            trace: trace.then(|| {
                TraceContext::new(&format!("00-{i:032x}-{i:016x}-01"), None).expect("carried")
            }),
        }
    }

    #[test]
    fn the_first_job_parents_and_a_few_more_are_linked() {
        let mut jobs: Vec<WaitingJob> = (1..=10).map(|i| job(i, true)).collect();
        jobs[0].trace = None; // taken in while traces were off
        let (parent, links) = parent_and_links(&jobs);
        assert_eq!(parent, jobs[1].trace.as_ref());
        let linked: Vec<_> = jobs[2..2 + MAX_LINKS]
            .iter()
            .filter_map(|j| j.trace.as_ref())
            .collect();
        assert_eq!(links, linked);
        assert_eq!(parent_and_links(&jobs[..2]).1.len(), 0);
        assert_eq!(parent_and_links(&[] as &[WaitingJob]), (None, Vec::new()));
    }

    #[test]
    fn an_event_continues_the_attempt_only_within_its_own_trace() {
        let own = job(1, true).trace;
        let in_same_trace = TraceContext::new(&format!("00-{:032x}-{:016x}-01", 1, 99), None);
        let elsewhere = job(2, true).trace;
        assert_eq!(choose(own.as_ref(), in_same_trace.clone()), in_same_trace);
        assert_eq!(choose(own.as_ref(), elsewhere), own);
        assert_eq!(choose(own.as_ref(), None), own);
        assert_eq!(choose(None, in_same_trace), None);
    }

    #[test]
    fn without_a_pipeline_spans_carry_nothing() {
        // Traces off (no OTel layer in unit tests): no parent to set, and a
        // job's event carries its own stored context unchanged.
        let jobs: Vec<WaitingJob> = (1..=10).map(|i| job(i, true)).collect();
        let item = WorkItem::joined(None, &jobs, [], "m", UnixMillis(0));
        let span = attempt_span(&MessageKey::of("m"), &item);
        let _entered = span.enter();
        assert_eq!(event_trace(&jobs[4]), jobs[4].trace);
        assert_eq!(event_trace(&job(11, false)), None);
    }
}
