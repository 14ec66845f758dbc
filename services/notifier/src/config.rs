//! The notifier's settings: read from the environment once, validated at
//! start, and safe to log (secrets are redacted).
//!
//! Every variable has a default that works for a local demo, except that a
//! production deployment should set `WEBHOOK_SECRET` (and
//! `WEBHOOK_REQUIRE_SECRET=true` so a forgotten secret stops the start).

use crate::retry::{RetrySchedule, ScheduleError};
use crate::signing::{SecretError, SigningKey};
use ipnet::IpNet;
use std::time::Duration;

/// Default `WEBHOOK_RETRY_SCHEDULE` (Svix's: about 27 h in all).
pub const DEFAULT_RETRY_SCHEDULE: &str = "0s,5s,5m,30m,2h,5h,10h,10h";

/// A setting that is missing or malformed. Never includes a secret's value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value that does not parse or is out of range.
    #[error("{var}: {reason}")]
    Invalid {
        /// The environment variable.
        var: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// One of the `WEBHOOK_SECRET` entries is unusable.
    #[error("WEBHOOK_SECRET entry {index}: {source}")]
    Secret {
        /// Position in the comma-separated list, from 1.
        index: usize,
        /// What is wrong with it.
        #[source]
        source: SecretError,
    },
    /// `WEBHOOK_REQUIRE_SECRET=true` but no `WEBHOOK_SECRET`.
    #[error("WEBHOOK_SECRET is required (WEBHOOK_REQUIRE_SECRET=true) but not set")]
    SecretRequired,
    /// The retry schedule is unusable.
    #[error("WEBHOOK_RETRY_SCHEDULE / WEBHOOK_RETRY_JITTER: {0}")]
    Schedule(#[from] ScheduleError),
}

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
    /// NATS server URL(s), comma-separated (`NATS_URL`).
    pub nats_url: String,
    /// Keys that sign every webhook; more than one during a rotation
    /// (`WEBHOOK_SECRET`, comma-separated `whsec_…`). Redacted in `Debug`.
    pub signing_keys: Vec<SigningKey>,
    /// Whether `signing_keys` came from the environment or were generated.
    pub secret_origin: SecretOrigin,
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
    /// Where `/healthz` and `/readyz` listen.
    pub health_addr: std::net::SocketAddr,
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
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// Read the settings through `var` (tests pass a map).
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for the first missing or malformed setting.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| {
            var(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let duration = |name: &'static str, default: &str| -> Result<Duration, ConfigError> {
            let text = get(name).unwrap_or_else(|| default.to_owned());
            humantime::parse_duration(&text).map_err(|e| invalid(name, format!("{text:?}: {e}")))
        };
        let count = |name: &'static str, default: usize| -> Result<usize, ConfigError> {
            match get(name) {
                None => Ok(default),
                Some(text) => match text.parse::<usize>() {
                    Ok(n) if n > 0 => Ok(n),
                    _ => Err(invalid(
                        name,
                        format!("{text:?} is not a positive whole number"),
                    )),
                },
            }
        };
        let require_secret = match get("WEBHOOK_REQUIRE_SECRET").as_deref() {
            None => false,
            Some(text) => parse_bool(text).ok_or_else(|| {
                invalid(
                    "WEBHOOK_REQUIRE_SECRET",
                    format!("{text:?} is not true/false"),
                )
            })?,
        };
        let (signing_keys, secret_origin) = match get("WEBHOOK_SECRET") {
            Some(list) => (parse_secrets(&list)?, SecretOrigin::Configured),
            None if require_secret => return Err(ConfigError::SecretRequired),
            None => (vec![SigningKey::generate()], SecretOrigin::Generated),
        };
        let jitter = match get("WEBHOOK_RETRY_JITTER") {
            None => 0.2,
            Some(text) => text.parse::<f64>().map_err(|_| {
                invalid("WEBHOOK_RETRY_JITTER", format!("{text:?} is not a number"))
            })?,
        };
        let schedule =
            get("WEBHOOK_RETRY_SCHEDULE").unwrap_or_else(|| DEFAULT_RETRY_SCHEDULE.to_owned());
        let timeout = duration("WEBHOOK_TIMEOUT", "15s")?;
        if timeout.is_zero() {
            return Err(invalid("WEBHOOK_TIMEOUT", "must be more than zero".into()));
        }
        Ok(Self {
            nats_url: get("NATS_URL").unwrap_or_else(|| "nats://127.0.0.1:4222".to_owned()),
            signing_keys,
            secret_origin,
            timeout,
            retry: RetrySchedule::parse(&schedule, jitter)?,
            concurrency: count("WEBHOOK_CONCURRENCY", 64)?,
            per_host_concurrency: count("WEBHOOK_PER_HOST_CONCURRENCY", 4)?,
            allowed_cidrs: parse_cidrs(get("WEBHOOK_ALLOWED_CIDRS").as_deref().unwrap_or(""))?,
            reply_grace: duration("REPLY_GRACE", "5s")?,
            drain_timeout: duration("NOTIFIER_DRAIN_TIMEOUT", "10s")?,
            health_addr: {
                let text =
                    get("NOTIFIER_HEALTH_ADDR").unwrap_or_else(|| "127.0.0.1:9102".to_owned());
                text.parse().map_err(|_| {
                    invalid("NOTIFIER_HEALTH_ADDR", format!("{text:?} is not host:port"))
                })?
            },
            notifier_id: get("NOTIFIER_ID").unwrap_or_else(default_notifier_id),
        })
    }
}

fn invalid(var: &'static str, reason: String) -> ConfigError {
    ConfigError::Invalid { var, reason }
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn parse_secrets(list: &str) -> Result<Vec<SigningKey>, ConfigError> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .enumerate()
        .map(|(i, s)| {
            SigningKey::parse(s).map_err(|source| ConfigError::Secret {
                index: i + 1,
                source,
            })
        })
        .collect()
}

fn parse_cidrs(list: &str) -> Result<Vec<IpNet>, ConfigError> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .map_err(|e| invalid("WEBHOOK_ALLOWED_CIDRS", format!("{s:?}: {e}")))
        })
        .collect()
}

/// `hostname/pid`: unique per replica, readable in logs.
fn default_notifier_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "notifier".to_owned());
    format!("{host}/{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_vars(|k| map.get(k).cloned())
    }

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[test]
    fn defaults_work_for_a_demo() {
        let c = config(&[]).expect("defaults");
        assert_eq!(c.nats_url, "nats://127.0.0.1:4222");
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
        assert!(c.notifier_id.contains('/'));
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
    }

    #[test]
    fn a_required_secret_must_be_set() {
        assert!(matches!(
            config(&[("WEBHOOK_REQUIRE_SECRET", "true")]),
            Err(ConfigError::SecretRequired)
        ));
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
        assert!(err(&[("WEBHOOK_RETRY_JITTER", "2")]).starts_with("WEBHOOK_RETRY_SCHEDULE"));
        assert!(err(&[("REPLY_GRACE", "-1s")]).starts_with("REPLY_GRACE"));
        let secret = err(&[("WEBHOOK_SECRET", "whsec_c2hvcnQ=")]);
        assert!(secret.starts_with("WEBHOOK_SECRET entry 1"), "{secret}");
        assert!(!secret.contains("c2hvcnQ"), "{secret}");
    }
}
