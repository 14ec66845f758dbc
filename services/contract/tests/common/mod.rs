//! A real nats-server for the crate's integration tests.

use async_nats::jetstream::{self, kv};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A nats-server with JetStream on a free port, killed (and its store
/// removed) when dropped.
pub struct Nats {
    child: Child,
    dir: std::path::PathBuf,
    /// `nats://127.0.0.1:<port>`.
    pub url: String,
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Start one and wait until it accepts connections.
pub async fn nats() -> Nats {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("contract-it-{}-{port}", std::process::id()));
    let child = Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server must be on PATH (scripts/install-nats-server.sh)");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nats-server did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Nats {
        child,
        dir,
        url: format!("nats://127.0.0.1:{port}"),
    }
}

/// A fresh KV bucket `t` on the server at `url`.
#[allow(dead_code, reason = "not every test binary uses a bucket")]
pub async fn bucket(url: &str) -> kv::Store {
    let js = jetstream::new(async_nats::connect(url).await.expect("connect"));
    js.create_key_value(kv::Config {
        bucket: "t".into(),
        // As every bucket of the topology: removal markers expire.
        limit_markers: Some(Duration::from_secs(60)),
        ..Default::default()
    })
    .await
    .expect("bucket")
}
