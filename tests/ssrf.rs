//! The fetch policy against SSRF: every refused range of the design, reached through odd
//! literal spellings, names, redirects, userinfo and odd ports, is refused before any
//! connection is made.
//!
//! Where the refused address is local (loopback, unspecified, IPv4 inside IPv6) a `Trap`
//! listens on the port the URL names, on 127.0.0.1 and [::1], and must see no connection;
//! each such group also has a control that proves the same URL does reach the trap when the
//! policy allows it. Addresses no test can bind (10.0.0.1, 169.254.169.254, ...) must come
//! back as the policy's own refusal, which the resolver returns before any connect, and fast.
//! The proxy environment variables are tested in `ssrf_proxy.rs` (a process of their own).

mod common;

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::hostile::{ipv6_loopback, RawServer, Trap};
use common::*;
use media_metadata::analyze::{analyze, Metadata};
use media_metadata::error::Error;
use media_metadata::fetch::{Fetcher, Lookup};
use media_metadata::options::Options;

/// The default policy, but a connect timeout long enough that a connect attempt to an
/// unroutable address would show in the elapsed time.
fn strict() -> Options {
    Options { connect_timeout: Duration::from_secs(20), timeout: Duration::from_secs(20), ..Options::default() }
}

fn run(url: &str, opts: Options) -> Result<Metadata, Error> {
    analyze(&Fetcher::new(opts), url)
}

/// Fetches `url` under `opts` and checks that the policy refused `addr` for `why`, quickly.
#[track_caller]
fn assert_refused_with(url: &str, opts: Options, addr: &str, why: &str) {
    let t = Instant::now();
    let result = run(url, opts);
    let elapsed = t.elapsed();
    match &result {
        Err(Error::Address { addr: a, why: w }) => {
            assert_eq!(a.to_string(), addr, "{url}: refused, but for another address");
            assert!(w.contains(why), "{url}: refused {a} as {w:?}, expected {why:?}");
        }
        other => panic!("{url}: expected the policy to refuse {addr} ({why}), got {other:?}"),
    }
    assert!(elapsed < Duration::from_millis(500), "{url}: the refusal took {elapsed:?}");
}

#[track_caller]
fn assert_refused(url: &str, addr: &str, why: &str) {
    assert_refused_with(url, strict(), addr, why)
}

/// Refused by the policy, or not resolvable at all: either way no connection.
#[track_caller]
fn assert_no_connection(url: &str) {
    match run(url, strict()) {
        Err(Error::Address { .. } | Error::Resolve { .. }) => {}
        other => panic!("{url}: expected a refusal or no such name, got {other:?}"),
    }
}

/// The same URL with the check off: it must reach `trap` (so that a zero count means something).
#[track_caller]
fn assert_reaches(url: &str, trap: &Trap) {
    let before = trap.accepted();
    let m = run(url, Options { allow_private: true, ..strict() }).unwrap_or_else(|e| panic!("control {url}: {e}"));
    assert_eq!(m.width, Some(8), "control {url}");
    assert_eq!(trap.accepted(), before + 1, "control {url} did not reach the trap");
}

#[test]
fn ipv4_spellings_of_loopback_and_unspecified_never_connect() {
    let trap = Trap::new();
    let p = trap.port;
    let cases = [
        ("127.0.0.1", "127.0.0.1", "loopback"),
        ("127.1", "127.0.0.1", "loopback"),
        ("2130706433", "127.0.0.1", "loopback"),
        ("0x7f.0.0.1", "127.0.0.1", "loopback"),
        ("0x7f000001", "127.0.0.1", "loopback"),
        ("0177.0.0.1", "127.0.0.1", "loopback"),
        ("127.000.000.001", "127.0.0.1", "loopback"),
        ("127.0.0.1.", "127.0.0.1", "loopback"),
        ("\u{ff11}\u{ff12}\u{ff17}.\u{ff10}.\u{ff10}.\u{ff11}", "127.0.0.1", "loopback"), // full-width digits
        ("127.254.3.2", "127.254.3.2", "loopback"),
        ("0.0.0.0", "0.0.0.0", "unspecified"),
        ("0", "0.0.0.0", "unspecified"),
    ];
    for (host, addr, why) in cases {
        assert_refused(&format!("http://{host}:{p}/p.png"), addr, why);
        assert_refused(&format!("https://{host}:{p}/p.png"), addr, why);
    }
    assert_eq!(trap.accepted(), 0, "a refused URL reached the listener");

    // Controls: the same spellings do reach the listener when private addresses are allowed.
    for host in ["127.0.0.1", "127.1", "2130706433", "0x7f.0.0.1", "0177.0.0.1", "0.0.0.0"] {
        assert_reaches(&format!("http://{host}:{p}/p.png"), &trap);
    }
}

