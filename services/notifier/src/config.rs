//! The notifier's settings: read from the environment once, validated at
//! start, and safe to log (secrets are redacted).
//!
//! Every variable has a default that works for a local demo, except that a
//! production deployment should set `WEBHOOK_SECRET` (and
//! `WEBHOOK_REQUIRE_SECRET=true` so a forgotten secret stops the start).

use crate::breaker::BreakerPolicy;
use crate::retry::{RetrySchedule, ScheduleError};
use crate::signing::SigningKey;
use ipnet::IpNet;
use secrecy::{ExposeSecret, SecretString};
use service_kit::callers::Callers;
use std::net::SocketAddr;
use std::time::Duration;

pub use service_kit::env::{ConfigError, Env};

/// Default `WEBHOOK_RETRY_SCHEDULE` (Svix's: about 27 h in all).
pub const DEFAULT_RETRY_SCHEDULE: &str = "0s,5s,5m,30m,2h,5h,10h,10h";

/// Where the signing keys came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretOrigin {
    /// From `WEBHOOK_SECRET`.
    Configured,
    /// Made up at start (demo mode): logged once so a receiver can be set up.
    Generated,
}

/// The notifier's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// NATS servers and replicas (`NATS_URL`, `NATS_REPLICAS`).
    pub nats: wire_contract::NatsSettings,
    /// Keys that sign every webhook; more than one during a rotation
    /// (`WEBHOOK_SECRET`, comma-separated `whsec_…`). Redacted in `Debug`.
    pub signing_keys: Vec<SigningKey>,
    /// Whether `signing_keys` came from the environment or were generated.
    pub secret_origin: SecretOrigin,
    /// Callers' own signing keys, by caller name (`webhook_secret` in
    /// `CALLERS` / `CALLERS_FILE`): their webhooks are signed with these
    /// instead of `signing_keys`. Redacted in `Debug`.
    pub caller_keys: std::collections::HashMap<String, Vec<SigningKey>>,
    /// Timeout of one delivery attempt, connect to last body byte
    /// (`WEBHOOK_TIMEOUT`, e.g. `15s`).
    pub timeout: Duration,
    /// Delays before the first attempt and between attempts, with jitter
    /// (`WEBHOOK_RETRY_SCHEDULE`, `WEBHOOK_RETRY_JITTER` as a fraction).
    pub retry: RetrySchedule,
    /// Most webhook requests in flight at once, all receivers together
    /// (`WEBHOOK_CONCURRENCY`, a count).
    pub concurrency: usize,
    /// Most webhook requests in flight to any one host (`WEBHOOK_PER_HOST_CONCURRENCY`,
    /// a count): a slow receiver takes at most this many of the slots.
    pub per_host_concurrency: usize,
    /// When a destination's circuit opens and for how long
    /// (`WEBHOOK_CIRCUIT_FAILURES` in a row; open `WEBHOOK_CIRCUIT_OPEN`,
    /// doubling up to `WEBHOOK_CIRCUIT_OPEN_MAX`).
    pub breaker: BreakerPolicy,
    /// Address ranges webhooks may reach even though they are private,
    /// loopback, … (`WEBHOOK_ALLOWED_CIDRS`, comma-separated CIDRs).
    pub allowed_cidrs: Vec<IpNet>,
    /// How long after a job's creation the api may still be deciding between
    /// 200 and 202; after it the notifier claims the job as owed a webhook
    /// (`REPLY_GRACE`, e.g. `5s`).
    pub reply_grace: Duration,
    /// How long a shutdown waits for deliveries in flight before handing the
    /// rest back to JetStream (`NOTIFIER_DRAIN_TIMEOUT`, e.g. `10s`).
    pub drain_timeout: Duration,
    /// Where `/healthz` and `/readyz` listen (`NOTIFIER_HEALTH_ADDR`).
    pub health_addr: SocketAddr,
    /// This replica's name in logs and dead letters (`NOTIFIER_ID`).
    pub notifier_id: String,
}

