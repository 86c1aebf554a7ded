//! An environment proxy must not bypass the fetch policy: with HTTP_PROXY, http_proxy,
//! HTTPS_PROXY, https_proxy and ALL_PROXY / all_proxy pointing at a listener of ours, refused
//! URLs are still refused, allowed ones are fetched directly, and the proxy sees nothing.
//!
//! The environment is process-wide, so this is a test binary of its own with one test.

mod common;

use std::time::{Duration, Instant};

use common::hostile::Trap;
use media_metadata::analyze::analyze;
use media_metadata::error::Error;
use media_metadata::fetch::Fetcher;
use media_metadata::options::{Options, PoolOptions};
use media_metadata::pool::Pool;

const PROXY_VARS: [&str; 6] = ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"];

#[test]
fn proxy_variables_neither_bypass_the_policy_nor_see_a_connection() {
    let proxy = Trap::new();
    let target = Trap::new();
    for var in PROXY_VARS {
        std::env::set_var(var, format!("http://127.0.0.1:{}", proxy.port));
    }
    for var in ["NO_PROXY", "no_proxy"] {
        std::env::remove_var(var);
    }
    // A SOCKS proxy spelled in ALL_PROXY as well, on the same trap.
    std::env::set_var("ALL_PROXY", format!("socks5://127.0.0.1:{}", proxy.port));

    let strict =
        Options { connect_timeout: Duration::from_secs(20), timeout: Duration::from_secs(20), ..Options::default() };
    let fetcher = Fetcher::new(strict.clone()); // made after the variables are set

    // Refused addresses stay refused: a proxy would otherwise connect there for us.
    for (url, addr) in [
        (format!("http://127.0.0.1:{}/p.png", target.port), "127.0.0.1"),
        (format!("https://127.0.0.1:{}/p.png", target.port), "127.0.0.1"),
        (format!("http://localhost:{}/p.png", target.port), "127.0.0.1"),
        ("http://169.254.169.254/latest/meta-data/".to_owned(), "169.254.169.254"),
        ("http://10.0.0.1/".to_owned(), "10.0.0.1"),
        ("https://[fd00::1]/".to_owned(), "fd00::1"),
    ] {
        let t = Instant::now();
        match analyze(&fetcher, &url) {
            Err(Error::Address { addr: a, .. }) => assert_eq!(a.to_string(), addr, "{url}"),
            other => panic!("{url}: expected the policy's refusal, got {other:?}"),
        }
        assert!(t.elapsed() < Duration::from_millis(500), "{url}: {:?}", t.elapsed());
    }
    assert_eq!((proxy.accepted(), target.accepted()), (0, 0), "proxy and target must see nothing");

    // Allowed hosts are fetched directly, not through the proxy: by name ...
    let trusted = Options { allow_hosts: vec!["localhost".into()], ..strict.clone() };
    let m = analyze(&Fetcher::new(trusted), &format!("http://localhost:{}/p.png", target.port)).unwrap();
    assert_eq!(m.width, Some(8));
    assert_eq!((proxy.accepted(), target.accepted()), (0, 1), "fetched through the proxy");
    // ... and with private addresses allowed, where a proxy would not be checked at all.
    let open = Options { allow_private: true, ..strict.clone() };
    let m = analyze(&Fetcher::new(open.clone()), &format!("http://127.0.0.1:{}/p.png", target.port)).unwrap();
    assert_eq!(m.width, Some(8));
    assert_eq!((proxy.accepted(), target.accepted()), (0, 2), "fetched through the proxy");

    // The worker pool builds its own client: the same holds there.
    let mut pool = Pool::new(PoolOptions { threads: 1, analysis: strict, ..PoolOptions::default() }).unwrap();
    let id = pool.submit(&format!("http://127.0.0.1:{}/p.png", target.port)).unwrap();
    let until = Instant::now() + Duration::from_secs(5);
    let done = loop {
        if let Some(c) = pool.drain().into_iter().find(|c| c.id == id) {
            break c;
        }
        assert!(Instant::now() < until, "no result from the pool");
        std::thread::sleep(Duration::from_millis(10));
    };
    let err = done.result.unwrap_err();
    assert_eq!(err.to_string(), "refused: 127.0.0.1 is loopback");
    pool.close(Duration::from_secs(1));
    assert_eq!((proxy.accepted(), target.accepted()), (0, 2));
}
