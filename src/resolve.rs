//! Name resolution under the fetch policy and within the fetch's time: [`PolicyResolver`] is
//! the resolver ureq connects through, so only addresses the policy allows are ever tried.
//!
//! ureq 2 asks its resolver synchronously, and getaddrinfo has no timeout of its own (a silent
//! name server holds it for as long as resolv.conf's timeouts and attempts add up to). So each
//! lookup of a name runs on a thread of its own, and the fetch waits for its answer only as
//! long as its connect timeout and its deadline allow; a lookup that outlives the wait ends on
//! its own and its answer is dropped. At most [`MAX_LOOKUPS`] run at once per client (per
//! pool), so names whose name server never answers cannot pile up threads.

use std::cell::Cell;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::options::Options;
use crate::policy;

/// Name resolution: `"host:port"` (an IPv6 literal in brackets) to the addresses to try, in
/// order. [`system_lookup`] by default; tests give their own (`Fetcher::with_lookup`).
pub type Lookup = Arc<dyn Fn(&str) -> io::Result<Vec<SocketAddr>> + Send + Sync>;

/// The operating system's resolver (getaddrinfo: /etc/hosts, DNS, ...).
pub fn system_lookup() -> Lookup {
    Arc::new(|netloc: &str| netloc.to_socket_addrs().map(Iterator::collect))
}

/// Lookups of one client that may be running at once, those given up on included. Above the
/// worker threads' greatest number, so that a lookup waits for a slot only when earlier ones
/// hang.
pub const MAX_LOOKUPS: usize = 64;

/// What the wait for a name is called in a timeout.
pub const RESOLVING: &str = "resolving the host name";

thread_local! {
    /// The deadline of the fetch running on this thread, and the limit it comes from.
    static FETCH_DEADLINE: Cell<Option<(Instant, Duration)>> = const { Cell::new(None) };
}

/// While it lives, lookups on this thread end by `deadline` (from the limit `limit`) at the
/// latest: ureq calls the resolver on the thread that makes the request.
pub(crate) struct Within(Option<(Instant, Duration)>);

impl Within {
    pub(crate) fn deadline(deadline: Instant, limit: Duration) -> Within {
        Within(FETCH_DEADLINE.replace(Some((deadline, limit))))
    }
}

impl Drop for Within {
    fn drop(&mut self) {
        FETCH_DEADLINE.set(self.0);
    }
}

/// Resolves a host and keeps only the addresses the policy allows; refuses when none is left.
pub(crate) struct PolicyResolver {
    lookup: Lookup,
    allow_private: bool,
    allow_hosts: Vec<String>,
    connect_timeout: Duration,
    running: Arc<Running>,
}

impl PolicyResolver {
    pub(crate) fn new(lookup: Lookup, opts: &Options) -> PolicyResolver {
        PolicyResolver {
            lookup,
            allow_private: opts.allow_private,
            allow_hosts: opts.allow_hosts.clone(),
            connect_timeout: opts.connect_timeout,
            running: Arc::default(),
        }
    }

    /// When the wait for a name ends, and the limit that says so: the connect timeout (ureq
    /// counts the lookup in it) or the fetch's deadline, whichever comes first.
    fn wait_until(&self) -> (Instant, Duration) {
        let connect = (Instant::now() + self.connect_timeout, self.connect_timeout);
        match FETCH_DEADLINE.get() {
            Some(fetch) if fetch.0 < connect.0 => fetch,
            _ => connect,
        }
    }

    /// `lookup(netloc)` on a thread of its own, waited for until the deadline at the latest.
    fn lookup_in_time(&self, netloc: &str, host: &str) -> io::Result<Vec<SocketAddr>> {
        let (until, limit) = self.wait_until();
        let Some(slot) = Slot::take(&self.running, until) else {
            let why = format!("{MAX_LOOKUPS} earlier lookups are still running (is the name server answering?)");
            return Err(carried(io::ErrorKind::TimedOut, Error::Resolve { host: host.to_owned(), why }));
        };
        let (tx, rx) = mpsc::sync_channel(1);
        let (lookup, name) = (self.lookup.clone(), netloc.to_owned());
        std::thread::Builder::new()
            .name("mm-lookup".into())
            .spawn(move || {
                let _slot = slot;
                let _ = tx.send(lookup(&name));
            })
            .map_err(|e| io::Error::other(format!("cannot start a lookup thread: {e}")))?;
        match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
            Ok(answer) => answer,
            Err(RecvTimeoutError::Timeout) => {
                Err(carried(io::ErrorKind::TimedOut, Error::Timeout { phase: RESOLVING, limit }))
            }
            Err(RecvTimeoutError::Disconnected) => Err(io::Error::other("the lookup ended without an answer")),
        }
    }
}

