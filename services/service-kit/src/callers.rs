//! Who is calling: the configured callers, their keys and webhook secrets,
//! and the admin token for the operators' views. One configuration, read by
//! the api (keys) and the notifier (webhook secrets).
//!
//! Callers are configured as JSON, inline (`CALLERS`) or in a file
//! (`CALLERS_FILE`, e.g. a mounted secret):
//!
//! ```json
//! [{"name": "team-a", "key_sha256": ["<64 hex>", "<64 hex, while rotating>"],
//!   "webhook_secret": "whsec_…"}]
//! ```
//!
//! `rate_per_s` and `burst` (optional) cap the caller's sign requests per
//! api replica: a token bucket refilled `rate_per_s` a second, holding
//! `burst` (default `rate_per_s`); beyond it `429`.
//!
//! `weight` (1 to 20, default 1) is the caller's share of the upstream
//! budget against the other callers with pending work. `max_pending`
//! (optional) caps its jobs waiting for a signature; beyond it `429`.
//!
//! `webhook_secret` is optional: a caller's webhooks are signed with it
//! (comma-separate two during a rotation), else with the global
//! `WEBHOOK_SECRET`. It is held as a secret from the moment it is read.
//!
//! Only the SHA-256 of each key is configured, never the key: keys are long
//! random tokens (`openssl rand -hex 32`), for which a fast hash is enough
//! and a leaked configuration reveals nothing usable. A caller may have two
//! keys at once, so a key is rotated without a moment when neither works.
//! With no callers configured the gateway is open (the demo), and says so
//! loudly at start.

use crate::env::{ConfigError, Env};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Keys a caller may have at once (two while rotating).
pub const MAX_KEYS: usize = 2;

/// The largest weight. The scheduler's tally remembers the last 50 calls
/// (signer `scheduler::FAIR_MEMORY`), so a share of 1 in 21 still shows in
/// it; larger ratios could not be told apart.
pub const MAX_WEIGHT: u32 = 20;

/// One configured caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Its name: in job records, logs and metrics.
    pub name: String,
    key_sha256: Vec<[u8; 32]>,
    /// Its own webhook secret(s), `whsec_…`, comma-separated while rotating
    /// (checked by the notifier, which uses them).
    pub webhook_secret: Option<SecretString>,
    /// Its request rate, if capped.
    pub rate: Option<Rate>,
    /// Its share of the budget against other callers with pending work.
    pub weight: u32,
    /// The most jobs it may have waiting for a signature, if capped.
    pub max_pending: Option<u64>,
}

impl Caller {
    /// What a sign request carries of it for the signer's fair share.
    pub fn claimant(&self) -> wire_contract::claimants::Claimant {
        wire_contract::claimants::Claimant {
            name: self.name.clone(),
            weight: self.weight,
        }
    }
}

/// A caller's request rate: a token bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Tokens added per second.
    pub per_second: std::num::NonZeroU32,
    /// Tokens the bucket holds: the largest burst.
    pub burst: std::num::NonZeroU32,
}

/// The configured callers; empty means open.
#[derive(Debug, Clone, Default)]
pub struct Callers {
    callers: Vec<Caller>,
}

/// A caller entry as written in the configuration.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CallerEntry {
    name: String,
    key_sha256: Vec<String>,
    #[serde(default)]
    webhook_secret: Option<String>,
    #[serde(default)]
    rate_per_s: Option<u32>,
    #[serde(default)]
    burst: Option<u32>,
    #[serde(default)]
    weight: Option<u32>,
    #[serde(default)]
    max_pending: Option<u64>,
}

