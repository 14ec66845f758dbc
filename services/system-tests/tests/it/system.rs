//! `spawn_system()`: nats-server, the upstream simulator and the three
//! services as real processes on free ports, in compressed time.

use crate::lag_proxy::LagProxy;
use crate::nats_nodes::NatsNodes;
use crate::procs::{Proc, TempDir, bin, free_port, wait_for_ok};
use crate::receiver::{Receiver, SECRET_B64};
use crate::stall_proxy::StallProxy;
use std::collections::BTreeMap;
use std::time::Duration;

/// Knobs a scenario may turn.
#[derive(Debug, Clone)]
pub struct Options {
    /// Simulator: probability that a message's first call succeeds.
    pub first_try_success: f64,
    /// Simulator seed.
    pub seed: u64,
    /// Calls per window (both the signer's limit and the simulator's audit).
    pub limit: u32,
    /// The window.
    pub window: Duration,
    /// Signer processes sharing the one budget.
    pub signers: usize,
    /// The api's `BACKLOG_HORIZON`.
    pub backlog_horizon: &'static str,
    /// Simulator time scale (60: its minutes are seconds).
    pub time_scale: f64,
    /// The signer's `RETRY_MIN_BACKOFF`.
    pub retry_min_backoff: &'static str,
    /// The signer's `RETRY_SETTLE`.
    pub retry_settle: &'static str,
    /// The key the signer sends (the simulator expects `test-key`).
    pub upstream_key: &'static str,
    /// Extra simulator settings (e.g. chaos knobs).
    pub sim_env: Vec<(&'static str, &'static str)>,
    /// Put a [`LagProxy`] between the signers and the simulator: the share
    /// of request chunks held, and the longest hold.
    pub lag: Option<(f64, Duration)>,
    /// Give the services `NATS_URL` as a list whose first server is dead.
    pub nats_list: bool,
    /// Connect the api to NATS through a [`StallProxy`] (`System::api_link`).
    pub api_link_stalls: bool,
    /// nats-server nodes: 1, or 3 for a JetStream cluster (the services
    /// then get every node in `NATS_URL` and `NATS_REPLICAS=3`).
    pub nats_nodes: usize,
    /// Export the services' traces to this OTLP/HTTP endpoint, in batches
    /// sent every 100 ms.
    pub otlp_endpoint: Option<String>,
    /// The webhook receiver answers every webhook `500`.
    pub failing_receiver: bool,
    /// Extra api settings.
    pub api_env: Vec<(&'static str, String)>,
    /// Extra notifier settings.
    pub notifier_env: Vec<(&'static str, String)>,
    /// Settings of every service (api, signers, notifier).
    pub common_env: Vec<(&'static str, String)>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            first_try_success: 0.5,
            seed: 7,
            limit: 10,
            window: Duration::from_secs(3),
            signers: 1,
            backlog_horizon: "24h",
            time_scale: 60.0,
            retry_min_backoff: "500ms",
            retry_settle: "5s",
            upstream_key: "test-key",
            sim_env: Vec::new(),
            lag: None,
            nats_list: false,
            api_link_stalls: false,
            nats_nodes: 1,
            otlp_endpoint: None,
            failing_receiver: false,
            api_env: Vec::new(),
            notifier_env: Vec::new(),
            common_env: Vec::new(),
        }
    }
}

/// A running system.
pub struct System {
    /// The nats-server node(s).
    pub nats: NatsNodes,
    pub sim: Proc,
    pub signer: Proc,
    /// Further signer replicas (`Options::signers - 1`).
    pub replicas: Vec<Proc>,
    pub notifier: Proc,
    pub api: Proc,
    /// `http://127.0.0.1:<port>` of the api.
    pub api_url: String,
    /// `http://127.0.0.1:<port>` of the simulator.
    pub sim_url: String,
    signer_health: String,
    notifier_health: String,
    pub receiver: Receiver,
    pub http: reqwest::Client,
    /// The proxy the signers call the simulator through, if any.
    pub lag: Option<LagProxy>,
    /// The api's link to NATS, when it can be stalled.
    pub api_link: Option<StallProxy>,
    _dir: TempDir,
}

fn env(pairs: &[(&str, String)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// Start everything and wait until it is ready.
pub async fn spawn_system(opts: Options) -> System {
    let dir = TempDir::new("system");
    let sim_port = free_port();
    let api_port = free_port();
    let signer_port = free_port();
    let notifier_port = free_port();
    let nats = NatsNodes::start(&dir.0, opts.nats_nodes.max(1)).await;
    let window = format!("{}ms", opts.window.as_millis());
    let services_nats_url = if opts.nats_list {
        format!("nats://127.0.0.1:{},{}", free_port(), nats.url_list())
    } else {
        nats.url_list()
    };
    let sim = Proc::start(
        "upstream-sim",
        bin("upstream-sim"),
        &[],
        env(&[
            ("SIM_ADDR", format!("127.0.0.1:{sim_port}")),
            ("SIM_API_KEY", "test-key".into()),
            ("SIM_SEED", opts.seed.to_string()),
            ("SIM_FIRST_TRY_SUCCESS", opts.first_try_success.to_string()),
            ("SIM_TIME_SCALE", opts.time_scale.to_string()),
            ("SIM_AUDIT_WINDOW", window.clone()),
            ("SIM_AUDIT_LIMIT", opts.limit.to_string()),
            ("SIM_KEY_BITS", "2048".into()),
        ])
        .into_iter()
        .chain(
            opts.sim_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        )
        .collect(),
        &dir.0,
    );
    let sim_url = format!("http://127.0.0.1:{sim_port}");
    let lag = match opts.lag {
        Some((held_p, max_hold)) => {
            Some(LagProxy::start(sim_port, held_p, max_hold, opts.seed).await)
        }
        None => None,
    };
    let upstream_url = lag.as_ref().map_or_else(
        || sim_url.clone(),
        |p| format!("http://127.0.0.1:{}", p.port),
    );
    let common = |extra: &[(&str, String)]| {
        let mut e = env(&[
            ("NATS_URL", services_nats_url.clone()),
            ("NATS_REPLICAS", nats.ports.len().to_string()),
            ("UPSTREAM_RATE_LIMIT", opts.limit.to_string()),
            ("UPSTREAM_RATE_WINDOW", window.clone()),
            ("WEBHOOK_ALLOWED_CIDRS", "127.0.0.0/8".into()),
        ]);
        if let Some(endpoint) = &opts.otlp_endpoint {
            e.extend(env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.clone()),
                ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
            ]));
        }
        e.extend(env(&opts.common_env));
        e.extend(env(extra));
        e
    };
    let start_signer = |name: &str, health_port: u16| {
        Proc::start(
            name,
            bin("signer"),
            &[],
            common(&[
                ("UPSTREAM_URL", upstream_url.clone()),
                ("UPSTREAM_API_KEY", opts.upstream_key.to_owned()),
                ("UPSTREAM_RATE_MARGIN", "300ms".into()),
                ("UPSTREAM_TIMEOUT", "2s".into()),
                ("RETRY_MIN_BACKOFF", opts.retry_min_backoff.to_owned()),
                ("RETRY_SETTLE", opts.retry_settle.to_owned()),
                ("AUTH_RETRY_INTERVAL", "2s".into()),
                ("SIGNER_HEALTH_ADDR", format!("127.0.0.1:{health_port}")),
                ("SIGNER_ID", name.to_owned()),
            ]),
            &dir.0,
        )
    };
    let signer = start_signer("signer", signer_port);
    let replicas: Vec<Proc> = (1..opts.signers.max(1))
        .map(|i| start_signer(&format!("signer-{i}"), free_port()))
        .collect();
    let mut notifier_env = vec![
        ("WEBHOOK_SECRET", format!("whsec_{SECRET_B64}")),
        (
            "WEBHOOK_RETRY_SCHEDULE",
            "0s,200ms,500ms,1s,2s,2s,2s,2s,2s,2s".into(),
        ),
        ("WEBHOOK_RETRY_JITTER", "0".into()),
        ("WEBHOOK_TIMEOUT", "2s".into()),
        // Circuits on the compressed clock: a failing receiver is probed
        // again within the retry schedule's gaps.
        ("WEBHOOK_CIRCUIT_OPEN", "1s".into()),
        ("WEBHOOK_CIRCUIT_OPEN_MAX", "2s".into()),
        ("REPLY_GRACE", "3s".into()),
        ("NOTIFIER_HEALTH_ADDR", format!("127.0.0.1:{notifier_port}")),
    ];
    notifier_env.extend(opts.notifier_env.iter().map(|(k, v)| (*k, v.clone())));
    let notifier = Proc::start(
        "notifier",
        bin("notifier"),
        &[],
        common(&notifier_env),
        &dir.0,
    );
    let api_link = if opts.api_link_stalls {
        Some(StallProxy::start(nats.ports[0]).await)
    } else {
        None
    };
    let mut api_env = vec![
        ("API_ADDR", format!("127.0.0.1:{api_port}")),
        ("BACKLOG_HORIZON", opts.backlog_horizon.to_owned()),
    ];
    if let Some(link) = &api_link {
        api_env.push(("NATS_URL", format!("nats://127.0.0.1:{}", link.port)));
    }
    api_env.extend(opts.api_env.iter().map(|(k, v)| (*k, v.clone())));
    let api = Proc::start("api", bin("api"), &[], common(&api_env), &dir.0);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let api_url = format!("http://127.0.0.1:{api_port}");
    let signer_health = format!("http://127.0.0.1:{signer_port}/readyz");
    let notifier_health = format!("http://127.0.0.1:{notifier_port}/readyz");
    wait_for_ok(&http, &format!("{sim_url}/healthz"), "upstream-sim").await;
    api.wait_ready(&http, &format!("{api_url}/readyz")).await;
    signer.wait_ready(&http, &signer_health).await;
    let receiver = if opts.failing_receiver {
        Receiver::start_failing().await
    } else {
        Receiver::start().await
    };
    System {
        nats,
        sim,
        signer,
        replicas,
        notifier,
        api,
        api_url,
        sim_url,
        signer_health,
        notifier_health,
        receiver,
        http,
        lag,
        api_link,
        _dir: dir,
    }
}

