//! Delivery-time resolution: resolve a name ourselves and keep it only if
//! every address it resolves to is allowed.
//!
//! The caller must connect to exactly the addresses returned (reqwest does,
//! when this is its DNS resolver): a second lookup could be answered
//! differently (DNS rebinding).

use crate::ranges::refusal;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};

/// Why a webhook host may not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ResolveRefusal {
    /// The name could not be resolved (transient or not, retry later).
    #[error("could not resolve {host}: {source}")]
    Lookup {
        /// The name.
        host: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The name resolved to no address at all.
    #[error("{host} resolves to no address")]
    NoAddress {
        /// The name.
        host: String,
    },
    /// The name resolves to (at least) one address in a blocked range.
    #[error("{host} resolves to {ip}, which is not allowed ({reason})")]
    Blocked {
        /// The name.
        host: String,
        /// The blocked address.
        ip: IpAddr,
        /// Which blocked range it is in.
        reason: &'static str,
    },
}

impl ResolveRefusal {
    /// Whether the target itself is refused (as opposed to a lookup that
    /// failed and may succeed later).
    pub fn is_blocked(&self) -> bool {
        matches!(self, ResolveRefusal::Blocked { .. })
    }
}

/// Resolve `host` with the system resolver and return its addresses (with
/// `port`) if none of them is refused.
///
/// A name that resolves to a public and a private address is refused as a
/// whole: which of them a client would pick is not ours to predict.
///
/// # Errors
///
/// [`ResolveRefusal::Blocked`] if any address is refused; `Lookup` or
/// `NoAddress` if resolution failed.
pub async fn resolve_allowed(
    host: &str,
    port: u16,
    allowed: &[IpNet],
) -> Result<Vec<SocketAddr>, ResolveRefusal> {
    // Brackets come with IPv6 literals in URLs; lookup_host wants them bare.
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((bare, port))
        .await
        .map_err(|source| ResolveRefusal::Lookup {
            host: host.to_owned(),
            source,
        })?
        .collect();
    if addrs.is_empty() {
        return Err(ResolveRefusal::NoAddress {
            host: host.to_owned(),
        });
    }
    for addr in &addrs {
        if let Some(reason) = refusal(addr.ip(), allowed) {
            return Err(ResolveRefusal::Blocked {
                host: host.to_owned(),
                ip: addr.ip(),
                reason,
            });
        }
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn localhost_resolves_to_loopback_and_is_refused() {
        let err = resolve_allowed("localhost", 80, &[])
            .await
            .expect_err("must be refused");
        assert!(err.is_blocked(), "{err}");
        assert!(err.to_string().contains("loopback"), "{err}");
    }

    #[tokio::test]
    async fn literal_addresses_go_through_the_same_check() {
        let err = resolve_allowed("169.254.169.254", 80, &[])
            .await
            .expect_err("refused");
        assert!(err.is_blocked());
        let err = resolve_allowed("[::1]", 80, &[])
            .await
            .expect_err("refused");
        assert!(err.is_blocked());
        let ok = resolve_allowed("93.184.216.34", 443, &[])
            .await
            .expect("public");
        assert_eq!(ok, vec!["93.184.216.34:443".parse().expect("addr")]);
    }

    #[test]
    fn lookup_failures_are_not_blocked() {
        // The notifier fails a delivery for good only when `is_blocked`; a
        // lookup that failed (or found nothing) must stay retryable.
        let lookup = ResolveRefusal::Lookup {
            host: "hooks.example.com".into(),
            source: std::io::Error::other("temporary failure in name resolution"),
        };
        let no_address = ResolveRefusal::NoAddress {
            host: "hooks.example.com".into(),
        };
        assert!(!lookup.is_blocked(), "{lookup}");
        assert!(!no_address.is_blocked(), "{no_address}");
    }

    #[tokio::test]
    async fn the_allow_list_lets_localhost_through_when_it_covers_every_address() {
        let allowed: Vec<IpNet> = vec![
            "127.0.0.0/8".parse().expect("cidr"),
            "::1/128".parse().expect("cidr"),
        ];
        let addrs = resolve_allowed("localhost", 8080, &allowed)
            .await
            .expect("allowed");
        assert!(!addrs.is_empty());
        assert!(
            addrs
                .iter()
                .all(|a| a.ip().is_loopback() && a.port() == 8080)
        );
    }
}
