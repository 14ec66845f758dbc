//! Request-time validation of a webhook URL, without resolving names.

use crate::ranges::refusal;
use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use url::{Host, Url};

/// Why a webhook URL is not accepted. The messages are meant for the caller
/// (they end up in a problem+json `detail`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlRefusal {
    /// Not parseable as an absolute URL.
    #[error("webhook URL is not a valid absolute URL: {0}")]
    Invalid(#[from] url::ParseError),
    /// A scheme other than http or https.
    #[error("webhook URL scheme {0:?} is not allowed; use http or https")]
    Scheme(String),
    /// No host to deliver to.
    #[error("webhook URL has no host")]
    NoHost,
    /// `user:password@` in the URL: it would be sent along, and logged.
    #[error("webhook URL must not contain credentials")]
    Credentials,
    /// `localhost` or a name under `.localhost`, which always means this machine.
    #[error("webhook host {0:?} is a local name")]
    LocalName(String),
    /// A literal address in a blocked range.
    #[error("webhook address {ip} is not allowed ({reason})")]
    Address {
        /// The address.
        ip: IpAddr,
        /// Which blocked range it is in.
        reason: &'static str,
    },
}

/// Whether `host` is `localhost` or a name under `.localhost` (RFC 6761:
/// such names always resolve to loopback, whatever DNS says).
pub fn is_local_name(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == "localhost" || host.ends_with(".localhost")
}

/// Check a webhook URL at request time, returning it parsed.
///
/// Accepts absolute `http`/`https` URLs with a host and without
/// credentials. A literal IP host (the `url` crate normalises decimal,
/// octal and hex IPv4 forms, so `http://2130706433/` is 127.0.0.1 here) must
/// pass [`refusal`]. `localhost` names are refused unless the allow-list
/// opens loopback. Other names are not resolved: that happens at delivery,
/// through [`crate::resolve_allowed`].
///
/// # Errors
///
/// [`UrlRefusal`] says what is wrong, in words fit for the caller.
pub fn check_url(url: &str, allowed: &[IpNet]) -> Result<Url, UrlRefusal> {
    let parsed = Url::parse(url)?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(UrlRefusal::Scheme(parsed.scheme().to_owned()));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(UrlRefusal::Credentials);
    }
    let ip = match parsed.host() {
        None => return Err(UrlRefusal::NoHost),
        Some(Host::Domain("")) => return Err(UrlRefusal::NoHost),
        Some(Host::Domain(name)) => {
            if is_local_name(name) && !loopback_allowed(allowed) {
                return Err(UrlRefusal::LocalName(name.to_owned()));
            }
            return Ok(parsed);
        }
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip),
    };
    match refusal(ip, allowed) {
        Some(reason) => Err(UrlRefusal::Address { ip, reason }),
        None => Ok(parsed),
    }
}