impl Config {
    /// Read the settings from the process environment.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for the first missing or malformed setting.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_env_with(&Env::from_process())
    }

    /// Read the settings through `env` (tests pass [`Env::from_map`]).
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for the first missing or malformed setting.
    pub fn from_env_with(env: &Env) -> Result<Self, ConfigError> {
        let require_secret = env.boolean("WEBHOOK_REQUIRE_SECRET", false)?;
        let (signing_keys, secret_origin) = match env.secret("WEBHOOK_SECRET") {
            Some(list) => (
                parse_secrets("WEBHOOK_SECRET", &list)?,
                SecretOrigin::Configured,
            ),
            None if require_secret => {
                return Err(ConfigError::new(
                    "WEBHOOK_SECRET",
                    "is required (WEBHOOK_REQUIRE_SECRET=true) but not set",
                ));
            }
            None => (vec![SigningKey::generate()], SecretOrigin::Generated),
        };
        let jitter = env.parse("WEBHOOK_RETRY_JITTER", 0.2)?;
        let schedule = env.text("WEBHOOK_RETRY_SCHEDULE", DEFAULT_RETRY_SCHEDULE);
        let timeout = env.duration("WEBHOOK_TIMEOUT", Duration::from_secs(15))?;
        if timeout.is_zero() {
            return Err(ConfigError::new(
                "WEBHOOK_TIMEOUT",
                "must be more than zero",
            ));
        }
        let defaults = BreakerPolicy::default();
        let breaker = BreakerPolicy {
            threshold: u32::try_from(count(
                env,
                "WEBHOOK_CIRCUIT_FAILURES",
                defaults.threshold as usize,
            )?)
            .map_err(|_| ConfigError::new("WEBHOOK_CIRCUIT_FAILURES", "is too large"))?,
            open_first: env.duration("WEBHOOK_CIRCUIT_OPEN", defaults.open_first)?,
            open_max: env.duration("WEBHOOK_CIRCUIT_OPEN_MAX", defaults.open_max)?,
        };
        if breaker.open_first.is_zero() {
            return Err(ConfigError::new(
                "WEBHOOK_CIRCUIT_OPEN",
                "must be more than zero",
            ));
        }
        if breaker.open_max < breaker.open_first {
            return Err(ConfigError::new(
                "WEBHOOK_CIRCUIT_OPEN_MAX",
                "must be at least WEBHOOK_CIRCUIT_OPEN",
            ));
        }
        let mut caller_keys = std::collections::HashMap::new();
        for caller in Callers::from_env(env)?.iter() {
            if let Some(secret) = &caller.webhook_secret {
                let keys = parse_secrets("CALLERS", secret).map_err(|e| {
                    ConfigError::new("CALLERS", format!("caller {}: {e}", caller.name))
                })?;
                caller_keys.insert(caller.name.clone(), keys);
            }
        }
        Ok(Self {
            nats: service_kit::env::nats(env)?,
            signing_keys,
            secret_origin,
            caller_keys,
            timeout,
            retry: RetrySchedule::parse(&schedule, jitter).map_err(schedule_error)?,
            concurrency: count(env, "WEBHOOK_CONCURRENCY", 64)?,
            per_host_concurrency: count(env, "WEBHOOK_PER_HOST_CONCURRENCY", 4)?,
            breaker,
            allowed_cidrs: env.list("WEBHOOK_ALLOWED_CIDRS")?,
            reply_grace: env.duration("REPLY_GRACE", Duration::from_secs(5))?,
            drain_timeout: env.duration("NOTIFIER_DRAIN_TIMEOUT", Duration::from_secs(10))?,
            health_addr: env.parse(
                "NOTIFIER_HEALTH_ADDR",
                SocketAddr::from(([127, 0, 0, 1], 9102)),
            )?,
            notifier_id: service_kit::env::replica_id(env, "NOTIFIER_ID", "notifier"),
        })
    }
}

/// A count of at least one.
fn count(env: &Env, var: &'static str, default: usize) -> Result<usize, ConfigError> {
    match env.parse(var, default)? {
        0 => Err(ConfigError::new(var, "must be a positive whole number")),
        n => Ok(n),
    }
}

