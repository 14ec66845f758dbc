//! Connecting a service to NATS and to its streams and buckets, waiting for
//! the broker so services can start in any order.

use crate::topology::{Topology, TopologyError};
use async_nats::jetstream;
use std::time::Duration;

/// Why a service could not get to its streams and buckets.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The NATS connection failed.
    #[error("connecting to NATS: {0}")]
    Connect(#[source] async_nats::ConnectError),
    /// `NATS_URL` names no server, or a server that is not a NATS URL.
    #[error("NATS server URL {url:?} is invalid: {problem}")]
    Url {
        /// The offending entry.
        url: String,
        /// Why.
        problem: String,
    },
    /// The topology could not be ensured in time.
    #[error(transparent)]
    Topology(TopologyError),
}

/// Where NATS is, and how many copies of every stream and bucket it keeps:
/// `NATS_URL` and `NATS_REPLICAS`, the same for every service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsSettings {
    /// Server URL(s), comma-separated; checked by [`servers`].
    pub url: String,
    /// Replicas of every stream and bucket: 1 on a single server, 3 on a
    /// three-node cluster. Start-up raises replicas to this, never lowers.
    pub replicas: usize,
    /// How long a signature (or a permanent failure) is kept in the
    /// results bucket; zero keeps them for ever.
    pub signature_retention: Duration,
    /// How long a job record (and its delivery record) is kept after its
    /// last write; a pending job's record is rewritten before then.
    pub job_retention: Duration,
}

/// How often a client pings its server. A server cut off by a partition
/// sends no reset: the connection just goes quiet, and only missed pongs
/// reveal it (async-nats gives up after two outstanding pings, so within
/// about three intervals). The default, one minute, left services talking
/// to a partitioned node for minutes; then they reconnect to another node
/// of `NATS_URL`.
pub const PING_INTERVAL: Duration = Duration::from_secs(5);

/// The most replicas JetStream supports for a stream.
pub const MAX_REPLICAS: usize = 5;

/// The servers of a comma-separated `NATS_URL`
/// (`nats://a:4222,nats://b:4222`): the client connects to any of them and
/// reconnects to the others (and to those the cluster gossips) if one goes.
pub fn servers(nats_url: &str) -> Result<Vec<async_nats::ServerAddr>, ConnectError> {
    let servers = nats_url
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<async_nats::ServerAddr>()
                .map_err(|e| ConnectError::Url {
                    url: s.to_owned(),
                    problem: e.to_string(),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if servers.is_empty() {
        return Err(ConnectError::Url {
            url: nats_url.to_owned(),
            problem: "no server".to_owned(),
        });
    }
    Ok(servers)
}

/// Connect to NATS (waiting for it if it is not up yet) and ensure the
/// topology, retrying for up to `patience` so services can start in any
/// order (compose starts them together).
pub async fn connect(
    nats: &NatsSettings,
    client_name: &str,
    patience: Duration,
) -> Result<Topology, ConnectError> {
    let client = async_nats::ConnectOptions::new()
        .name(client_name)
        .ping_interval(PING_INTERVAL)
        .retry_on_initial_connect()
        .connect(servers(&nats.url)?)
        .await
        .map_err(ConnectError::Connect)?;
    let js = jetstream::new(client);
    let started = std::time::Instant::now();
    loop {
        let ensured = Topology::ensure_with(
            js.clone(),
            nats.replicas,
            nats.signature_retention,
            nats.job_retention,
        );
        match ensured.await {
            Ok(t) => return Ok(t),
            Err(e) if started.elapsed() < patience => {
                tracing::warn!(error = %e, "JetStream not ready yet; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(ConnectError::Topology(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_list_is_split_and_each_entry_checked() {
        let list =
            servers("nats://127.0.0.1:4222, nats://127.0.0.1:4223,nats://n3:4224").expect("valid");
        assert_eq!(list.len(), 3);
        assert_eq!(list[1].port(), 4223);
        assert_eq!(servers("nats://127.0.0.1:4222").expect("one").len(), 1);
        assert!(matches!(servers(" , "), Err(ConnectError::Url { .. })));
        let bad = servers("nats://127.0.0.1:4222,nats://h:notaport").expect_err("bad port");
        assert!(bad.to_string().contains("h:notaport"), "{bad}");
    }
}
