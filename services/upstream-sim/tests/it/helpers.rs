//! Starts a real simulator on port 0 for each test.

use std::time::Duration;

use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use upstream_sim::{
    Config,
    config::{ApiKey, KeySource},
};

pub const KEY: &str = "test-key";

/// A running simulator.
pub struct TestSim {
    pub base: String,
    pub client: reqwest::Client,
    pub shutdown: CancellationToken,
    pub handle: JoinHandle<Result<(), upstream_sim::Error>>,
}

/// A config for tests: fixed seed, small fast key, every first try succeeds,
/// no chaos, the real limit.
pub fn config() -> Config {
    let mut config = Config {
        api_key: ApiKey::new(KEY),
        key: KeySource::Generate { bits: 1024 },
        seed: Some(42),
        ..Config::default()
    };
    config.failure.first_try_success = 1.0;
    config
}

pub async fn spawn(config: Config) -> TestSim {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(upstream_sim::run(listener, config, shutdown.clone()));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    TestSim {
        base,
        client,
        shutdown,
        handle,
    }
}

impl TestSim {
    /// `GET /crypto/sign` with the key.
    pub async fn sign(&self, message: &str) -> reqwest::Result<reqwest::Response> {
        self.client
            .get(format!("{}/crypto/sign", self.base))
            .query(&[("message", message)])
            .header("Authorization", KEY)
            .send()
            .await
    }

    /// `GET /crypto/verify`, without a key.
    pub async fn verify(&self, message: &str, signature: &str) -> bool {
        let answer: serde_json::Value = self
            .client
            .get(format!("{}/crypto/verify", self.base))
            .query(&[("message", message), ("signature", signature)])
            .send()
            .await
            .expect("verify")
            .json()
            .await
            .expect("json");
        answer["valid"].as_bool().expect("valid is a bool")
    }

    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json")
    }

    /// Cancels and waits for `run` to return.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.handle)
            .await
            .expect("run returns promptly after shutdown")
            .expect("task")
            .expect("run ok");
    }
}