/// Why the callers' configuration was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CallersError {
    /// Not the expected JSON.
    #[error("not a JSON list of {{\"name\", \"key_sha256\": [...]}}: {0}")]
    Json(String),
    /// A caller without a usable name.
    #[error("caller {0:?}: a name is 1 to 64 letters, digits, '-' or '_'")]
    Name(String),
    /// Two callers with one name.
    #[error("caller {0:?} is configured twice")]
    DuplicateName(String),
    /// A caller without keys, or with too many.
    #[error("caller {0:?}: one or two keys (two only while rotating)")]
    KeyCount(String),
    /// A key that is not a SHA-256 in hex.
    #[error("caller {0:?}: a key_sha256 is 64 hex digits (sha256sum of the key)")]
    KeyFormat(String),
    /// A rate of zero, or a burst without a rate.
    #[error("caller {0:?}: rate_per_s and burst are at least 1, and burst needs rate_per_s")]
    Rate(String),
    /// A weight outside 1..=20, or a `max_pending` of 0.
    #[error("caller {0:?}: weight is 1 to 20, and max_pending at least 1")]
    Share(String),
    /// One key for two callers.
    #[error("callers {0:?} and {1:?} share a key")]
    SharedKey(String, String),
}

impl Callers {
    /// Parse and check the JSON configuration.
    ///
    /// # Errors
    /// [`CallersError`] for the first problem found.
    pub fn parse(json: &str) -> Result<Self, CallersError> {
        // The position only: serde_json's message can quote a value, and a
        // value may be a webhook secret.
        let entries: Vec<CallerEntry> = serde_json::from_str(json).map_err(|e| {
            CallersError::Json(format!(
                "{:?} error at line {} column {}",
                e.classify(),
                e.line(),
                e.column()
            ))
        })?;
        let mut callers: Vec<Caller> = Vec::with_capacity(entries.len());
        for entry in entries {
            let name_ok = (1..=64).contains(&entry.name.len())
                && entry
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !name_ok {
                return Err(CallersError::Name(entry.name));
            }
            if callers.iter().any(|c| c.name == entry.name) {
                return Err(CallersError::DuplicateName(entry.name));
            }
            if !(1..=MAX_KEYS).contains(&entry.key_sha256.len()) {
                return Err(CallersError::KeyCount(entry.name));
            }
            let mut keys = Vec::with_capacity(entry.key_sha256.len());
            for hex in &entry.key_sha256 {
                let key =
                    decode_hex(hex).ok_or_else(|| CallersError::KeyFormat(entry.name.clone()))?;
                if let Some(other) = callers.iter().find(|c| c.key_sha256.contains(&key)) {
                    return Err(CallersError::SharedKey(other.name.clone(), entry.name));
                }
                keys.push(key);
            }
            use std::num::NonZeroU32;
            let rate = match (entry.rate_per_s, entry.burst) {
                (None, None) => None,
                (Some(r), burst) => {
                    let per_second =
                        NonZeroU32::new(r).ok_or_else(|| CallersError::Rate(entry.name.clone()))?;
                    let burst = NonZeroU32::new(burst.unwrap_or(r))
                        .ok_or_else(|| CallersError::Rate(entry.name.clone()))?;
                    Some(Rate { per_second, burst })
                }
                (None, Some(_)) => return Err(CallersError::Rate(entry.name)),
            };
            let weight = entry.weight.unwrap_or(1);
            if !(1..=MAX_WEIGHT).contains(&weight) || entry.max_pending == Some(0) {
                return Err(CallersError::Share(entry.name));
            }
            callers.push(Caller {
                name: entry.name,
                key_sha256: keys,
                webhook_secret: entry.webhook_secret.map(SecretString::from),
                rate,
                weight,
                max_pending: entry.max_pending,
            });
        }
        Ok(Self { callers })
    }

    /// No callers configured: anyone may call.
    pub fn is_open(&self) -> bool {
        self.callers.is_empty()
    }

    /// Every configured caller.
    pub fn iter(&self) -> impl Iterator<Item = &Caller> {
        self.callers.iter()
    }

