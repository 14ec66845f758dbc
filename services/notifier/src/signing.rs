//! Standard Webhooks signatures, so receivers can verify a webhook is ours.
//!
//! `webhook-signature` is a space-separated list of
//! `v1,<base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}"))>`, one per
//! configured key: during a rotation both the old and the new key sign, and a
//! receiver holding either accepts. Keys are written `whsec_<base64>` and
//! never printed (their `Debug` is redacted).

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use std::fmt;

/// Prefix of a written secret.
const PREFIX: &str = "whsec_";
/// Shortest key the spec allows, in bytes.
const MIN_KEY_BYTES: usize = 24;
/// Longest key the spec allows, in bytes.
const MAX_KEY_BYTES: usize = 64;

/// Why a `whsec_` secret is unusable. Never carries the secret itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// Does not start with `whsec_`.
    #[error("does not start with {PREFIX}")]
    Prefix,
    /// The part after the prefix is not base64.
    #[error("is not base64 after {PREFIX}")]
    Base64,
    /// The decoded key is too short or too long.
    #[error("decodes to {0} bytes; 24 to 64 are required")]
    Length(usize),
}

/// One HMAC key (the decoded part of a `whsec_` secret).
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey(Vec<u8>);

impl SigningKey {
    /// Parse `whsec_<base64 of 24..64 bytes>`.
    ///
    /// # Errors
    ///
    /// [`SecretError`] saying what is wrong (without the secret).
    pub fn parse(written: &str) -> Result<Self, SecretError> {
        let encoded = written
            .trim()
            .strip_prefix(PREFIX)
            .ok_or(SecretError::Prefix)?;
        let bytes = STANDARD
            .decode(encoded)
            .or_else(|_| STANDARD_NO_PAD.decode(encoded))
            .map_err(|_| SecretError::Base64)?;
        if !(MIN_KEY_BYTES..=MAX_KEY_BYTES).contains(&bytes.len()) {
            return Err(SecretError::Length(bytes.len()));
        }
        Ok(Self(bytes))
    }

    /// A fresh random 32-byte key (demo mode, when no secret is configured).
    pub fn generate() -> Self {
        let mut bytes = vec![0u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// The key written as `whsec_<base64>`, for handing to a receiver.
    pub fn to_whsec(&self) -> String {
        format!("{PREFIX}{}", STANDARD.encode(&self.0))
    }

    /// `v1,<base64 signature>` of one message.
    fn sign(&self, content: &[u8]) -> String {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.0) {
            Ok(mac) => mac,
            Err(_) => return String::new(),
        };
        mac.update(content);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

/// The `webhook-signature` header value for `body` sent as message `msg_id`
/// at `timestamp` (Unix seconds): one `v1,…` entry per key, space-separated.
pub fn signature_header(keys: &[SigningKey], msg_id: &str, timestamp: u64, body: &[u8]) -> String {
    let mut content = Vec::with_capacity(msg_id.len() + body.len() + 24);
    content.extend_from_slice(msg_id.as_bytes());
    content.push(b'.');
    content.extend_from_slice(timestamp.to_string().as_bytes());
    content.push(b'.');
    content.extend_from_slice(body);
    keys.iter()
        .map(|k| k.sign(&content))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[test]
    fn matches_the_standard_webhooks_example() {
        let key = SigningKey::parse(SPEC_SECRET).expect("spec secret");
        let header = signature_header(
            &[key],
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(header, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn matches_an_independent_hmac_of_the_spec_string() {
        let raw = [7u8; 32];
        let key = SigningKey::parse(&format!("whsec_{}", STANDARD.encode(raw))).expect("key");
        let body = br#"{"type":"signature.completed"}"#;
        let mut mac = Hmac::<Sha256>::new_from_slice(&raw).expect("any key length");
        mac.update(b"job-1.1700000000.");
        mac.update(body);
        let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
        assert_eq!(
            signature_header(&[key], "job-1", 1_700_000_000, body),
            expected
        );
    }

    #[test]
    fn every_key_signs_during_rotation() {
        let old = SigningKey::parse(SPEC_SECRET).expect("old");
        let new = SigningKey::generate();
        let header = signature_header(&[old.clone(), new.clone()], "id", 1, b"{}");
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], signature_header(&[old], "id", 1, b"{}"));
        assert_eq!(parts[1], signature_header(&[new], "id", 1, b"{}"));
    }

    #[test]
    fn bad_secrets_are_rejected_without_echoing_them() {
        assert_eq!(
            SigningKey::parse("MfKQ9r8GKYqrTwjU"),
            Err(SecretError::Prefix)
        );
        assert_eq!(
            SigningKey::parse("whsec_!!!not base64"),
            Err(SecretError::Base64)
        );
        let short = format!("whsec_{}", STANDARD.encode([1u8; 16]));
        assert_eq!(SigningKey::parse(&short), Err(SecretError::Length(16)));
        let long = format!("whsec_{}", STANDARD.encode([1u8; 65]));
        assert_eq!(SigningKey::parse(&long), Err(SecretError::Length(65)));
    }

    #[test]
    fn generated_keys_round_trip_and_never_print() {
        let key = SigningKey::generate();
        assert_eq!(SigningKey::parse(&key.to_whsec()), Ok(key.clone()));
        assert_eq!(format!("{key:?}"), "SigningKey(<redacted>)");
    }
}
