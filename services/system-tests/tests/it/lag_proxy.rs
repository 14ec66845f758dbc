//! A TCP proxy that holds chosen requests before forwarding them: network
//! lag on the way to the upstream (a SYN retransmit, a stalled middlebox),
//! which the upstream's rate window sees and the caller cannot.
//!
//! Every chunk the client sends is held, with probability `held_p`, for a
//! time drawn uniformly up to `max_hold` (in order: a held chunk delays the
//! ones behind it on the same connection). Answers flow back untouched.

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A running proxy; stops when dropped.
pub struct LagProxy {
    /// The port it listens on.
    pub port: u16,
    /// How many chunks it held.
    pub held: Arc<Mutex<Vec<Duration>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for LagProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// xorshift64*: a seeded draw without another dependency.
struct Draw(u64);

impl Draw {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl LagProxy {
    /// Forward `127.0.0.1:<port>` to `127.0.0.1:<target>`.
    pub async fn start(target: u16, held_p: f64, max_hold: Duration, seed: u64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let draw = Arc::new(Mutex::new(Draw(seed | 1)));
        let held = Arc::new(Mutex::new(Vec::new()));
        let task = {
            let held = Arc::clone(&held);
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let (draw, held) = (Arc::clone(&draw), Arc::clone(&held));
                    tokio::spawn(async move {
                        if let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await {
                            pipe(client, server, held_p, max_hold, draw, held).await;
                        }
                    });
                }
            })
        };
        Self { port, held, task }
    }

    /// Held chunks so far.
    pub fn held(&self) -> Vec<Duration> {
        self.held.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

async fn pipe(
    client: TcpStream,
    server: TcpStream,
    held_p: f64,
    max_hold: Duration,
    draw: Arc<Mutex<Draw>>,
    held: Arc<Mutex<Vec<Duration>>>,
) {
    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut server_rx, mut server_tx) = server.into_split();
    let upstream = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match client_rx.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let hold = {
                let mut d = draw.lock().unwrap_or_else(|p| p.into_inner());
                (d.unit() < held_p).then(|| max_hold.mul_f64(d.unit()))
            };
            if let Some(hold) = hold {
                held.lock().unwrap_or_else(|p| p.into_inner()).push(hold);
                tokio::time::sleep(hold).await;
            }
            if server_tx.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = server_tx.shutdown().await;
    };
    let downstream = async move {
        let _ = tokio::io::copy(&mut server_rx, &mut client_tx).await;
        let _ = client_tx.shutdown().await;
    };
    tokio::join!(upstream, downstream);
}
