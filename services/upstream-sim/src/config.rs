//! Typed, validated configuration read from `SIM_*` environment variables.
//!
//! Everything the simulator does differently from run to run is decided here,
//! once, at start: a bad value fails the start with an error naming the
//! variable instead of surfacing as odd behaviour during a test. The API key is
//! wrapped so that it never reaches a log line.

use secrecy::{ExposeSecret, SecretString};
use std::{net::SocketAddr, path::PathBuf, time::Duration};

pub use service_kit::env::{ConfigError, Env};

/// `SIM_API_KEY` when unset: the development key.
const DEV_KEY: &str = "dev-key";

/// The key clients must send verbatim in the `Authorization` header.
///
/// A [`SecretString`] inside, so its `Debug` is redacted and the config can
/// be logged whole; its text is read only by [`ApiKey::matches`].
#[derive(Debug, Clone)]
pub struct ApiKey(SecretString);

impl ApiKey {
    /// Wraps a key.
    pub fn new(key: impl Into<String>) -> Self {
        Self(SecretString::from(key.into()))
    }

    /// Whether `candidate` (the raw `Authorization` header) is this key.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        self.0.expose_secret().as_bytes() == candidate
    }

    /// Whether the key is empty (refused by [`Config::validate`]).
    pub fn is_empty(&self) -> bool {
        self.matches(b"")
    }
}

impl PartialEq for ApiKey {
    fn eq(&self, other: &Self) -> bool {
        other.matches(self.0.expose_secret().as_bytes())
    }
}

impl Eq for ApiKey {}

/// Where the RSA signing key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A fresh key of this many bits, generated at start (`SIM_KEY_BITS`).
    Generate {
        /// Modulus size in bits.
        bits: usize,
    },
    /// A PKCS#8 (or PKCS#1) PEM file (`SIM_RSA_KEY_FILE`), so signatures are
    /// stable across restarts.
    File(PathBuf),
}

/// How the simulated upstream degrades per message.
#[derive(Debug, Clone, PartialEq)]
pub struct FailureSettings {
    /// Probability that the first call ever for a message succeeds
    /// (`SIM_FIRST_TRY_SUCCESS`, in [0, 1]).
    pub first_try_success: f64,
    /// Shortest degradation of a message whose first call failed, before
    /// time scaling (`SIM_DEGRADED_MIN`).
    pub degraded_min: Duration,
    /// Longest degradation, before time scaling (`SIM_DEGRADED_MAX`).
    pub degraded_max: Duration,
    /// Divisor applied to the degradation durations (`SIM_TIME_SCALE`, > 0):
    /// 60 turns minutes into seconds.
    pub time_scale: f64,
}

/// Faults injected into sign calls on top of the failure model. Each
/// probability is per answered sign call, in [0, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct ChaosSettings {
    /// Probability of an extra delay (`SIM_CHAOS_LATENCY_P`).
    pub latency_p: f64,
    /// The extra delay (`SIM_CHAOS_LATENCY`).
    pub latency: Duration,
    /// Probability that the call never answers (`SIM_CHAOS_HANG_P`).
    pub hang_p: f64,
    /// Probability of a 500 (`SIM_CHAOS_500_P`).
    pub status_500_p: f64,
    /// Probability of a 200 whose body is not a signature
    /// (`SIM_CHAOS_GARBAGE_P`).
    pub garbage_p: f64,
    /// Probability that the connection is cut without a response
    /// (`SIM_CHAOS_RESET_P`).
    pub reset_p: f64,
    /// Probability that a call is held *before* it counts as arrived
    /// (`SIM_CHAOS_ARRIVAL_DELAY_P`): network lag on the way in, which the
    /// rate window sees, unlike `latency`, which is added after arrival.
    pub arrival_delay_p: f64,
    /// The longest such hold; each is drawn uniformly up to it
    /// (`SIM_CHAOS_ARRIVAL_DELAY_MAX`).
    pub arrival_delay_max: Duration,
}

/// The rate limit the gateway must respect, and how it is enforced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSettings {
    /// Length of the sliding window (`SIM_AUDIT_WINDOW`).
    pub window: Duration,
    /// Most authorised sign calls allowed in any window (`SIM_AUDIT_LIMIT`, ≥ 1).
    pub limit: u32,
    /// Answer 429 to calls over the limit (`SIM_ENFORCE_LIMIT`); when false the
    /// call is answered normally and only counted as a violation.
    pub enforce_limit: bool,
}

