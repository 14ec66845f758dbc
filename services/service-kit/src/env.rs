//! The one way every service reads its configuration: typed getters over
//! environment variables, one error type naming the variable, secrets as
//! [`SecretString`] (whose `Debug` never shows the value), and replica ids
//! built the same way everywhere.
//!
//! Every value is trimmed, and a variable that is unset or blank takes its
//! default (so `KEY=` in a compose file means "the default"). An [`Env`]
//! records each variable it is asked for, with the default it falls back to,
//! so a test can compare a service's variables with its documentation
//! ([`docs::check`]).

pub mod docs;

use secrecy::SecretString;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Display;
use std::str::FromStr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// A setting that is set but unusable. Names the variable; never holds a
/// secret's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{var}: {problem}")]
pub struct ConfigError {
    var: &'static str,
    problem: String,
}

impl ConfigError {
    /// `var` is unusable because of `problem`.
    pub fn new(var: &'static str, problem: impl Display) -> Self {
        Self {
            var,
            problem: problem.to_string(),
        }
    }

    /// The environment variable at fault.
    pub fn var(&self) -> &'static str {
        self.var
    }

    /// What is wrong with it.
    pub fn problem(&self) -> &str {
        &self.problem
    }
}

/// What a configuration asked an [`Env`] for: each variable once, with the
/// default it falls back to when unset, written as text (`None` when there
/// is no fixed default: optional settings, secrets, computed values).
pub type Asked = BTreeMap<&'static str, Option<String>>;

type Lookup = dyn Fn(&str) -> Option<String> + Send + Sync;

/// Typed access to environment variables through a lookup function: the
/// process environment in `main`, a map in tests.
pub struct Env {
    lookup: Box<Lookup>,
    asked: Mutex<Asked>,
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: the values may be secrets.
        f.debug_struct("Env")
            .field("asked", &self.asked().keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Env {
    /// The process environment.
    pub fn from_process() -> Self {
        Self::from_lookup(|var| std::env::var(var).ok())
    }

    /// Any lookup from variable name to value.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        Self {
            lookup: Box::new(lookup),
            asked: Mutex::new(BTreeMap::new()),
        }
    }

    /// Exactly these variables (tests).
    pub fn from_map<K: Into<String>, V: Into<String>>(
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let map: HashMap<String, String> = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        Self::from_lookup(move |var| map.get(var).cloned())
    }

    /// Nothing set: every setting takes its default.
    pub fn empty() -> Self {
        Self::from_lookup(|_| None)
    }

