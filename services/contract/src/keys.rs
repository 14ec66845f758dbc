//! How a message becomes a KV key.
//!
//! KV keys allow only a restricted alphabet and a message may be any text, so
//! identical messages are keyed by the hex SHA-256 of their bytes. Every
//! service derives the key the same way, which is what lets identical
//! messages share one upstream job and one cached signature.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// Hex SHA-256 of a message: its key in the results and work buckets.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageKey(String);

impl MessageKey {
    /// The key of `message`.
    pub fn of(message: &str) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let digest = Sha256::digest(message.as_bytes());
        let mut hex = String::with_capacity(64);
        for byte in digest {
            hex.push(HEX[usize::from(byte >> 4)] as char);
            hex.push(HEX[usize::from(byte & 0xf)] as char);
        }
        Self(hex)
    }

    /// A key read back from a bucket (already in key form).
    pub fn of_key(key: &str) -> Self {
        Self(key.to_owned())
    }

    /// The key as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MessageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_messages_share_a_key_and_different_ones_do_not() {
        assert_eq!(MessageKey::of("hello"), MessageKey::of("hello"));
        assert_ne!(MessageKey::of("hello"), MessageKey::of("hello "));
        assert_eq!(
            MessageKey::of("hello").as_str(),
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
    }
}
