//! The time budget of an analysis (`Options::timeout` from its start, decoding included) and
//! cancelling a job: either stops the work at its next yield point, on a worker or on any
//! other thread, with its own error (`over_budget`, `cancelled`), never as "cannot decode".

mod common;

use std::time::{Duration, Instant};

use common::craft::{png_bomb, PNG_RGBA};
use common::*;
use media_metadata::analyze::analyze;
use media_metadata::background::{self, Budget, Cancel};
use media_metadata::decode::decode;
use media_metadata::error::Error;
use media_metadata::fetch::Fetcher;
use media_metadata::options::{Options, PoolOptions};
use media_metadata::pool::{Completion, Pool};
use media_metadata::sniff::Format;

/// One file per decode path: the DC-only JPEG reader, jpeg-decoder's scaled IDCT, and the
/// image crate's PNG, GIF and WebP decoders (each behind the `Yielding` reader), and the
/// shrink for all of them.
fn every_path() -> Vec<(&'static str, Format, Vec<u8>)> {
    let big = photo(2400, 1800);
    let small = photo(320, 240);
    vec![
        ("DC-only JPEG", Format::Jpeg, jpeg(&big)),
        ("jpeg-decoder", Format::Jpeg, jpeg(&small)),
        ("PNG", Format::Png, png(&small)),
        ("GIF", Format::Gif, encode_as(&small, image::ImageFormat::Gif)),
        ("WebP", Format::WebP, encode_as(&small, image::ImageFormat::WebP)),
    ]
}

#[test]
fn every_decode_path_stops_at_a_spent_budget_or_a_cancel_with_their_own_error() {
    let opts = Options::default();
    for (what, mime, bytes) in every_path() {
        // Control: without a budget (this is not a worker thread) the file decodes.
        assert!(decode(&bytes, mime, true, &opts).unwrap().blurhash.is_some(), "{what}: the file itself");
        {
            let _spent = Budget::start(Duration::ZERO, None);
            match decode(&bytes, mime, true, &opts) {
                Err(Error::OverBudget { limit }) => assert_eq!(limit, Duration::ZERO, "{what}"),
                other => panic!("{what}: expected the budget's error, got {other:?}"),
            }
        }
        {
            let cancel = Cancel::default();
            let _budget = Budget::start(Duration::from_secs(60), Some(cancel.clone()));
            assert!(decode(&bytes, mime, true, &opts).is_ok(), "{what}: a budget not spent changes nothing");
            cancel.cancel();
            match decode(&bytes, mime, true, &opts) {
                Err(e @ Error::Cancelled) => assert_eq!(e.kind(), "cancelled"),
                other => panic!("{what}: expected Cancelled, got {other:?}"),
            }
        }
        // The budget ends with its guard: the same thread decodes again.
        assert!(background::check().is_ok());
        assert!(decode(&bytes, mime, true, &opts).is_ok(), "{what}: after the budget");
    }
}

#[test]
fn budgets_nest_and_restore() {
    let outer = Budget::start(Duration::from_secs(60), None);
    {
        let _inner = Budget::start(Duration::ZERO, None);
        assert!(matches!(background::check(), Err(Error::OverBudget { .. })));
    }
    assert!(background::check().is_ok(), "the outer budget is back");
    drop(outer);
    assert!(background::check().is_ok());
}

/// A 7000 x 7000 16-bit RGBA PNG (49 MP, within max_pixels) of zeros in a deflate bomb: under
/// 1 MB to fetch, 392 MB to inflate and shrink (seconds in a debug build, so a budget of a
/// quarter of a second stops it far from its end even on a fast machine).
fn slow_png() -> Vec<u8> {
    png_bomb(7000, 7000, 16, PNG_RGBA, false)
}

/// How long decoding `slow_png` takes without a budget here, estimated from a picture of a
/// sixteenth of its pixels (decoding is linear in them), so the test proves that the budget
/// stopped the work well before it would have ended, in any build, without paying for it.
fn slow_png_decode_time() -> Duration {
    let sixteenth = png_bomb(1750, 1750, 16, PNG_RGBA, false);
    let t = Instant::now();
    assert!(decode(&sixteenth, Format::Png, true, &Options::default()).unwrap().blurhash.is_some());
    t.elapsed() * 16
}

#[test]
fn an_analysis_over_its_budget_stops_promptly_with_the_budget_error() {
    let body = slow_png();
    let s = Server::start(vec![("/slow.png", Reply::Ok("image/png", body.clone()))]);
    let budget = Duration::from_millis(250);
    let opts = Options { allow_private: true, timeout: budget, ..Options::default() };
    // Not a worker thread: analyze() sets the budget itself (tools and analyze() from Lua).
    let t = Instant::now();
    let r = analyze(&Fetcher::new(opts), &s.url("/slow.png"));
    let took = t.elapsed();
    let whole = slow_png_decode_time();
    eprintln!("measured: over budget after {took:?} (budget {budget:?}; the whole decode: about {whole:?})");
    // Cut short, it keeps what was known before the decode: size, type, dimensions.
    match &r {
        Ok(m) => {
            assert_eq!(
                (m.mime.as_deref(), m.blurhash.as_deref(), m.error_kind),
                (Some("image/png"), None, Some("over_budget"))
            );
            assert!(m.bytes.is_some() && m.width.is_some(), "{m:?}");
            assert_eq!(m.note.as_deref(), Some("analysis stopped: over its time budget of 0.25s: no blurhash"));
        }
        other => panic!("expected what is known and the budget's error, got {other:?}"),
    }
    assert_eq!(s.hits.lock().unwrap().get("/slow.png"), Some(&1), "fetched once, within the budget");
    assert!(took >= budget, "stopped at {took:?}, before its budget");
    assert!(took < budget + Duration::from_millis(500), "stopped {took:?} after starting (budget {budget:?})");
    assert!(
        whole > 4 * took,
        "the whole decode ({whole:?}) must be far longer than the budget for this to mean anything"
    );
}

