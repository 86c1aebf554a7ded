//! The worker pool: results come back through the fd, the queue is bounded, close is prompt.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::hostile::{read_request, RawServer};
use common::*;
use media_metadata::error::Error;
use media_metadata::fetch::Fetcher;
use media_metadata::options::{Options, PoolOptions};
use media_metadata::pool::{Completion, Pool};
use media_metadata::sniff::Format;

fn pool(threads: usize, queue_length: usize) -> Pool {
    Pool::new(PoolOptions {
        threads,
        queue_length,
        analysis: Options { allow_private: true, timeout: Duration::from_secs(5), ..Options::default() },
        ..PoolOptions::default()
    })
    .unwrap()
}

fn local() -> Options {
    Options { allow_private: true, ..Options::default() }
}

fn readable(fd: i32, wait: Duration) -> bool {
    let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    unsafe { libc::poll(&mut p, 1, wait.as_millis() as i32) == 1 }
}

/// Waits on the fd like Prosody does and drains until `n` completions arrived.
fn collect(pool: &mut Pool, n: usize) -> Vec<Completion> {
    let until = Instant::now() + Duration::from_secs(10);
    let mut all = Vec::new();
    while all.len() < n && Instant::now() < until {
        if readable(pool.fd(), Duration::from_millis(100)) {
            all.extend(pool.drain());
        }
    }
    all
}

#[test]
fn results_arrive_through_the_fd_by_job_id() {
    let s = Server::start(vec![
        ("/a.png", Reply::Ok("image/png", png(&photo(40, 20)))),
        ("/b.jpg", Reply::Ok("image/jpeg", jpeg(&photo(20, 40)))),
    ]);
    let mut p = pool(2, 8);
    assert!(!readable(p.fd(), Duration::ZERO), "nothing waiting yet");
    let a = p.submit(&s.url("/a.png")).unwrap();
    let b = p.submit(&s.url("/b.jpg")).unwrap();
    let bad = p.submit("ftp://nowhere/").unwrap();
    let done = collect(&mut p, 3);
    let by_id = |id| done.iter().find(|c| c.id == id).unwrap_or_else(|| panic!("no result for {id}"));
    assert_eq!(by_id(a).result.as_ref().unwrap().width, Some(40));
    assert_eq!(by_id(b).result.as_ref().unwrap().height, Some(40));
    let e = by_id(bad).result.as_ref().unwrap_err();
    assert!(matches!(e, Error::Scheme(s) if s == "ftp"), "the error keeps its variant: {e:?}");
    assert_eq!((e.kind(), e.to_string().as_str()), ("refused", "refused: scheme \"ftp\" is not http or https"));
    assert!(!readable(p.fd(), Duration::ZERO), "drain empties the fd");
    assert_eq!(p.close(Duration::from_secs(1)), 0, "idle workers exit at once");
}

#[test]
fn a_full_queue_refuses_and_close_does_not_wait_for_a_hung_fetch() {
    let s = Server::start(vec![("/hang", Reply::Hang), ("/hang2", Reply::Hang), ("/hang3", Reply::Hang)]);
    let mut p = pool(1, 1);
    p.submit(&s.url("/hang")).unwrap(); // taken by the worker
    std::thread::sleep(Duration::from_millis(200));
    p.submit(&s.url("/hang2")).unwrap(); // waits in the queue
    p.submit(&s.url("/hang")).unwrap(); // joins the running job: nothing queued
    assert!(matches!(p.submit(&s.url("/hang3")), Err(Error::QueueFull)));
    let t = Instant::now();
    assert_eq!(p.close(Duration::from_millis(100)), 1, "the hung worker is left to end by itself");
    assert!(t.elapsed() < Duration::from_millis(500));
    assert!(matches!(p.submit(&s.url("/hang")), Err(Error::Closed)));
    assert_eq!(p.close(Duration::ZERO), 0, "close is idempotent");
}

#[test]
fn a_repeated_url_is_answered_from_the_cache() {
    let s = Server::start(vec![("/c.png", Reply::Ok("image/png", png(&photo(30, 30))))]);
    let mut p = pool(1, 4);
    p.submit(&s.url("/c.png")).unwrap();
    let first = collect(&mut p, 1);
    let id = p.submit(&s.url("/c.png")).unwrap();
    // Answered at submit, through the fd like any other completion, without a worker.
    assert!(readable(p.fd(), Duration::ZERO), "a cached result is waiting at once");
    let second = p.drain();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].id, id);
    assert_eq!(second[0].result.as_ref().unwrap(), first[0].result.as_ref().unwrap());
    assert_eq!(s.hits.lock().unwrap().get("/c.png"), Some(&1));
}

