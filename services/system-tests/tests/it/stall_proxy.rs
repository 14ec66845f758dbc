//! A TCP proxy whose traffic stops, both ways, at a chosen moment: a NATS
//! server that stops answering one client for a while (an fsync stall, a
//! paused VM, a congested link), as that client sees it. The moment is
//! named by bytes: the stall starts when a chunk carrying them passes
//! (that chunk is held too). Held bytes are forwarded in order once the
//! stall ends; nothing is lost.

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// Which way a trigger's bytes travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// From the client (the api) to the server.
    Out,
    /// From the server to the client.
    In,
}

/// Bytes passing one way.
pub type Sign = (Vec<u8>, Way);

/// The next stall.
struct Armed {
    /// Bytes that must pass first, if any (then cleared).
    after: Option<Sign>,
    /// Bytes that start the stall.
    trigger: Sign,
    /// How long it lasts.
    stall: Duration,
}

#[derive(Default)]
struct State {
    /// The current stall's end.
    until: Option<Instant>,
    armed: Option<Armed>,
}

type Shared = Arc<Mutex<State>>;

/// A running proxy; stops when dropped.
pub struct StallProxy {
    /// The port it listens on.
    pub port: u16,
    state: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StallProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StallProxy {
    /// Forward `127.0.0.1:<port>` to `127.0.0.1:<target>`.
    pub async fn start(target: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let state = Shared::default();
        let task = {
            let state = Arc::clone(&state);
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let state = Arc::clone(&state);
                    tokio::spawn(async move {
                        if let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await {
                            let (cr, cw) = client.into_split();
                            let (sr, sw) = server.into_split();
                            tokio::join!(
                                forward(cr, sw, Way::Out, Arc::clone(&state)),
                                forward(sr, cw, Way::In, state)
                            );
                        }
                    });
                }
            })
        };
        Self { port, state, task }
    }

    /// Stall everything for `stall` once a chunk carrying `trigger` passes
    /// (after one carrying `after`, if given); once. A later call replaces
    /// a trigger that has not fired.
    pub fn arm(&self, after: Option<Sign>, trigger: Sign, stall: Duration) {
        lock(&self.state).armed = Some(Armed {
            after,
            trigger,
            stall,
        });
    }

    /// Disarm, and say whether the trigger fired since it was armed.
    pub fn disarm(&self) -> bool {
        lock(&self.state).armed.take().is_none()
    }

    /// Once a stall is on; a wait that runs out fails the test.
    pub async fn stalling(&self, within: Duration) {
        let give_up = Instant::now() + within;
        while lock(&self.state).until.is_none_or(|u| u <= Instant::now()) {
            assert!(
                Instant::now() < give_up,
                "no stall started within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Once no stall is on (at once if none is).
    pub async fn flowing(&self) {
        wait_out(&self.state).await;
    }
}

fn lock(state: &Shared) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

async fn wait_out(state: &Shared) {
    loop {
        let until = lock(state).until;
        match until {
            Some(t) if t > Instant::now() => tokio::time::sleep_until(t).await,
            _ => return,
        }
    }
}

/// Copy `from` to `to` chunk by chunk, starting a stall when an armed
/// trigger passes and holding each chunk until no stall is on.
async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    way: Way,
    state: Shared,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        {
            let mut s = lock(&state);
            let chunk = &buf[..n];
            let seen =
                |(bytes, w): &Sign| *w == way && chunk.windows(bytes.len()).any(|x| x == bytes);
            if let Some(armed) = s.armed.as_mut() {
                if armed.after.as_ref().is_some_and(seen) {
                    armed.after = None;
                } else if armed.after.is_none() && seen(&armed.trigger) {
                    let stall = armed.stall;
                    s.armed = None;
                    s.until = Some(Instant::now() + stall);
                }
            }
        }
        wait_out(&state).await;
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