#[test]
fn ipv4_private_link_local_cgnat_and_other_ranges_are_refused_before_connecting() {
    let cases = [
        ("169.254.169.254", "link-local"),
        ("169.254.0.1", "link-local"),
        ("100.64.0.1", "CGNAT"),
        ("100.127.255.254", "CGNAT"),
        ("192.168.1.1", "192.168.0.0/16"),
        ("10.0.0.1", "10.0.0.0/8"),
        ("10.255.255.255", "10.0.0.0/8"),
        ("172.16.0.1", "172.16.0.0/12"),
        ("172.31.255.254", "172.16.0.0/12"),
        ("192.0.0.8", "IETF protocol assignments"),
        ("192.0.2.1", "documentation"),
        ("198.51.100.7", "documentation"),
        ("203.0.113.9", "documentation"),
        ("198.18.0.1", "benchmarking"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "broadcast"),
    ];
    for (addr, why) in cases {
        assert_refused(&format!("http://{addr}/latest/meta-data/"), addr, why);
        assert_refused(&format!("https://{addr}:8443/x.jpg"), addr, why);
    }
    // The same addresses in other spellings.
    assert_refused("http://2852039166/", "169.254.169.254", "link-local"); // decimal
    assert_refused("http://0xa9.0xfe.0xa9.0xfe/", "169.254.169.254", "link-local"); // hex
    assert_refused("http://0251.0376.0251.0376/", "169.254.169.254", "link-local"); // octal
    assert_refused("http://169.254.43518/", "169.254.169.254", "link-local"); // a.b.c16
    assert_refused("http://10.1/", "10.0.0.1", "10.0.0.0/8");
    assert_refused("http://0xc0a80101/", "192.168.1.1", "192.168.0.0/16");
    assert_refused("http://100.64.1/", "100.64.0.1", "CGNAT");
}

