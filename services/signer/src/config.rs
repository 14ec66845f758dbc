//! Signer configuration from environment variables, validated at start.

use secrecy::SecretString;
use std::{net::SocketAddr, time::Duration};

pub use service_kit::env::{ConfigError, Env};

/// Everything the signer needs to run. `Debug` shows no secret.
#[derive(Debug, Clone)]
pub struct Config {
    /// NATS servers and replicas (`NATS_URL`, `NATS_REPLICAS`).
    pub nats: wire_contract::NatsSettings,
    /// Base URL of the upstream (the simulator by default).
    pub upstream_url: String,
    /// Value of the upstream's `Authorization` header. Never logged.
    pub upstream_api_key: SecretString,
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

impl Config {
    /// Read from the process environment.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first variable that is malformed or out of range.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_env_with(&Env::from_process())
    }

    /// Read through `env` (tests pass [`Env::from_map`]).
    ///
    /// # Errors
    /// As [`Config::from_env`].
    pub fn from_env_with(env: &Env) -> Result<Self, ConfigError> {
        let config = Self {
            nats: service_kit::env::nats(env)?,
            upstream_url: env.text("UPSTREAM_URL", "http://127.0.0.1:8081"),
            upstream_api_key: env.secret_or("UPSTREAM_API_KEY", "dev-key"),
            rate_limit: env.parse("UPSTREAM_RATE_LIMIT", 10)?,
            rate_window: env.duration("UPSTREAM_RATE_WINDOW", Duration::from_secs(60))?,
            rate_margin: env.duration("UPSTREAM_RATE_MARGIN", Duration::from_millis(500))?,
            upstream_timeout: env.duration("UPSTREAM_TIMEOUT", Duration::from_secs(10))?,
            retry_min_backoff: env.duration("RETRY_MIN_BACKOFF", Duration::from_secs(30))?,
            retry_settle: env.duration("RETRY_SETTLE", Duration::from_secs(300))?,
            auth_retry_interval: env.duration("AUTH_RETRY_INTERVAL", Duration::from_secs(60))?,
            health_addr: env.parse(
                "SIGNER_HEALTH_ADDR",
                SocketAddr::from(([127, 0, 0, 1], 9101)),
            )?,
            signer_id: service_kit::env::replica_id(env, "SIGNER_ID", "signer"),
        };
        config.validate()?;
        Ok(config)
    }

    /// Ranges the parsers cannot check. (`UPSTREAM_API_KEY` cannot be
    /// empty: a blank value takes the default, like every variable.)
    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |var, problem| Err(ConfigError::new(var, problem));
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
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn parse(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_env_with(&Env::from_map(pairs.iter().copied()))
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
        assert_eq!(c.upstream_api_key.expose_secret(), "s3cret");
        let printed = format!("{c:?}");
        assert!(!printed.contains("s3cret"), "{printed}");
        assert!(printed.contains("upstream_api_key"), "{printed}");
    }

    #[test]
    fn the_replica_id_is_signer_id_else_hostname_and_pid() {
        let c = parse(&[("SIGNER_ID", "s1"), ("HOSTNAME", "h")]).expect("valid");
        assert_eq!(c.signer_id, "s1");
        let c = parse(&[("HOSTNAME", "h")]).expect("valid");
        assert_eq!(c.signer_id, format!("h/{}", std::process::id()));
    }

    #[test]
    fn every_variable_is_documented_with_its_default() {
        let env = Env::empty();
        Config::from_env_with(&env).expect("defaults are valid");
        let docs = include_str!("../../../docs/configuration.md");
        if let Err(problems) = service_kit::env::docs::check(docs, "signer", &env) {
            panic!("docs/configuration.md is out of date:\n{problems}");
        }
    }
}
