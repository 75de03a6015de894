//! Who is calling, by network address: the rule that picks a request's client address from
//! its TCP peer and `X-Forwarded-For`, and the networks (`trusted_proxies`) allowed to say.
//!
//! A forwarding header is believed only when the peer is a trusted proxy: anyone else can
//! write any address into it. Behind trusted proxies the header is read from the right (each
//! proxy appends the address it received the request from), skipping the trusted hops; the
//! first address that is not trusted is the client. Whatever lies further left was written by
//! that client and is ignored, so a client cannot choose its own address.

use std::net::{IpAddr, Ipv6Addr};

/// A network: an address and a prefix length (`10.0.0.0/8`, `::1/128`, or a bare address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Parses `a.b.c.d/n`, `x::y/n` or a bare address (a single host). The address is kept
    /// masked to its prefix.
    pub fn parse(s: &str) -> Result<IpNet, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{s}` is not an IP address or network like 10.0.0.0/8"))?;
        let addr = canonical(addr);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => return Err(format!("`{s}`: the prefix length must be 0 to {max}")),
            },
        };
        Ok(IpNet {
            addr: mask(addr, prefix),
            prefix,
        })
    }

    /// Whether `ip` is in this network (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.prefix) == self.addr
    }
}

impl std::fmt::Display for IpNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// `::ffff:a.b.c.d` as `a.b.c.d`: a dual-stack listener reports IPv4 peers that way.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((bits & m).into())
        }
    }
}

fn trusted(ip: IpAddr, proxies: &[IpNet]) -> bool {
    proxies.iter().any(|n| n.contains(ip))
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5678`,
/// `[2001:db8::1]:443`), as some proxies write it.
fn parse_hop(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    s.parse::<std::net::SocketAddr>()
        .ok()
        .map(|a| canonical(a.ip()))
}

/// The client address of a request: the peer, unless the peer is a trusted proxy; then the
/// rightmost `X-Forwarded-For` address that is not a trusted proxy. `forwarded_for` holds the
/// header's values in the order received (several headers are one list). When every hop is
/// trusted, or a hop cannot be read, the last hop that could be read stands for the client.
/// `None` only when there is no peer (an in-process request).
pub fn client_address(
    peer: Option<IpAddr>,
    forwarded_for: &[&str],
    trusted_proxies: &[IpNet],
) -> Option<IpAddr> {
    let mut client = canonical(peer?);
    if !trusted(client, trusted_proxies) {
        return Some(client);
    }
    let hops = forwarded_for
        .iter()
        .flat_map(|v| v.split(','))
        .collect::<Vec<_>>();
    for hop in hops.into_iter().rev() {
        if hop.trim().is_empty() {
            continue;
        }
        let Some(ip) = parse_hop(hop) else {
            break;
        };
        client = ip;
        if !trusted(ip, trusted_proxies) {
            break;
        }
    }
    Some(client)
}

