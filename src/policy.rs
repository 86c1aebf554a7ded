//! Where a URL is refused: schemes, denied hosts, and the addresses we never connect to.
//!
//! The address check runs on the address actually connected to (see `fetch::PolicyResolver`),
//! so neither a DNS answer nor a redirect can lead the server somewhere private.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::Url;

use crate::error::{Error, Result};
use crate::options::Options;

/// Parses `raw`, drops the fragment, and refuses schemes other than http and https and denied hosts.
pub fn check_url(raw: &str, opts: &Options) -> Result<Url> {
    let mut url = Url::parse(raw.trim()).map_err(|e| Error::BadUrl { url: raw.to_owned(), why: e.to_string() })?;
    check_parsed(&mut url, opts)?;
    Ok(url)
}

/// The same checks for a URL already parsed (a redirect's Location).
pub fn check_parsed(url: &mut Url, opts: &Options) -> Result<()> {
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(Error::Scheme(url.scheme().to_owned()));
    }
    url.set_fragment(None);
    let host = url.host_str().ok_or_else(|| Error::BadUrl { url: url.to_string(), why: "no host".into() })?;
    if host_listed(host, &opts.deny_hosts) {
        return Err(Error::HostDenied(host.to_owned()));
    }
    Ok(())
}

/// Whether `host` is one of `list`; an entry with a leading "." or "*." also covers subdomains.
pub fn host_listed(host: &str, list: &[String]) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    list.iter().any(|entry| {
        let entry = entry.trim_end_matches('.').to_ascii_lowercase();
        match entry.strip_prefix("*.").or_else(|| entry.strip_prefix('.')) {
            Some(domain) => host == domain || host.ends_with(&format!(".{domain}")),
            None => host == entry,
        }
    })
}

/// Refuses `addr` unless it is a public unicast address; the error says which range it is in.
pub fn check_addr(addr: IpAddr) -> Result<()> {
    match refused_because(addr) {
        Some(why) => Err(Error::Address { addr, why }),
        None => Ok(()),
    }
}

/// The reason `addr` is refused, or `None` for a public unicast address.
pub fn refused_because(addr: IpAddr) -> Option<&'static str> {
    match addr {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => refused_v6(v6),
    }
}

fn refused_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (0, _, _) => "unspecified (0.0.0.0/8)",
        (127, _, _) => "loopback",
        (10, _, _) => "a private address (10.0.0.0/8)",
        (172, 16..=31, _) => "a private address (172.16.0.0/12)",
        (192, 168, _) => "a private address (192.168.0.0/16)",
        (169, 254, _) => "link-local (169.254.0.0/16, where cloud metadata services live)",
        (100, 64..=127, _) => "shared address space (CGNAT, 100.64.0.0/10)",
        (192, 0, 0) => "reserved for IETF protocol assignments (192.0.0.0/24)",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "reserved for documentation",
        (198, 18..=19, _) => "reserved for benchmarking (198.18.0.0/15)",
        (224..=239, _, _) => "multicast",
        (240..=255, _, _) => "reserved (240.0.0.0/4) or broadcast",
        _ => return None,
    })
}

fn refused_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    Some(match s {
        [0, 0, 0, 0, 0, 0, 0, 0] => "unspecified",
        [0, 0, 0, 0, 0, 0, 0, 1] => "loopback",
        [0, 0, 0, 0, 0, 0xffff, _, _] => "IPv4-mapped (::ffff:0:0/96)",
        [0, 0, 0, 0, 0xffff, 0, _, _] => "IPv4-translated (SIIT, ::ffff:0:0:0/96)",
        [0, 0, 0, 0, 0, 0, _, _] => "IPv4-compatible (::/96)",
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => "NAT64 (64:ff9b::/96)",
        [0x64, 0xff9b, 1, ..] => "local-use NAT64 (64:ff9b:1::/48)",
        [0x2002, ..] => "6to4 (2002::/16)",
        [0x2001, 0, ..] => "Teredo (2001::/32)",
        [0x2001, 0x0db8, ..] => "reserved for documentation (2001:db8::/32)",
        [0x2001, 2, 0, ..] => "reserved for benchmarking (2001:2::/48)",
        [0x100, 0, 0, 0, ..] => "discard-only (100::/64)",
        [x, ..] if x & 0xfe00 == 0xfc00 => "a unique local address (fc00::/7)",
        [x, ..] if x & 0xffc0 == 0xfe80 => "link-local (fe80::/10)",
        [x, ..] if x & 0xffc0 == 0xfec0 => "site-local (fec0::/10)",
        [x, ..] if x & 0xff00 == 0xff00 => "multicast",
        [x, ..] if x & 0xfff0 == 0x3ff0 => "reserved for documentation (3fff::/20)",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(s: &str) -> bool {
        refused_because(s.parse().unwrap()).is_some()
    }

    #[test]
    fn refuses_every_listed_range() {
        for a in [
            "0.0.0.0",
            "127.0.0.1",
            "127.255.0.9",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.254",
            "192.0.0.8",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "198.18.0.1",
            "198.19.255.1",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:8.8.8.8",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b:1::1",
            "2002:7f00:1::1",
            "2001::1",
            "2001:db8::1",
            "2001:2::1",
            "100::1",
            "fc00::1",
            "fd00::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "3fff::1",
        ] {
            assert!(refused(a), "{a} should be refused");
        }
    }

    #[test]
    fn allows_public_unicast() {
        for a in [
            "8.8.8.8",
            "1.1.1.1",
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "192.0.1.1",
            "198.17.255.255",
            "223.255.255.255",
            "169.253.1.1",
            "2606:4700::1111",
            "2a00:1450:4001::200e",
            "2001:4860::8888",
            "64:ff9a::1",
        ] {
            assert!(!refused(a), "{a} should be allowed");
        }
    }

    #[test]
    fn names_the_address_and_the_reason() {
        let e = check_addr("127.0.0.1".parse().unwrap()).unwrap_err();
        assert_eq!(e.to_string(), "refused: 127.0.0.1 is loopback");
        let e = check_addr("169.254.169.254".parse().unwrap()).unwrap_err();
        assert!(e.to_string().contains("169.254.169.254 is link-local"), "{e}");
    }

    #[test]
    fn url_checks() {
        let o = Options { deny_hosts: vec![".evil.example".into(), "bad.test".into()], ..Default::default() };
        assert!(matches!(check_url("ftp://x.example/a", &o), Err(Error::Scheme(s)) if s == "ftp"));
        assert!(matches!(check_url("file:///etc/passwd", &o), Err(Error::Scheme(_))));
        assert!(matches!(check_url("not a url", &o), Err(Error::BadUrl { .. })));
        assert!(matches!(check_url("http://a.evil.example/x", &o), Err(Error::HostDenied(_))));
        assert!(matches!(check_url("http://EVIL.example./x", &o), Err(Error::HostDenied(_))));
        assert!(matches!(check_url("http://bad.test/x", &o), Err(Error::HostDenied(_))));
        assert!(check_url("http://notbad.test/x", &o).is_ok());
        let u = check_url("https://media.example/p.jpg#frag", &o).unwrap();
        assert_eq!(u.as_str(), "https://media.example/p.jpg");
    }

    #[test]
    fn odd_ipv4_spellings_are_normalised_before_the_check() {
        for s in ["127.1", "2130706433", "0x7f.0.0.1", "0177.0.0.1"] {
            let u = check_url(&format!("http://{s}/"), &Options::default()).unwrap();
            assert_eq!(u.host_str(), Some("127.0.0.1"), "{s}");
        }
    }
}
