//! Signer configuration from environment variables, validated at start.

use std::{fmt, net::SocketAddr, time::Duration};

/// Everything the signer needs to run.
#[derive(Clone)]
pub struct Config {
    /// NATS server URL(s), comma-separated.
    pub nats_url: String,
    /// Base URL of the upstream (the simulator by default).
    pub upstream_url: String,
    /// Value of the upstream's `Authorization` header. Never logged.
    pub upstream_api_key: String,
    /// Upstream calls allowed per window, across all replicas.
    pub rate_limit: u32,
    /// The upstream's sliding window.
    pub rate_window: Duration,
    /// Tolerated clock skew between the NATS servers that stamp upstream
    /// calls; widens each call's span on both sides. Replicas' own clocks
    /// never enter the limit.
    pub rate_margin: Duration,
    /// Per-call timeout; a timed-out call still counts against the budget.
    pub upstream_timeout: Duration,
    /// Least time between two attempts for one message.
    pub retry_min_backoff: Duration,
    /// Time after a first failure by which a message has usually recovered;
    /// earlier retries are made only when no other message is eligible.
    pub retry_settle: Duration,
    /// Pause after the upstream refused our credentials (401/403).
    pub auth_retry_interval: Duration,
    /// Where `/healthz` and `/readyz` listen.
    pub health_addr: SocketAddr,
    /// This replica's name, in leases and logs.
    pub signer_id: String,
}

/// A variable that is set but invalid.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {problem}")]
pub struct ConfigError {
    var: &'static str,
    problem: String,
}

impl Config {
    /// Read from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Read from any lookup (tests pass a map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let text =
            |var: &'static str, default: &str| get(var).unwrap_or_else(|| default.to_owned());
        let duration = |var: &'static str, default: &str| {
            humantime::parse_duration(&text(var, default)).map_err(|e| ConfigError {
                var,
                problem: e.to_string(),
            })
        };
        let config = Self {
            nats_url: text("NATS_URL", "nats://127.0.0.1:4222"),
            upstream_url: text("UPSTREAM_URL", "http://127.0.0.1:8081"),
            upstream_api_key: text("UPSTREAM_API_KEY", "dev-key"),
            rate_limit: text("UPSTREAM_RATE_LIMIT", "10")
                .parse()
                .map_err(|e| ConfigError {
                    var: "UPSTREAM_RATE_LIMIT",
                    problem: format!("{e}"),
                })?,
            rate_window: duration("UPSTREAM_RATE_WINDOW", "60s")?,
            rate_margin: duration("UPSTREAM_RATE_MARGIN", "500ms")?,
            upstream_timeout: duration("UPSTREAM_TIMEOUT", "10s")?,
            retry_min_backoff: duration("RETRY_MIN_BACKOFF", "30s")?,
            retry_settle: duration("RETRY_SETTLE", "300s")?,
            auth_retry_interval: duration("AUTH_RETRY_INTERVAL", "60s")?,
            health_addr: text("SIGNER_HEALTH_ADDR", "127.0.0.1:9101")
                .parse()
                .map_err(|e| ConfigError {
                    var: "SIGNER_HEALTH_ADDR",
                    problem: format!("{e}"),
                })?,
            signer_id: get("SIGNER_ID").unwrap_or_else(default_id),
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |var, problem: &str| {
            Err(ConfigError {
                var,
                problem: problem.to_owned(),
            })
        };
        if self.rate_limit == 0 {
            return bad("UPSTREAM_RATE_LIMIT", "must be at least 1");
        }
        if self.rate_window.is_zero() {
            return bad("UPSTREAM_RATE_WINDOW", "must be positive");
        }
        if self.upstream_timeout.is_zero() {
            return bad("UPSTREAM_TIMEOUT", "must be positive");
        }
        if !(self.upstream_url.starts_with("http://") || self.upstream_url.starts_with("https://"))
        {
            return bad("UPSTREAM_URL", "must be an http(s) URL");
        }
        if self.upstream_api_key.is_empty() {
            return bad("UPSTREAM_API_KEY", "must not be empty");
        }
        Ok(())
    }
}

fn default_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "signer".to_owned());
    format!("{host}-{}", std::process::id())
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("nats_url", &self.nats_url)
            .field("upstream_url", &self.upstream_url)
            .field("upstream_api_key", &"<redacted>")
            .field("rate_limit", &self.rate_limit)
            .field("rate_window", &self.rate_window)
            .field("rate_margin", &self.rate_margin)
            .field("upstream_timeout", &self.upstream_timeout)
            .field("retry_min_backoff", &self.retry_min_backoff)
            .field("retry_settle", &self.retry_settle)
            .field("auth_retry_interval", &self.auth_retry_interval)
            .field("health_addr", &self.health_addr)
            .field("signer_id", &self.signer_id)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_are_the_real_limit_and_run_locally() {
        let c = parse(&[]).expect("defaults are valid");
        assert_eq!(c.rate_limit, 10);
        assert_eq!(c.rate_window, Duration::from_secs(60));
        assert_eq!(c.upstream_timeout, Duration::from_secs(10));
    }

    #[test]
    fn invalid_values_name_their_variable_and_the_key_is_never_printed() {
        let e = parse(&[("UPSTREAM_RATE_WINDOW", "soon")]).expect_err("invalid");
        assert!(e.to_string().starts_with("UPSTREAM_RATE_WINDOW"));
        assert!(parse(&[("UPSTREAM_RATE_LIMIT", "0")]).is_err());
        let c = parse(&[("UPSTREAM_API_KEY", "s3cret")]).expect("valid");
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
