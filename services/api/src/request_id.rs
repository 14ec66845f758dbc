//! One request id per request: taken from `x-request-id` when the caller
//! sends a sane one, made up otherwise; echoed back, logged, and carried in
//! NATS headers to the signer and notifier.
//!
//! The request's span is the root of the job's trace, or a child of the
//! caller's own span when the request carries a W3C `traceparent`.

use crate::request_labels;
use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// The request id, in request extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Middleware: assign, log and echo the request id.
pub async fn assign(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_acceptable(v))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    request.extensions_mut().insert(RequestId(id.clone()));
    let route = request_labels::route(&request);
    let method = request_labels::method(request.method());
    // Named by route and standard method, never the raw path or method: a
    // job's status URL holds its id, and callers choose both freely.
    let span = tracing::info_span!(
        "request",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        request_id = %id,
        method,
        route = %route,
        http.response.status_code = tracing::field::Empty,
    );
    service_kit::telemetry::continue_trace(
        &span,
        service_kit::telemetry::from_http(request.headers()).as_ref(),
    );
    let mut response = next.run(request).instrument(span.clone()).await;
    span.record("http.response.status_code", response.status().as_u16());
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// Short, printable, and safe to put in a NATS header and a log line.
fn is_acceptable(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 128
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

#[cfg(test)]
mod tests {
    use super::is_acceptable;

    #[test]
    fn only_sane_ids_are_taken_from_callers() {
        assert!(is_acceptable("req-123_abc.def:1"));
        assert!(!is_acceptable(""));
        assert!(!is_acceptable("has space"));
        assert!(!is_acceptable("new\nline"));
        assert!(!is_acceptable(&"x".repeat(129)));
    }
}
