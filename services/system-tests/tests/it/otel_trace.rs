//! One trace per job across the three services: an OTLP/HTTP receiver of
//! our own collects what api, signer and notifier export, and a request
//! sent with a caller's `traceparent` must come back as one trace whose
//! spans are parented api -> signer -> notifier.

use crate::client::send;
use crate::system::{Options, spawn_system};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// The caller's span: the api's request span must be its child.
const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// One exported span, as much of it as the test looks at.
#[derive(Debug, Clone)]
struct Seen {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    /// Empty for a root span.
    parent_id: String,
}

#[derive(Default)]
struct Spans {
    seen: Mutex<Vec<Seen>>,
    arrived: Notify,
}

/// An OTLP/HTTP trace receiver (`POST /v1/traces`, protobuf) on a free port.
struct Collector {
    spans: Arc<Spans>,
    /// `http://127.0.0.1:<port>`: the `OTEL_EXPORTER_OTLP_ENDPOINT`.
    endpoint: String,
}

impl Collector {
    async fn start() -> Self {
        let spans = Arc::new(Spans::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind collector");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let app = Router::new()
            .route("/v1/traces", post(receive))
            .with_state(Arc::clone(&spans));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { spans, endpoint }
    }

    fn seen(&self) -> Vec<Seen> {
        self.spans
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Wait until `done` holds for what arrived, or `limit` passes; returns
    /// what arrived either way.
    async fn wait_until(&self, limit: Duration, done: impl Fn(&[Seen]) -> bool) -> Vec<Seen> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.spans.arrived.notified();
            let now = self.seen();
            if done(&now) {
                return now;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.seen();
            }
        }
    }
}

async fn receive(
    State(spans): State<Arc<Spans>>,
    body: Bytes,
) -> (StatusCode, [(header::HeaderName, &'static str); 1], Vec<u8>) {
    let protobuf = [(header::CONTENT_TYPE, "application/x-protobuf")];
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return (StatusCode::BAD_REQUEST, protobuf, Vec::new());
    };
    let mut batch = Vec::new();
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
            .map(|v| match v {
                Value::StringValue(s) => s.clone(),
                other => format!("{other:?}"),
            })
            .unwrap_or_default();
        for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
            batch.push(Seen {
                service: service.clone(),
                name: span.name,
                trace_id: hex(&span.trace_id),
                span_id: hex(&span.span_id),
                parent_id: hex(&span.parent_span_id),
            });
        }
    }
    spans
        .seen
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .extend(batch);
    spans.arrived.notify_waiters();
    let answer = ExportTraceServiceResponse::default().encode_to_vec();
    (StatusCode::OK, protobuf, answer)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The names of `span`'s ancestors among `spans`, nearest first, as
/// `service/name`; stops where a parent has not (yet) arrived.
fn ancestry(span: &Seen, spans: &[Seen]) -> Vec<String> {
    let by_id: HashMap<&str, &Seen> = spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
    let mut chain = Vec::new();
    let mut at = span;
    while let Some(parent) = by_id.get(at.parent_id.as_str()) {
        chain.push(format!("{}/{}", parent.service, parent.name));
        at = parent;
        if chain.len() > 32 {
            break; // a cycle would be a bug of its own; don't spin on it
        }
    }
    chain
}

fn named<'a>(spans: &'a [Seen], service: &str, name: &str) -> Vec<&'a Seen> {
    spans
        .iter()
        .filter(|s| s.service == service && s.name == name)
        .collect()
}

/// Everything the test asserts, as a predicate to wait for.
fn complete(spans: &[Seen]) -> bool {
    let reaches_api = |s: &Seen| {
        ancestry(s, spans)
            .iter()
            .any(|a| a == "api/GET /crypto/sign")
    };
    let attempts = named(spans, "signer", "upstream attempt");
    let webhooks = named(spans, "notifier", "webhook attempt");
    !named(spans, "api", "GET /crypto/sign").is_empty()
        && attempts.len() >= 2
        && attempts.iter().all(|s| reaches_api(s))
        && !webhooks.is_empty()
        && webhooks.iter().all(|s| reaches_api(s))
}

#[tokio::test]
async fn one_trace_spans_api_signer_and_notifier_from_the_callers_traceparent() {
    let collector = Collector::start().await;
    let sys = spawn_system(Options {
        first_try_success: 0.0,
        otlp_endpoint: Some(collector.endpoint.clone()),
        ..Options::default()
    })
    .await;
    let message = "traced message";
    let request = sys
        .http
        .get(format!("{}/crypto/sign", sys.api_url))
        .query(&[
            ("message", message),
            ("webhook_url", sys.receiver.url.as_str()),
        ])
        .header("traceparent", format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01"))
        .header("tracestate", "caller=1");
    let a = send(message, request).await;
    assert_eq!(a.status, 202, "{}\n{}", a.body, sys.logs());
    let webhooks = sys
        .receiver
        .wait_until(Duration::from_secs(30), |d| !d.is_empty())
        .await;
    assert_eq!(webhooks.len(), 1, "one webhook\n{}", sys.logs());

    let spans = collector
        .wait_until(Duration::from_secs(20), complete)
        .await;
    let listing = spans
        .iter()
        .map(|s| {
            format!(
                "{}/{} trace={} span={} parent={}",
                s.service, s.name, s.trace_id, s.span_id, s.parent_id
            )
        })
        .collect::<Vec<_>>()
        .join("\n");

    // The api's request span continues the caller's span.
    let requests = named(&spans, "api", "GET /crypto/sign");
    assert_eq!(requests.len(), 1, "one request span:\n{listing}");
    assert_eq!(requests[0].trace_id, CALLER_TRACE, "{listing}");
    assert_eq!(requests[0].parent_id, CALLER_SPAN, "{listing}");
    // Each step has its span, and the one job's spans all share one trace.
    for (service, name) in [
        ("api", "accept"),
        ("api", "publish"),
        ("api", "wait"),
        ("signer", "ingest"),
        ("signer", "upstream attempt"),
        ("signer", "result write"),
        ("notifier", "job"),
        ("notifier", "webhook attempt"),
    ] {
        let found = named(&spans, service, name);
        assert!(!found.is_empty(), "no {service}/{name} span:\n{listing}");
        assert!(
            found.iter().all(|s| s.trace_id == CALLER_TRACE),
            "{service}/{name} outside the caller's trace:\n{listing}"
        );
    }
    // Parents: the signer's attempts (the first failed, so at least two)
    // hang under the api's request; the webhook under the signer's attempt
    // and so under the request too.
    let attempts = named(&spans, "signer", "upstream attempt");
    assert!(attempts.len() >= 2, "{listing}");
    for attempt in attempts {
        let chain = ancestry(attempt, &spans);
        assert!(
            chain.iter().any(|a| a == "api/GET /crypto/sign"),
            "attempt {} does not reach the api: {chain:?}\n{listing}",
            attempt.span_id
        );
    }
    for webhook in named(&spans, "notifier", "webhook attempt") {
        let chain = ancestry(webhook, &spans);
        assert!(
            chain.iter().any(|a| a == "signer/upstream attempt")
                && chain.iter().any(|a| a == "api/GET /crypto/sign"),
            "webhook attempt {} does not reach the signer and the api: {chain:?}\n{listing}",
            webhook.span_id
        );
    }
}