/// The schedule's error, naming the variable at fault.
fn schedule_error(e: ScheduleError) -> ConfigError {
    match e {
        ScheduleError::Jitter(_) => ConfigError::new("WEBHOOK_RETRY_JITTER", e),
        ScheduleError::Empty | ScheduleError::Duration(_) => {
            ConfigError::new("WEBHOOK_RETRY_SCHEDULE", e)
        }
    }
}

/// The keys of a webhook secret (comma-separated `whsec_…`: `WEBHOOK_SECRET`,
/// or a caller's `webhook_secret` in `var`): the one place a secret's text
/// is read. Errors give the entry's position, never its text.
fn parse_secrets(var: &'static str, list: &SecretString) -> Result<Vec<SigningKey>, ConfigError> {
    let keys: Vec<SigningKey> = list
        .expose_secret()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .enumerate()
        .map(|(i, s)| {
            SigningKey::parse(s).map_err(|e| ConfigError::new(var, format!("entry {}: {e}", i + 1)))
        })
        .collect::<Result<_, _>>()?;
    if keys.is_empty() {
        return Err(ConfigError::new(var, "no whsec_ key in it"));
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_env_with(&Env::from_map(vars.iter().copied()))
    }

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[test]
    fn defaults_work_for_a_demo() {
        let c = config(&[]).expect("defaults");
        assert_eq!(c.nats.url, "nats://127.0.0.1:4222");
        assert_eq!(c.secret_origin, SecretOrigin::Generated);
        assert_eq!(c.signing_keys.len(), 1);
        assert_eq!(c.timeout, Duration::from_secs(15));
        assert_eq!(c.retry.attempts(), 8);
        assert_eq!(c.retry.jitter(), 0.2);
        assert_eq!(c.concurrency, 64);
        assert_eq!(c.per_host_concurrency, 4);
        assert!(c.allowed_cidrs.is_empty());
        assert_eq!(c.reply_grace, Duration::from_secs(5));
        assert_eq!(c.drain_timeout, Duration::from_secs(10));
        assert!(c.notifier_id.ends_with(&format!("/{}", std::process::id())));
    }

    #[test]
    fn callers_own_secrets_are_read_checked_and_never_printed() {
        let key = "0".repeat(64);
        let other = "1".repeat(64);
        let callers = format!(
            r#"[{{"name": "a", "key_sha256": ["{key}"], "webhook_secret": "{SECRET},{SECRET}"}},
                {{"name": "b", "key_sha256": ["{other}"]}}]"#
        );
        let c = config(&[("CALLERS", &callers)]).expect("valid");
        assert_eq!(c.caller_keys.len(), 1, "only callers with a secret");
        assert_eq!(c.caller_keys["a"].len(), 2, "two while rotating");
        assert!(!format!("{c:?}").contains("MfKQ9r8"));
        let bad = format!(
            r#"[{{"name": "a", "key_sha256": ["{key}"], "webhook_secret": "whsec_short-and-secret"}}]"#
        );
        let err = config(&[("CALLERS", &bad)])
            .expect_err("refused")
            .to_string();
        assert!(err.contains("CALLERS") && err.contains("caller a"), "{err}");
        assert!(!err.contains("short-and-secret"), "{err}");
        let not_json = r#"[{"name": "a", "webhook_secret": "whsec_leak-me"}"#;
        let err = config(&[("CALLERS", not_json)])
            .expect_err("refused")
            .to_string();
        assert!(!err.contains("leak-me"), "{err}");
    }

    #[test]
    fn settings_are_read_and_secrets_never_printed() {
        let c = config(&[
            ("WEBHOOK_SECRET", &format!("{SECRET}, {SECRET}")),
            ("WEBHOOK_TIMEOUT", "2s"),
            ("WEBHOOK_RETRY_SCHEDULE", "0s,100ms,100ms,100ms"),
            ("WEBHOOK_RETRY_JITTER", "0"),
            ("WEBHOOK_ALLOWED_CIDRS", "127.0.0.0/8, ::1/128"),
            ("WEBHOOK_CONCURRENCY", "8"),
            ("NOTIFIER_ID", "n1"),
        ])
        .expect("valid");
        assert_eq!(c.secret_origin, SecretOrigin::Configured);
        assert_eq!(c.signing_keys.len(), 2);
        assert_eq!(c.retry.attempts(), 4);
        assert_eq!(c.allowed_cidrs.len(), 2);
        assert_eq!(c.concurrency, 8);
        assert_eq!(c.notifier_id, "n1");
        let printed = format!("{c:?}");
        assert!(!printed.contains("MfKQ9r8"), "{printed}");
        assert!(printed.contains("signing_keys"), "{printed}");
    }

    #[test]
    fn a_required_secret_must_be_set() {
        let err = config(&[("WEBHOOK_REQUIRE_SECRET", "true")]).expect_err("required");
        assert_eq!(err.var(), "WEBHOOK_SECRET");
        assert!(err.problem().contains("required"), "{err}");
        let c = config(&[("WEBHOOK_REQUIRE_SECRET", " ")]).expect("blank is unset: false");
        assert_eq!(c.secret_origin, SecretOrigin::Generated);
        assert!(
            config(&[
                ("WEBHOOK_REQUIRE_SECRET", "true"),
                ("WEBHOOK_SECRET", SECRET)
            ])
            .is_ok()
        );
    }

    #[test]
    fn malformed_settings_are_refused_with_the_variable_named() {
        let err = |vars: &[(&str, &str)]| config(vars).expect_err("invalid").to_string();
        assert!(err(&[("WEBHOOK_TIMEOUT", "soon")]).starts_with("WEBHOOK_TIMEOUT"));
        assert!(err(&[("WEBHOOK_TIMEOUT", "0s")]).starts_with("WEBHOOK_TIMEOUT"));
        assert!(err(&[("WEBHOOK_CONCURRENCY", "0")]).starts_with("WEBHOOK_CONCURRENCY"));
        assert!(
            err(&[("WEBHOOK_ALLOWED_CIDRS", "10.0.0.0/33")]).starts_with("WEBHOOK_ALLOWED_CIDRS")
        );
        assert!(err(&[("WEBHOOK_RETRY_SCHEDULE", "0s,x")]).starts_with("WEBHOOK_RETRY_SCHEDULE"));
        assert!(err(&[("WEBHOOK_RETRY_JITTER", "2")]).starts_with("WEBHOOK_RETRY_JITTER"));
        assert!(err(&[("WEBHOOK_RETRY_JITTER", "x")]).starts_with("WEBHOOK_RETRY_JITTER"));
        assert!(err(&[("REPLY_GRACE", "-1s")]).starts_with("REPLY_GRACE"));
        assert!(err(&[("WEBHOOK_CIRCUIT_FAILURES", "0")]).starts_with("WEBHOOK_CIRCUIT_FAILURES"));
        assert!(err(&[("WEBHOOK_CIRCUIT_OPEN", "0s")]).starts_with("WEBHOOK_CIRCUIT_OPEN:"));
        assert!(
            err(&[
                ("WEBHOOK_CIRCUIT_OPEN", "1m"),
                ("WEBHOOK_CIRCUIT_OPEN_MAX", "30s")
            ])
            .starts_with("WEBHOOK_CIRCUIT_OPEN_MAX")
        );
        let secret = err(&[("WEBHOOK_SECRET", "whsec_c2hvcnQ=")]);
        assert!(secret.starts_with("WEBHOOK_SECRET: entry 1"), "{secret}");
        assert!(!secret.contains("c2hvcnQ"), "{secret}");
    }

    #[test]
    fn every_variable_is_documented_with_its_default() {
        let env = Env::empty();
        Config::from_env_with(&env).expect("defaults are valid");
        let docs = include_str!("../../../docs/configuration.md");
        if let Err(problems) = service_kit::env::docs::check(docs, "notifier", &env) {
            panic!("docs/configuration.md is out of date:\n{problems}");
        }
    }
}
