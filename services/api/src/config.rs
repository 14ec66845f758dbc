//! Api configuration from environment variables, validated at start.

use ipnet::IpNet;
use service_kit::callers::{AdminToken, Callers};
use std::{net::SocketAddr, time::Duration};

/// Everything the api needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// `host:port` to listen on.
    pub addr: SocketAddr,
    /// NATS servers and replicas (`NATS_URL`, `NATS_REPLICAS`).
    pub nats: wire_contract::NatsSettings,
    /// How long a request waits for its signature before answering 202,
    /// counted from receipt. At most [`MAX_SIGN_WAIT`].
    pub sign_wait: Duration,
    /// Largest accepted message, in bytes.
    pub max_message_bytes: usize,
    /// Private ranges webhooks may reach (empty: only public addresses).
    pub webhook_allowed_cidrs: Vec<IpNet>,
    /// Absolute base for `Location` URLs (e.g. `https://sign.example.com`);
    /// relative URLs when unset.
    pub public_base_url: Option<String>,
    /// A caller's new messages are refused (503) when its own backlog
    /// could not be cleared within this long at its share of the budget:
    /// better no promise than a broken one. On an open gateway everyone is
    /// one caller, so this bounds the whole backlog.
    pub backlog_horizon: Duration,
    /// New messages of any caller are refused (503) when the whole backlog
    /// could not be cleared within this long (default three horizons, at
    /// most six days, so under the 7 days job records are kept, unless the
    /// horizon itself is longer; at least `BACKLOG_HORIZON`). Used only
    /// with callers configured.
    pub backlog_horizon_total: Duration,
    /// Known outcomes kept in memory for the cached-200 path (0 disables).
    pub result_cache_entries: usize,
    /// Jobs that may wait for one pending message; more are refused (429)
    /// until it is signed. Counted by the signer as it takes jobs in, so a
    /// burst can pass it by the requests still queued.
    pub max_jobs_per_message: u64,
    /// Requests doing NATS work (looking up, accepting, publishing) at once
    /// in this replica; more wait for a place.
    pub max_accepting: usize,
    /// A request that has found no place this long after it arrived is
    /// answered `503` at once (`/problems/overloaded`): under overload,
    /// a fast refusal rather than a late answer. At most 1 s.
    pub shed_after: Duration,
    /// Who may call (`CALLERS`, or `CALLERS_FILE`); none configured: open.
    pub callers: Callers,
    /// The operators' token (`ADMIN_TOKEN`).
    pub admin_token: AdminToken,
}

pub use service_kit::env::{ConfigError, Env};

/// The default `BACKLOG_HORIZON_TOTAL` stays under this: job records are
/// kept 7 days.
const SIX_DAYS: Duration = Duration::from_secs(6 * 24 * 3600);

