//! `GET /crypto/sign?message=…`: the unreliable endpoint the gateway tames.
//!
//! Every call is decided in one critical section over the audit lock, so the
//! arrival order, the rate-window check and the record agree even under
//! concurrent calls: key check, then the rate window (every authorised call
//! counts, whatever it is answered), then the failure model, then chaos. The
//! answer is rendered after the lock is released, including any injected
//! delay.

use std::{sync::Arc, time::Duration};

use axum::{
    body::{Body, Bytes},
    extract::{Query, State},
    http::{HeaderMap, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use serde::Deserialize;

use super::{App, lock};
use crate::{
    audit::{CallRecord, Outcome},
    chaos::{self, Fault, GARBAGE_BODY},
    clock,
    failure_model::Verdict,
    problem::ApiError,
};

/// How long a hanging call stays silent if the simulator is not shut down.
const HANG_FOR: Duration = Duration::from_secs(600);

#[derive(Debug, Deserialize)]
struct SignParams {
    message: Option<String>,
}

/// The answer decided for one call.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    Unauthorized,
    RateLimited,
    BadRequest,
    Degraded,
    Sign(String),
    Chaos500,
    Garbage,
    Hang,
    Reset,
}

impl Answer {
    /// How the audit shows it, and the status sent (none for hang/reset).
    fn outcome(&self) -> (Outcome, Option<u16>) {
        match self {
            Self::Unauthorized => (Outcome::Unauthorized, Some(401)),
            Self::RateLimited => (Outcome::RateLimited, Some(429)),
            Self::BadRequest => (Outcome::BadRequest, Some(400)),
            Self::Degraded => (Outcome::Degraded, Some(502)),
            Self::Sign(_) => (Outcome::Signed, Some(200)),
            Self::Chaos500 => (Outcome::Chaos500, Some(500)),
            Self::Garbage => (Outcome::Garbage, Some(200)),
            Self::Hang => (Outcome::Hang, None),
            Self::Reset => (Outcome::Reset, None),
        }
    }
}

/// The handler.
pub(super) async fn sign(State(app): State<Arc<App>>, headers: HeaderMap, uri: Uri) -> Response {
    let authorised = app.authorised(&headers);
    let message = Query::<SignParams>::try_from_uri(&uri)
        .ok()
        .and_then(|Query(params)| params.message);
    // Lag on the way in: the call counts as arrived only after it.
    let lag = chaos::arrival_delay(&app.chaos, &mut *lock(&app.chaos_rng));
    if let Some(lag) = lag {
        tokio::select! {
            () = tokio::time::sleep(lag) => {}
            () = app.shutdown.cancelled() => {}
        }
    }
    let (id, answer, delay) = decide(&app, authorised, message);

    if let Some(delay) = delay {
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = app.shutdown.cancelled() => {}
        }
    }
    match answer {
        Answer::Unauthorized => ApiError::Unauthorized.into_response(),
        Answer::RateLimited => ApiError::RateLimited.into_response(),
        Answer::BadRequest => {
            ApiError::BadRequest("the message query parameter is required".to_owned())
                .into_response()
        }
        Answer::Degraded => ApiError::Degraded.into_response(),
        Answer::Chaos500 => ApiError::Chaos500.into_response(),
        Answer::Garbage => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html")],
            GARBAGE_BODY,
        )
            .into_response(),
        Answer::Sign(message) => match app.signer.sign(message.as_bytes()) {
            Ok(signature) => signature.into_response(),
            Err(error) => {
                tracing::error!(%error, "signing failed");
                lock(&app.audit).amend(id, Outcome::InternalError, Some(500));
                ApiError::Internal.into_response()
            }
        },
        Answer::Hang => {
            tokio::select! {
                () = tokio::time::sleep(HANG_FOR) => {}
                () = app.shutdown.cancelled() => {}
            }
            cut_connection()
        }
        Answer::Reset => cut_connection(),
    }
}

/// Decides and records one call; returns the record id, the answer and any
/// injected delay.
fn decide(app: &App, authorised: bool, message: Option<String>) -> (u64, Answer, Option<Duration>) {
    let now_ms = clock::now_ms();
    let now = app.started.elapsed();
    let mut audit = lock(&app.audit);

    let (arrived_at_ms, violation) = if authorised {
        let admission = audit.admit(now_ms);
        (admission.arrived_at_ms, admission.violation)
    } else {
        (audit.arrival(now_ms), false)
    };

    let (answer, delay) = match (&message, authorised) {
        (_, false) => (Answer::Unauthorized, None),
        _ if violation && app.audit_settings.enforce_limit => (Answer::RateLimited, None),
        (None, true) => (Answer::BadRequest, None),
        (Some(message), true) => {
            let verdict = {
                let mut degradations = lock(&app.degradations);
                let prior = degradations.get(message).copied();
                let (verdict, state) = app.model.decide(message, now, prior);
                degradations.insert(message.clone(), state);
                verdict
            };
            let plan = chaos::plan(&app.chaos, &mut *lock(&app.chaos_rng));
            let answer = match (plan.fault, verdict) {
                (Some(Fault::Hang), _) => Answer::Hang,
                (Some(Fault::Reset), _) => Answer::Reset,
                (Some(Fault::Status500), _) => Answer::Chaos500,
                (Some(Fault::Garbage), _) => Answer::Garbage,
                (None, Verdict::Sign) => Answer::Sign(message.clone()),
                (None, Verdict::Degraded { .. }) => Answer::Degraded,
            };
            (answer, plan.delay)
        }
    };

    let (outcome, status) = answer.outcome();
    let delay_ms = delay.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    tracing::info!(
        msg = message.as_deref().unwrap_or(""),
        ?outcome,
        status,
        violation,
        delay_ms,
        "sign call"
    );
    if violation {
        tracing::warn!(
            window_ms = app.audit_settings.window.as_millis(),
            limit = app.audit_settings.limit,
            "rate limit violated"
        );
    }
    let id = audit.push(CallRecord {
        id: 0,
        arrived_at_ms,
        arrived_at: clock::rfc3339(arrived_at_ms),
        message,
        outcome,
        status,
        counted: authorised,
        violation,
        delay_ms,
    });
    (id, answer, delay)
}

/// A response whose body fails at once, so hyper aborts the connection
/// before the response is complete: the client sees a transport error.
fn cut_connection() -> Response {
    let failing = futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "chaos: connection cut",
        ))
    });
    Response::new(Body::from_stream(failing))
}
