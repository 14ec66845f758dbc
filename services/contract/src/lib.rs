//! The wire contract shared by `api`, `signer` and `notifier`.
//!
//! Everything two services must agree on lives here and nowhere else: the
//! names of streams, subjects and KV buckets, the versioned message and record
//! types, how a message becomes a KV key, how a record is read and written
//! ([`store`], [`update`](mod@update)), and the code that connects and
//! creates the JetStream topology ([`connect`](mod@connect), [`topology`]),
//! and the loops every service runs on NATS: taking messages
//! ([`consume`](mod@consume)) and following a bucket ([`mirror`]).
//! No service handles raw bytes: they use [`codec`].

pub mod claimants;
pub mod codec;
pub mod connect;
pub mod consume;
pub mod headers;
pub mod job_keeping;
pub mod keys;
pub mod messages;
pub mod mirror;
pub mod names;
pub mod notifier_answers;
pub mod pause;
pub mod publish;
pub mod records;
pub mod signer_answers;
pub mod store;
pub mod time;
pub mod topology;
pub mod update;
pub mod waiting;

pub use connect::{ConnectError, NatsSettings, connect};
pub use store::{RecordError, Versioned, load, remove, save};
pub use topology::Topology;

pub use codec::{CodecError, decode, encode};
pub use keys::MessageKey;
pub use publish::{PublishError, publish_once};
pub use time::UnixMillis;
pub use update::{
    Change, Transient, Updated, update, update_async, update_from, update_versioned, with_patience,
};
