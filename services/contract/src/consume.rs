//! The one loop that takes messages off NATS: open a message stream (a
//! JetStream pull consumer, or a core subscription), hand each message to a
//! handler, and reopen whatever NATS does, until shutdown.
//!
//! It never gives up on a NATS error: a server restart, a deleted consumer
//! or a lost stream only pause it. Reopening backs off while failures follow
//! one another (a broker that is down is not hammered) and starts short
//! again once a message got through.

use crate::pause::Backoff;
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::consumer::pull::{MessagesError, MessagesErrorKind};
use async_nats::jetstream::context::{GetStreamError, GetStreamErrorKind};
use async_nats::jetstream::stream::{ConsumerError, ConsumerErrorKind};
use futures::{Stream, StreamExt};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Errors in a row from a message stream before it is reopened. Fewer are
/// passed over: a missed heartbeat or a failed pull is usually a blip the
/// stream gets over by itself (it pulls again), and reopening costs a round
/// trip per consumer.
pub const MAX_ERRORS_IN_A_ROW: u32 = 3;

/// First pause before reopening, doubled up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(200);
/// Longest pause before reopening: how late a consumer can come back after
/// the broker does.
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Take messages from what `open` opens and `handle` each in turn, until
/// `shutdown`; `what` (the consumer's name) labels every log line.
///
/// `handle` is awaited before the next message is taken, and is never cut
/// short by shutdown: a handler that wants concurrency spawns (and bounds)
/// its own tasks. A core subscription, which cannot fail but only end, is
/// passed as `subscriber.map(Ok)`.
pub async fn consume<S, M, O, OF, H, HF>(
    what: &'static str,
    shutdown: &CancellationToken,
    mut open: O,
    mut handle: H,
) where
    O: FnMut() -> OF,
    OF: Future<Output = Result<S, async_nats::Error>>,
    S: Stream<Item = Result<M, MessagesError>>,
    H: FnMut(M) -> HF,
    HF: Future<Output = ()>,
{
    let mut backoff = Backoff::new(RETRY_FIRST, RETRY_MAX);
    while !shutdown.is_cancelled() {
        let messages = match open().await {
            Ok(messages) => messages,
            Err(error) => {
                if is_missing(error.as_ref()) {
                    tracing::warn!(consumer = what, %error, "stream or consumer missing; retrying until it is back");
                } else {
                    tracing::warn!(consumer = what, %error, "cannot open; retrying");
                }
                if !backoff.pause(shutdown).await {
                    return;
                }
                continue;
            }
        };
        tracing::info!(consumer = what, "consuming");
        let mut messages = std::pin::pin!(messages);
        let mut errors = 0;
        loop {
            let next = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                next = messages.next() => next,
            };
            match next {
                Some(Ok(message)) => {
                    errors = 0;
                    handle(message).await;
                    backoff.reset();
                }
                Some(Err(error)) => {
                    errors += 1;
                    let kind = error.kind();
                    if after_error(kind, errors) == AfterError::Reopen {
                        tracing::warn!(consumer = what, %error, ?kind, errors, "message stream failed; reopening");
                        break;
                    }
                    tracing::warn!(consumer = what, %error, ?kind, errors, "message stream error; carrying on");
                }
                None => {
                    tracing::warn!(consumer = what, "message stream ended; reopening");
                    break;
                }
            }
        }
        if !backoff.pause(shutdown).await {
            return;
        }
    }
}

/// What to do after an error from a message stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterError {
    /// Keep taking from the same stream.
    CarryOn,
    /// Drop it and open a new one.
    Reopen,
}

/// The `errors`-th error in a row, of `kind`: reopen at once when the
/// stream cannot recover by itself, else after [`MAX_ERRORS_IN_A_ROW`].
fn after_error(kind: MessagesErrorKind, errors: u32) -> AfterError {
    match kind {
        MessagesErrorKind::ConsumerDeleted
        | MessagesErrorKind::NoResponders
        | MessagesErrorKind::PushBasedConsumer
        | MessagesErrorKind::RequestLimitExceeded => AfterError::Reopen,
        _ if errors >= MAX_ERRORS_IN_A_ROW => AfterError::Reopen,
        _ => AfterError::CarryOn,
    }
}

