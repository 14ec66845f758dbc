//! `GET /` and `GET /crypto/verify`: the upstream's simple endpoints.

use std::sync::Arc;

use axum::{
    Json,
    extract::{Query, State},
    http::HeaderMap,
};
use serde::{Deserialize, Serialize};

use super::App;
use crate::problem::ApiError;

/// `GET /`: a welcome for a valid key, as the real API's key check.
pub(super) async fn welcome(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> Result<&'static str, ApiError> {
    if app.authorised(&headers) {
        Ok("Welcome to the upstream simulator! Your API key works.\n")
    } else {
        Err(ApiError::Unauthorized)
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct VerifyParams {
    message: Option<String>,
    signature: Option<String>,
}

#[derive(Debug, Serialize)]
pub(super) struct VerifyAnswer {
    valid: bool,
}

/// `GET /crypto/verify?message=…&signature=…`: `{"valid": bool}`. The key is
/// not checked (sent or not), which is what the gateway's tests need.
pub(super) async fn verify(
    State(app): State<Arc<App>>,
    params: Result<Query<VerifyParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<VerifyAnswer>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let (Some(message), Some(signature)) = (params.message, params.signature) else {
        return Err(ApiError::BadRequest(
            "the message and signature query parameters are required".to_owned(),
        ));
    };
    let valid = app.signer.verify(message.as_bytes(), &signature);
    Ok(Json(VerifyAnswer { valid }))
}