impl System {
    /// The signer's `/readyz` status code.
    pub async fn signer_readiness(&self) -> u16 {
        self.http
            .get(&self.signer_health)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    }

    /// Wait for the signer to be ready again (after a restart).
    pub async fn signer_ready(&self) {
        wait_for_ok(&self.http, &self.signer_health, "signer").await;
    }

    /// The Prometheus text of the api (`"api"`), signer or notifier.
    pub async fn metrics(&self, service: &str) -> String {
        let url = match service {
            "api" => format!("{}/metrics", self.api_url),
            "signer" => self.signer_health.replace("/readyz", "/metrics"),
            _ => self.notifier_health.replace("/readyz", "/metrics"),
        };
        self.http
            .get(url)
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// `host:port` of the api's, the signer's and the notifier's `/metrics`,
    /// for a Prometheus to scrape.
    pub fn metrics_targets(&self) -> [(&'static str, String); 3] {
        let authority = |url: &str| {
            url.trim_start_matches("http://")
                .split('/')
                .next()
                .unwrap_or_default()
                .to_owned()
        };
        [
            ("api", authority(&self.api_url)),
            ("signer", authority(&self.signer_health)),
            ("notifier", authority(&self.notifier_health)),
        ]
    }

    /// The URL of the (first) nats-server node.
    pub fn nats_url(&self) -> String {
        self.nats.url(0)
    }

    /// Wait for the (first) nats-server node to serve JetStream again.
    pub async fn nats_ready(&self) {
        self.nats.ready(0).await;
    }

    /// The simulator's audit summary.
    pub async fn audit(&self) -> serde_json::Value {
        self.http
            .get(format!("{}/admin/audit/summary", self.sim_url))
            .send()
            .await
            .expect("audit")
            .json()
            .await
            .expect("audit json")
    }

    /// Every call the simulator saw.
    pub async fn audit_calls(&self) -> Vec<serde_json::Value> {
        let v: serde_json::Value = self
            .http
            .get(format!("{}/admin/audit", self.sim_url))
            .send()
            .await
            .expect("audit")
            .json()
            .await
            .expect("audit json");
        v["calls"].as_array().cloned().unwrap_or_default()
    }

    /// Whether the simulator says `signature` is valid for `message`.
    pub async fn verifies(&self, message: &str, signature: &str) -> bool {
        let v: serde_json::Value = self
            .http
            .get(format!("{}/crypto/verify", self.sim_url))
            .query(&[("message", message), ("signature", signature)])
            .send()
            .await
            .expect("verify")
            .json()
            .await
            .expect("verify json");
        v["valid"] == serde_json::Value::Bool(true)
    }

    /// Logs of every service, for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "--- signer ---\n{}\n--- notifier ---\n{}\n--- api ---\n{}\n--- sim ---\n{}",
            self.signer.log_tail(),
            self.notifier.log_tail(),
            self.api.log_tail(),
            self.sim.log_tail()
        )
    }
}