/// The most the api ever waits before answering: 1.6 s, so that with the
/// time to accept the job before the wait and to claim the reply after it,
/// answers still leave before 1.8 s, the threshold the operators alert on
/// (ops/prometheus: SignAnswersNearTwoSeconds) on the way to the 2 s
/// promise. At 1.8 s every deferred answer would cross it.
pub const MAX_SIGN_WAIT: Duration = Duration::from_millis(1600);

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
        let backlog_horizon = env.duration("BACKLOG_HORIZON", Duration::from_secs(24 * 3600))?;
        let config = Self {
            addr: env.parse("API_ADDR", SocketAddr::from(([127, 0, 0, 1], 8080)))?,
            nats: service_kit::env::nats(env)?,
            sign_wait: env.duration("SIGN_WAIT", Duration::from_millis(1500))?,
            max_message_bytes: env.parse("MAX_MESSAGE_BYTES", 4096)?,
            webhook_allowed_cidrs: env.list("WEBHOOK_ALLOWED_CIDRS")?,
            public_base_url: env
                .optional("PUBLIC_BASE_URL")
                .map(|s| s.trim_end_matches('/').to_owned()),
            backlog_horizon,
            backlog_horizon_total: env.duration(
                "BACKLOG_HORIZON_TOTAL",
                (backlog_horizon.saturating_mul(3))
                    .clamp(backlog_horizon.min(SIX_DAYS), SIX_DAYS)
                    .max(backlog_horizon),
            )?,
            result_cache_entries: env.parse("RESULT_CACHE_ENTRIES", 20_000)?,
            max_jobs_per_message: env.parse("MAX_JOBS_PER_MESSAGE", 100_000)?,
            max_accepting: env.parse("MAX_ACCEPTING", 256)?,
            shed_after: env.duration("SHED_AFTER", Duration::from_millis(300))?,
            callers: Callers::from_env(env)?,
            admin_token: AdminToken::new(env.secret("ADMIN_TOKEN")),
        };
        if config.sign_wait > MAX_SIGN_WAIT {
            return Err(ConfigError::new(
                "SIGN_WAIT",
                "must be at most 1600ms so answers leave before 1.8 s (the 2 s promise)",
            ));
        }
        if config.max_message_bytes == 0 || config.max_message_bytes > 64 * 1024 {
            return Err(ConfigError::new(
                "MAX_MESSAGE_BYTES",
                "must be between 1 and 65536",
            ));
        }
        if config.backlog_horizon_total < config.backlog_horizon {
            return Err(ConfigError::new(
                "BACKLOG_HORIZON_TOTAL",
                "must be at least BACKLOG_HORIZON",
            ));
        }
        if config.max_accepting == 0 {
            return Err(ConfigError::new("MAX_ACCEPTING", "must be at least 1"));
        }
        if config.shed_after > Duration::from_secs(1) {
            return Err(ConfigError::new(
                "SHED_AFTER",
                "must be at most 1s, so a shed request is answered well within 2 s",
            ));
        }
        if config.max_jobs_per_message == 0 {
            return Err(ConfigError::new(
                "MAX_JOBS_PER_MESSAGE",
                "must be at least 1",
            ));
        }
        if let Some(base) = &config.public_base_url {
            url::Url::parse(base).map_err(|e| ConfigError::new("PUBLIC_BASE_URL", e))?;
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_env_with(&Env::from_map(pairs.iter().copied()))
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
        // Room for the accept and the claim below the 1.8 s alert threshold.
        assert!(parse(&[("SIGN_WAIT", "1800ms")]).is_err());
        assert!(parse(&[("SIGN_WAIT", "1601ms")]).is_err());
        assert_eq!(
            parse(&[("SIGN_WAIT", "1600ms")]).expect("valid").sign_wait,
            MAX_SIGN_WAIT
        );
        assert!(parse(&[("WEBHOOK_ALLOWED_CIDRS", "127.0.0.0/8, nonsense")]).is_err());
        let c = parse(&[("WEBHOOK_ALLOWED_CIDRS", "127.0.0.0/8,::1/128")]).expect("valid");
        assert_eq!(c.webhook_allowed_cidrs.len(), 2);
    }

    #[test]
    fn callers_come_from_one_place_and_are_checked_at_start() {
        assert!(parse(&[]).expect("open").callers.is_open());
        let key = "0".repeat(64);
        let json = format!(r#"[{{"name": "a", "key_sha256": ["{key}"]}}]"#);
        assert_eq!(
            parse(&[("CALLERS", &json)]).expect("valid").callers.len(),
            1
        );
        assert!(parse(&[("CALLERS", "[{}]")]).is_err());
        assert!(parse(&[("CALLERS", &json), ("CALLERS_FILE", "/x")]).is_err());
        assert!(parse(&[("CALLERS_FILE", "/no/such/file")]).is_err());
        let c = parse(&[("ADMIN_TOKEN", "adm")]).expect("valid");
        assert!(c.admin_token.matches("adm"));
        assert!(!format!("{c:?}").contains("adm\""));
    }

    #[test]
    fn every_variable_is_documented_with_its_default() {
        let env = Env::empty();
        Config::from_env_with(&env).expect("defaults are valid");
        let docs = include_str!("../../../docs/configuration.md");
        if let Err(problems) = service_kit::env::docs::check(docs, "api", &env) {
            panic!("docs/configuration.md is out of date:\n{problems}");
        }
    }
}