/// Whether the allow-list opens loopback, so that `localhost` URLs are left to
/// the delivery-time check of the addresses the name resolves to.
fn loopback_allowed(allowed: &[IpNet]) -> bool {
    let v4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
    allowed
        .iter()
        .any(|net| net.contains(&v4) || net.contains(&v6))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(url: &str) -> UrlRefusal {
        match check_url(url, &[]) {
            Err(e) => e,
            Ok(u) => panic!("{url} should be refused, got {u}"),
        }
    }

    fn reason(url: &str) -> &'static str {
        match refused(url) {
            UrlRefusal::Address { reason, .. } => reason,
            other => panic!("{url}: expected an address refusal, got {other:?}"),
        }
    }

    #[test]
    fn literal_addresses_in_every_blocked_range_are_refused() {
        let cases = [
            ("http://0.0.0.0/", "unspecified"),
            ("http://0.1.2.3/", "unspecified"),
            ("http://10.0.0.1/hook", "private"),
            ("http://10.255.255.255/", "private"),
            ("http://100.64.0.1/", "cgnat"),
            ("http://100.127.255.254/", "cgnat"),
            ("http://127.0.0.1/", "loopback"),
            ("http://127.1.2.3:8080/", "loopback"),
            (
                "http://169.254.169.254/latest/meta-data/",
                "link-local (cloud metadata)",
            ),
            ("http://172.16.0.1/", "private"),
            ("http://172.31.255.255/", "private"),
            ("http://192.0.0.8/", "ietf protocol assignments"),
            ("http://192.0.2.10/", "documentation"),
            ("http://192.88.99.1/", "6to4 relay anycast"),
            ("http://192.168.1.1/", "private"),
            ("http://198.18.0.1/", "benchmarking"),
            ("http://198.19.255.255/", "benchmarking"),
            ("http://198.51.100.7/", "documentation"),
            ("http://203.0.113.9/", "documentation"),
            ("http://224.0.0.1/", "multicast"),
            ("http://239.255.255.250/", "multicast"),
            ("http://240.0.0.1/", "reserved"),
            ("http://255.255.255.255/", "broadcast"),
            ("http://[::]/", "unspecified"),
            ("http://[::1]/", "loopback"),
            ("https://[::1]:8443/hook", "loopback"),
            ("http://[::ffff:127.0.0.1]/", "loopback"),
            (
                "http://[::ffff:169.254.169.254]/",
                "link-local (cloud metadata)",
            ),
            ("http://[::ffff:10.0.0.1]/", "private"),
            ("http://[::127.0.0.1]/", "ipv4-compatible (deprecated)"),
            ("http://[64:ff9b::7f00:1]/", "6to4/nat64"),
            ("http://[64:ff9b:1::1]/", "6to4/nat64"),
            ("http://[100::1]/", "discard-only"),
            ("http://[2001::1]/", "ietf protocol assignments"),
            ("http://[2001:db8::1]/", "documentation"),
            ("http://[2002:7f00:1::]/", "6to4/nat64"),
            ("http://[fc00::1]/", "ipv6 unique-local"),
            ("http://[fd00:ec2::254]/", "ipv6 unique-local"),
            ("http://[fe80::1]/", "link-local"),
            ("http://[ff02::1]/", "multicast"),
        ];
        for (url, expected) in cases {
            assert_eq!(reason(url), expected, "{url}");
        }
    }

    #[test]
    fn decimal_octal_and_hex_ipv4_forms_are_normalised_then_refused() {
        // The url crate follows the WHATWG host parser: these all mean 127.0.0.1.
        for url in [
            "http://2130706433/",
            "http://0177.0.0.1/",
            "http://0x7f.0.0.1/",
            "http://0x7f000001/",
            "http://127.1/",
            "http://017700000001/",
        ] {
            match refused(url) {
                UrlRefusal::Address { ip, reason } => {
                    assert_eq!(ip, IpAddr::V4(Ipv4Addr::LOCALHOST), "{url}");
                    assert_eq!(reason, "loopback", "{url}");
                }
                other => panic!("{url}: {other:?}"),
            }
        }
        assert!(matches!(
            refused("http://0xa9fea9fe/"),
            UrlRefusal::Address {
                reason: "link-local (cloud metadata)",
                ..
            }
        ));
    }

    #[test]
    fn local_names_are_refused_without_resolving() {
        for url in [
            "http://localhost/",
            "http://LOCALHOST:8080/hook",
            "http://localhost./",
            "http://api.localhost/",
            "https://a.b.localhost/x",
        ] {
            assert!(matches!(refused(url), UrlRefusal::LocalName(_)), "{url}");
        }
    }

    #[test]
    fn malformed_or_unsafe_urls_are_refused() {
        assert!(matches!(refused("not a url"), UrlRefusal::Invalid(_)));
        assert!(matches!(refused("/relative/path"), UrlRefusal::Invalid(_)));
        assert!(matches!(
            refused("ftp://example.com/"),
            UrlRefusal::Scheme(_)
        ));
        assert!(matches!(
            refused("file:///etc/passwd"),
            UrlRefusal::Scheme(_)
        ));
        assert!(matches!(
            refused("gopher://example.com/"),
            UrlRefusal::Scheme(_)
        ));
        assert!(matches!(
            refused("https://user:pw@example.com/"),
            UrlRefusal::Credentials
        ));
        assert!(matches!(
            refused("https://user@example.com/"),
            UrlRefusal::Credentials
        ));
    }

    #[test]
    fn refusals_read_well() {
        assert_eq!(
            refused("http://169.254.169.254/").to_string(),
            "webhook address 169.254.169.254 is not allowed (link-local (cloud metadata))"
        );
        assert_eq!(
            refused("ftp://example.com/").to_string(),
            "webhook URL scheme \"ftp\" is not allowed; use http or https"
        );
    }

    #[test]
    fn public_addresses_and_names_are_accepted() {
        for url in [
            "http://93.184.216.34/hook",
            "https://93.184.216.34:8443/",
            "https://[2606:4700::1111]/hook",
            "https://[::ffff:93.184.216.34]/",
            "https://example.com/webhooks?x=1",
            "http://hooks.example.org:8080/",
            "https://localhost.example.com/",
        ] {
            assert!(check_url(url, &[]).is_ok(), "{url} should be accepted");
        }
    }

    #[test]
    fn the_allow_list_opens_loopback_literals_and_localhost() {
        let allowed: Vec<IpNet> = vec!["127.0.0.0/8".parse().expect("cidr")];
        assert!(check_url("http://127.0.0.1:9000/hook", &allowed).is_ok());
        assert!(check_url("http://2130706433/", &allowed).is_ok());
        assert!(check_url("http://localhost:9000/hook", &allowed).is_ok());
        assert!(check_url("http://10.0.0.1/", &allowed).is_err());
        assert!(check_url("http://[::1]/", &allowed).is_err());
    }
}
