//! NATS headers that carry the request id from api to signer to notifier.

use async_nats::HeaderMap;

/// Header carrying the request id, the same name as on HTTP.
pub const REQUEST_ID: &str = "X-Request-Id";

/// Headers holding `request_id`.
pub fn with_request_id(request_id: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(REQUEST_ID, request_id);
    headers
}

/// The request id of a received message, or `"-"` when absent.
pub fn request_id_of(headers: Option<&HeaderMap>) -> String {
    headers
        .and_then(|h| h.get(REQUEST_ID))
        .map(|v| v.as_str().to_owned())
        .unwrap_or_else(|| "-".to_owned())
}