#[test]
fn ipv6_literals_of_refused_ranges_never_connect() {
    let trap = Trap::new();
    let p = trap.port;
    // Local: these reach a listener on ::1 or 127.0.0.1 when connected to.
    let local = [
        ("[::1]", "::1", "loopback"),
        ("[0:0:0:0:0:0:0:1]", "::1", "loopback"),
        ("[::]", "::", "unspecified"),
        ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1", "IPv4-mapped"),
        ("[::ffff:7f00:1]", "::ffff:127.0.0.1", "IPv4-mapped"),
        ("[::ffff:0.0.0.0]", "::ffff:0.0.0.0", "IPv4-mapped"),
    ];
    for (host, addr, why) in local {
        assert_refused(&format!("http://{host}:{p}/p.png"), addr, why);
    }
    // Not local here, but IPv4 inside IPv6 or a private v6 range all the same.
    let remote = [
        ("[64:ff9b::7f00:1]", "64:ff9b::7f00:1", "NAT64"),
        ("[64:ff9b::a9fe:a9fe]", "64:ff9b::a9fe:a9fe", "NAT64"),
        ("[64:ff9b:1::a00:1]", "64:ff9b:1::a00:1", "NAT64"),
        ("[2002:7f00:1::1]", "2002:7f00:1::1", "6to4"),
        ("[2002:a9fe:a9fe::1]", "2002:a9fe:a9fe::1", "6to4"),
        ("[2001:0:4136:e378:8000:63bf:80ff:fffe]", "2001:0:4136:e378:8000:63bf:80ff:fffe", "Teredo"),
        ("[::127.0.0.1]", "::7f00:1", "IPv4-compatible"),
        ("[::ffff:169.254.169.254]", "::ffff:169.254.169.254", "IPv4-mapped"),
        ("[::ffff:10.0.0.1]", "::ffff:10.0.0.1", "IPv4-mapped"),
        ("[::ffff:0:7f00:1]", "::ffff:0:7f00:1", "IPv4-translated (SIIT"),
        ("[::ffff:0:a9fe:a9fe]", "::ffff:0:a9fe:a9fe", "IPv4-translated (SIIT"),
        ("[fe80::1]", "fe80::1", "link-local"),
        ("[febf::1]", "febf::1", "link-local"),
        ("[fd00::1]", "fd00::1", "unique local"),
        ("[fc00::1]", "fc00::1", "unique local"),
        ("[fec0::1]", "fec0::1", "site-local"),
        ("[ff02::1]", "ff02::1", "multicast"),
        ("[2001:db8::1]", "2001:db8::1", "documentation"),
        ("[100::1]", "100::1", "discard-only"),
    ];
    for (host, addr, why) in remote {
        assert_refused(&format!("http://{host}:{p}/p.png"), addr, why);
        assert_refused(&format!("https://{host}/p.png"), addr, why);
    }
    assert_eq!(trap.accepted(), 0, "a refused URL reached the listener");

    // Controls.
    assert_reaches(&format!("http://[::ffff:127.0.0.1]:{p}/p.png"), &trap);
    if trap.v6 {
        assert_reaches(&format!("http://[::1]:{p}/p.png"), &trap);
        assert_reaches(&format!("http://[::]:{p}/p.png"), &trap);
    } else {
        eprintln!("no [::1] on this system: the IPv6 loopback controls were skipped");
    }
}

#[test]
fn localhost_by_name_never_connects() {
    let trap = Trap::new();
    let p = trap.port;
    for host in ["localhost", "LOCALHOST", "LocalHost"] {
        assert_refused(&format!("http://{host}:{p}/p.png"), "127.0.0.1", "loopback");
    }
    // The resolver here does not strip a trailing dot; whatever it answers, nothing connects.
    assert_no_connection(&format!("http://localhost.:{p}/p.png"));
    assert_eq!(trap.accepted(), 0);
    assert_reaches(&format!("http://localhost:{p}/p.png"), &trap);
}

/// A resolver of our own (`Fetcher::with_lookup`): each name answers its addresses, in order,
/// on the port asked for; IP literals answer themselves; any other name does not resolve. No
/// DNS and no /etc/hosts: the cases run anywhere, as any user.
fn names(entries: &[(&str, &[&str])]) -> Lookup {
    let table: HashMap<String, Vec<IpAddr>> = entries
        .iter()
        .map(|(name, ips)| (name.to_string(), ips.iter().map(|ip| ip.parse().unwrap()).collect()))
        .collect();
    Arc::new(move |netloc: &str| {
        if let Ok(literal) = netloc.parse::<SocketAddr>() {
            return Ok(vec![literal]);
        }
        let (host, port) = netloc.rsplit_once(':').ok_or_else(|| io::Error::other("no port"))?;
        let port: u16 = port.parse().map_err(io::Error::other)?;
        match table.get(host) {
            Some(ips) => Ok(ips.iter().map(|&ip| SocketAddr::new(ip, port)).collect()),
            None => Err(io::Error::new(io::ErrorKind::NotFound, format!("{host}: no such name"))),
        }
    })
}

fn run_named(url: &str, opts: Options, lookup: &Lookup) -> Result<Metadata, Error> {
    analyze(&Fetcher::with_lookup(opts, lookup.clone()), url)
}

