//! The one error type of the HTTP layer, rendered as `application/problem+json`.
//!
//! Error answers carry a status the gateway acts on (401, 429, 502, …) and a
//! short RFC 9457 body for humans reading logs; nothing internal leaks.

use axum::{
    Json,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

/// An error answer.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Missing or wrong `Authorization` header.
    #[error("missing or invalid API key")]
    Unauthorized,
    /// The request lacks a parameter or is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// Over the rate limit.
    #[error("rate limit exceeded")]
    RateLimited,
    /// The message is degraded (the failure model's 502).
    #[error("upstream failure, try again later")]
    Degraded,
    /// A 500 injected by chaos.
    #[error("internal server error")]
    Chaos500,
    /// The simulator itself failed.
    #[error("internal server error")]
    Internal,
    /// No such route.
    #[error("not found")]
    NotFound,
}

impl ApiError {
    /// The HTTP status of this answer.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::Degraded => StatusCode::BAD_GATEWAY,
            Self::Chaos500 | Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Self::NotFound => StatusCode::NOT_FOUND,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = json!({
            "type": "about:blank",
            "title": status.canonical_reason().unwrap_or("error"),
            "status": status.as_u16(),
            "detail": self.to_string(),
        });
        (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            Json(body),
        )
            .into_response()
    }
}
