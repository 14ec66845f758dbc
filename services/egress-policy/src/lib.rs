//! Which addresses a webhook may reach: the SSRF guard.
//!
//! A webhook URL is chosen by the caller, and the notifier POSTs to it from
//! inside our network. Without a guard, a caller could make us reach the
//! cloud metadata service (169.254.169.254), an admin port on loopback, or a
//! database on a private range, and read the answer back through the
//! delivery record. Following Svix, the guard works in two places:
//!
//! - at request time ([`check_url`]): the api rejects URLs whose scheme,
//!   credentials or literal address are not acceptable, cheaply and without
//!   resolving names (a name may resolve differently later anyway);
//! - at delivery time ([`resolve_allowed`]): the notifier resolves the name
//!   itself, refuses it if *any* address is in a blocked range, and connects
//!   only to the addresses it vetted, so DNS rebinding between a check and
//!   the connect does not help.
//!
//! Blocked ranges ([`refusal`]) are the special-purpose ones of the IANA
//! registries; an explicit allow-list of CIDRs opens chosen ranges (tests and
//! local demos open `127.0.0.0/8`).

mod ranges;
mod resolve;
mod url_check;

pub use ranges::refusal;
pub use resolve::{ResolveRefusal, resolve_allowed};
pub use url_check::{UrlRefusal, check_url, is_local_name};