/// `assert_refused`, names resolved by `lookup`.
#[track_caller]
fn assert_refused_named(url: &str, lookup: &Lookup, addr: &str, why: &str) {
    let t = Instant::now();
    match run_named(url, strict(), lookup) {
        Err(Error::Address { addr: a, why: w }) => {
            assert_eq!(a.to_string(), addr, "{url}: refused, but for another address");
            assert!(w.contains(why), "{url}: refused {a} as {w:?}, expected {why:?}");
        }
        other => panic!("{url}: expected the policy to refuse {addr} ({why}), got {other:?}"),
    }
    assert!(t.elapsed() < Duration::from_millis(500), "{url}: the refusal took {:?}", t.elapsed());
}

/// A name with refused and allowed addresses is handed to ureq with the allowed ones only;
/// that list is tested in src/fetch.rs (a test here would have to connect to a public
/// address). Here: names whose every address is refused never connect.
#[test]
fn names_that_resolve_to_refused_addresses_never_connect() {
    let trap = Trap::new();
    let p = trap.port;
    let lookup = names(&[
        ("lo.test", &["127.0.0.1"]),
        ("meta.test", &["169.254.169.254"]),
        ("private.test", &["10.0.0.1"]),
        ("lo6.test", &["::1"]),
        ("mapped.test", &["::ffff:127.0.0.1"]),
        ("both.test", &["127.0.0.1", "10.0.0.1"]),
        ("cgnat-then-lo.test", &["100.64.0.1", "127.0.0.1"]),
    ]);
    assert_refused_named(&format!("http://lo.test:{p}/p.png"), &lookup, "127.0.0.1", "loopback");
    // The URL parser lowercases the host: the name is the same name.
    assert_refused_named(&format!("http://LO.TEST:{p}/p.png"), &lookup, "127.0.0.1", "loopback");
    assert_refused_named("http://meta.test/latest/meta-data/", &lookup, "169.254.169.254", "link-local");
    assert_refused_named(&format!("http://private.test:{p}/"), &lookup, "10.0.0.1", "10.0.0.0/8");
    assert_refused_named(&format!("http://lo6.test:{p}/p.png"), &lookup, "::1", "loopback");
    assert_refused_named(&format!("http://mapped.test:{p}/p.png"), &lookup, "::ffff:127.0.0.1", "IPv4-mapped");
    // Every address of the name is refused: the first one is named.
    assert_refused_named(&format!("http://both.test:{p}/p.png"), &lookup, "127.0.0.1", "loopback");
    assert_refused_named(&format!("http://cgnat-then-lo.test:{p}/p.png"), &lookup, "100.64.0.1", "CGNAT");
    // A name that does not resolve is a DNS failure, and connects nowhere either.
    let e = run_named(&format!("http://lo.test.:{p}/p.png"), strict(), &lookup).unwrap_err();
    assert!(matches!(&e, Error::Resolve { .. }) && e.kind() == "dns", "{e:?}");
    assert_eq!(trap.accepted(), 0, "a name led to a connection to a refused address");

    // Controls: the names do lead to the trap when trusted, by name or all private addresses.
    for (url, opts) in [
        (format!("http://lo.test:{p}/p.png"), Options { allow_hosts: vec!["lo.test".into()], ..strict() }),
        (format!("http://both.test:{p}/p.png"), Options { allow_hosts: vec!["*.test".into()], ..strict() }),
        (format!("http://lo.test:{p}/p.png"), Options { allow_private: true, ..strict() }),
    ] {
        let before = trap.accepted();
        let m = run_named(&url, opts, &lookup).unwrap_or_else(|e| panic!("control {url}: {e}"));
        assert_eq!((m.width, trap.accepted()), (Some(8), before + 1), "control {url}");
    }
    // A listed name is trusted, not its neighbours.
    let opts = Options { allow_hosts: vec!["lo.test".into()], ..strict() };
    assert!(matches!(run_named(&format!("http://both.test:{p}/p.png"), opts, &lookup), Err(Error::Address { .. })));
}

