//! One request id per request: taken from `x-request-id` when the caller
//! sends a sane one, made up otherwise; echoed back, logged, and carried in
//! NATS headers to the signer and notifier.

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
    let span = tracing::info_span!("request", request_id = %id, method = %request.method(), path = %request.uri().path());
    let mut response = next.run(request).instrument(span).await;
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