#[test]
fn a_url_being_analysed_is_fetched_once_and_every_waiter_gets_the_result() {
    let body = png(&photo(24, 12));
    let s = Server::start(vec![("/slow.png", Reply::Slow(body, Duration::from_micros(300)))]);
    // No cache: only the one job in flight can spare the second and third fetch.
    let mut p = caching(0, Duration::from_secs(3600), Duration::from_secs(60));
    let ids: Vec<u64> = (0..3).map(|_| p.submit(&s.url("/slow.png")).unwrap()).collect();
    let done = collect(&mut p, 3);
    let mut got: Vec<u64> = done.iter().map(|c| c.id).collect();
    got.sort_unstable();
    assert_eq!(got, ids, "one completion per submitted id");
    for c in &done {
        assert_eq!(c.result.as_ref().unwrap().width, Some(24), "job {}", c.id);
        assert!(!c.cached);
    }
    assert_eq!(s.hits.lock().unwrap().get("/slow.png"), Some(&1), "fetched once for three shares");
    // Once it is done, the next share starts a job of its own (there is no cache here).
    p.submit(&s.url("/slow.png")).unwrap();
    assert_eq!(collect(&mut p, 1).len(), 1);
    assert_eq!(s.hits.lock().unwrap().get("/slow.png"), Some(&2));
}

