//! OpenTelemetry traces: the `tracing` spans of api, signer and notifier,
//! exported over OTLP/HTTP (protobuf), and the W3C trace context that joins
//! them into one trace per job.
//!
//! Off unless `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) is
//! set. The SDK and the exporter read the other standard `OTEL_*` variables
//! themselves (sampler, batch delays and sizes, headers, timeouts, resource);
//! the service name defaults to the binary's name.
//!
//! Services never touch OpenTelemetry types: they carry a
//! [`TraceContext`] (what travels in NATS headers and job records) and ask
//! this module to read it off a span ([`trace_of`]), continue it in a span
//! ([`continue_trace`]) or link to it ([`link`]). With traces off these are
//! no-ops and nothing is carried.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry::{Context, Key, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::time::Duration;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::registry::LookupSpan;
use wire_contract::headers::{TRACEPARENT, TRACESTATE, TraceContext};

/// How long shutdown waits for the last spans to be exported: within the
/// usual 10 s stop grace, after the service's own drain.
const FLUSH_WITHIN: Duration = Duration::from_secs(3);

/// The crates whose spans become OTel spans. Our own only: library spans
/// (hyper, reqwest, the exporter's own HTTP client) would be noise, or
/// worse, spans about exporting spans.
const TRACED: [&str; 6] = [
    "api",
    "signer",
    "notifier",
    "wire_contract",
    "service_kit",
    "upstream_sim",
];