    /// Read from `CALLERS` (JSON) or `CALLERS_FILE` (a JSON file), not both;
    /// none when neither is set.
    ///
    /// # Errors
    /// [`ConfigError`] naming the variable, for a file that cannot be read or
    /// a configuration [`Callers::parse`] refuses.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        match (env.secret("CALLERS"), env.optional("CALLERS_FILE")) {
            (Some(_), Some(_)) => Err(ConfigError::new(
                "CALLERS_FILE",
                "set CALLERS or CALLERS_FILE, not both",
            )),
            (Some(json), None) => {
                Self::parse(json.expose_secret()).map_err(|e| ConfigError::new("CALLERS", e))
            }
            (None, Some(path)) => {
                let json = std::fs::read_to_string(&path)
                    .map_err(|e| ConfigError::new("CALLERS_FILE", format!("{path}: {e}")))?;
                Self::parse(&json)
                    .map_err(|e| ConfigError::new("CALLERS_FILE", format!("{path}: {e}")))
            }
            (None, None) => Ok(Self::default()),
        }
    }

    /// The caller named `name`.
    pub fn get(&self, name: &str) -> Option<&Caller> {
        self.callers.iter().find(|c| c.name == name)
    }

    /// How many callers are configured.
    pub fn len(&self) -> usize {
        self.callers.len()
    }

    /// Whether none is (the same as [`Callers::is_open`]).
    pub fn is_empty(&self) -> bool {
        self.callers.is_empty()
    }

    /// The caller whose key `presented` is. Every configured key is
    /// compared, each in constant time, whichever matches: the time taken
    /// says nothing about how close a guess was, or whose key it was near.
    pub fn identify(&self, presented: &str) -> Option<&Caller> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for caller in &self.callers {
            for key in &caller.key_sha256 {
                if bool::from(key.ct_eq(&digest)) {
                    found = Some(caller);
                }
            }
        }
        found
    }
}

/// The operators' token (`ADMIN_TOKEN`): it shows the status page's and
/// `/status.json`'s details, and any job.
#[derive(Debug, Clone, Default)]
pub struct AdminToken(Option<SecretString>);

impl AdminToken {
    /// `token` (`None`: no admin token configured).
    pub fn new(token: Option<SecretString>) -> Self {
        Self(token)
    }

    /// Whether one is configured.
    pub fn is_set(&self) -> bool {
        self.0.is_some()
    }

    /// Whether `presented` is it (constant time over the token's digest).
    pub fn matches(&self, presented: &str) -> bool {
        self.0.as_ref().is_some_and(|token| {
            let want = Sha256::digest(token.expose_secret().as_bytes());
            let got = Sha256::digest(presented.as_bytes());
            bool::from(want.ct_eq(&got))
        })
    }
}

