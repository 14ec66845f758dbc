//! Running many small NATS operations at once, with a bound.

use futures::StreamExt;

/// Await `ops`, at most `limit` at a time; the first error is returned once
/// all have finished (each is idempotent, so the caller may redo them all).
///
/// The futures are made before they are run, not by a closure inside a
/// stream combinator: such closures over borrowed state make the caller's
/// future fail to be `Send` (rust-lang/rust#102211).
pub async fn all<E>(
    ops: impl IntoIterator<Item = impl Future<Output = Result<(), E>>>,
    limit: usize,
) -> Result<(), E> {
    let ops: Vec<_> = ops.into_iter().collect();
    let mut running = futures::stream::iter(ops).buffer_unordered(limit.max(1));
    let mut first_error = None;
    while let Some(done) = running.next().await {
        if let Err(e) = done {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn runs_every_op_within_the_bound_and_reports_an_error() {
        let (now, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let op = |i: usize| {
            let (now, most) = (&now, &most);
            async move {
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(n, Ordering::SeqCst);
                tokio::task::yield_now().await;
                now.fetch_sub(1, Ordering::SeqCst);
                if i == 7 { Err(i) } else { Ok(()) }
            }
        };
        assert_eq!(all((0..20).map(op), 4).await, Err(7));
        assert_eq!(most.load(Ordering::SeqCst), 4);
        assert_eq!(all((0..3).map(op), 4).await, Ok(()));
    }
}
