//! A request's route and method as they appear in metric labels and span
//! names: bounded values only, whatever the caller sends, so a client cannot
//! grow a metric's series or a trace backend's span names without limit.

use axum::extract::{MatchedPath, Request};
use axum::http::Method;

/// The route template the request matched (`/crypto/sign/jobs/{id}`), or
/// `unmatched`: never the raw path, which holds job ids and anything a
/// caller makes up.
pub fn route(request: &Request) -> String {
    request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned()
}

/// The method if it is one of HTTP's standard ones, else `_OTHER` (as
/// OpenTelemetry's HTTP conventions say): methods are any token a client
/// likes.
pub fn method(method: &Method) -> &'static str {
    const STANDARD: [Method; 9] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::CONNECT,
        Method::OPTIONS,
        Method::TRACE,
        Method::PATCH,
    ];
    STANDARD
        .iter()
        .find(|m| *m == method)
        .map_or("_OTHER", |m| m.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_standard_methods_are_named() {
        assert_eq!(method(&Method::GET), "GET");
        assert_eq!(method(&Method::PATCH), "PATCH");
        let made_up = Method::from_bytes(b"FOOBAR").expect("a token");
        assert_eq!(method(&made_up), "_OTHER");
    }

    #[test]
    fn a_request_that_matched_no_route_is_unmatched() {
        let request = Request::new(axum::body::Body::empty());
        assert_eq!(route(&request), "unmatched");
    }
}