/// Why traces could not be switched on (the service runs without them).
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP exporter rejected its configuration (e.g. a malformed
    /// endpoint, or a compression this build does not have).
    #[error("OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// The trace pipeline of a process; flushes and shuts down when dropped
/// (keep it alive in `main` until the service has stopped).
#[must_use = "dropping it shuts the trace exporter down"]
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Traces are exported.
    pub fn enabled(&self) -> bool {
        self.provider.is_some()
    }

    /// The pipeline from the environment: `Ok(off)` unless an endpoint is
    /// configured.
    pub(crate) fn from_env(service: &str) -> Result<Self, TelemetryError> {
        if !requested(|k| std::env::var(k).ok()) {
            return Ok(Self::default());
        }
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource(service))
            .build();
        Ok(Self {
            provider: Some(provider),
        })
    }

    /// The `tracing` layer feeding the pipeline, limited to our crates at
    /// `INFO` (independent of `RUST_LOG`, which filters the log lines).
    pub(crate) fn layer<S>(&self) -> Option<impl Layer<S> + Send + Sync + 'static>
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    {
        let tracer = self.provider.as_ref()?.tracer("signing-gateway");
        let ours = Targets::new().with_targets(TRACED.map(|t| (t, tracing::Level::INFO)));
        Some(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(ours),
        )
    }

    /// Export what is buffered and stop (also done on drop).
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let Some(provider) = self.provider.take() else {
            return;
        };
        // The shutdown blocks (up to FLUSH_WITHIN) waiting for the exporter's
        // own thread. Dropped at the end of an async main, it runs on a
        // runtime worker: block_in_place hands that worker's other tasks to
        // another thread first. Only a multi-thread runtime can do that; on
        // a current-thread one, or outside a runtime, there is nothing else
        // this thread could be running, so it just blocks.
        let flush = move || provider.shutdown_with_timeout(FLUSH_WITHIN);
        let on_worker = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let stopped = if on_worker {
            tokio::task::block_in_place(flush)
        } else {
            flush()
        };
        if let Err(e) = stopped {
            tracing::warn!(error = %e, "trace exporter did not shut down cleanly");
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether the environment (`var`) asks for traces: an OTLP endpoint is
/// set, and neither `OTEL_SDK_DISABLED=true` nor `OTEL_TRACES_EXPORTER=none`.
fn requested(var: impl Fn(&str) -> Option<String>) -> bool {
    let set = |k: &str| var(k).is_some_and(|v| !v.trim().is_empty());
    let disabled = var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let no_exporter =
        var("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim().eq_ignore_ascii_case("none"));
    !disabled
        && !no_exporter
        && (set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") || set("OTEL_EXPORTER_OTLP_ENDPOINT"))
}

/// The SDK's resource (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, SDK
/// attributes), with `service` as the name when neither variable gives one.
fn resource(service: &str) -> Resource {
    const SERVICE_NAME: &str = "service.name";
    let detected = Resource::builder().build();
    let unnamed = detected
        .get(&Key::from_static_str(SERVICE_NAME))
        .is_none_or(|v| v.as_str().starts_with("unknown_service"));
    if unnamed {
        Resource::builder()
            .with_service_name(Value::from(service.to_owned()))
            .build()
    } else {
        detected
    }
}

/// `traceparent` and `tracestate` on their way in or out of an OTel context.
#[derive(Default)]
struct Carrier {
    traceparent: Option<String>,
    tracestate: Option<String>,
}

impl Injector for Carrier {
    fn set(&mut self, key: &str, value: String) {
        match key {
            TRACEPARENT => self.traceparent = Some(value),
            TRACESTATE => self.tracestate = Some(value),
            _ => {}
        }
    }
}

impl Extractor for Carrier {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            TRACEPARENT => self.traceparent.as_deref(),
            TRACESTATE => self.tracestate.as_deref(),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT, TRACESTATE]
    }
}

/// The context of `span`, to send along with what it publishes; `None`
/// when traces are off (or the span is not traced).
///
/// Starts the OTel span: call [`continue_trace`] and [`link`] first.
pub fn trace_of(span: &Span) -> Option<TraceContext> {
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = Carrier::default();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    TraceContext::new(&carrier.traceparent?, carrier.tracestate.as_deref())
}

/// [`trace_of`] the current span.
pub fn current_trace() -> Option<TraceContext> {
    trace_of(&Span::current())
}

/// Make `span` a child of the span that sent `trace` (a caller's
/// `traceparent`, a NATS message's, a stored job's). Call it right after
/// creating `span`, before it is first entered; a malformed or absent
/// context leaves `span` a root.
pub fn continue_trace(span: &Span, trace: Option<&TraceContext>) {
    if let Some(cx) = trace.and_then(extract) {
        // Fails only when traces are off or the span already started:
        // either way there is nothing to do.
        let _ = span.set_parent(cx);
    }
}

/// Link `span` to the span that sent `trace` (related, not its parent).
/// Before `span` is first entered, like [`continue_trace`].
pub fn link(span: &Span, trace: &TraceContext) {
    if let Some(cx) = extract(trace) {
        span.add_link(cx.span().span_context().clone());
    }
}

/// The trace context an HTTP caller sent, if any (validated when used).
pub fn from_http(headers: &axum::http::HeaderMap) -> Option<TraceContext> {
    let parent = headers.get(TRACEPARENT)?.to_str().ok()?;
    let state = headers.get(TRACESTATE).and_then(|v| v.to_str().ok());
    TraceContext::new(parent, state)
}

fn extract(trace: &TraceContext) -> Option<Context> {
    let carrier = Carrier {
        traceparent: Some(trace.traceparent.clone()),
        tracestate: trace.tracestate.clone(),
    };
    let cx = TraceContextPropagator::new().extract(&carrier);
    cx.span().span_context().is_valid().then_some(cx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn traces_are_off_unless_an_endpoint_is_set() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318");
        assert!(!requested(env(&[])));
        assert!(!requested(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")])));
        assert!(requested(env(&[endpoint])));
        assert!(requested(env(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://collector:4318/v1/traces"
        )])));
        assert!(!requested(env(&[endpoint, ("OTEL_SDK_DISABLED", "TRUE")])));
        assert!(!requested(env(&[
            endpoint,
            ("OTEL_TRACES_EXPORTER", "none")
        ])));
        assert!(requested(env(&[endpoint, ("OTEL_SDK_DISABLED", "false")])));
    }

    #[test]
    fn only_valid_contexts_are_continued() {
        let good = TraceContext::new(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            Some("vendor=x"),
        )
        .expect("carried");
        let cx = extract(&good).expect("valid");
        let span = cx.span();
        let sc = span.span_context();
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
        assert!(sc.is_sampled());
        let zero = TraceContext::new(
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            None,
        )
        .expect("carried");
        assert!(extract(&zero).is_none());
        let junk = TraceContext::new("not-a-traceparent", None).expect("carried");
        assert!(extract(&junk).is_none());
    }

    /// Spans exported by a real SDK pipeline, kept in memory.
    #[derive(Debug, Clone, Default)]
    struct Kept(std::sync::Arc<std::sync::Mutex<Vec<opentelemetry_sdk::trace::SpanData>>>);

    impl opentelemetry_sdk::trace::SpanExporter for Kept {
        async fn export(
            &self,
            batch: Vec<opentelemetry_sdk::trace::SpanData>,
        ) -> opentelemetry_sdk::error::OTelSdkResult {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(batch);
            Ok(())
        }
    }

    #[test]
    fn spans_continue_link_and_carry_contexts_through_a_real_pipeline() {
        let kept = Kept::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(kept.clone())
            .build();
        let telemetry = Telemetry {
            provider: Some(provider),
        };
        let subscriber = tracing_subscriber::registry().with(telemetry.layer());
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let other = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let carried = tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("step");
            continue_trace(&span, TraceContext::new(parent, Some("k=v")).as_ref());
            link(&span, &TraceContext::new(other, None).expect("carried"));
            let carried = span.in_scope(current_trace);
            drop(span);
            carried
        });
        let carried = carried.expect("a traced span carries its context");
        assert_eq!(carried.trace_id(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_eq!(carried.tracestate.as_deref(), Some("k=v"));
        let spans = kept.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        assert_eq!(spans.len(), 1, "{spans:?}");
        let span = &spans[0];
        assert_eq!(span.parent_span_id.to_string(), "00f067aa0ba902b7");
        assert!(
            carried
                .traceparent
                .contains(&span.span_context.span_id().to_string())
        );
        let links: Vec<String> = span
            .links
            .iter()
            .map(|l| l.span_context.span_id().to_string())
            .collect();
        assert_eq!(links, ["b7ad6b7169203331"]);
    }

    /// Dropped inside a multi-thread runtime, as at the end of an async
    /// main: the flush must not block the worker (block_in_place panics if
    /// called where it cannot hand the worker's tasks off, so this also
    /// proves the flavour check).
    #[test]
    fn dropping_the_pipeline_inside_a_runtime_flushes_without_panicking() {
        for multi in [true, false] {
            let mut runtime = if multi {
                tokio::runtime::Builder::new_multi_thread()
            } else {
                tokio::runtime::Builder::new_current_thread()
            };
            let runtime = runtime.enable_all().build().expect("a runtime");
            let kept = Kept::default();
            runtime.block_on(async {
                let provider = SdkTracerProvider::builder()
                    .with_batch_exporter(kept.clone())
                    .build();
                let telemetry = Telemetry {
                    provider: Some(provider),
                };
                let subscriber = tracing_subscriber::registry().with(telemetry.layer());
                tracing::subscriber::with_default(subscriber, || {
                    drop(tracing::info_span!("last"));
                });
                drop(telemetry);
            });
            let spans = kept.0.lock().unwrap_or_else(|p| p.into_inner()).len();
            assert_eq!(spans, 1, "the last span was flushed (multi: {multi})");
        }
    }

    #[test]
    fn without_a_pipeline_nothing_is_carried() {
        let span = tracing::info_span!("untraced");
        assert_eq!(trace_of(&span), None);
    }
}
