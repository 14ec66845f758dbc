//! NATS headers that carry a job's request id and trace context from api to
//! signer to notifier. The one place where message headers are named, built
//! and read.

use async_nats::HeaderMap;
use serde::{Deserialize, Serialize};

/// Header carrying the request id, the same name as on HTTP.
pub const REQUEST_ID: &str = "X-Request-Id";
/// W3C Trace Context: the sending span (version, trace id, span id, flags).
pub const TRACEPARENT: &str = "traceparent";
/// W3C Trace Context: vendor state travelling with `traceparent`.
pub const TRACESTATE: &str = "tracestate";

/// Longest `traceparent` carried: version `00` is 55 characters; later
/// versions may append fields, so allow some room but not an unbounded value.
const MAX_TRACEPARENT: usize = 128;
/// Longest `tracestate` carried. W3C asks propagators to pass at least 512
/// characters and lets them drop a longer one; we drop it whole.
const MAX_TRACESTATE: usize = 512;

/// A W3C trace context as it travels between services: in NATS headers, and
/// stored with each job waiting in a work item (the signer's attempt happens
/// long after the message that brought the job was acked).
///
/// It is carried verbatim; the telemetry layer (service-kit) parses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceContext {
    /// `traceparent`, e.g. `00-<32 hex trace id>-<16 hex span id>-01`.
    pub traceparent: String,
    /// `tracestate`, if the sender had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
}

impl TraceContext {
    /// A context from header values; `None` for a `traceparent` that cannot
    /// be one (empty or oversized). An oversized `tracestate` is dropped.
    pub fn new(traceparent: &str, tracestate: Option<&str>) -> Option<Self> {
        let traceparent = traceparent.trim();
        if traceparent.is_empty() || traceparent.len() > MAX_TRACEPARENT {
            return None;
        }
        let tracestate = tracestate
            .map(str::trim)
            .filter(|s| !s.is_empty() && s.len() <= MAX_TRACESTATE)
            .map(str::to_owned);
        Some(Self {
            traceparent: traceparent.to_owned(),
            tracestate,
        })
    }

    /// The same context without its `tracestate`: what is stored with each
    /// waiting job, where a caller's vendor state (up to 512 bytes) would be
    /// copied into every job sharing a work item; `traceparent` alone places
    /// the later spans in the trace.
    pub fn parent_only(self) -> Self {
        Self {
            tracestate: None,
            ..self
        }
    }

    /// The trace id (32 hex digits) of a well-formed `traceparent`.
    pub fn trace_id(&self) -> Option<&str> {
        let mut parts = self.traceparent.split('-');
        let _version = parts.next()?;
        let id = parts.next()?;
        (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
    }

    /// Whether `self` and `other` belong to the same trace.
    pub fn same_trace(&self, other: &TraceContext) -> bool {
        matches!((self.trace_id(), other.trace_id()), (Some(a), Some(b)) if a == b)
    }
}

/// Headers holding `request_id`.
pub fn with_request_id(request_id: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(REQUEST_ID, request_id);
    headers
}

/// Headers holding `request_id` and, when there is one, the trace context.
pub fn with_request_id_and_trace(request_id: &str, trace: Option<&TraceContext>) -> HeaderMap {
    let mut headers = with_request_id(request_id);
    if let Some(trace) = trace {
        headers.insert(TRACEPARENT, trace.traceparent.as_str());
        if let Some(state) = &trace.tracestate {
            headers.insert(TRACESTATE, state.as_str());
        }
    }
    headers
}

/// The request id of a received message, or `"-"` when absent.
pub fn request_id_of(headers: Option<&HeaderMap>) -> String {
    headers
        .and_then(|h| h.get(REQUEST_ID))
        .map(|v| v.as_str().to_owned())
        .unwrap_or_else(|| "-".to_owned())
}

/// The trace context of a received message, if it carries one.
pub fn trace_of(headers: Option<&HeaderMap>) -> Option<TraceContext> {
    let headers = headers?;
    let parent = headers.get(TRACEPARENT)?;
    TraceContext::new(parent.as_str(), headers.get(TRACESTATE).map(|v| v.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn trace_context_round_trips_through_headers() {
        let trace = TraceContext::new(PARENT, Some("vendor=x")).expect("valid");
        let headers = with_request_id_and_trace("req-1", Some(&trace));
        assert_eq!(request_id_of(Some(&headers)), "req-1");
        assert_eq!(trace_of(Some(&headers)), Some(trace));
        let bare = with_request_id_and_trace("req-2", None);
        assert_eq!(trace_of(Some(&bare)), None);
        assert_eq!(trace_of(None), None);
    }

    #[test]
    fn oversized_values_are_not_carried() {
        assert_eq!(TraceContext::new("", None), None);
        assert_eq!(TraceContext::new(&"0".repeat(129), None), None);
        let long_state = "a=".to_owned() + &"b".repeat(600);
        let trace = TraceContext::new(PARENT, Some(&long_state)).expect("valid parent");
        assert_eq!(trace.tracestate, None);
        let stateful = TraceContext::new(PARENT, Some("k=v")).expect("valid");
        assert_eq!(
            stateful.parent_only(),
            TraceContext::new(PARENT, None).expect("valid")
        );
    }

    #[test]
    fn trace_ids_are_compared() {
        let a = TraceContext::new(PARENT, None).expect("valid");
        let same = TraceContext::new(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01",
            None,
        )
        .expect("valid");
        let other = TraceContext::new(
            "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01",
            None,
        )
        .expect("valid");
        assert_eq!(a.trace_id(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert!(a.same_trace(&same));
        assert!(!a.same_trace(&other));
        let junk = TraceContext::new("junk", None).expect("carried verbatim");
        assert!(!junk.same_trace(&junk));
    }
}
