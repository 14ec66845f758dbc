//! Api configuration from environment variables, validated at start.

use ipnet::IpNet;
use std::{net::SocketAddr, time::Duration};

/// Everything the api needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// `host:port` to listen on.
    pub addr: SocketAddr,
    /// NATS server URL(s).
    pub nats_url: String,
    /// How long a request waits for its signature before answering 202,
    /// counted from receipt. At most 1.8 s, so the answer comes within 2 s.
    pub sign_wait: Duration,
    /// Largest accepted message, in bytes.
    pub max_message_bytes: usize,
    /// Private ranges webhooks may reach (empty: only public addresses).
    pub webhook_allowed_cidrs: Vec<IpNet>,
    /// Absolute base for `Location` URLs (e.g. `https://sign.example.com`);
    /// relative URLs when unset.
    pub public_base_url: Option<String>,
    /// Upstream calls per window, for `Retry-After` estimates.
    pub rate_limit: u32,
    /// The upstream's window, for `Retry-After` estimates.
    pub rate_window: Duration,
    /// New messages are refused (503) when the backlog could not be
    /// cleared within this long: better no promise than a broken one.
    pub backlog_horizon: Duration,
    /// Known outcomes kept in memory for the cached-200 path (0 disables).
    pub result_cache_entries: usize,
}

/// A variable that is set but invalid.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {problem}")]
pub struct ConfigError {
    var: &'static str,
    problem: String,
}

fn err(var: &'static str, problem: impl ToString) -> ConfigError {
    ConfigError {
        var,
        problem: problem.to_string(),
    }
}

/// The most the api ever waits before answering.
pub const MAX_SIGN_WAIT: Duration = Duration::from_millis(1800);

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
            humantime::parse_duration(&text(var, default)).map_err(|e| err(var, e))
        };
        let cidrs = text("WEBHOOK_ALLOWED_CIDRS", "")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpNet>()
                    .map_err(|e| err("WEBHOOK_ALLOWED_CIDRS", format!("{s}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let config = Self {
            addr: text("API_ADDR", "127.0.0.1:8080")
                .parse()
                .map_err(|e| err("API_ADDR", e))?,
            nats_url: text("NATS_URL", "nats://127.0.0.1:4222"),
            sign_wait: duration("SIGN_WAIT", "1500ms")?,
            max_message_bytes: text("MAX_MESSAGE_BYTES", "4096")
                .parse()
                .map_err(|e| err("MAX_MESSAGE_BYTES", e))?,
            webhook_allowed_cidrs: cidrs,
            public_base_url: get("PUBLIC_BASE_URL")
                .filter(|s| !s.is_empty())
                .map(|s| s.trim_end_matches('/').to_owned()),
            rate_limit: text("UPSTREAM_RATE_LIMIT", "10")
                .parse()
                .map_err(|e| err("UPSTREAM_RATE_LIMIT", e))?,
            rate_window: duration("UPSTREAM_RATE_WINDOW", "60s")?,
            backlog_horizon: duration("BACKLOG_HORIZON", "24h")?,
            result_cache_entries: text("RESULT_CACHE_ENTRIES", "20000")
                .parse()
                .map_err(|e| err("RESULT_CACHE_ENTRIES", e))?,
        };
        if config.sign_wait > MAX_SIGN_WAIT {
            return Err(err(
                "SIGN_WAIT",
                "must be at most 1800ms so answers come within 2 s",
            ));
        }
        if config.max_message_bytes == 0 || config.max_message_bytes > 64 * 1024 {
            return Err(err("MAX_MESSAGE_BYTES", "must be between 1 and 65536"));
        }
        if config.rate_limit == 0 || config.rate_window.is_zero() {
            return Err(err(
                "UPSTREAM_RATE_LIMIT",
                "limit and window must be positive",
            ));
        }
        if let Some(base) = &config.public_base_url {
            url::Url::parse(base).map_err(|e| err("PUBLIC_BASE_URL", e))?;
        }
        Ok(config)
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
    fn defaults_run_locally_and_refuse_private_webhooks() {
        let c = parse(&[]).expect("valid");
        assert_eq!(c.sign_wait, Duration::from_millis(1500));
        assert!(c.webhook_allowed_cidrs.is_empty());
    }

    #[test]
    fn rejects_a_wait_that_would_break_the_two_second_promise() {
        assert!(parse(&[("SIGN_WAIT", "2s")]).is_err());
        assert!(parse(&[("WEBHOOK_ALLOWED_CIDRS", "127.0.0.0/8, nonsense")]).is_err());
        let c = parse(&[("WEBHOOK_ALLOWED_CIDRS", "127.0.0.0/8,::1/128")]).expect("valid");
        assert_eq!(c.webhook_allowed_cidrs.len(), 2);
    }
}
