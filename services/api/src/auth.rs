//! Who a request is from, and what it may read: the caller its key names
//! (`Authorization: Bearer <key>`), or anyone when no callers are
//! configured; the operators' token for the status details and any job.

use crate::problem::ApiError;
use crate::state::AppState;
use axum::http::{HeaderMap, header};

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The caller a request is from: `None` when the gateway is open (no
/// callers configured).
///
/// # Errors
/// [`ApiError::Unauthorized`] when callers are configured and the request
/// carries none of their keys.
pub fn caller(state: &AppState, headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let callers = &state.config.callers;
    if callers.is_open() {
        return Ok(None);
    }
    bearer(headers)
        .and_then(|key| callers.identify(key))
        .map(|c| Some(c.name.clone()))
        .ok_or(ApiError::Unauthorized)
}

/// [`caller`], then a token from its request-rate bucket.
///
/// # Errors
/// As [`caller`], and [`ApiError::RateLimited`] when the caller is over its
/// rate.
pub fn admitted_caller(state: &AppState, headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let caller = caller(state, headers)?;
    if let Some(name) = &caller {
        if let Err(wait) = state.quotas.admit(name) {
            metrics::counter!("caller_requests_refused_total", "caller" => name.clone(), "reason" => "rate")
                .increment(1);
            return Err(ApiError::RateLimited {
                caller: name.clone(),
                retry_after: wait.as_secs_f64().ceil().max(1.0) as u64,
            });
        }
        metrics::counter!("caller_requests_total", "caller" => name.clone()).increment(1);
    }
    Ok(caller)
}

/// Whether the request carries the admin token.
pub fn is_admin(state: &AppState, headers: &HeaderMap) -> bool {
    bearer(headers).is_some_and(|t| state.config.admin_token.matches(t))
}

/// Whether the request may see what the operators see (job ids, messages,
/// errors on the status page): with the admin token, or when the gateway
/// is wholly open (no callers and no admin token configured: the demo).
pub fn sees_details(state: &AppState, headers: &HeaderMap) -> bool {
    let open = state.config.callers.is_open() && !state.config.admin_token.is_set();
    open || is_admin(state, headers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn only_a_bearer_token_is_read() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(
                header::AUTHORIZATION,
                HeaderValue::from_str(v).expect("header"),
            );
            bearer(&h).map(str::to_owned)
        };
        assert_eq!(with("Bearer abc"), Some("abc".into()));
        assert_eq!(with("bearer  abc "), Some("abc".into()));
        assert_eq!(with("Basic abc"), None);
        assert_eq!(with("Bearer "), None);
        assert_eq!(with("Bearerabc"), None);
        assert_eq!(bearer(&HeaderMap::new()), None);
    }
}