/// The key an address is counted under: IPv4 addresses one by one, IPv6 by their /64 (one
/// subscriber usually holds a whole /64, and could otherwise take a new address per request).
pub fn rate_key(ip: IpAddr) -> String {
    match canonical(ip) {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let net = Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64));
            format!("{net}/64")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| IpNet::parse(s).unwrap()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_parse_with_or_without_a_prefix_and_refuse_the_rest() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("10.0.0.0/8", Ok("10.0.0.0/8")),
            ("10.1.2.3/8", Ok("10.0.0.0/8")),
            ("127.0.0.1", Ok("127.0.0.1/32")),
            (" 192.168.0.0/16 ", Ok("192.168.0.0/16")),
            ("0.0.0.0/0", Ok("0.0.0.0/0")),
            ("::1", Ok("::1/128")),
            ("2001:db8::/32", Ok("2001:db8::/32")),
            ("::ffff:10.0.0.1", Ok("10.0.0.1/32")),
            ("10.0.0.0/33", Err("prefix length must be 0 to 32")),
            ("::/129", Err("prefix length must be 0 to 128")),
            ("10.0.0.0/x", Err("prefix length")),
            ("localhost", Err("not an IP address")),
            ("", Err("not an IP address")),
        ];
        for (input, want) in cases {
            match (IpNet::parse(input), want) {
                (Ok(n), Ok(w)) => assert_eq!(n.to_string(), *w, "{input}"),
                (Err(e), Err(w)) => assert!(e.contains(w), "{input}: {e}"),
                (got, want) => panic!("{input}: got {got:?}, wanted {want:?}"),
            }
        }
    }

    #[test]
    fn a_network_contains_exactly_its_addresses() {
        let cases: &[(&str, &str, bool)] = &[
            ("10.0.0.0/8", "10.255.1.2", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("127.0.0.1", "127.0.0.1", true),
            ("127.0.0.1", "127.0.0.2", false),
            ("0.0.0.0/0", "8.8.8.8", true),
            ("0.0.0.0/0", "::1", false),
            ("10.0.0.0/8", "::ffff:10.0.0.7", true),
            ("2001:db8::/32", "2001:db8:1::1", true),
            ("2001:db8::/32", "2001:db9::1", false),
            ("::1", "127.0.0.1", false),
        ];
        for (net, addr, want) in cases {
            assert_eq!(
                IpNet::parse(net).unwrap().contains(ip(addr)),
                *want,
                "{addr} in {net}"
            );
        }
    }

    /// (peer, X-Forwarded-For values, trusted proxies, client)
    type Case<'a> = (Option<&'a str>, &'a [&'a str], &'a [IpNet], Option<&'a str>);

    #[test]
    fn the_client_is_the_peer_unless_a_trusted_proxy_forwards_for_it() {
        let trusted = nets(&["10.0.0.0/8", "127.0.0.1"]);
        #[rustfmt::skip]
        let cases: &[Case<'_>] = &[
            // No peer: an in-process request.
            (None, &["1.2.3.4"], &trusted, None),
            // An untrusted peer: its header is ignored, whatever it says.
            (Some("203.0.113.9"), &[], &trusted, Some("203.0.113.9")),
            (Some("203.0.113.9"), &["1.2.3.4"], &trusted, Some("203.0.113.9")),
            (Some("203.0.113.9"), &["1.2.3.4"], &[], Some("203.0.113.9")),
            // No proxies configured (the default): the header never counts.
            (Some("127.0.0.1"), &["1.2.3.4"], &[], Some("127.0.0.1")),
            // A trusted peer without a header: the peer itself.
            (Some("10.0.0.2"), &[], &trusted, Some("10.0.0.2")),
            // A trusted peer: the rightmost untrusted hop.
            (Some("10.0.0.2"), &["1.2.3.4"], &trusted, Some("1.2.3.4")),
            (Some("10.0.0.2"), &["1.2.3.4, 10.0.0.3"], &trusted, Some("1.2.3.4")),
            // What the client wrote on the left is not believed.
            (Some("10.0.0.2"), &["6.6.6.6, 1.2.3.4"], &trusted, Some("1.2.3.4")),
            (Some("10.0.0.2"), &["6.6.6.6", "1.2.3.4, 10.0.0.3"], &trusted, Some("1.2.3.4")),
            // Ports, brackets and spaces are read.
            (Some("10.0.0.2"), &[" 1.2.3.4:5678 "], &trusted, Some("1.2.3.4")),
            (Some("10.0.0.2"), &["[2001:db8::1]:443"], &trusted, Some("2001:db8::1")),
            (Some("10.0.0.2"), &["::ffff:1.2.3.4"], &trusted, Some("1.2.3.4")),
            // Every hop trusted: the leftmost one.
            (Some("10.0.0.2"), &["10.0.0.9, 127.0.0.1"], &trusted, Some("10.0.0.9")),
            // An unreadable hop stops the walk at the last hop read.
            (Some("10.0.0.2"), &["1.2.3.4, garbage"], &trusted, Some("10.0.0.2")),
            (Some("10.0.0.2"), &["garbage, 1.2.3.4"], &trusted, Some("1.2.3.4")),
            (Some("10.0.0.2"), &["unknown, 10.0.0.3"], &trusted, Some("10.0.0.3")),
            // Empty entries are skipped.
            (Some("10.0.0.2"), &["1.2.3.4,, "], &trusted, Some("1.2.3.4")),
            // A dual-stack listener's IPv4-mapped peer is trusted as IPv4.
            (Some("::ffff:10.0.0.2"), &["1.2.3.4"], &trusted, Some("1.2.3.4")),
        ];
        for (peer, header, proxies, want) in cases {
            assert_eq!(
                client_address(peer.map(ip), header, proxies),
                want.map(ip),
                "peer {peer:?}, X-Forwarded-For {header:?}"
            );
        }
    }

    #[test]
    fn ipv4_clients_count_alone_and_ipv6_clients_by_their_64() {
        let cases: &[(&str, &str)] = &[
            ("1.2.3.4", "1.2.3.4"),
            ("::ffff:1.2.3.4", "1.2.3.4"),
            ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
            ("2001:db8:1:2::ffff", "2001:db8:1:2::/64"),
            ("::1", "::/64"),
        ];
        for (addr, key) in cases {
            assert_eq!(rate_key(ip(addr)), *key, "{addr}");
        }
    }
}
