//! Every error answer is `application/problem+json`, including those made
//! before a handler runs: the router's 404 and 405, the body limit's 413,
//! an extractor's 400 or 415, and request targets or heads too large (414,
//! 431), which are refused here with a problem rather than cut by the HTTP
//! layer with an empty body.

use crate::problem::Problem;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Longest request target (path and query) accepted.
pub const MAX_TARGET_BYTES: usize = 16 * 1024;
/// Largest request head (all header lines) accepted.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Refuse oversized targets and heads, then make sure an error answer from
/// anything inside is a problem.
pub async fn as_problems(request: Request, next: Next) -> Response {
    let target = request
        .uri()
        .path_and_query()
        .map_or(0, |p| p.as_str().len());
    if target > MAX_TARGET_BYTES {
        return problem(
            StatusCode::URI_TOO_LONG,
            "uri-too-long",
            format!(
                "the request target is {target} bytes; the limit is {MAX_TARGET_BYTES} (send long messages with POST)"
            ),
        );
    }
    let head: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if head > MAX_HEAD_BYTES {
        return problem(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers-too-large",
            format!("the request headers are {head} bytes; the limit is {MAX_HEAD_BYTES}"),
        );
    }
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_problem(&response) {
        return response;
    }
    // Keep what the status came with (Allow, Retry-After, X-Request-Id) and
    // replace only the body, which says nothing a caller can act on.
    let (mut parts, _) = response.into_parts();
    let (kind, detail) = explain(status);
    let body = Problem {
        kind: format!("/problems/{kind}"),
        title: status.canonical_reason().unwrap_or("Error").to_owned(),
        status: status.as_u16(),
        detail: detail.to_owned(),
        id: None,
        instance: None,
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    Response::from_parts(
        parts,
        Body::from(serde_json::to_string(&body).unwrap_or_default()),
    )
}

fn is_problem(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"))
}

/// A slug and a sentence a caller can act on, by status.
fn explain(status: StatusCode) -> (&'static str, &'static str) {
    match status {
        StatusCode::NOT_FOUND => ("not-found", "no such endpoint; see /openapi.json"),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method-not-allowed",
            "this endpoint does not take that method; the Allow header lists those it takes",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => ("body-too-large", "the request body is over 64 KiB"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported-media-type",
            "send the body as application/json",
        ),
        StatusCode::BAD_REQUEST => (
            "bad-request",
            "the request could not be read (e.g. a path that is not valid UTF-8)",
        ),
        StatusCode::REQUEST_TIMEOUT => ("request-timeout", "the request took too long to arrive"),
        s if s.is_server_error() => (
            "internal",
            "something went wrong on our side; retry shortly",
        ),
        _ => ("bad-request", "the request could not be handled as sent"),
    }
}

fn problem(status: StatusCode, kind: &str, detail: String) -> Response {
    let body = Problem {
        kind: format!("/problems/{kind}"),
        title: status.canonical_reason().unwrap_or("Error").to_owned(),
        status: status.as_u16(),
        detail,
        id: None,
        instance: None,
    };
    let mut response = (status, serde_json::to_string(&body).unwrap_or_default()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
}
