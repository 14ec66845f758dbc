//! JSON encoding of every message and record, with one error type.

use serde::{Serialize, de::DeserializeOwned};

/// A payload that could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[error("malformed {what}: {source}")]
pub struct CodecError {
    what: &'static str,
    #[source]
    source: serde_json::Error,
}

/// Encode `value` as JSON bytes.
pub fn encode<T: Serialize>(value: &T) -> bytes::Bytes {
    // Serialising our own plain structs cannot fail (no maps with non-string
    // keys, no failing Serialize impls), so an empty payload is unreachable.
    serde_json::to_vec(value).unwrap_or_default().into()
}

/// Decode JSON bytes as a `T`; `what` names the payload in the error.
pub fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, CodecError> {
    serde_json::from_slice(bytes).map_err(|source| CodecError { what, source })
}