/// The whole simulator configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Address to listen on (`SIM_ADDR`); used by `main` only, since `run`
    /// takes a bound listener.
    pub addr: SocketAddr,
    /// Key expected in `Authorization` (`SIM_API_KEY`).
    pub api_key: ApiKey,
    /// Where the RSA key comes from.
    pub key: KeySource,
    /// Seed for every random draw (`SIM_SEED`); `None` picks one at start and
    /// logs it so a run can be replayed.
    pub seed: Option<u64>,
    /// The per-message failure model.
    pub failure: FailureSettings,
    /// Extra injected faults.
    pub chaos: ChaosSettings,
    /// Rate-limit window and enforcement.
    pub audit: AuditSettings,
}

impl Default for Config {
    /// The defaults documented in the README: those of the real upstream.
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8081)),
            api_key: ApiKey::new(DEV_KEY),
            key: KeySource::Generate { bits: 2048 },
            seed: None,
            failure: FailureSettings {
                first_try_success: 0.5,
                degraded_min: Duration::from_secs(60),
                degraded_max: Duration::from_secs(300),
                time_scale: 1.0,
            },
            chaos: ChaosSettings {
                latency_p: 0.0,
                latency: Duration::from_secs(3),
                hang_p: 0.0,
                status_500_p: 0.0,
                garbage_p: 0.0,
                reset_p: 0.0,
                arrival_delay_p: 0.0,
                arrival_delay_max: Duration::from_secs(2),
            },
            audit: AuditSettings {
                window: Duration::from_secs(60),
                limit: 10,
                enforce_limit: true,
            },
        }
    }
}

