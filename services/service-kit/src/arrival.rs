//! When a request reached this process, for deadlines that count from
//! arrival rather than from when a handler started running.
//!
//! A connection's first request arrived with its first bytes. If they were
//! already waiting when the first read was tried (the client sent with the
//! connection, the usual case), they arrived by the accept, and everything
//! after is this server's queue; if the first read found nothing, they
//! arrived when a later read got them (a client that connected ahead, as
//! pools do). Time in the kernel's accept queue is before the accept and
//! not seen here.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// When a request arrived: for a connection's first request, its first
/// bytes ([`FirstBytes`]); for later ones, when the server handed it over.
#[derive(Debug, Clone, Copy)]
pub struct Arrival(pub Instant);

/// When a watched connection's first bytes arrived, once they have.
#[derive(Debug, Clone, Default)]
pub struct FirstBytes(Arc<OnceLock<Instant>>);

impl FirstBytes {
    /// `stream`, accepted just now, watched for its first bytes.
    pub fn watch<S>(stream: S) -> (Watched<S>, FirstBytes) {
        let first = FirstBytes::default();
        let watched = Watched {
            inner: stream,
            accepted: Instant::now(),
            found_nothing: false,
            first: first.clone(),
        };
        (watched, first)
    }

    /// The instant, if the first bytes have arrived.
    pub fn at(&self) -> Option<Instant> {
        self.0.get().copied()
    }
}

/// A connection's stream noting its first bytes' arrival; reads and writes
/// pass through unchanged.
#[derive(Debug)]
pub struct Watched<S> {
    inner: S,
    accepted: Instant,
    /// A read found nothing yet: the bytes come later than the accept.
    found_nothing: bool,
    first: FirstBytes,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let read = Pin::new(&mut this.inner).poll_read(cx, buf);
        if this.first.0.get().is_none() {
            match &read {
                Poll::Pending => this.found_nothing = true,
                Poll::Ready(Ok(())) if buf.filled().len() > before => {
                    let at = if this.found_nothing {
                        Instant::now()
                    } else {
                        this.accepted
                    };
                    let _ = this.first.0.set(at);
                }
                Poll::Ready(_) => {}
            }
        }
        read
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn bytes_waiting_at_the_first_read_arrived_by_the_accept() {
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(b"GET /").await.expect("write");
        let (mut watched, first) = FirstBytes::watch(server);
        let accepted = Instant::now();
        tokio::time::advance(std::time::Duration::from_millis(700)).await;
        let mut buf = [0u8; 8];
        let n = watched.read(&mut buf).await.expect("read");
        assert_eq!(&buf[..n], b"GET /");
        assert_eq!(first.at(), Some(accepted));
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_sent_later_arrived_when_they_came() {
        let (mut client, server) = tokio::io::duplex(64);
        let (mut watched, first) = FirstBytes::watch(server);
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 8];
            watched.read(&mut buf).await.map(|n| n > 0)
        });
        tokio::time::advance(std::time::Duration::from_secs(3)).await;
        assert_eq!(first.at(), None, "nothing has arrived yet");
        let sent = Instant::now();
        client.write_all(b"GET /").await.expect("write");
        assert!(reader.await.expect("joined").expect("read"));
        let at = first.at().expect("arrived");
        assert!(at >= sent, "{at:?} before the bytes were sent at {sent:?}");
    }
}
