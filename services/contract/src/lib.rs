//! The wire contract shared by `api`, `signer` and `notifier`.
//!
//! Everything two services must agree on lives here and nowhere else: the
//! names of streams, subjects and KV buckets, the versioned message and record
//! types, how a message becomes a KV key, and the code that creates the
//! JetStream topology. No service handles raw bytes: they use [`codec`].

pub mod codec;
pub mod headers;
pub mod keys;
pub mod messages;
pub mod mirror;
pub mod names;
pub mod publish;
pub mod records;
pub mod time;
pub mod topology;
pub mod update;

pub use topology::{RecordError, Topology, Versioned, connect, load, remove, save};

pub use codec::{CodecError, decode, encode};
pub use keys::MessageKey;
pub use publish::{PublishError, publish_once};
pub use time::UnixMillis;
pub use update::{
    Change, Transient, Updated, update, update_from, update_versioned, with_patience,
};