impl Config {
    /// Reads the configuration from the process environment.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the first variable that does not parse or is
    /// out of range.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_env_with(&Env::from_process())
    }

    /// Reads the configuration through `env` (tests pass [`Env::from_map`]),
    /// so tests need not touch the process environment. Unset and blank
    /// variables take their defaults.
    ///
    /// # Errors
    /// As [`Config::from_env`].
    pub fn from_env_with(env: &Env) -> Result<Self, ConfigError> {
        let d = Self::default();
        let key = match env.optional("SIM_RSA_KEY_FILE") {
            Some(path) => KeySource::File(PathBuf::from(path)),
            None => KeySource::Generate {
                bits: env.parse("SIM_KEY_BITS", 2048)?,
            },
        };
        let config = Self {
            addr: env.parse("SIM_ADDR", d.addr)?,
            api_key: ApiKey(env.secret_or("SIM_API_KEY", DEV_KEY)),
            key,
            seed: env.parse_opt("SIM_SEED")?,
            failure: FailureSettings {
                first_try_success: env
                    .parse("SIM_FIRST_TRY_SUCCESS", d.failure.first_try_success)?,
                degraded_min: env.duration("SIM_DEGRADED_MIN", d.failure.degraded_min)?,
                degraded_max: env.duration("SIM_DEGRADED_MAX", d.failure.degraded_max)?,
                time_scale: env.parse("SIM_TIME_SCALE", d.failure.time_scale)?,
            },
            chaos: ChaosSettings {
                latency_p: env.parse("SIM_CHAOS_LATENCY_P", d.chaos.latency_p)?,
                latency: env.duration("SIM_CHAOS_LATENCY", d.chaos.latency)?,
                hang_p: env.parse("SIM_CHAOS_HANG_P", d.chaos.hang_p)?,
                status_500_p: env.parse("SIM_CHAOS_500_P", d.chaos.status_500_p)?,
                garbage_p: env.parse("SIM_CHAOS_GARBAGE_P", d.chaos.garbage_p)?,
                reset_p: env.parse("SIM_CHAOS_RESET_P", d.chaos.reset_p)?,
                arrival_delay_p: env.parse("SIM_CHAOS_ARRIVAL_DELAY_P", d.chaos.arrival_delay_p)?,
                arrival_delay_max: env
                    .duration("SIM_CHAOS_ARRIVAL_DELAY_MAX", d.chaos.arrival_delay_max)?,
            },
            audit: AuditSettings {
                window: env.duration("SIM_AUDIT_WINDOW", d.audit.window)?,
                limit: env.parse("SIM_AUDIT_LIMIT", d.audit.limit)?,
                enforce_limit: env.boolean("SIM_ENFORCE_LIMIT", d.audit.enforce_limit)?,
            },
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks ranges and relations between values.
    ///
    /// # Errors
    /// [`ConfigError`] naming the variable at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |var, reason| Err(ConfigError::new(var, reason));
        if self.api_key.is_empty() {
            return invalid("SIM_API_KEY", "must not be empty");
        }
        if let KeySource::Generate { bits } = self.key
            && !(512..=16_384).contains(&bits)
        {
            return invalid("SIM_KEY_BITS", "must be between 512 and 16384");
        }
        let probabilities = [
            ("SIM_FIRST_TRY_SUCCESS", self.failure.first_try_success),
            ("SIM_CHAOS_LATENCY_P", self.chaos.latency_p),
            ("SIM_CHAOS_HANG_P", self.chaos.hang_p),
            ("SIM_CHAOS_500_P", self.chaos.status_500_p),
            ("SIM_CHAOS_GARBAGE_P", self.chaos.garbage_p),
            ("SIM_CHAOS_RESET_P", self.chaos.reset_p),
            ("SIM_CHAOS_ARRIVAL_DELAY_P", self.chaos.arrival_delay_p),
        ];
        for (var, p) in probabilities {
            if !(0.0..=1.0).contains(&p) {
                return invalid(var, "must be a probability in [0, 1]");
            }
        }
        if self.failure.degraded_min > self.failure.degraded_max {
            return invalid("SIM_DEGRADED_MIN", "must not exceed SIM_DEGRADED_MAX");
        }
        // Bounded so that "now + degradation" can never overflow.
        if self.failure.degraded_max > Duration::from_secs(30 * 86_400) {
            return invalid("SIM_DEGRADED_MAX", "must be at most 30 days");
        }
        if !(self.failure.time_scale.is_finite() && self.failure.time_scale > 0.0) {
            return invalid("SIM_TIME_SCALE", "must be a finite number greater than 0");
        }
        if self.audit.limit < 1 {
            return invalid("SIM_AUDIT_LIMIT", "must be at least 1");
        }
        if self.audit.window.as_millis() < 1 {
            return invalid("SIM_AUDIT_WINDOW", "must be at least 1ms");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_env_with(&Env::from_map(vars.iter().copied()))
    }

    #[test]
    fn defaults_match_the_real_upstream() {
        let config = from(&[]).expect("defaults are valid");
        assert_eq!(config, Config::default());
        assert_eq!(config.audit.limit, 10);
        assert_eq!(config.failure.degraded_max, Duration::from_secs(300));
    }

    #[test]
    fn parses_every_kind_of_value() {
        let config = from(&[
            ("SIM_ADDR", "0.0.0.0:9000"),
            ("SIM_API_KEY", "secret"),
            ("SIM_SEED", "42"),
            ("SIM_DEGRADED_MIN", "1500ms"),
            ("SIM_DEGRADED_MAX", "5m"),
            ("SIM_TIME_SCALE", "60"),
            ("SIM_CHAOS_RESET_P", "0.25"),
            ("SIM_ENFORCE_LIMIT", "false"),
            ("SIM_RSA_KEY_FILE", "/keys/sim.pem"),
            ("SIM_KEY_BITS", "not used when a file is given"),
        ])
        .expect("valid");
        assert_eq!(config.addr.port(), 9000);
        assert!(config.api_key.matches(b"secret"));
        assert_eq!(config.seed, Some(42));
        assert_eq!(config.failure.degraded_min, Duration::from_millis(1500));
        assert_eq!(config.failure.time_scale, 60.0);
        assert_eq!(config.chaos.reset_p, 0.25);
        assert!(!config.audit.enforce_limit);
        assert_eq!(config.key, KeySource::File("/keys/sim.pem".into()));
    }

    #[test]
    fn errors_name_the_variable() {
        let cases = [
            ("SIM_CHAOS_HANG_P", "1.5"),
            ("SIM_TIME_SCALE", "0"),
            ("SIM_AUDIT_LIMIT", "0"),
            ("SIM_AUDIT_WINDOW", "soon"),
            ("SIM_SEED", "-1"),
            ("SIM_ENFORCE_LIMIT", "maybe"),
        ];
        for (var, value) in cases {
            let err = from(&[(var, value)]).expect_err(var);
            assert!(err.to_string().starts_with(var), "{err}");
        }
        let err = from(&[("SIM_DEGRADED_MIN", "10m")]).expect_err("min > max");
        assert!(err.to_string().contains("SIM_DEGRADED_MIN"), "{err}");
    }

    #[test]
    fn the_key_never_prints() {
        let config = from(&[("SIM_API_KEY", "hunter2")]).expect("valid");
        let printed = format!("{config:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("api_key"), "{printed}");
        assert!(config.api_key.matches(b"hunter2"));
        assert_ne!(config.api_key, ApiKey::new("hunter3"));
    }

    #[test]
    fn every_variable_is_documented_with_its_default() {
        let env = Env::empty();
        Config::from_env_with(&env).expect("defaults are valid");
        let docs = include_str!("../../../docs/configuration.md");
        if let Err(problems) = service_kit::env::docs::check(docs, "upstream-sim", &env) {
            panic!("docs/configuration.md is out of date:\n{problems}");
        }
    }
}