fn pool(threads: usize, timeout: Duration) -> Waiting {
    let pool = Pool::new(PoolOptions {
        threads,
        queue_length: 4,
        analysis: Options { allow_private: true, timeout, ..Options::default() },
        ..PoolOptions::default()
    })
    .unwrap();
    Waiting { pool, done: Vec::new() }
}

/// A pool and the completions drained from it that no test has asked for yet.
struct Waiting {
    pool: Pool,
    done: Vec<Completion>,
}

impl Waiting {
    /// Drains until job `id` has completed and returns its completion.
    fn wait_for(&mut self, id: u64, within: Duration) -> Completion {
        let until = Instant::now() + within;
        loop {
            self.done.extend(self.pool.drain());
            if let Some(at) = self.done.iter().position(|c| c.id == id) {
                return self.done.remove(at);
            }
            assert!(Instant::now() < until, "job {id}: no completion within {within:?}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

#[test]
fn a_worker_over_its_budget_fails_that_url_and_takes_the_next() {
    let s = Server::start(vec![
        ("/slow.png", Reply::Ok("image/png", slow_png())),
        ("/ok.png", Reply::Ok("image/png", png(&photo(40, 30)))),
    ]);
    let mut p = pool(1, Duration::from_millis(300));
    let t = Instant::now();
    let slow = p.pool.submit(&s.url("/slow.png")).unwrap();
    let next = p.pool.submit(&s.url("/ok.png")).unwrap();
    let c = p.wait_for(slow, Duration::from_secs(5));
    let took = t.elapsed();
    let over = |r: &Result<media_metadata::analyze::Metadata, Error>| {
        r.as_ref().is_ok_and(|m| m.error_kind == Some("over_budget") && m.blurhash.is_none())
    };
    assert!(over(&c.result), "{:?}", c.result);
    assert!(took < Duration::from_millis(300 + 500), "{took:?}");
    assert_eq!(p.wait_for(next, Duration::from_secs(5)).result.unwrap().width, Some(40));
    // A failure over the budget is cached like any other failure (for at most a minute).
    let again = p.pool.submit(&s.url("/slow.png")).unwrap();
    assert!(over(&p.wait_for(again, Duration::from_secs(1)).result));
    assert_eq!(s.hits.lock().unwrap().get("/slow.png"), Some(&1));
}

#[test]
fn a_running_job_cancelled_stops_at_its_next_yield_point_and_is_not_cached() {
    let s = Server::start(vec![("/slow.png", Reply::Ok("image/png", slow_png()))]);
    let mut p = pool(1, Duration::from_secs(60));
    let id = p.pool.submit(&s.url("/slow.png")).unwrap();
    // Wait for the fetch to have happened: the worker is decoding (or reading the body).
    let until = Instant::now() + Duration::from_secs(5);
    while s.hits.lock().unwrap().get("/slow.png").is_none() {
        assert!(Instant::now() < until, "the worker never fetched");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(50));
    let t = Instant::now();
    assert!(p.pool.cancel(id), "a running job can be cancelled");
    let c = p.wait_for(id, Duration::from_secs(10));
    let took = t.elapsed();
    let whole = slow_png_decode_time();
    eprintln!("measured: cancelled after {took:?} (the whole decode: about {whole:?})");
    assert!(matches!(&c.result, Err(e @ Error::Cancelled) if e.kind() == "cancelled"), "{:?}", c.result);
    assert!(took < Duration::from_millis(300), "{took:?} from cancel to completion");
    assert!(whole > 4 * took, "the whole decode ({whole:?}) must be far longer for this to mean anything");
    assert!(!p.pool.cancel(id), "a drained job is no longer pending");
    assert!(!p.pool.cancel(9999), "an unknown id");
    // A cancelled job says nothing about its URL: the next submit fetches it again.
    let again = p.pool.submit(&s.url("/slow.png")).unwrap();
    while s.hits.lock().unwrap().get("/slow.png") == Some(&1) {
        assert!(Instant::now() < until + Duration::from_secs(5), "not fetched again");
        std::thread::sleep(Duration::from_millis(5));
    }
    // Closing cancels it too: the worker exits within the grace, not after the whole decode.
    let t = Instant::now();
    assert_eq!(p.pool.close(Duration::from_secs(5)), 0, "the worker is still running after close");
    assert!(t.elapsed() < Duration::from_millis(500), "close took {:?}", t.elapsed());
    let _ = again;
}

#[test]
fn a_queued_job_cancelled_never_starts() {
    let s = Server::start(vec![("/hang", Reply::Hang), ("/ok.png", Reply::Ok("image/png", png(&photo(8, 8))))]);
    let mut p = pool(1, Duration::from_millis(500));
    let hung = p.pool.submit(&s.url("/hang")).unwrap(); // the worker waits on it for its timeout
    std::thread::sleep(Duration::from_millis(100));
    let queued = p.pool.submit(&s.url("/ok.png")).unwrap();
    assert!(p.pool.cancel(queued));
    let c = p.wait_for(queued, Duration::from_secs(5));
    assert!(matches!(c.result, Err(Error::Cancelled)), "{:?}", c.result);
    assert!(matches!(p.wait_for(hung, Duration::from_secs(5)).result, Err(Error::Timeout { .. })));
    assert_eq!(s.hits.lock().unwrap().get("/ok.png"), None, "the cancelled job was fetched");
}
