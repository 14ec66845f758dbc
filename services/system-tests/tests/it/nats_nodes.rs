//! The nats-server processes of a test: one node, or three with routes on
//! loopback forming a JetStream cluster (as `docker-compose.cluster.yml`
//! runs them), each with its own store, so any node can be killed,
//! restarted and asked who leads a stream.

use crate::procs::{Proc, free_port, wait_for_ok, wait_for_port};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// Running nats-server nodes; node `i` is named `n{i}`.
pub struct NatsNodes {
    pub nodes: Vec<Proc>,
    /// Client port of each node.
    pub ports: Vec<u16>,
    /// Monitoring (HTTP) port of each node.
    monitor_ports: Vec<u16>,
    http: reqwest::Client,
}

impl NatsNodes {
    /// Start `n` nodes (1, or 3 for a cluster) and wait until JetStream is
    /// ready on each.
    pub async fn start(dir: &Path, n: usize) -> Self {
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let monitor_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let route_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let routes = route_ports
            .iter()
            .map(|p| format!("nats-route://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(", ");
        let nodes = (0..n)
            .map(|i| {
                let store = dir.join(format!("n{i}"));
                // A cluster block only for a cluster: a single node with one
                // would wait for peers that never come.
                let cluster = if n > 1 {
                    format!(
                        "cluster {{\n  name: gw\n  listen: 127.0.0.1:{}\n  routes: [{routes}]\n}}\n",
                        route_ports[i]
                    )
                } else {
                    String::new()
                };
                // Pings as in nats/cluster/common.conf.
                let config = format!(
                    "server_name: n{i}\nlisten: 127.0.0.1:{}\nhttp: 127.0.0.1:{}\n\
                     ping_interval: \"2s\"\nping_max: 3\n\
                     jetstream {{\n  store_dir: {:?}\n}}\n{cluster}",
                    ports[i],
                    monitor_ports[i],
                    store.to_str().expect("utf-8 path"),
                );
                let file = dir.join(format!("n{i}.conf"));
                std::fs::write(&file, config).expect("write node config");
                Proc::start(
                    &format!("nats-n{i}"),
                    "nats-server".into(),
                    &["-c", file.to_str().expect("utf-8 path")],
                    BTreeMap::new(),
                    dir,
                )
            })
            .collect();
        let nodes = Self {
            nodes,
            ports,
            monitor_ports,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("client"),
        };
        for i in 0..n {
            nodes.ready(i).await;
        }
        nodes
    }

    /// `nats://…` of node `i`.
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.ports[i])
    }

    /// Every node's URL, comma-separated (`NATS_URL`).
    pub fn url_list(&self) -> String {
        (0..self.ports.len())
            .map(|i| self.url(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Wait until node `i` accepts clients and its JetStream is healthy
    /// (`/healthz?js-server-only=true`: enabled and, on a cluster, in
    /// contact with the meta leader; `js-enabled-only` asks only whether
    /// JetStream is on, and let tests start services before the meta group
    /// had a leader).
    pub async fn ready(&self, i: usize) {
        wait_for_port(self.ports[i], "nats-server").await;
        wait_for_ok(
            &self.http,
            &format!(
                "http://127.0.0.1:{}/healthz?js-server-only=true",
                self.monitor_ports[i]
            ),
            "nats-server JetStream",
        )
        .await;
    }

    /// The node leading `stream`, asked through node `via`, waiting (up to
    /// 30 s) while the stream has no leader (an election is under way).
    pub async fn leader_of(&self, stream: &str, via: usize) -> usize {
        let client = async_nats::connect(self.url(via)).await.expect("nats");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let info = client
                .request(format!("$JS.API.STREAM.INFO.{stream}"), "".into())
                .await
                .ok()
                .and_then(|m| serde_json::from_slice::<serde_json::Value>(&m.payload).ok());
            let leader = info.as_ref().and_then(|v| {
                v["cluster"]["leader"]
                    .as_str()
                    .and_then(|name| name.strip_prefix('n'))
                    .and_then(|i| i.parse::<usize>().ok())
            });
            if let Some(i) = leader {
                return i;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{stream} has no leader after 30 s: {info:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The replicas `stream` has, asked through node `via`.
    pub async fn replicas_of(&self, stream: &str, via: usize) -> u64 {
        let client = async_nats::connect(self.url(via)).await.expect("nats");
        let m = client
            .request(format!("$JS.API.STREAM.INFO.{stream}"), "".into())
            .await
            .expect("stream info");
        let v: serde_json::Value = serde_json::from_slice(&m.payload).expect("stream info json");
        v["config"]["num_replicas"].as_u64().unwrap_or(0)
    }
}