#[test]
fn a_redirect_from_a_trusted_host_into_a_refused_address_never_connects() {
    let trap = Trap::new();
    let p = trap.port;
    let targets = [
        (format!("http://127.0.0.1:{p}/p.png"), "127.0.0.1", "loopback"),
        (format!("https://127.0.0.1:{p}/p.png"), "127.0.0.1", "loopback"),
        (format!("http://2130706433:{p}/p.png"), "127.0.0.1", "loopback"),
        (format!("http://0.0.0.0:{p}/p.png"), "0.0.0.0", "unspecified"),
        (format!("http://[::1]:{p}/p.png"), "::1", "loopback"),
        (format!("http://[::]:{p}/p.png"), "::", "unspecified"),
        (format!("http://[::ffff:127.0.0.1]:{p}/p.png"), "::ffff:127.0.0.1", "IPv4-mapped"),
        (format!("//127.0.0.1:{p}/p.png"), "127.0.0.1", "loopback"), // scheme-relative
        (format!("http://localhost@127.0.0.1:{p}/p.png"), "127.0.0.1", "loopback"),
        (format!(" http://127.0.0.1:{p}/p.png "), "127.0.0.1", "loopback"),
        ("http://169.254.169.254/latest/meta-data/iam/".to_owned(), "169.254.169.254", "link-local"),
        ("http://10.0.0.1/".to_owned(), "10.0.0.1", "10.0.0.0/8"),
        ("http://[fd00::1]/".to_owned(), "fd00::1", "unique local"),
    ];
    // One outer server per redirect status, each target behind its own path.
    for status in
        ["301 Moved Permanently", "302 Found", "303 See Other", "307 Temporary Redirect", "308 Permanent Redirect"]
    {
        for (target, addr, why) in &targets {
            let outer = RawServer::replying(
                format!("HTTP/1.1 {status}\r\nLocation: {target}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .into_bytes(),
            );
            // `localhost` is trusted by name; what it redirects to is checked again.
            let opts = Options { allow_hosts: vec!["localhost".into()], ..strict() };
            assert_refused_with(&format!("http://localhost:{}/r", outer.port), opts, addr, why);
            assert_eq!(outer.accepted(), 1, "{status} to {target}: the first hop was not fetched");
        }
    }
    assert_eq!(trap.accepted(), 0, "a redirect reached a refused address");
}

#[test]
fn a_redirect_chain_stops_at_the_limit() {
    let img = png(&photo(8, 8));
    let s = Server::start(vec![
        ("/r0", Reply::Redirect("/r1".into())),
        ("/r1", Reply::Redirect("/r2".into())),
        ("/r2", Reply::Redirect("/r3".into())),
        ("/r3", Reply::Redirect("/r4".into())),
        ("/r4", Reply::Redirect("/final".into())),
        ("/final", Reply::Ok("image/png", img)),
    ]);
    let opts = Options { allow_hosts: vec!["localhost".into()], ..strict() };
    let url = |path: &str| format!("http://localhost:{}{path}", s.port);
    // Three redirects (the default limit) are followed ...
    assert_eq!(run(&url("/r2"), opts.clone()).unwrap().width, Some(8));
    // ... a fourth is not, and the URL it points to is never requested.
    s.hits.lock().unwrap().clear();
    let e = run(&url("/r0"), opts.clone()).unwrap_err();
    assert!(matches!(e, Error::TooManyRedirects(3)), "{e}");
    assert_eq!(e.to_string(), "more than 3 redirects");
    let hits = s.hits.lock().unwrap().clone();
    for path in ["/r0", "/r1", "/r2", "/r3"] {
        assert_eq!(hits.get(path), Some(&1), "{path}: {hits:?}");
    }
    assert_eq!((hits.get("/r4"), hits.get("/final")), (None, None), "{hits:?}");
    // No redirects at all when the limit is 0.
    let e = run(&url("/r4"), Options { max_redirects: 0, ..opts }).unwrap_err();
    assert!(matches!(e, Error::TooManyRedirects(0)), "{e}");
}

#[test]
fn userinfo_does_not_change_where_the_request_goes() {
    let trap = Trap::new();
    let p = trap.port;
    for url in [
        format!("http://localhost@127.0.0.1:{p}/p.png"),
        format!("http://media.example.com@127.0.0.1:{p}/p.png"),
        format!("http://user:pass@127.0.0.1:{p}/p.png"),
        format!("http://localhost:{p}@127.0.0.1:{p}/p.png"),
        format!("http://a@b@127.0.0.1:{p}/p.png"),
        format!("http://127.0.0.1:{p}\\@media.example.com/p.png"), // a backslash is a slash in http
        format!("http://127.0.0.1:{p}#@media.example.com/p.png"),
        format!("http://127.0.0.1:{p}?@media.example.com/p.png"),
        format!("http://media.example.com:80@127.0.0.1:{p}/p.png"),
    ] {
        assert_refused(&url, "127.0.0.1", "loopback");
    }
    assert_refused(&format!("http://user@[::1]:{p}/p.png"), "::1", "loopback");
    assert_refused(&format!("http://user:x@[::ffff:127.0.0.1]:{p}/p.png"), "::ffff:127.0.0.1", "IPv4-mapped");
    assert_eq!(trap.accepted(), 0);

    // The other way round: a refused address in the userinfo, a trusted host after the `@`.
    let s = Server::start(vec![("/p.png", Reply::Ok("image/png", png(&photo(8, 8))))]);
    let opts = Options { allow_hosts: vec!["localhost".into()], ..strict() };
    let m = run(&format!("http://127.0.0.1:{p}@localhost:{}/p.png", s.port), opts).unwrap();
    assert_eq!(m.width, Some(8));
    assert_eq!((s.accepted(), trap.accepted()), (1, 0), "the request went to the userinfo's address");
}

#[test]
fn odd_ports_are_refused_like_any_other() {
    let traps: Vec<Trap> = [1u16, 22, 25, 80, 443, 3306, 5222, 6379, 8080, 11211, 65535]
        .iter()
        .filter_map(|&p| Trap::on_port(p))
        .collect();
    for port in [1u16, 22, 25, 80, 443, 3306, 5222, 6379, 8080, 11211, 65535] {
        assert_refused(&format!("http://127.0.0.1:{port}/"), "127.0.0.1", "loopback");
        assert_refused(&format!("https://127.0.0.1:{port}/"), "127.0.0.1", "loopback");
        if ipv6_loopback() {
            assert_refused(&format!("http://[::1]:{port}/"), "::1", "loopback");
        }
    }
    // The scheme's own port, spelled out or not, and port 0.
    assert_refused("http://127.0.0.1:80/", "127.0.0.1", "loopback");
    assert_refused("https://127.0.0.1:443/", "127.0.0.1", "loopback");
    assert_refused("http://127.0.0.1/", "127.0.0.1", "loopback");
    assert_refused("http://127.0.0.1:0/", "127.0.0.1", "loopback");
    assert_refused("http://127.0.0.1:00080/", "127.0.0.1", "loopback");
    for t in &traps {
        assert_eq!(t.accepted(), 0, "port {} got a connection", t.port);
    }
    assert!(!traps.is_empty(), "could bind none of the odd ports");
    // Not a port at all: an invalid URL, not a connection somewhere.
    for url in ["http://127.0.0.1:65536/", "http://127.0.0.1:-1/", "http://127.0.0.1:80a/", "http://[::1]:99999/"] {
        assert!(matches!(run(url, strict()), Err(Error::BadUrl { .. })), "{url}");
    }
}

#[test]
fn other_schemes_never_reach_the_network() {
    let trap = Trap::new();
    let p = trap.port;
    for url in [
        format!("ftp://127.0.0.1:{p}/"),
        format!("gopher://127.0.0.1:{p}/_GET%20/"),
        format!("ws://127.0.0.1:{p}/"),
        "file:///etc/passwd".to_owned(),
        "data:image/png;base64,iVBORw0KGgo=".to_owned(),
        format!("dict://127.0.0.1:{p}/info"),
        "javascript:alert(1)".to_owned(),
    ] {
        assert!(matches!(run(&url, strict()), Err(Error::Scheme(_))), "{url}");
    }
    assert_eq!(trap.accepted(), 0);
}