/// Whether opening failed because the stream or the consumer does not
/// exist (lost with a server's storage, or deleted by an operator), not
/// because NATS could not be reached.
fn is_missing(error: &(dyn std::error::Error + 'static)) -> bool {
    let code = if let Some(e) = error.downcast_ref::<GetStreamError>() {
        match e.kind() {
            GetStreamErrorKind::JetStream(e) => Some(e.error_code()),
            _ => None,
        }
    } else if let Some(e) = error.downcast_ref::<ConsumerError>() {
        match e.kind() {
            ConsumerErrorKind::JetStream(e) => Some(e.error_code()),
            _ => None,
        }
    } else {
        None
    };
    code.is_some_and(|c| c == ErrorCode::STREAM_NOT_FOUND || c == ErrorCode::CONSUMER_NOT_FOUND)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn blips_are_passed_over_until_they_repeat_and_a_lost_consumer_is_reopened_at_once() {
        for blip in [MessagesErrorKind::MissingHeartbeat, MessagesErrorKind::Pull] {
            assert_eq!(after_error(blip, 1), AfterError::CarryOn, "{blip:?}");
            assert_eq!(
                after_error(blip, MAX_ERRORS_IN_A_ROW - 1),
                AfterError::CarryOn
            );
            assert_eq!(after_error(blip, MAX_ERRORS_IN_A_ROW), AfterError::Reopen);
        }
        for fatal in [
            MessagesErrorKind::ConsumerDeleted,
            MessagesErrorKind::NoResponders,
            MessagesErrorKind::RequestLimitExceeded,
        ] {
            assert_eq!(after_error(fatal, 1), AfterError::Reopen, "{fatal:?}");
        }
    }

    #[test]
    fn only_a_missing_stream_or_consumer_counts_as_missing() {
        let missing = |code: u64| {
            // The client has no constructor for it: it comes off the wire.
            let js: async_nats::jetstream::Error = serde_json::from_value(
                serde_json::json!({"code": 404, "err_code": code, "description": "x"}),
            )
            .expect("a JetStream error");
            let e: async_nats::Error =
                GetStreamError::new(GetStreamErrorKind::JetStream(js)).into();
            is_missing(e.as_ref())
        };
        assert!(missing(ErrorCode::STREAM_NOT_FOUND.0));
        assert!(!missing(10_000));
        // Opening the consumer, not the stream, can fail the same way.
        let js: async_nats::jetstream::Error = serde_json::from_value(serde_json::json!(
            {"code": 404, "err_code": ErrorCode::CONSUMER_NOT_FOUND.0, "description": "x"}
        ))
        .expect("a JetStream error");
        let e: async_nats::Error = ConsumerError::new(ConsumerErrorKind::JetStream(js)).into();
        assert!(is_missing(e.as_ref()), "a missing consumer is missing");
        let e: async_nats::Error = GetStreamError::new(GetStreamErrorKind::Request).into();
        assert!(!is_missing(e.as_ref()), "a timeout is not a missing stream");
    }

    /// A stream of `items`, then the end.
    fn stream_of(
        items: Vec<Result<u32, MessagesErrorKind>>,
    ) -> impl Stream<Item = Result<u32, MessagesError>> {
        futures::stream::iter(items.into_iter().map(|i| i.map_err(MessagesError::new)))
    }

    #[tokio::test(start_paused = true)]
    async fn every_message_is_handled_across_reopens_and_failed_opens_until_shutdown() {
        let shutdown = CancellationToken::new();
        let opens = AtomicU32::new(0);
        let mut seen = Vec::new();
        let opened = || {
            let n = opens.fetch_add(1, Ordering::SeqCst);
            async move {
                match n {
                    0 => Ok(stream_of(vec![
                        Ok(1),
                        Err(MessagesErrorKind::ConsumerDeleted),
                        Ok(99),
                    ])),
                    1 => Err("broker down".into()),
                    2 => Ok(stream_of(vec![
                        Err(MessagesErrorKind::MissingHeartbeat),
                        Ok(2),
                        Ok(3),
                    ])),
                    _ => Ok(stream_of(vec![])),
                }
            }
        };
        let shutdown_after = shutdown.clone();
        let started = tokio::time::Instant::now();
        let consumed = consume("test", &shutdown, opened, |m| {
            seen.push(m);
            if m == 3 {
                shutdown_after.cancel();
            }
            async {}
        });
        tokio::time::timeout(Duration::from_secs(60), consumed)
            .await
            .expect("message 3 never came");
        assert_eq!(
            seen,
            vec![1, 2, 3],
            "what followed a fatal error was dropped"
        );
        assert_eq!(opens.load(Ordering::SeqCst), 3);
        // After message 1: a reopen and a failed open, paused 200 + 400 ms.
        assert_eq!(started.elapsed(), Duration::from_millis(600));
    }

    /// Blips in a row on a stream that never ends by itself: without the
    /// count of errors in a row, the consumer would wait on it for ever.
    #[tokio::test(start_paused = true)]
    async fn a_stream_that_keeps_failing_is_reopened() {
        let shutdown = CancellationToken::new();
        let opens = AtomicU32::new(0);
        let opened = || {
            let n = opens.fetch_add(1, Ordering::SeqCst);
            let items = if n == 0 {
                vec![Err(MessagesErrorKind::MissingHeartbeat); MAX_ERRORS_IN_A_ROW as usize]
            } else {
                vec![Ok(7)]
            };
            async move { Ok(stream_of(items).chain(futures::stream::pending())) }
        };
        let shutdown_after = shutdown.clone();
        let consumed = consume("test", &shutdown, opened, |_| {
            shutdown_after.cancel();
            async {}
        });
        tokio::time::timeout(Duration::from_secs(60), consumed)
            .await
            .expect("the failing stream was never reopened");
        assert_eq!(opens.load(Ordering::SeqCst), 2);
    }
}
