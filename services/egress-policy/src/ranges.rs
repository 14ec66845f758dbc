//! The blocked address ranges, as data, and [`refusal`].
//!
//! The table is ordered: the first matching range names the reason, so the
//! more specific ranges (`::1`, `255.255.255.255`) come before the wider ones
//! that contain them.

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const fn v4(a: u8, b: u8, c: u8, d: u8, len: u8) -> Ipv4Net {
    Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), len)
}

const fn v6(segments: [u16; 8], len: u8) -> Ipv6Net {
    let [a, b, c, d, e, f, g, h] = segments;
    Ipv6Net::new_assert(Ipv6Addr::new(a, b, c, d, e, f, g, h), len)
}

/// IPv4 ranges a webhook may not reach, with the reason given.
const BLOCKED_V4: &[(Ipv4Net, &str)] = &[
    (v4(0, 0, 0, 0, 8), "unspecified"),
    (v4(10, 0, 0, 0, 8), "private"),
    (v4(100, 64, 0, 0, 10), "cgnat"),
    (v4(127, 0, 0, 0, 8), "loopback"),
    (v4(169, 254, 0, 0, 16), "link-local (cloud metadata)"),
    (v4(172, 16, 0, 0, 12), "private"),
    (v4(192, 0, 0, 0, 24), "ietf protocol assignments"),
    (v4(192, 0, 2, 0, 24), "documentation"),
    (v4(192, 88, 99, 0, 24), "6to4 relay anycast"),
    (v4(192, 168, 0, 0, 16), "private"),
    (v4(198, 18, 0, 0, 15), "benchmarking"),
    (v4(198, 51, 100, 0, 24), "documentation"),
    (v4(203, 0, 113, 0, 24), "documentation"),
    (v4(224, 0, 0, 0, 4), "multicast"),
    (v4(255, 255, 255, 255, 32), "broadcast"),
    (v4(240, 0, 0, 0, 4), "reserved"),
];

/// IPv6 ranges a webhook may not reach, with the reason given.
/// IPv4-mapped addresses (`::ffff:0:0/96`) never get here: they are judged
/// as the IPv4 address they carry.
const BLOCKED_V6: &[(Ipv6Net, &str)] = &[
    (v6([0, 0, 0, 0, 0, 0, 0, 0], 128), "unspecified"),
    (v6([0, 0, 0, 0, 0, 0, 0, 1], 128), "loopback"),
    (
        v6([0, 0, 0, 0, 0, 0, 0, 0], 96),
        "ipv4-compatible (deprecated)",
    ),
    (v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96), "6to4/nat64"),
    (v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48), "6to4/nat64"),
    (v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64), "discard-only"),
    (v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32), "documentation"),
    (
        v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23),
        "ietf protocol assignments",
    ),
    (v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16), "6to4/nat64"),
    (v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20), "documentation"),
    (v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7), "ipv6 unique-local"),
    (v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10), "link-local"),
    (
        v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10),
        "ipv6 site-local (deprecated)",
    ),
    (v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8), "multicast"),
];

/// Why a webhook may not reach `ip`, or `None` if it may.
///
/// An address inside any of the `allowed` CIDRs is allowed whatever range it
/// is in. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is judged as the
/// IPv4 address it carries, since that is where a connection to it goes.
pub fn refusal(ip: IpAddr, allowed: &[IpNet]) -> Option<&'static str> {
    if allowed.iter().any(|net| net.contains(&ip)) {
        return None;
    }
    match ip {
        IpAddr::V4(v4) => refusal_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => refusal(IpAddr::V4(v4), allowed),
            None => BLOCKED_V6
                .iter()
                .find(|(net, _)| net.contains(&v6))
                .map(|(_, why)| *why),
        },
    }
}

fn refusal_v4(ip: Ipv4Addr) -> Option<&'static str> {
    BLOCKED_V4
        .iter()
        .find(|(net, _)| net.contains(&ip))
        .map(|(_, why)| *why)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judge(ip: &str) -> Option<&'static str> {
        refusal(ip.parse().expect("test address"), &[])
    }

    #[test]
    fn every_blocked_ipv4_range_is_refused_at_both_ends() {
        for (net, why) in BLOCKED_V4 {
            for ip in [net.network(), net.broadcast()] {
                assert!(
                    judge(&ip.to_string()).is_some(),
                    "{ip} ({why}) should be refused"
                );
            }
        }
    }

    #[test]
    fn every_blocked_ipv6_range_is_refused_at_both_ends() {
        for (net, why) in BLOCKED_V6 {
            for ip in [net.network(), net.broadcast()] {
                assert!(
                    judge(&ip.to_string()).is_some(),
                    "{ip} ({why}) should be refused"
                );
            }
        }
    }

    #[test]
    fn reasons_name_the_range() {
        assert_eq!(
            judge("169.254.169.254"),
            Some("link-local (cloud metadata)")
        );
        assert_eq!(judge("255.255.255.255"), Some("broadcast"));
        assert_eq!(judge("240.0.0.1"), Some("reserved"));
        assert_eq!(judge("::1"), Some("loopback"));
        assert_eq!(judge("::"), Some("unspecified"));
        assert_eq!(judge("::ffff:10.1.2.3"), Some("private"));
        assert_eq!(judge("fd00:ec2::254"), Some("ipv6 unique-local"));
        assert_eq!(judge("2001:db8::1"), Some("documentation"));
    }

    #[test]
    fn neighbours_of_blocked_ranges_are_allowed() {
        for ip in [
            "1.1.1.1",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "93.184.216.34",
            "2606:4700::1111",
            "2a00:1450:4001:80b::200e",
            "2001:200::1",
            "2003::1",
        ] {
            assert_eq!(judge(ip), None, "{ip} should be allowed");
        }
    }

    #[test]
    fn the_allow_list_opens_a_blocked_range_and_only_that() {
        let allowed: Vec<IpNet> = vec!["127.0.0.0/8".parse().expect("cidr")];
        assert_eq!(refusal("127.0.0.1".parse().expect("ip"), &allowed), None);
        assert_eq!(refusal("127.255.0.9".parse().expect("ip"), &allowed), None);
        assert_eq!(
            refusal("::ffff:127.0.0.1".parse().expect("ip"), &allowed),
            None
        );
        assert_eq!(
            refusal("10.0.0.1".parse().expect("ip"), &allowed),
            Some("private")
        );
        assert_eq!(
            refusal("::1".parse().expect("ip"), &allowed),
            Some("loopback")
        );
    }
}
