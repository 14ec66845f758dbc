//! The request deadline: a request not received and answered within
//! [`REQUEST_TIMEOUT`] gets a `408` (problem+json).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Longest a request may take end to end, body upload included: a client
/// trickling its body cannot hold a connection and a task forever. Sign
/// requests answer within 2 s, so this only cuts off slow clients.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Middleware: answer `408` (problem+json) past [`REQUEST_TIMEOUT`].
pub async fn enforce(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            let body = serde_json::json!({
                "type": "/problems/request-timeout",
                "title": "Request timeout",
                "status": 408,
                "detail": "the request was not received and answered within 10 s",
            });
            let mut response = (StatusCode::REQUEST_TIMEOUT, body.to_string()).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/problem+json"),
            );
            response
        }
    }
}
