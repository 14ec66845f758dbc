//! `/webhooks/inbox`: receives and lists demo webhook deliveries.

use std::sync::Arc;

use axum::{
    Json,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
};
use serde::Serialize;

use super::{App, lock};
use crate::{
    clock,
    webhook_inbox::{CAPACITY, Delivery},
};

#[derive(Debug, Serialize)]
pub(super) struct InboxAnswer {
    deliveries: Vec<Delivery>,
    capacity: usize,
}

/// `POST /webhooks/inbox`: stores the delivery, answers 204.
pub(super) async fn receive(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let now = clock::now_ms();
    let delivery = Delivery::new(now, clock::rfc3339(now), &headers, &body);
    tracing::info!(bytes = body.len(), "webhook delivery received");
    lock(&app.inbox).push(delivery);
    StatusCode::NO_CONTENT
}

/// `GET /webhooks/inbox`: `{"deliveries": [...], "capacity": n}`, newest last.
pub(super) async fn list(State(app): State<Arc<App>>) -> Json<InboxAnswer> {
    let deliveries = lock(&app.inbox).list();
    Json(InboxAnswer {
        deliveries,
        capacity: CAPACITY,
    })
}

/// `DELETE /webhooks/inbox`: empties the inbox, answers 204.
pub(super) async fn clear(State(app): State<Arc<App>>) -> StatusCode {
    lock(&app.inbox).clear();
    StatusCode::NO_CONTENT
}