fn decode_hex(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let digit = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(key: &str) -> String {
        Sha256::digest(key.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn keys_identify_their_caller_and_two_keys_work_while_rotating() {
        let json = format!(
            r#"[{{"name": "team-a", "key_sha256": ["{}", "{}"]}}, {{"name": "team_b", "key_sha256": ["{}"]}}]"#,
            sha("a-old"),
            sha("a-new").to_uppercase(),
            sha("b")
        );
        let callers = Callers::parse(&json).expect("valid");
        assert_eq!(callers.len(), 2);
        assert!(!callers.is_open());
        let name = |k: &str| callers.identify(k).map(|c| c.name.as_str());
        assert_eq!(name("a-old"), Some("team-a"));
        assert_eq!(name("a-new"), Some("team-a"));
        assert_eq!(name("b"), Some("team_b"));
        assert_eq!(name("a"), None);
        assert_eq!(name(""), None);
        assert_eq!(name(&sha("b")), None, "the hash is not the key");
        assert!(Callers::parse("[]").expect("empty").is_open());
        let rated = format!(
            r#"[{{"name": "r", "key_sha256": ["{}"], "rate_per_s": 5}}, {{"name": "s", "key_sha256": ["{}"], "rate_per_s": 2, "burst": 9}}]"#,
            sha("r"),
            sha("s")
        );
        let rated = Callers::parse(&rated).expect("valid");
        let rate = |k: &str| {
            rated
                .identify(k)
                .and_then(|c| c.rate)
                .map(|r| (r.per_second.get(), r.burst.get()))
        };
        assert_eq!(rate("r"), Some((5, 5)), "the burst defaults to the rate");
        assert_eq!(rate("s"), Some((2, 9)));
        assert_eq!(callers.identify("b").and_then(|c| c.rate), None);
    }

    #[test]
    fn weights_default_to_one_and_pending_caps_are_optional() {
        let json = format!(
            r#"[{{"name": "a", "key_sha256": ["{}"], "weight": 3, "max_pending": 50}},
                {{"name": "b", "key_sha256": ["{}"]}}]"#,
            sha("ka"),
            sha("kb")
        );
        let callers = Callers::parse(&json).expect("valid");
        let a = callers.get("a").expect("a");
        let b = callers.get("b").expect("b");
        assert_eq!((a.weight, a.max_pending), (3, Some(50)));
        assert_eq!((b.weight, b.max_pending), (1, None));
        assert!(callers.get("c").is_none());
    }

    #[test]
    fn a_bad_configuration_is_refused_with_its_reason() {
        let k = sha("k");
        let cases = [
            ("{}".to_owned(), "Json"),
            (r#"[{"name": "a"}]"#.to_owned(), "Json"),
            (
                format!(r#"[{{"name": "a", "key_sha256": ["{k}"], "extra": 1}}]"#),
                "Json",
            ),
            (
                format!(r#"[{{"name": "", "key_sha256": ["{k}"]}}]"#),
                "Name",
            ),
            (
                format!(r#"[{{"name": "a b", "key_sha256": ["{k}"]}}]"#),
                "Name",
            ),
            (
                r#"[{"name": "a", "key_sha256": []}]"#.to_owned(),
                "KeyCount",
            ),
            (
                format!(r#"[{{"name": "a", "key_sha256": ["{k}", "{k}", "{k}"]}}]"#),
                "KeyCount",
            ),
            (
                r#"[{"name": "a", "key_sha256": ["abc"]}]"#.to_owned(),
                "KeyFormat",
            ),
            (
                format!(r#"[{{"name": "a", "key_sha256": ["{}"]}}]"#, "g".repeat(64)),
                "KeyFormat",
            ),
            (
                format!(
                    r#"[{{"name": "a", "key_sha256": ["{k}"]}}, {{"name": "a", "key_sha256": ["{}"]}}]"#,
                    sha("x")
                ),
                "DuplicateName",
            ),
            (
                format!(
                    r#"[{{"name": "a", "key_sha256": ["{k}"]}}, {{"name": "b", "key_sha256": ["{k}"]}}]"#
                ),
                "SharedKey",
            ),
            (
                format!(r#"[{{"name": "a", "key_sha256": ["{k}"], "weight": 0}}]"#),
                "Share",
            ),
            (
                format!(r#"[{{"name": "a", "key_sha256": ["{k}"], "weight": 21}}]"#),
                "Share",
            ),
            (
                format!(r#"[{{"name": "a", "key_sha256": ["{k}"], "max_pending": 0}}]"#),
                "Share",
            ),
        ];
        for (json, want) in cases {
            let got = Callers::parse(&json).expect_err(&json);
            assert!(format!("{got:?}").starts_with(want), "{json}: {got:?}");
        }
    }

    #[test]
    fn the_admin_token_matches_only_itself_and_never_prints() {
        let admin = AdminToken::new(Some(SecretString::from("s3cret-admin")));
        assert!(admin.is_set());
        assert!(admin.matches("s3cret-admin"));
        assert!(!admin.matches("s3cret-admin "));
        assert!(!admin.matches(""));
        assert!(!format!("{admin:?}").contains("s3cret"));
        let none = AdminToken::default();
        assert!(!none.is_set());
        assert!(!none.matches(""));
    }
}