#[test]
fn a_shared_job_stops_only_when_every_waiter_has_given_up() {
    // A body that takes 20 s to arrive, a byte every 5 ms: a cancelled read stops at the next.
    let s = Server::start(vec![("/hang", Reply::Slow(vec![0; 4000], Duration::from_millis(5)))]);
    let mut p = caching(16, Duration::from_secs(3600), Duration::from_secs(60));
    let (a, b) = (p.submit(&s.url("/hang")).unwrap(), p.submit(&s.url("/hang")).unwrap());
    assert!(p.cancel(a));
    std::thread::sleep(Duration::from_millis(300));
    assert!(p.drain().is_empty(), "b still waits: the job goes on");
    assert!(p.cancel(b));
    let done = collect(&mut p, 2);
    assert_eq!(done.len(), 2);
    assert!(done.iter().all(|c| matches!(c.result, Err(Error::Cancelled))), "{done:?}");
    // A cancelled job is not joined: the next share fetches anew.
    let c = p.submit(&s.url("/hang")).unwrap();
    let until = Instant::now() + Duration::from_secs(5);
    while s.hits.lock().unwrap().get("/hang") != Some(&2) {
        assert!(Instant::now() < until, "not fetched again");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(p.cancel(c));
    assert_eq!(collect(&mut p, 1)[0].id, c);
    assert!(!p.cancel(a), "drained: no longer pending");
}

fn caching(cache_size: usize, cache_ttl: Duration, failure_ttl: Duration) -> Pool {
    Pool::new(PoolOptions {
        threads: 1,
        queue_length: 8,
        cache_size,
        cache_ttl,
        failure_ttl,
        analysis: Options { allow_private: true, timeout: Duration::from_secs(5), ..Options::default() },
        ..PoolOptions::default()
    })
    .unwrap()
}

/// Submits `path` and waits for its completion; returns it and the server's count for `path`.
fn analyse(p: &mut Pool, s: &Server, path: &str) -> (Completion, usize) {
    let id = p.submit(&s.url(path)).unwrap();
    let c = collect(p, 1).pop().unwrap_or_else(|| panic!("{path}: no completion"));
    assert_eq!(c.id, id);
    (c, s.hits.lock().unwrap().get(path).copied().unwrap_or(0))
}

#[test]
fn cached_results_expire_after_cache_ttl() {
    let s = Server::start(vec![("/a.png", Reply::Ok("image/png", png(&photo(30, 20))))]);
    let ttl = Duration::from_millis(300);
    let mut p = caching(16, ttl, ttl);
    let (first, hits) = analyse(&mut p, &s, "/a.png");
    assert_eq!((hits, first.cached), (1, false));
    std::thread::sleep(ttl / 2);
    let (hit, hits) = analyse(&mut p, &s, "/a.png");
    assert_eq!((hits, hit.cached, hit.result.unwrap().width), (1, true, Some(30)), "within the TTL: from the cache");
    // Serving it did not renew it: it expires a TTL after it was fetched.
    std::thread::sleep(ttl / 2 + Duration::from_millis(100));
    let (again, hits) = analyse(&mut p, &s, "/a.png");
    assert_eq!((hits, again.cached), (2, false), "past the TTL: fetched again");
    assert_eq!(analyse(&mut p, &s, "/a.png").1, 2, "and cached again");
}

#[test]
fn failures_are_kept_for_the_failure_ttl_only() {
    let s = Server::start(vec![("/ok.png", Reply::Ok("image/png", png(&photo(30, 20))))]);
    let failure_ttl = Duration::from_millis(1500); // long enough for the steps between on a busy machine
    let mut p = caching(16, Duration::from_secs(3600), failure_ttl);
    let (c, hits) = analyse(&mut p, &s, "/missing.png");
    assert_eq!((c.result.unwrap_err().kind(), hits), ("http_status", 1));
    assert_eq!(analyse(&mut p, &s, "/ok.png").1, 1);
    let (c, hits) = analyse(&mut p, &s, "/missing.png");
    assert!(matches!(c.result, Err(Error::Status { status: 404, .. })), "the failure itself is cached");
    assert_eq!(hits, 1, "a failure is cached too");
    std::thread::sleep(failure_ttl + Duration::from_millis(100));
    assert_eq!(analyse(&mut p, &s, "/missing.png").1, 2, "past the failure TTL: fetched again");
    assert_eq!(analyse(&mut p, &s, "/ok.png").1, 1, "a result outlives the failure TTL");
    // The default keeps failures 60 s at most, and never longer than cache_ttl.
    assert_eq!(PoolOptions::default().failure_ttl, Duration::from_secs(60));
    let mut short = caching(16, Duration::from_millis(200), Duration::from_secs(60));
    assert_eq!(analyse(&mut short, &s, "/missing.png").1, 3);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(analyse(&mut short, &s, "/missing.png").1, 4, "cache_ttl below the failure TTL wins");
}

#[test]
fn a_full_cache_drops_its_oldest_entry() {
    let img = || Reply::Ok("image/png", png(&photo(10, 10)));
    let s = Server::start(vec![("/a.png", img()), ("/b.png", img()), ("/c.png", img())]);
    let mut p = caching(2, Duration::from_secs(3600), Duration::from_secs(60));
    for path in ["/a.png", "/b.png", "/c.png"] {
        assert_eq!(analyse(&mut p, &s, path).1, 1);
    }
    assert_eq!(analyse(&mut p, &s, "/c.png").1, 1, "the newest is kept");
    assert_eq!(analyse(&mut p, &s, "/b.png").1, 1, "so is the one before");
    assert_eq!(analyse(&mut p, &s, "/a.png").1, 2, "the oldest was dropped for /c.png");
    // Storing /a.png again dropped the oldest then, /b.png; /c.png stays.
    assert_eq!(analyse(&mut p, &s, "/c.png").1, 1);
    assert_eq!(analyse(&mut p, &s, "/b.png").1, 2);
    // cache_size 0: no cache at all.
    let mut none = caching(0, Duration::from_secs(3600), Duration::from_secs(60));
    assert_eq!(analyse(&mut none, &s, "/c.png").1, 2);
    assert_eq!(analyse(&mut none, &s, "/c.png").1, 3);
}

/// (nice, scheduling policy) of each thread of this process whose name starts with `prefix`.
fn priority_of_threads(prefix: &str) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end().starts_with(prefix) {
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap();
            // After "pid (comm) ", stat(5)'s field n is the (n - 3)th: nice is 19, policy 41.
            let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
            out.push((fields[16].parse().unwrap(), fields[38].parse().unwrap()));
        }
    }
    out
}

#[test]
#[cfg(target_os = "linux")]
fn workers_run_in_the_background_and_the_caller_does_not() {
    let own = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) } as i64;
    let p = pool(3, 4);
    let until = Instant::now() + Duration::from_secs(5);
    let want = ((own + 10).min(19), libc::SCHED_IDLE as i64);
    // Other tests' pools run beside this one: every worker seen must be in the background.
    let mut seen = priority_of_threads("media-meta-");
    while (seen.len() < 3 || seen.iter().any(|&t| t != want)) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
        seen = priority_of_threads("media-meta-");
    }
    assert!(
        seen.len() >= 3 && seen.iter().all(|&t| t == want),
        "worker threads' (nice, policy) {seen:?}, want {want:?} (this thread's nice: {own})"
    );
    assert_eq!(unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) } as i64, own, "the caller's own nice is unchanged");
    assert_eq!(unsafe { libc::sched_getscheduler(0) }, libc::SCHED_OTHER, "the caller's own policy is unchanged");
    drop(p);
}

