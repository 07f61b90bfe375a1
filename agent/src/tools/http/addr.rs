//! Addresses the `http` tool refuses unless the configuration names them (the classes and
//! the forms of IPv6 that embed an IPv4 address).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Special IPv4 ranges: (network, prefix length, what it is). The first match names it.
const V4: &[(u32, u8, &str)] = &[
    (0xA9FE_A9FE, 32, "a cloud metadata endpoint"), // 169.254.169.254
    (0xA83F_8110, 32, "a cloud metadata endpoint (Azure wireserver)"), // 168.63.129.16
    (0x0000_0000, 8, "unspecified (\"this network\", 0.0.0.0/8)"),
    (0x0A00_0000, 8, "private (RFC 1918)"),
    (0x6440_0000, 10, "shared address space (CGNAT, 100.64.0.0/10)"),
    (0x7F00_0000, 8, "loopback"),
    (0xA9FE_0000, 16, "link-local"),
    (0xAC10_0000, 12, "private (RFC 1918)"),
    (0xC000_0000, 24, "reserved (IETF protocol assignments, 192.0.0.0/24)"),
    (0xC000_0200, 24, "documentation (TEST-NET-1)"),
    (0xC058_6300, 24, "reserved (6to4 relay anycast)"),
    (0xC0A8_0000, 16, "private (RFC 1918)"),
    (0xC612_0000, 15, "reserved (benchmarking, 198.18.0.0/15)"),
    (0xC633_6400, 24, "documentation (TEST-NET-2)"),
    (0xCB00_7100, 24, "documentation (TEST-NET-3)"),
    (0xE000_0000, 4, "multicast"),
    (0xFFFF_FFFF, 32, "broadcast"),
    (0xF000_0000, 4, "reserved (240.0.0.0/4)"),
];

/// Special IPv6 ranges checked after the forms that embed an IPv4 address.
const V6: &[(u128, u8, &str)] = &[
    (0xfd00_0ec2_0000_0000_0000_0000_0000_0254, 128, "a cloud metadata endpoint"), // fd00:ec2::254
    (0x2001_0000 << 96, 32, "Teredo (2001::/32, tunnels to an address it hides)"),
    (0x2001_0000 << 96, 23, "reserved (IETF protocol assignments, 2001::/23)"),
    (0x2001_0db8 << 96, 32, "documentation (2001:db8::/32)"),
    (0x3fff << 112, 20, "documentation (3fff::/20)"),
    (0xfc00 << 112, 7, "unique-local (fc00::/7)"),
    (0xfe80 << 112, 10, "link-local"),
    (0xfec0 << 112, 10, "site-local (deprecated)"),
    (0xff00 << 112, 8, "multicast"),
];

fn in_v4(n: u32, net: u32, len: u8) -> bool {
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    n & mask == net & mask
}

fn in_v6(n: u128, net: u128, len: u8) -> bool {
    let mask = if len == 0 { 0 } else { u128::MAX << (128 - len) };
    n & mask == net & mask
}

/// What a special IPv4 address is, or `None` for an ordinary public one.
pub fn special_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let n = u32::from(ip);
    V4.iter().find(|(net, len, _)| in_v4(n, *net, *len)).map(|(_, _, what)| *what)
}

/// The IPv4 address an IPv6 address carries, with the form's name: IPv4-mapped
/// (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`, deprecated), NAT64 (`64:ff9b::/96`) and
/// 6to4 (`2002:AABB:CCDD::/48`).
pub fn embedded_v4(ip: Ipv6Addr) -> Option<(&'static str, Ipv4Addr)> {
    let n = u128::from(ip);
    let low = Ipv4Addr::from(n as u32);
    if n >> 32 == 0xffff {
        Some(("IPv4-mapped", low))
    } else if n >> 32 == 0 && n > 1 {
        Some(("IPv4-compatible", low))
    } else if n >> 32 == 0x0064_ff9b_u128 << 64 {
        Some(("NAT64", low))
    } else if n >> 112 == 0x2002 {
        Some(("6to4", Ipv4Addr::from((n >> 80) as u32)))
    } else {
        None
    }
}

/// What a special address is (loopback, private, link-local, …), or `None` for an ordinary
/// public one. IPv6 addresses embedding an IPv4 address are judged by that address; IPv6
/// outside global unicast (`2000::/3`) is refused whatever it is.
pub fn special(ip: IpAddr) -> Option<String> {
    let v6 = match ip {
        IpAddr::V4(v4) => return special_v4(v4).map(str::to_owned),
        IpAddr::V6(v6) => v6,
    };
    let n = u128::from(v6);
    if n == 0 {
        return Some("unspecified".into());
    }
    if n == 1 {
        return Some("loopback".into());
    }
    if let Some((form, v4)) = embedded_v4(v6) {
        return special_v4(v4).map(|what| format!("{form} {v4}, {what}"));
    }
    if let Some((_, _, what)) = V6.iter().find(|(net, len, _)| in_v6(n, *net, *len)) {
        return Some((*what).into());
    }
    if !in_v6(n, 0x2000 << 112, 3) {
        return Some("not global unicast (outside 2000::/3)".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn what(s: &str) -> Option<String> {
        special(s.parse().unwrap())
    }

    #[test]
    fn special_addresses_are_named_and_public_ones_pass() {
        let refused = [
            ("127.0.0.1", "loopback"),
            ("127.255.255.254", "loopback"),
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "unspecified"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("100.64.0.1", "CGNAT"),
            ("100.127.255.255", "CGNAT"),
            ("169.254.169.254", "metadata"),
            ("169.254.1.1", "link-local"),
            ("168.63.129.16", "metadata"),
            ("192.0.0.8", "reserved"),
            ("192.0.2.1", "documentation"),
            ("198.51.100.7", "documentation"),
            ("203.0.113.9", "documentation"),
            ("198.18.0.1", "benchmarking"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"),
            ("240.0.0.1", "reserved"),
            ("255.255.255.255", "broadcast"),
            ("::", "unspecified"),
            ("::1", "loopback"),
            ("::ffff:127.0.0.1", "IPv4-mapped 127.0.0.1, loopback"),
            ("::ffff:169.254.169.254", "metadata"),
            ("::ffff:10.0.0.1", "private"),
            ("::127.0.0.1", "IPv4-compatible 127.0.0.1, loopback"),
            ("64:ff9b::127.0.0.1", "NAT64 127.0.0.1, loopback"),
            ("64:ff9b::a9fe:a9fe", "metadata"),
            ("64:ff9b:1::1", "not global unicast"),
            ("2002:7f00:1::", "6to4 127.0.0.1, loopback"),
            ("2002:c0a8:101::1", "6to4 192.168.1.1, private"),
            ("2001::1", "Teredo"),
            ("2001:db8::1", "documentation"),
            ("3fff::1", "documentation"),
            ("fc00::1", "unique-local"),
            ("fd00:ec2::254", "metadata"),
            ("fd12:3456::1", "unique-local"),
            ("fe80::1", "link-local"),
            ("fec0::1", "site-local"),
            ("ff02::1", "multicast"),
            ("100::1", "not global unicast"),
        ];
        for (ip, expect) in refused {
            let w = what(ip).unwrap_or_else(|| panic!("{ip} passed"));
            assert!(w.contains(expect), "{ip}: {w}");
        }
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "169.255.0.1",
            "198.20.0.1",
            "223.255.255.255",
            "2606:4700::1111",
            "2a00:1450:4001::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert_eq!(what(ip), None, "{ip}");
        }
    }
}