impl ureq::Resolver for PolicyResolver {
    fn resolve(&self, netloc: &str) -> io::Result<Vec<SocketAddr>> {
        let host = netloc.rsplit_once(':').map_or(netloc, |(h, _)| h).trim_start_matches('[').trim_end_matches(']');
        // An address literal needs no lookup (and no thread).
        let addrs = match netloc.parse::<SocketAddr>() {
            Ok(literal) => vec![literal],
            Err(_) => self.lookup_in_time(netloc, host)?,
        };
        if self.allow_private || policy::host_listed(host, &self.allow_hosts) {
            return Ok(addrs);
        }
        let (allowed, refused): (Vec<_>, Vec<_>) = addrs.into_iter().partition(|a| policy::check_addr(a.ip()).is_ok());
        match (allowed.is_empty(), refused.first()) {
            (true, Some(addr)) => {
                Err(io::Error::new(io::ErrorKind::PermissionDenied, policy::check_addr(addr.ip()).unwrap_err()))
            }
            _ => Ok(allowed),
        }
    }
}

/// Our error inside an `io::Error`, for ureq to hand back (`Fetcher` takes it out again).
fn carried(kind: io::ErrorKind, e: Error) -> io::Error {
    io::Error::new(kind, e)
}

/// How many lookups of one client are running.
#[derive(Default)]
struct Running {
    count: Mutex<usize>,
    freed: Condvar,
}

/// One running lookup; freed when its thread ends (or never starts).
struct Slot(Arc<Running>);

impl Slot {
    /// A slot once fewer than `MAX_LOOKUPS` run, or `None` if none is free by `until`.
    fn take(running: &Arc<Running>, until: Instant) -> Option<Slot> {
        let mut count = running.count.lock().unwrap_or_else(PoisonError::into_inner);
        while *count >= MAX_LOOKUPS {
            let left = until.checked_duration_since(Instant::now()).filter(|d| !d.is_zero())?;
            count = running.freed.wait_timeout(count, left).unwrap_or_else(PoisonError::into_inner).0;
        }
        *count += 1;
        Some(Slot(running.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        *self.0.count.lock().unwrap_or_else(PoisonError::into_inner) -= 1;
        self.0.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ureq::Resolver;

    /// A resolver whose lookup answers `addrs` for every name.
    fn answering(addrs: &[&str], allow_private: bool, allow_hosts: &[&str]) -> PolicyResolver {
        let addrs: Vec<SocketAddr> = addrs.iter().map(|a| a.parse().unwrap()).collect();
        let opts = Options {
            allow_private,
            allow_hosts: allow_hosts.iter().map(|h| h.to_string()).collect(),
            ..Options::default()
        };
        PolicyResolver::new(Arc::new(move |_| Ok(addrs.clone())), &opts)
    }

    fn resolved(r: &PolicyResolver, netloc: &str) -> Vec<String> {
        r.resolve(netloc).unwrap().iter().map(SocketAddr::to_string).collect()
    }

    #[test]
    fn a_name_with_public_and_private_addresses_is_handed_on_with_the_public_ones_only() {
        let mixed = ["10.0.0.1:80", "203.0.114.7:80", "127.0.0.1:80", "[2a00:1450::1]:80", "[fd00::1]:80"];
        let r = answering(&mixed, false, &[]);
        // ureq connects only to what the resolver returns, in that order.
        assert_eq!(resolved(&r, "media.example:80"), ["203.0.114.7:80", "[2a00:1450::1]:80"]);
        // Trusted: by the name, or every private address.
        let trusted = answering(&mixed, false, &["media.example"]);
        assert_eq!(resolved(&trusted, "media.example:80").len(), 5);
        assert_eq!(resolved(&trusted, "other.example:80").len(), 2, "only the listed name is trusted");
        assert_eq!(resolved(&answering(&mixed, true, &[]), "media.example:80").len(), 5);
    }

    #[test]
    fn a_name_with_only_refused_addresses_is_refused_naming_the_first() {
        let r = answering(&["169.254.169.254:80", "10.0.0.1:80"], false, &[]);
        let e = r.resolve("metadata.example:80").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert!(e.to_string().starts_with("refused: 169.254.169.254 is link-local"), "{e}");
        // IPv6 literals in brackets are matched against allow_hosts by their address.
        let r = answering(&["[::1]:80"], false, &["::1"]);
        assert_eq!(resolved(&r, "[::1]:80"), ["[::1]:80"]);
    }

    #[test]
    fn the_wait_for_a_name_ends_at_the_connect_timeout_or_the_fetch_deadline_whichever_is_first() {
        let r = answering(&["203.0.114.7:80"], false, &[]);
        let connect = r.connect_timeout;
        assert_eq!(r.wait_until().1, connect, "outside a fetch: the connect timeout");
        let soon = Instant::now() + Duration::from_millis(100);
        {
            let _within = Within::deadline(soon, Duration::from_secs(7));
            assert_eq!(r.wait_until(), (soon, Duration::from_secs(7)));
            let _inner = Within::deadline(Instant::now() + connect * 2, Duration::from_secs(9));
            assert_eq!(r.wait_until().1, connect);
        }
        assert_eq!(FETCH_DEADLINE.get(), None, "the deadline ends with the fetch");
    }
}