/// Kernels with lazy preemption leave a woken Prosody waiting for the next tick (4 ms at
/// 250 Hz) behind a worker that stays in user space; every decode path must offer the core
/// on its own (src/background.rs). Counted, not timed: a path without yield points gives 0.
#[test]
fn workers_offer_their_core_while_decoding() {
    use media_metadata::{background, decode::decode, jpeg_dc};
    let (large, small, png) = (jpeg(&photo(2400, 1800)), jpeg(&photo(1200, 900)), png(&photo(1200, 900)));
    type Path = (&'static str, Box<dyn Fn() + Send>);
    let paths: [Path; 3] = [
        // The DC-only scan alone, without the shrink (which has yield points of its own).
        ("DC-only JPEG scan", Box::new(move || assert!(jpeg_dc::decode(&large, u64::MAX).is_some()))),
        (
            "jpeg-decoder",
            Box::new(move || {
                assert!(decode(&small, Format::Jpeg, true, &Options::default()).unwrap().blurhash.is_some())
            }),
        ),
        (
            "image crate (PNG)",
            Box::new(move || assert!(decode(&png, Format::Png, true, &Options::default()).unwrap().blurhash.is_some())),
        ),
    ];
    for (what, run) in &paths {
        run();
        assert_eq!(background::yields(), 0, "{what}: a thread that is not a worker never yields");
    }
    std::thread::spawn(move || {
        background::enter();
        for (what, run) in &paths {
            let (before, t) = (background::yields(), Instant::now());
            let mut runs = 0;
            // Long enough for several yield points, whatever the build's speed.
            while t.elapsed() < 20 * background::YIELD_EVERY {
                run();
                runs += 1;
            }
            let yields = background::yields() - before;
            assert!(yields >= 3, "{what}: {yields} yields in {runs} runs over {:?}", t.elapsed());
        }
    })
    .join()
    .unwrap();
}

/// The reader that puts yield points into decoders we cannot edit: one per 16 KiB read, once
/// `YIELD_EVERY` has passed (the sleeps make sure it has).
#[test]
fn the_yielding_reader_offers_the_core_every_16_kib() {
    use media_metadata::background::{self, Yielding};
    use std::io::Read;
    std::thread::spawn(|| {
        background::enter();
        let data = vec![7u8; 1 << 20];
        let mut reader = Yielding::new(&data[..]);
        let (before, mut buf, mut total) = (background::yields(), [0u8; 4096], 0);
        loop {
            let n = reader.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            total += n;
            std::thread::sleep(background::YIELD_EVERY / 2);
        }
        assert_eq!(total, data.len());
        assert_eq!(background::yields() - before, (data.len() / (16 * 1024)) as u64);
    })
    .join()
    .unwrap();
}

/// The main loop's cost per result at the largest cache (`cache_size = 1048576`): the time
/// `drain` takes per completion while the cache fills, and once it is full and every result
/// stored evicts the oldest. Not a pass/fail test: run it with
/// `cargo test --release --no-default-features --features lua54,vendored --test pool -- --ignored --nocapture drain_time`.
#[test]
#[ignore]
fn drain_time_at_the_largest_cache() {
    const SIZE: usize = 1_048_576;
    const BATCH: usize = 65_536;
    let mut p = Pool::new(PoolOptions {
        threads: 2,
        queue_length: BATCH,
        cache_size: SIZE,
        failure_ttl: Duration::from_secs(3600),
        ..PoolOptions::default()
    })
    .unwrap();
    // Refused at once (a private address), so the workers cost nearly nothing; a failure is
    // cached like a result.
    let mut n = 0u64;
    let mut round = |p: &mut Pool| {
        for _ in 0..BATCH {
            n += 1;
            p.submit(&format!("http://10.0.0.1/{n}/picture-with-a-typical-length.jpg")).unwrap();
        }
        let (mut got, mut spent) = (0, Duration::ZERO);
        while got < BATCH {
            std::thread::sleep(Duration::from_millis(20));
            let t = Instant::now();
            got += p.drain().len();
            spent += t.elapsed();
        }
        spent
    };
    let (mut filling, mut full) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..SIZE / BATCH {
        filling += round(&mut p);
    }
    for _ in 0..4 {
        full += round(&mut p);
    }
    let per = |d: Duration, n: usize| d.as_nanos() as f64 / n as f64;
    println!(
        "drain per result: {:.0} ns while filling to {SIZE}, {:.0} ns when full (each evicts the oldest)",
        per(filling, SIZE),
        per(full, 4 * BATCH)
    );
}

/// A server whose file at every path has ETag `"v1"` and a Last-Modified: a GET with
/// If-None-Match `"v1"` is answered 304; each request head is kept.
fn versioned(body: Vec<u8>, etag: &'static str) -> (RawServer, Arc<Mutex<Vec<String>>>) {
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    let server = RawServer::start(move |mut s| {
        let Some(head) = read_request(&mut s) else { return };
        let unchanged = head.lines().any(|l| l.eq_ignore_ascii_case(&format!("if-none-match: {etag}")));
        seen.lock().unwrap().push(head);
        let validators = format!("ETag: {etag}\r\nLast-Modified: Tue, 01 Dec 2026 10:00:00 GMT\r\n");
        let reply = if unchanged {
            format!("HTTP/1.1 304 Not Modified\r\n{validators}Connection: close\r\n\r\n").into_bytes()
        } else {
            let mut r = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\n{validators}Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .into_bytes();
            r.extend_from_slice(&body);
            r
        };
        let _ = s.write_all(&reply);
    });
    (server, heads)
}

#[test]
fn a_kept_result_is_checked_with_a_conditional_get_that_the_cache_never_answers() {
    let (s, heads) = versioned(png(&photo(40, 20)), "\"v1\"");
    let url = s.url("/a.png");
    let mut p = pool(1, 8);
    // A plain job: the file and the validators to ask with later.
    let plain = p.submit(&url).unwrap();
    let first = collect(&mut p, 1).remove(0);
    assert_eq!(first.id, plain);
    let m = first.result.unwrap();
    assert_eq!((m.width, m.unchanged), (Some(40), false));
    let since = m.validators.clone();
    assert_eq!(since.etag.as_deref(), Some("\"v1\""));
    assert_eq!(since.last_modified.as_deref(), Some("Tue, 01 Dec 2026 10:00:00 GMT"));
    // Unchanged: a 304, no body, nothing else known; the request carried both validators.
    let asked = p.submit_if_changed(&url, since.clone()).unwrap();
    let c = collect(&mut p, 1).remove(0);
    assert_eq!(c.id, asked);
    let m = c.result.unwrap();
    assert!(m.unchanged && m.width.is_none() && m.bytes.is_none(), "{m:?}");
    let head = heads.lock().unwrap()[1].to_ascii_lowercase();
    assert!(head.contains("if-none-match: \"v1\"") && head.contains("if-modified-since: tue, 01 dec 2026"), "{head}");
    // The plain result is in the cache and still answers a plain job, not a conditional one:
    // a stale ETag is sent and the changed file comes back whole.
    let cached = p.submit(&url).unwrap();
    assert!(collect(&mut p, 1).remove(0).cached, "job {cached}");
    let stale = media_metadata::fetch::Validators { etag: Some("\"v0\"".into()), last_modified: None };
    p.submit_if_changed(&url, stale).unwrap();
    let m = collect(&mut p, 1).remove(0).result.unwrap();
    assert_eq!((m.width, m.unchanged), (Some(40), false));
    assert_eq!(heads.lock().unwrap().len(), 3, "the cache answered the plain job only");
}

#[test]
fn a_304_to_a_plain_get_is_an_error_and_odd_validators_are_not_kept() {
    let long = format!("\"{}\"", "x".repeat(300));
    for (etag, kept) in [("\"v1\"", true), ("W/\"v1\"", true), (long.as_str(), false), ("\"a\tb\"", false)] {
        let reply =
            format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nETag: {etag}\r\nContent-Length: 2\r\n\r\nhi");
        let s = RawServer::replying(reply.into_bytes());
        let m = media_metadata::analyze::analyze(&Fetcher::new(local()), &s.url("/t")).unwrap();
        assert_eq!(m.validators.etag.is_some(), kept, "{etag:?}");
    }
    let s = RawServer::replying(b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\n".to_vec());
    let e = media_metadata::analyze::analyze(&Fetcher::new(local()), &s.url("/t")).unwrap_err();
    assert!(e.to_string().contains("304 Not Modified to a GET that was not conditional"), "{e}");
}