    /// Every variable asked for so far, with its default.
    pub fn asked(&self) -> Asked {
        self.asked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The trimmed value of `var`, `None` when unset or blank; records the
    /// question (the first `default` given for a variable is kept).
    fn value(&self, var: &'static str, default: Option<String>) -> Option<String> {
        self.asked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(var)
            .or_insert(default);
        (self.lookup)(var)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// Text, `None` when unset or blank.
    pub fn optional(&self, var: &'static str) -> Option<String> {
        self.value(var, None)
    }

    /// Text, `default` when unset or blank.
    pub fn text(&self, var: &'static str, default: &str) -> String {
        self.value(var, Some(default.to_owned()))
            .unwrap_or_else(|| default.to_owned())
    }

    /// A parsed value, `None` when unset or blank.
    ///
    /// # Errors
    /// When the text does not parse as a `T`.
    pub fn parse_opt<T>(&self, var: &'static str) -> Result<Option<T>, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        parse_value(var, self.value(var, None))
    }

    /// A parsed value, `default` when unset or blank.
    ///
    /// # Errors
    /// When the text does not parse as a `T`.
    pub fn parse<T>(&self, var: &'static str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr + Display,
        T::Err: Display,
    {
        let value = self.value(var, Some(default.to_string()));
        Ok(parse_value(var, value)?.unwrap_or(default))
    }

    /// A duration written `1500ms`, `60s`, `5m`, `24h`…, `default` when
    /// unset or blank.
    ///
    /// # Errors
    /// When the text is not a duration.
    pub fn duration(&self, var: &'static str, default: Duration) -> Result<Duration, ConfigError> {
        let written = humantime::format_duration(default).to_string();
        let value = self.value(var, Some(written));
        Ok(parse_value::<humantime::Duration>(var, value)?.map_or(default, Into::into))
    }

    /// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`, any case),
    /// `default` when unset or blank.
    ///
    /// # Errors
    /// For any other text.
    pub fn boolean(&self, var: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.value(var, Some(default.to_string())) {
            None => Ok(default),
            Some(value) => match value.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok(true),
                "false" | "0" | "no" | "off" => Ok(false),
                _ => Err(ConfigError::new(
                    var,
                    format!("cannot parse {value:?}: expected true or false"),
                )),
            },
        }
    }

    /// A comma-separated list, each item trimmed and parsed; empty when unset
    /// or blank (blank items are skipped).
    ///
    /// # Errors
    /// Naming the first item that does not parse.
    pub fn list<T>(&self, var: &'static str) -> Result<Vec<T>, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        self.value(var, Some(String::new()))
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| {
                item.parse()
                    .map_err(|e| ConfigError::new(var, format!("cannot parse {item:?}: {e}")))
            })
            .collect()
    }

    /// A secret, `None` when unset or blank. Its `Debug` is redacted; only
    /// the code that uses it calls `expose_secret()`.
    pub fn secret(&self, var: &'static str) -> Option<SecretString> {
        self.value(var, None).map(SecretString::from)
    }

    /// A secret with a (non-secret, development) default.
    pub fn secret_or(&self, var: &'static str, default: &str) -> SecretString {
        self.value(var, Some(default.to_owned()))
            .map_or_else(|| SecretString::from(default), SecretString::from)
    }
}

fn parse_value<T>(var: &'static str, value: Option<String>) -> Result<Option<T>, ConfigError>
where
    T: FromStr,
    T::Err: Display,
{
    value
        .map(|text| {
            text.parse()
                .map_err(|e| ConfigError::new(var, format!("cannot parse {text:?}: {e}")))
        })
        .transpose()
}

/// Where NATS is and how many replicas every stream and bucket keeps
/// (`NATS_URL`, `NATS_REPLICAS`): read the same way by every service, and
/// checked here so a bad server list stops the service at start.
///
/// # Errors
/// A `NATS_URL` entry that is not a NATS URL, or replicas outside 1..=5.
pub fn nats(env: &Env) -> Result<wire_contract::NatsSettings, ConfigError> {
    let url = env.text("NATS_URL", "nats://127.0.0.1:4222");
    wire_contract::connect::servers(&url).map_err(|e| ConfigError::new("NATS_URL", e))?;
    let replicas = env.parse("NATS_REPLICAS", 1usize)?;
    if !(1..=wire_contract::connect::MAX_REPLICAS).contains(&replicas) {
        return Err(ConfigError::new(
            "NATS_REPLICAS",
            format!(
                "{replicas} is out of range: 1 (one server) to {} (3 on a three-node cluster)",
                wire_contract::connect::MAX_REPLICAS
            ),
        ));
    }
    let signature_retention = env.duration(
        "SIGNATURE_RETENTION",
        wire_contract::topology::SIGNATURE_RETENTION,
    )?;
    let job_retention = env.duration("JOB_RETENTION", wire_contract::topology::JOB_RETENTION)?;
    if job_retention < std::time::Duration::from_secs(1) {
        return Err(ConfigError::new("JOB_RETENTION", "must be at least 1s"));
    }
    Ok(wire_contract::NatsSettings {
        url,
        replicas,
        signature_retention,
        job_retention,
    })
}

/// Between the host name and the process id in every default replica id.
pub const REPLICA_ID_SEPARATOR: char = '/';

/// This replica's name, in leases, dead letters and logs: `var` when set,
/// else `<HOSTNAME>/<pid>`, with `prefix` (the service's name) in place of
/// the host name when `HOSTNAME` is unset. Both are read through `env`.
pub fn replica_id(env: &Env, var: &'static str, prefix: &str) -> String {
    let host = env.optional("HOSTNAME");
    env.optional(var).unwrap_or_else(|| {
        let host = host.as_deref().unwrap_or(prefix);
        format!("{host}{REPLICA_ID_SEPARATOR}{}", std::process::id())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn unset_and_blank_take_the_default_and_values_are_trimmed() {
        let env = Env::from_map([("BLANK", "  "), ("SET", " 42 "), ("WAIT", "1500ms")]);
        assert_eq!(env.text("BLANK", "d"), "d");
        assert_eq!(env.text("UNSET", "d"), "d");
        assert_eq!(env.parse::<u32>("SET", 7), Ok(42));
        assert_eq!(env.parse::<u32>("UNSET_N", 7), Ok(7));
        assert_eq!(env.parse_opt::<u64>("UNSET_O"), Ok(None));
        assert_eq!(env.optional("BLANK"), None);
        assert_eq!(
            env.duration("WAIT", Duration::from_secs(1)),
            Ok(Duration::from_millis(1500))
        );
        assert_eq!(env.boolean("UNSET_B", true), Ok(true));
        assert_eq!(env.list::<u8>("UNSET_L"), Ok(vec![]));
    }

    #[test]
    fn nats_settings_are_checked_at_start() {
        let ok = nats(&Env::from_map([
            ("NATS_URL", "nats://a:4222,nats://b:4222"),
            ("NATS_REPLICAS", "3"),
        ]))
        .expect("valid");
        assert_eq!(ok.replicas, 3);
        assert_eq!(nats(&Env::empty()).expect("defaults").replicas, 1);
        for (url, replicas, var) in [
            ("nats://a:x", "1", "NATS_URL"),
            ("nats://a:4222", "0", "NATS_REPLICAS"),
            ("nats://a:4222", "6", "NATS_REPLICAS"),
            ("nats://a:4222", "three", "NATS_REPLICAS"),
        ] {
            let env = Env::from_map([("NATS_URL", url), ("NATS_REPLICAS", replicas)]);
            assert_eq!(nats(&env).expect_err(url).var(), var);
        }
    }

    #[test]
    fn errors_name_the_variable() {
        let env = Env::from_map([
            ("N", "ten"),
            ("D", "soon"),
            ("B", "maybe"),
            ("L", "1, x ,2"),
        ]);
        for err in [
            env.parse::<u32>("N", 1).expect_err("N"),
            env.duration("D", Duration::ZERO).expect_err("D"),
            env.boolean("B", false).expect_err("B"),
            env.list::<u8>("L").expect_err("L"),
        ] {
            assert!(
                err.to_string().starts_with(&format!("{}: ", err.var())),
                "{err}"
            );
        }
        assert!(
            env.list::<u8>("L")
                .expect_err("L")
                .problem()
                .contains("\"x\"")
        );
    }

    #[test]
    fn booleans_take_the_usual_spellings() {
        let env = Env::from_map([("A", "Yes"), ("B", "off"), ("C", "1"), ("D", "FALSE")]);
        assert_eq!(env.boolean("A", false), Ok(true));
        assert_eq!(env.boolean("B", true), Ok(false));
        assert_eq!(env.boolean("C", false), Ok(true));
        assert_eq!(env.boolean("D", true), Ok(false));
    }

    #[test]
    fn secrets_never_print() {
        let env = Env::from_map([("KEY", "hunter2")]);
        let key = env.secret("KEY").expect("set");
        assert_eq!(key.expose_secret(), "hunter2");
        assert!(!format!("{key:?}").contains("hunter2"));
        assert!(!format!("{env:?}").contains("hunter2"));
        assert!(env.secret("UNSET").is_none());
        assert_eq!(env.secret_or("UNSET2", "dev").expose_secret(), "dev");
    }

    #[test]
    fn every_question_is_recorded_with_its_default() {
        let env = Env::empty();
        env.text("T", "x");
        let _ = env.duration("D", Duration::from_secs(60));
        let _ = env.parse("P", 0.5_f64);
        let _ = env.parse_opt::<u64>("O");
        let _ = env.secret("S");
        let _ = env.boolean("B", true);
        let asked = env.asked();
        let names: Vec<_> = asked.keys().copied().collect();
        assert_eq!(names, ["B", "D", "O", "P", "S", "T"]);
        assert_eq!(asked["T"].as_deref(), Some("x"));
        assert_eq!(asked["D"].as_deref(), Some("1m"));
        assert_eq!(asked["P"].as_deref(), Some("0.5"));
        assert_eq!(asked["O"], None);
        assert_eq!(asked["B"].as_deref(), Some("true"));
    }

    #[test]
    fn replica_ids_read_the_variable_then_hostname_through_the_lookup() {
        let pid = std::process::id();
        let set = Env::from_map([("ID", "r1"), ("HOSTNAME", "h")]);
        assert_eq!(replica_id(&set, "ID", "svc"), "r1");
        let host = Env::from_map([("HOSTNAME", " h ")]);
        assert_eq!(replica_id(&host, "ID", "svc"), format!("h/{pid}"));
        let none = Env::empty();
        assert_eq!(replica_id(&none, "ID", "svc"), format!("svc/{pid}"));
        assert!(none.asked().contains_key("HOSTNAME"));
    }
}
