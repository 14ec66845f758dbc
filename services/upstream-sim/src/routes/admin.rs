//! `/admin/*`: the audit, for tests and demos to check the gateway's manners.
//!
//! These endpoints need no key: the simulator is a test fixture and never
//! faces the internet.

use std::sync::Arc;

use axum::{
    Json,
    extract::{Query, State},
    http::StatusCode,
};
use serde::{Deserialize, Serialize};

use super::{App, lock};
use crate::{
    audit::{CallRecord, Summary},
    problem::ApiError,
};

#[derive(Debug, Deserialize)]
pub(super) struct AuditParams {
    /// Only calls that arrived at or after this Unix ms.
    since: Option<u64>,
}

#[derive(Debug, Serialize)]
pub(super) struct AuditAnswer {
    calls: Vec<CallRecord>,
}

/// `GET /admin/audit[?since=<unix ms>]`: `{"calls": [...]}`, oldest first.
pub(super) async fn audit(
    State(app): State<Arc<App>>,
    params: Result<Query<AuditParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AuditAnswer>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let calls = lock(&app.audit).calls(params.since);
    Ok(Json(AuditAnswer { calls }))
}

/// `GET /admin/audit/summary`: the totals of [`Summary`].
pub(super) async fn summary(State(app): State<Arc<App>>) -> Json<Summary> {
    Json(lock(&app.audit).summary())
}

/// `POST /admin/reset`: forgets the audit (and so the rate window); message
/// degradations are kept, as they would be upstream.
pub(super) async fn reset(State(app): State<Arc<App>>) -> StatusCode {
    lock(&app.audit).clear();
    tracing::info!("audit cleared");
    StatusCode::NO_CONTENT
}
