//! A real Prometheus (Debian's package, scripts/install-prometheus.sh) on a
//! free loopback port with a temporary store, scraping a system's services
//! every second and evaluating ops/prometheus's rules every second.
//!
//! Prometheus cannot listen on port 0 and say which port it got, so the port
//! is one that was free a moment ago ([`free_port`]).

use crate::procs::{Proc, TempDir, free_port, wait_for_ok};
use crate::prometheus_rules::{RULE_FILES, rules_dir};
use std::collections::BTreeMap;
use std::time::Duration;

/// Every `for:` in the test's copy of the rules. The real values (minutes)
/// would make the test wait minutes; the expressions are the real ones, and
/// the real `for:` values are exercised by the promtool unit tests.
pub const COMPRESSED_FOR: &str = "5s";

pub struct Prometheus {
    pub proc: Proc,
    pub url: String,
    http: reqwest::Client,
    _dir: TempDir,
}

/// The rule file `text` with every non-zero `for:` set to [`COMPRESSED_FOR`].
fn compress_for(text: &str) -> String {
    text.lines()
        .map(|line| match line.split_once("for: ") {
            Some((indent, value)) if indent.trim().is_empty() && value.trim() != "0m" => {
                format!("{indent}for: {COMPRESSED_FOR}")
            }
            _ => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

impl Prometheus {
    /// Start it scraping `targets` (job name, `host:port`) and wait until it
    /// is ready.
    pub async fn start(targets: &[(&str, String)]) -> Self {
        let dir = TempDir::new("prometheus");
        let mut rule_paths = Vec::new();
        for file in RULE_FILES {
            let text = std::fs::read_to_string(rules_dir().join(file)).expect("rule file");
            let path = dir.0.join(file);
            std::fs::write(&path, compress_for(&text)).expect("write rules");
            rule_paths.push(format!("  - {}", path.display()));
        }
        let jobs: Vec<String> = targets
            .iter()
            .map(|(job, target)| {
                format!("  - job_name: {job}\n    static_configs:\n      - targets: ['{target}']")
            })
            .collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nrule_files:\n{}\nscrape_configs:\n{}\n",
            rule_paths.join("\n"),
            jobs.join("\n")
        );
        let config_path = dir.0.join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write config");
        let port = free_port();
        let proc = Proc::start(
            "prometheus",
            "prometheus".into(),
            &[
                &format!("--config.file={}", config_path.display()),
                &format!("--storage.tsdb.path={}", dir.0.join("data").display()),
                &format!("--web.listen-address=127.0.0.1:{port}"),
            ],
            BTreeMap::new(),
            &dir.0,
        );
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client");
        let url = format!("http://127.0.0.1:{port}");
        wait_for_ok(&http, &format!("{url}/-/ready"), "prometheus").await;
        Self {
            proc,
            url,
            http,
            _dir: dir,
        }
    }

    /// `GET /api/v1/<path>` with `query`, its `data` (panics on an error
    /// answer, with Prometheus's reason).
    pub async fn api(&self, path: &str, query: &[(&str, &str)]) -> serde_json::Value {
        let answer: serde_json::Value = self
            .http
            .get(format!("{}/api/v1/{path}", self.url))
            .query(query)
            .send()
            .await
            .expect("prometheus answers")
            .json()
            .await
            .expect("prometheus answers JSON");
        assert_eq!(answer["status"], "success", "{path} {query:?}: {answer}");
        answer["data"].clone()
    }

    /// Whether Prometheus parses `expr` (`/api/v1/format_query`, which 2.42
    /// has; `parse_query` came later), with its error if not.
    pub async fn parses(&self, expr: &str) -> Result<(), String> {
        let answer: serde_json::Value = self
            .http
            .get(format!("{}/api/v1/format_query", self.url))
            .query(&[("query", expr)])
            .send()
            .await
            .expect("prometheus answers")
            .json()
            .await
            .expect("prometheus answers JSON");
        match answer["status"].as_str() {
            Some("success") => Ok(()),
            _ => Err(answer["error"].to_string()),
        }
    }

    /// The values of an instant query, one per series.
    pub async fn values(&self, expr: &str) -> Vec<f64> {
        let data = self.api("query", &[("query", expr)]).await;
        data["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter_map(|s| s["value"][1].as_str().and_then(|v| v.parse().ok()))
            .collect()
    }

    /// The alerts firing now, by name.
    pub async fn firing(&self) -> Vec<String> {
        let data = self.api("alerts", &[]).await;
        data["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter(|a| a["state"] == "firing")
            .filter_map(|a| a["labels"]["alertname"].as_str().map(str::to_owned))
            .collect()
    }

    /// Poll `probe` (every 250 ms: Prometheus evaluates every second) until
    /// it returns `Some`, or fail the test after `limit` with `what` and the
    /// last thing seen.
    pub async fn until<T, F, Fut>(&self, limit: Duration, what: &str, mut probe: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, String>>,
    {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match probe().await {
                Ok(v) => return v,
                Err(last) => assert!(
                    tokio::time::Instant::now() < deadline,
                    "timed out after {limit:?} waiting for {what}; last seen: {last}\n--- prometheus ---\n{}",
                    self.proc.log_tail()
                ),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}
