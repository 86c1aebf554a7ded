//! Servers that misbehave on purpose. Each fetch ends within its time limit and its byte
//! limit, with an error that names what went wrong.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use common::craft::gzip_stored;
use common::hostile::{read_request, reset, swallow, RawServer};
use common::*;
use media_metadata::analyze::{analyze, Metadata};
use media_metadata::error::Error;
use media_metadata::fetch::{Fetcher, Lookup};
use media_metadata::options::{Formats, Options};
use media_metadata::resolve::MAX_LOOKUPS;

fn local() -> Options {
    Options { allow_private: true, ..Options::default() }
}

fn run(url: &str, opts: Options) -> Result<Metadata, Error> {
    analyze(&Fetcher::new(opts), url)
}

/// Runs `url` and returns the outcome and how long it took.
fn timed(url: &str, opts: Options) -> (Result<Metadata, Error>, Duration) {
    let t = Instant::now();
    let r = run(url, opts);
    (r, t.elapsed())
}

fn head(status: &str, headers: &[&str]) -> Vec<u8> {
    let mut h = format!("HTTP/1.1 {status}\r\n");
    for line in headers {
        h.push_str(line);
        h.push_str("\r\n");
    }
    h.push_str("\r\n");
    h.into_bytes()
}

fn write_slowly(s: &mut TcpStream, bytes: &[u8], every: Duration) -> std::io::Result<()> {
    for b in bytes {
        s.write_all(&[*b])?;
        s.flush()?;
        std::thread::sleep(every);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Time

/// A byte a second never trips a per-read timeout of more than a second: only the deadline
/// on the whole fetch stops it.
#[test]
fn one_byte_a_second_is_stopped_by_the_total_deadline() {
    let img = png(&photo(32, 32));
    let in_headers = RawServer::start(|mut s| {
        if read_request(&mut s).is_some() {
            let _ = write_slowly(
                &mut s,
                b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 100\r\n\r\n",
                Duration::from_secs(1),
            );
        }
    });
    let in_body = RawServer::start(move |mut s| {
        if read_request(&mut s).is_some() {
            let _ =
                s.write_all(&head("200 OK", &["Content-Type: image/png", &format!("Content-Length: {}", img.len())]));
            let _ = write_slowly(&mut s, &img, Duration::from_secs(1));
        }
    });
    let opts = Options { timeout: Duration::from_millis(2500), ..local() };

    let (r, took) = timed(&in_headers.url("/slow-headers.png"), opts.clone());
    assert!(matches!(r, Err(Error::Timeout { phase: "waiting for the response", .. })), "{r:?}");
    assert!(took < Duration::from_millis(3500), "{took:?}");
    assert_eq!(r.unwrap_err().to_string(), "waiting for the response timed out (limit 2.5s)");

    let (r, took) = timed(&in_body.url("/slow-body.png"), opts);
    assert!(matches!(r, Err(Error::Timeout { phase: "reading the body", .. })), "{r:?}");
    assert!(took < Duration::from_millis(3500), "{took:?}");
}

/// Redirects spend the same budget: a slow hop leaves less time for the next one.
#[test]
fn redirects_share_one_deadline() {
    let target = RawServer::start(|mut s| {
        if read_request(&mut s).is_some() {
            std::thread::sleep(Duration::from_secs(30));
        }
    });
    let location = target.url("/hang");
    let slow_hop = RawServer::start(move |mut s| {
        if read_request(&mut s).is_some() {
            std::thread::sleep(Duration::from_millis(900));
            let _ = s.write_all(&head(
                "302 Found",
                &[&format!("Location: {location}"), "Content-Length: 0", "Connection: close"],
            ));
        }
    });
    let (r, took) = timed(&slow_hop.url("/r"), Options { timeout: Duration::from_millis(1500), ..local() });
    assert!(matches!(r, Err(Error::Timeout { .. })), "{r:?}");
    assert!(took < Duration::from_millis(2300), "the deadline was restarted at the redirect: {took:?}");
    assert_eq!(target.accepted(), 1);
}

#[test]
fn a_tls_handshake_that_stalls_times_out() {
    // Accepts the TCP connection, reads the ClientHello, never answers.
    let silent = RawServer::start(|s| swallow(s, Duration::from_secs(30)));
    let opts =
        Options { timeout: Duration::from_millis(1200), allow_hosts: vec!["localhost".into()], ..Options::default() };
    let (r, took) = timed(&format!("https://localhost:{}/p.png", silent.port), opts);
    assert!(matches!(r, Err(Error::Timeout { .. })), "{r:?}");
    assert!(took < Duration::from_millis(2200), "{took:?}");
    assert_eq!(silent.accepted(), 1);

    // A server that answers a ClientHello with plain HTTP is an error at once.
    let plain = RawServer::replying(head("400 Bad Request", &["Content-Length: 0"]));
    let (r, took) = timed(&format!("https://127.0.0.1:{}/", plain.port), local());
    assert!(matches!(&r, Err(Error::Fetch { why, .. }) if why.contains("tls") || why.contains("TLS")), "{r:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
}

/// A server that answers every request with an 8x8 PNG.
fn small_png_server() -> RawServer {
    let img = png(&photo(8, 8));
    RawServer::start(move |mut s| {
        if read_request(&mut s).is_some() {
            let _ = s.write_all(&head(
                "200 OK",
                &["Content-Type: image/png", &format!("Content-Length: {}", img.len()), "Connection: close"],
            ));
            let _ = s.write_all(&img);
        }
    })
}

/// A lookup that answers `addr` for every name after `delay`: a name server that is slow, or
/// (for long delays) one that never answers, which holds getaddrinfo for as long as
/// resolv.conf's timeouts and attempts add up to.
fn answering_after(delay: Duration, addr: SocketAddr) -> Lookup {
    Arc::new(move |_| {
        std::thread::sleep(delay);
        Ok(vec![addr])
    })
}

/// ureq 2 resolves synchronously: the fetch waits for the name only as long as its time
/// allows, its deadline or its connect timeout (ureq counts the lookup in it), whichever
/// ends first.
#[test]
fn a_name_server_that_never_answers_is_given_up_on_within_the_fetch_time() {
    let server = small_png_server();
    let url = format!("http://media.test:{}/p.png", server.port);
    let silent = answering_after(Duration::from_secs(20), server.addr());
    for (timeout, connect_timeout, limit) in [(1000, 5000, 1000), (20_000, 800, 800)] {
        let opts = Options {
            timeout: Duration::from_millis(timeout),
            connect_timeout: Duration::from_millis(connect_timeout),
            ..local()
        };
        let limit = Duration::from_millis(limit);
        let t = Instant::now();
        let r = analyze(&Fetcher::with_lookup(opts, silent.clone()), &url);
        let took = t.elapsed();
        match &r {
            Err(e @ Error::Timeout { phase: "resolving the host name", limit: l }) => {
                assert_eq!(*l, limit);
                assert_eq!(e.kind(), "timeout");
                assert_eq!(e.to_string(), format!("resolving the host name timed out (limit {}s)", l.as_secs_f64()));
            }
            other => panic!("limit {limit:?}: expected a timeout while resolving, got {other:?}"),
        }
        assert!(took >= limit && took < limit * 3 / 2, "limit {limit:?}: gave up after {took:?}");
    }
    assert_eq!(server.accepted(), 0, "an answer that came too late was used");

    // Control: a name that answers within the time leads to the server.
    let opts = Options { timeout: Duration::from_secs(5), ..local() };
    let m = analyze(&Fetcher::with_lookup(opts, answering_after(Duration::from_millis(300), server.addr())), &url);
    assert_eq!((m.unwrap().width, server.accepted()), (Some(8), 1));
}

/// Each lookup given up on goes on in a thread until getaddrinfo returns: at most
/// `MAX_LOOKUPS` per client, so a flood of names that never resolve cannot pile up threads.
#[test]
fn lookups_that_hang_are_bounded_in_number() {
    let server = small_png_server();
    let started = Arc::new(AtomicUsize::new(0));
    let released = Arc::new((Mutex::new(false), Condvar::new()));
    let lookup: Lookup = {
        let (started, released, addr) = (started.clone(), released.clone(), server.addr());
        Arc::new(move |_| {
            started.fetch_add(1, Ordering::SeqCst);
            let (lock, freed) = &*released;
            let guard = lock.lock().unwrap();
            drop(freed.wait_timeout_while(guard, Duration::from_secs(60), |r| !*r).unwrap());
            Ok(vec![addr])
        })
    };
    let timeout = Duration::from_millis(400);
    let fetcher = Fetcher::with_lookup(Options { timeout, ..local() }, lookup);
    let url = |i: usize| format!("http://n{i}.test:{}/p.png", server.port);
    std::thread::scope(|s| {
        let (fetcher, url) = (&fetcher, &url);
        let fetches: Vec<_> = (0..MAX_LOOKUPS).map(|i| s.spawn(move || fetcher.get(&url(i)))).collect();
        for f in fetches {
            let r = f.join().unwrap();
            assert!(matches!(r, Err(Error::Timeout { phase: "resolving the host name", .. })), "{r:?}");
        }
    });
    assert_eq!(started.load(Ordering::SeqCst), MAX_LOOKUPS);

    // All slots are held by lookups that hang: the next name waits for one until its time is up.
    let t = Instant::now();
    let r = fetcher.get(&url(MAX_LOOKUPS));
    let took = t.elapsed();
    match &r {
        Err(e @ Error::Resolve { host, why }) => {
            assert_eq!(host, &format!("n{MAX_LOOKUPS}.test"));
            assert!(why.contains(&format!("{MAX_LOOKUPS} earlier lookups are still running")), "{e}");
        }
        other => panic!("expected a refusal to start another lookup, got {other:?}"),
    }
    assert!(took >= timeout && took < timeout * 2, "{took:?}");
    assert_eq!(started.load(Ordering::SeqCst), MAX_LOOKUPS, "a lookup was started over the bound");

    // Once they return, their slots are free again.
    *released.0.lock().unwrap() = true;
    released.1.notify_all();
    let body = fetcher.get(&url(0)).unwrap();
    assert_eq!((body.complete, server.accepted()), (true, 1));
}

// ---------------------------------------------------------------------------------------
// Size

/// An image body without end: read up to max_bytes, then described from its head.
#[test]
fn a_body_that_never_ends_is_cut_at_max_bytes() {
    let endless = |chunked: bool| {
        RawServer::start(move |mut s| {
            if read_request(&mut s).is_none() {
                return;
            }
            let png = png(&photo(64, 64));
            let te = if chunked { "Transfer-Encoding: chunked" } else { "X-Body: endless" };
            let _ = (|| -> std::io::Result<()> {
                s.write_all(&head("200 OK", &["Content-Type: image/png", te]))?;
                let frame = |b: &[u8]| {
                    if chunked {
                        [format!("{:x}\r\n", b.len()).as_bytes(), b, b"\r\n"].concat()
                    } else {
                        b.to_vec()
                    }
                };
                s.write_all(&frame(&png[..png.len() / 2]))?;
                let zeros = frame(&[0u8; 64 * 1024]);
                loop {
                    s.write_all(&zeros)?;
                }
            })();
        })
    };
    for chunked in [false, true] {
        let server = endless(chunked);
        for max_bytes in [1024 * 1024, Options::default().max_bytes] {
            let opts = Options { max_bytes, ..local() };
            let t = Instant::now();
            let body = Fetcher::new(opts.clone()).get(&server.url("/endless.png")).unwrap();
            assert!(!body.complete, "chunked {chunked}");
            assert_eq!(body.data.len() as u64, max_bytes, "chunked {chunked}: kept more or less than max_bytes");
            assert!(body.data.capacity() as u64 <= max_bytes + 64 * 1024 + 1, "capacity {}", body.data.capacity());
            let m = run(&server.url("/endless.png"), opts).unwrap();
            assert_eq!((m.mime.as_deref(), m.bytes, m.blurhash), (Some("image/png"), None, None));
            assert_eq!((m.width, m.height), (Some(64), Some(64)), "the header is still reported");
            assert!(m.note.as_deref().unwrap_or_default().contains("max_bytes"), "{:?}", m.note);
            assert!(t.elapsed() < Duration::from_secs(10), "chunked {chunked}, {max_bytes}: {:?}", t.elapsed());
        }
    }
}

/// Something that is neither a picture nor a container is not read past its first bytes, however long it is,
/// unless hashes are wanted: then on to max_bytes + 1 through the hasher, nothing kept, and
/// no hash because it never ended.
#[test]
fn a_body_that_never_ends_and_is_not_probed_stops_after_the_head() {
    let server = RawServer::start(|mut s| {
        if read_request(&mut s).is_some() {
            let _ = s.write_all(&head("200 OK", &["Content-Type: application/pdf"]));
            let _ = s.write_all(b"%PDF-1.7\n");
            let zeros = [0u8; 64 * 1024];
            while s.write_all(&zeros).is_ok() {}
        }
    });
    let metadata_only = Options { formats: Formats { metadata: true, sfs: false, sims: false }, ..local() };
    let with_hashes = Options { max_bytes: 4 << 20, ..local() };
    for opts in [metadata_only, with_hashes] {
        let t = Instant::now();
        let body = Fetcher::new(opts.clone()).get(&server.url("/v.pdf")).unwrap();
        assert!(!body.complete && body.data.len() <= 64 * 1024 + 1, "{}", body.data.len());
        assert_eq!((body.length, body.sha256), (None, None));
        let m = run(&server.url("/v.pdf"), opts.clone()).unwrap();
        assert_eq!((m.mime.as_deref(), m.bytes, m.width, m.sha256), (Some("application/pdf"), None, None, None));
        let note = m.note.unwrap_or_default();
        assert_eq!(note.contains("max_bytes"), opts.formats.files(), "{note}");
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    }
}

/// Sends a response head of about 1 MiB in the given shape, then a small image.
fn header_flood(shape: &'static str) -> RawServer {
    RawServer::start(move |mut s| {
        if read_request(&mut s).is_none() {
            return;
        }
        let img = png(&photo(8, 8));
        let mut h = b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\n".to_vec();
        let mib = 1024 * 1024;
        match shape {
            "one line" => h.extend(format!("X-Big: {}\r\n", "a".repeat(mib)).into_bytes()),
            "many lines" => {
                (0..mib / 64).for_each(|i| h.extend(format!("X-H{i:05}: {}\r\n", "b".repeat(52)).into_bytes()))
            }
            "few long lines" => {
                (0..11).for_each(|i| h.extend(format!("X-L{i:02}: {}\r\n", "c".repeat(96 * 1024)).into_bytes()))
            }
            "status line" => h = format!("HTTP/1.1 200 {}\r\n", "d".repeat(mib)).into_bytes(),
            _ => unreachable!(),
        }
        h.extend(format!("Content-Length: {}\r\n\r\n", img.len()).into_bytes());
        let _ = s.write_all(&h).and_then(|_| s.write_all(&img));
    })
}

#[test]
fn a_megabyte_of_headers_is_refused() {
    for shape in ["one line", "many lines", "status line"] {
        let s = header_flood(shape);
        let (r, took) = timed(&s.url("/h.png"), local());
        match &r {
            Err(Error::TooLarge { why, .. }) => {
                assert!(why.to_lowercase().contains("header") || why.contains("status"), "{shape}: {why}")
            }
            other => panic!("{shape}: expected a refusal of the headers as too large, got {other:?}"),
        }
        assert!(took < Duration::from_secs(3), "{shape}: {took:?}");
    }
}

#[test]
fn a_megabyte_of_headers_in_a_few_long_lines_is_refused() {
    let s = header_flood("few long lines");
    let r = run(&s.url("/h.png"), local());
    assert!(
        matches!(&r, Err(e @ Error::TooLarge { why, .. }) if why.contains("header") && e.kind() == "too_large"),
        "{r:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Encoding and framing

/// Serves `body` with these extra header lines, recording the request head.
fn serving(extra: Vec<String>, body: Vec<u8>, seen: Arc<Mutex<Vec<String>>>) -> RawServer {
    RawServer::start(move |mut s| {
        let Some(req) = read_request(&mut s) else { return };
        seen.lock().unwrap().push(req);
        let mut lines: Vec<String> = vec![
            "Content-Type: image/png".into(),
            format!("Content-Length: {}", body.len()),
            "Connection: close".into(),
        ];
        lines.extend(extra.iter().cloned());
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let _ = s.write_all(&head("200 OK", &refs)).and_then(|_| s.write_all(&body));
    })
}

#[test]
fn a_compressed_body_is_refused_though_identity_was_asked_for() {
    let img = png(&photo(16, 16));
    let seen = Arc::new(Mutex::new(Vec::new()));
    for enc in
        ["gzip", "GZIP", "x-gzip", "deflate", "br", "zstd", "compress", "identity, gzip", "gzip, identity", " gzip "]
    {
        let s = serving(vec![format!("Content-Encoding: {enc}")], gzip_stored(&img), seen.clone());
        match run(&s.url("/z.png"), local()) {
            Err(ref e @ Error::BadResponse { ref why, .. }) => {
                assert!(why.contains("-encoded body") && why.contains(enc.trim()), "{enc}: {why}");
                assert_eq!(e.kind(), "bad_response");
            }
            other => panic!("Content-Encoding {enc}: expected a refusal, got {other:?}"),
        }
    }
    for req in seen.lock().unwrap().iter() {
        assert!(
            req.to_ascii_lowercase().contains("\r\naccept-encoding: identity\r\n"),
            "request without identity:\n{req}"
        );
    }
    // Control: identity, said out loud, is fine.
    let s = serving(vec!["Content-Encoding: identity".into()], img.clone(), seen.clone());
    assert_eq!(run(&s.url("/i.png"), local()).unwrap().width, Some(16));
}

#[test]
fn a_second_content_encoding_header_is_not_overlooked() {
    let img = png(&photo(16, 16));
    let s = serving(
        vec!["Content-Encoding: identity".into(), "Content-Encoding: gzip".into()],
        gzip_stored(&img),
        Arc::default(),
    );
    let r = run(&s.url("/z.png"), local());
    assert!(matches!(&r, Err(Error::BadResponse { why, .. }) if why.contains("gzip")), "{r:?}");
}

/// `body` in chunks of `size` bytes, with the last chunk and no trailers.
fn chunked(body: &[u8], size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for c in body.chunks(size) {
        out.extend(format!("{:x}\r\n", c.len()).into_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// Sends `status_line` and `headers`, then `body` verbatim, and closes.
fn raw_reply(status_line: &str, headers: &[&str], body: &[u8]) -> RawServer {
    let mut reply = head(status_line, headers);
    reply.extend_from_slice(body);
    RawServer::replying(reply)
}

/// RFC 9112 6.3: Transfer-Encoding wins over Content-Length, which must be ignored. ureq 2
/// reads such a body chunked; `bytes` is then the length of what was read, whatever the
/// Content-Length says, and a huge one does not stop the body from being read either.
#[test]
fn with_transfer_encoding_chunked_the_content_length_is_ignored() {
    let img = png(&photo(48, 32));
    let body = chunked(&img, 1000);
    for claimed in ["100", "999999999999", "-1", "x"] {
        for te_first in [true, false] {
            let (te, cl) = ("Transfer-Encoding: chunked".to_owned(), format!("Content-Length: {claimed}"));
            let lines = if te_first { [&te, &cl] } else { [&cl, &te] };
            let s = raw_reply("200 OK", &["Content-Type: image/png", lines[0], lines[1], "Connection: close"], &body);
            let b = Fetcher::new(local()).get(&s.url("/te.png")).unwrap();
            assert_eq!((b.content_length, b.complete), (None, true), "Content-Length: {claimed}");
            assert_eq!(b.data, img, "Content-Length: {claimed}: the body was not read chunked");
            let m = run(&s.url("/te.png"), local()).unwrap();
            assert_eq!(m.bytes, Some(img.len() as u64), "Content-Length: {claimed}, TE first {te_first}");
            assert_eq!((m.width, m.height), (Some(48), Some(32)));
            assert!(m.blurhash.is_some(), "Content-Length: {claimed}: {:?}", m.note);
        }
    }
    // Control: without Transfer-Encoding the same Content-Length is the body's length.
    let s = raw_reply("200 OK", &["Content-Type: image/png", "Content-Length: 100", "Connection: close"], &img);
    let b = Fetcher::new(local()).get(&s.url("/cl.png")).unwrap();
    assert_eq!((b.content_length, b.data.len()), (Some(100), 100));
}

/// Chunked is the only transfer coding read; any other would be described as what it encodes.
#[test]
fn a_transfer_coding_other_than_chunked_or_in_http_1_0_is_refused() {
    let img = png(&photo(16, 16));
    for te in ["gzip, chunked", "chunked, gzip", "identity", "deflate"] {
        let s = raw_reply(
            "200 OK",
            &["Content-Type: image/png", &format!("Transfer-Encoding: {te}"), "Connection: close"],
            &chunked(&gzip_stored(&img), 1000),
        );
        match run(&s.url("/z.png"), local()) {
            Err(ref e @ Error::BadResponse { ref why, .. }) => {
                assert!(why.contains("transfer-coded with") && why.contains("only chunked"), "{te}: {why}");
                assert_eq!(e.kind(), "bad_response");
            }
            other => panic!("Transfer-Encoding {te}: expected a refusal, got {other:?}"),
        }
    }
    // HTTP/1.0 has no chunked coding: ureq 2 would hand over the chunk framing as the body.
    let mut reply = b"HTTP/1.0 200 OK\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    reply.extend(chunked(&img, 1000));
    let s = RawServer::replying(reply);
    let r = run(&s.url("/old.png"), local());
    assert!(matches!(&r, Err(Error::BadResponse { why, .. }) if why.contains("HTTP/1.0")), "{r:?}");
    // Control: chunked alone, in any case, is read.
    let s = raw_reply("200 OK", &["Content-Type: image/png", "Transfer-Encoding: Chunked"], &chunked(&img, 1000));
    assert_eq!(run(&s.url("/c.png"), local()).unwrap().width, Some(16));
}

/// A PNG of several times the 64 KiB head: it is decoded as it arrives, not read whole first.
fn streamed_png() -> Vec<u8> {
    // Noise, which deflate cannot shrink.
    let mut state = 0x2545_f491u32;
    let noise: Vec<u8> = (0..400 * 300 * 3)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 24) as u8
        })
        .collect();
    let img = encode_png(&noise, 400, 300, image::ExtendedColorType::Rgb8);
    assert!(img.len() > 4 * 64 * 1024, "{}", img.len());
    img
}

/// A photo large enough (a long side of 2048 px) to be read at 1/8 scale, so it goes through
/// the DC reader as it arrives, and several times the 64 KiB head.
fn streamed_jpeg() -> Vec<u8> {
    let img = jpeg(&photo(2048, 1536));
    assert!(img.len() > 4 * 64 * 1024, "{}", img.len());
    img
}

#[test]
fn a_content_length_larger_than_the_body_is_an_error() {
    for img in [png(&photo(32, 32)), streamed_png(), streamed_jpeg()] {
        a_short_body_is_an_error(img);
    }
}

/// A JPEG the server sends whole as far as it has it (its Content-Length true), cut inside its
/// scans: what was known before the pixels stays (size, type, dimensions from the frame
/// header), the error is named, and there is no blurhash, as for a file read whole.
#[test]
fn a_jpeg_cut_inside_its_scans_keeps_its_size_type_and_dimensions() {
    let img = streamed_jpeg();
    let cut = img[..img.len() * 2 / 3].to_vec();
    let len = cut.len();
    let s = Server::start(vec![("/cut.jpg", Reply::Ok("image/jpeg", cut))]);
    let m = run(&s.url("/cut.jpg"), local()).unwrap();
    assert_eq!((m.bytes, m.mime.as_deref()), (Some(len as u64), Some("image/jpeg")));
    assert_eq!((m.width, m.height, m.blurhash.as_deref()), (Some(2048), Some(1536), None));
    assert_eq!(m.error_kind, Some("undecodable"), "{m:?}");
    assert!(m.note.as_deref().is_some_and(|n| n.contains("the file ends inside its scans")), "{m:?}");
    // Whole, the same file is read to the end.
    let s = Server::start(vec![("/whole.jpg", Reply::Ok("image/jpeg", img))]);
    assert!(run(&s.url("/whole.jpg"), local()).unwrap().blurhash.is_some());
}

fn a_short_body_is_an_error(img: Vec<u8>) {
    let short = img[..img.len() / 2].to_vec();
    // Claims the whole image, sends half, closes.
    let lying = {
        let (short, len) = (short.clone(), img.len());
        RawServer::start(move |mut s| {
            if read_request(&mut s).is_some() {
                let _ = s.write_all(&head(
                    "200 OK",
                    &["Content-Type: image/png", &format!("Content-Length: {len}"), "Connection: close"],
                ));
                let _ = s.write_all(&short);
            }
        })
    };
    let (r, took) = timed(&lying.url("/short.png"), local());
    match &r {
        Err(Error::Fetch { why, .. }) => {
            assert!(why.contains("reading the body") && why.contains("closed before"), "{why}")
        }
        other => panic!("expected a fetch error for the short body, got {other:?}"),
    }
    assert!(took < Duration::from_secs(2), "{took:?}");

    // The same, then keeps the connection open: it stops mid-row (past the head when the
    // picture is decoded as it arrives).
    let len = img.len();
    let stalls = RawServer::start(move |mut s| {
        if read_request(&mut s).is_some() {
            let _ = s.write_all(&head("200 OK", &["Content-Type: image/png", &format!("Content-Length: {len}")]));
            let _ = s.write_all(&short);
            std::thread::sleep(Duration::from_secs(30));
        }
    });
    let (r, took) = timed(&stalls.url("/stall.png"), Options { timeout: Duration::from_millis(1000), ..local() });
    assert!(matches!(r, Err(Error::Timeout { phase: "reading the body", .. })), "{r:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[test]
fn a_content_length_smaller_than_the_body_reads_no_further() {
    let img = png(&photo(32, 32));
    let cut = 100;
    for close in [true, false] {
        let body = img.clone();
        let s = RawServer::start(move |mut s| {
            if read_request(&mut s).is_some() {
                let conn = if close { "Connection: close" } else { "Connection: keep-alive" };
                let _ =
                    s.write_all(&head("200 OK", &["Content-Type: image/png", &format!("Content-Length: {cut}"), conn]));
                let _ = s.write_all(&body);
                if !close {
                    std::thread::sleep(Duration::from_secs(30)); // a read past the length would hang
                }
            }
        });
        // (A fresh client each time: this server never answers a second request on a kept-alive
        // connection, whose unread rest of the body a pooled connection would start with.)
        let fetcher = || Fetcher::new(Options { timeout: Duration::from_secs(2), ..local() });
        let t = Instant::now();
        let b = fetcher().get(&s.url("/long.png")).unwrap();
        assert_eq!((b.data.len(), b.complete, b.content_length), (cut, true, Some(cut as u64)), "close {close}");
        assert_eq!(b.data, img[..cut]);
        // The first `cut` bytes are a truncated PNG: a decode error naming the format, and what
        // was known before it (the size the server gave, the type).
        match analyze(&fetcher(), &s.url("/long.png")) {
            Ok(m) if m.error_kind == Some("undecodable") => {
                assert_eq!(
                    (m.bytes, m.mime.as_deref(), m.blurhash.as_deref()),
                    (Some(cut as u64), Some("image/png"), None)
                );
                assert!(m.note.as_deref().is_some_and(|n| n.starts_with("cannot decode image/png")), "{m:?}");
            }
            other => panic!("close {close}: expected a PNG decode error, got {other:?}"),
        }
        assert!(t.elapsed() < Duration::from_secs(1), "close {close}: {:?}", t.elapsed());
    }
}

#[test]
fn a_reset_mid_body_is_a_clear_error() {
    for img in [png(&photo(64, 64)), streamed_png()] {
        a_reset_is_a_clear_error(img);
    }
}

fn a_reset_is_a_clear_error(img: Vec<u8>) {
    let len = img.len();
    let server = RawServer::start(move |mut s| {
        let Some(req) = read_request(&mut s) else { return };
        if req.starts_with("GET /in-body") {
            let _ = s.write_all(&head("200 OK", &["Content-Type: image/png", &format!("Content-Length: {len}")]));
            let _ = s.write_all(&img[..len / 2]);
            let _ = s.flush();
            std::thread::sleep(Duration::from_millis(100)); // let the client start on the body
        } else if req.starts_with("GET /in-headers") {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: ima");
            std::thread::sleep(Duration::from_millis(100));
        }
        reset(s);
    });
    for path in ["/in-body.png", "/in-headers.png", "/at-once.png"] {
        let (r, took) = timed(&server.url(path), local());
        match &r {
            Err(Error::Fetch { why, .. }) => assert!(why.to_lowercase().contains("reset"), "{path}: {why}"),
            other => panic!("{path}: expected a fetch error naming the reset, got {other:?}"),
        }
        assert!(took < Duration::from_secs(2), "{path}: {took:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Interim responses

const CONTINUE: &str = "HTTP/1.1 100 Continue\r\n\r\n";
const EARLY_HINTS: &str = "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n\r\n";

/// `interim` heads, then a final `status` with `headers` and `body`, then close.
fn after_interim(interim: &[&str], status: &str, headers: &[&str], body: &[u8]) -> RawServer {
    let mut reply = interim.concat().into_bytes();
    reply.extend(head(status, headers));
    reply.extend_from_slice(body);
    RawServer::replying(reply)
}

/// ureq 2 takes the first head for the final one: a 100 or 103 used to come back as the
/// answer, the real response as its body, and no metadata. They are skipped, however many.
#[test]
fn interim_responses_are_skipped_and_the_final_one_is_read() {
    let img = png(&photo(40, 30));
    let len = format!("Content-Length: {}", img.len());
    let servers = [
        ("100 then length", after_interim(&[CONTINUE], "200 OK", &["Content-Type: image/png", &len], &img)),
        (
            "100, 103, 102, 103 then chunked",
            after_interim(
                &[CONTINUE, EARLY_HINTS, "HTTP/1.1 102 Processing\r\n\r\n", EARLY_HINTS],
                "200 OK",
                &["Content-Type: image/png", "Transfer-Encoding: chunked", "Content-Length: 7"],
                &chunked(&img, 333),
            ),
        ),
        ("103 then up to the close", after_interim(&[EARLY_HINTS], "200 OK", &["Content-Type: image/png"], &img)),
        (
            "bare LF heads",
            after_interim(&["HTTP/1.1 103 Early Hints\nLink: </a>\n\n"], "200 OK", &["Content-Type: image/png"], &img),
        ),
    ];
    for (case, server) in &servers {
        let b = Fetcher::new(local()).get(&server.url("/p.png")).unwrap_or_else(|e| panic!("{case}: {e}"));
        assert!(b.complete && b.data == img, "{case}: the body is not the final response's");
        assert_eq!(b.content_type.as_deref(), Some("image/png"), "{case}");
        let m = run(&server.url("/p.png"), local()).unwrap();
        assert_eq!((m.bytes, m.width, m.height), (Some(img.len() as u64), Some(40), Some(30)), "{case}");
        assert!(m.blurhash.is_some(), "{case}");
    }
    // A Content-Length shorter than the body is where it ends, as without an interim response.
    let s = after_interim(&[EARLY_HINTS], "200 OK", &["Content-Type: image/png", "Content-Length: 100"], &img);
    let b = Fetcher::new(local()).get(&s.url("/p.png")).unwrap();
    assert_eq!((b.data.len(), b.complete, b.content_length), (100, true, Some(100)));

    // The final response's status counts: an error, or a redirect (followed and checked).
    let s = after_interim(&[EARLY_HINTS], "404 Not Found", &["Content-Length: 0"], b"");
    let r = run(&s.url("/gone.png"), local());
    assert!(matches!(r, Err(Error::Status { status: 404, .. })), "{r:?}");
    let target = after_interim(&[], "200 OK", &["Content-Type: image/png", &len], &img);
    let location = format!("Location: {}", target.url("/p.png"));
    let s = after_interim(&[CONTINUE], "302 Found", &[&location, "Content-Length: 0"], b"");
    assert_eq!(run(&s.url("/moved"), local()).unwrap().width, Some(40));
    let s = after_interim(&[CONTINUE], "302 Found", &["Location: http://10.0.0.1/p.png"], b"");
    let r = run(&s.url("/moved"), Options { allow_hosts: vec!["127.0.0.1".into()], ..Options::default() });
    assert!(matches!(r, Err(Error::Address { .. })), "a redirect after an interim response went unchecked: {r:?}");
}

/// Interim responses have no end here, or no place: each is refused quickly, by name.
#[test]
fn interim_responses_without_end_or_with_a_body_are_refused() {
    let img = png(&photo(8, 8));
    let endless = RawServer::start(|mut s| {
        if read_request(&mut s).is_some() {
            while s.write_all(CONTINUE.repeat(64).as_bytes()).is_ok() {}
        }
    });
    let (r, took) = timed(&endless.url("/p.png"), local());
    assert!(
        matches!(&r, Err(e @ Error::TooLarge { why, .. }) if why.contains("heads exceed")
        && e.kind() == "too_large"),
        "{r:?}"
    );
    assert!(took < Duration::from_secs(2), "{took:?}");

    let cases: [(&str, &[&str], &str); 6] = [
        ("101 Switching Protocols", &["HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n"], "101"),
        ("a 103 with Content-Length", &["HTTP/1.1 103 Early Hints\r\nContent-Length: 0\r\n\r\n"], "Content-Length"),
        (
            "a 100 with Transfer-Encoding",
            &["HTTP/1.1 100 Continue\r\nTransfer-Encoding: chunked\r\n\r\n"],
            "Transfer-Encoding",
        ),
        ("no status line", &[EARLY_HINTS, "ICY 200 OK\r\n"], "not a status line"),
        ("a header without a name", &[EARLY_HINTS, "HTTP/1.1 200 OK\r\n: x\r\n"], "not a header line"),
        ("a space before the colon", &[EARLY_HINTS, "HTTP/1.1 200 OK\r\nContent-Length : 5\r\n"], "not a header line"),
    ];
    for (case, heads, named) in cases {
        let s = after_interim(heads, "200 OK", &["Content-Type: image/png"], &img);
        let r = run(&s.url("/p.png"), local());
        match &r {
            Err(e @ Error::BadResponse { why, .. }) => {
                assert!(why.to_lowercase().contains(&named.to_lowercase()), "{case}: {why}");
                assert_eq!(e.kind(), "bad_response");
            }
            other => panic!("{case}: expected a refusal, got {other:?}"),
        }
    }
    // Two lengths that disagree cannot both frame the body.
    let s = after_interim(&[CONTINUE], "200 OK", &["Content-Length: 5", "Content-Length: 50"], &img);
    let r = run(&s.url("/p.png"), local());
    assert!(matches!(&r, Err(Error::BadResponse { why, .. }) if why.contains("Content-Length")), "{r:?}");

    // A server that stops after the interim response: the deadline, naming the wait.
    let stalls = RawServer::start(|mut s| {
        if read_request(&mut s).is_some() {
            let _ = s.write_all(EARLY_HINTS.as_bytes());
            std::thread::sleep(Duration::from_secs(30));
        }
    });
    let (r, took) = timed(&stalls.url("/p.png"), Options { timeout: Duration::from_millis(1000), ..local() });
    assert!(matches!(r, Err(Error::Timeout { phase: "waiting for the response", .. })), "{r:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    // One that closes there.
    let closes = RawServer::replying(EARLY_HINTS.as_bytes().to_vec());
    let r = run(&closes.url("/p.png"), local());
    assert!(matches!(&r, Err(Error::Fetch { why, .. }) if why.contains("closed")), "{r:?}");
}

/// Chunk framing after an interim response is ours to read: every way it can break is an
/// error reading the body, never a wrong image.
#[test]
fn broken_chunks_after_an_interim_response_are_errors() {
    let img = png(&photo(8, 8));
    let mut no_crlf = format!("{:x}\r\n", img.len()).into_bytes();
    no_crlf.extend_from_slice(&img);
    no_crlf.extend_from_slice(b"XX0\r\n\r\n");
    let cut = chunked(&img, 1000)[..img.len() / 2].to_vec();
    let cases: [(&str, Vec<u8>, &str); 5] = [
        ("no size", [b"\r\n".as_slice(), &img].concat(), "no size"),
        ("a size that is not hex", [b"+5\r\n".as_slice(), &img].concat(), "no size"),
        ("a size over 64 bits", [b"10000000000000000\r\n".as_slice(), &img].concat(), "no size"),
        ("no CRLF after the data", no_crlf, "no CRLF after its data"),
        ("closed inside a chunk", cut, "closed inside a chunk"),
    ];
    for (case, body, named) in cases {
        let s = after_interim(&[CONTINUE], "200 OK", &["Content-Type: image/png", "Transfer-Encoding: chunked"], &body);
        match run(&s.url("/p.png"), local()) {
            Err(Error::Fetch { why, .. }) => {
                assert!(why.contains("reading the body") && why.contains(named), "{case}: {why}")
            }
            other => panic!("{case}: expected an error reading the body, got {other:?}"),
        }
    }
    // Control: extensions and trailers are allowed, and read past.
    let mut body = format!("{:x};name=value\r\n", img.len()).into_bytes();
    body.extend_from_slice(&img);
    body.extend_from_slice(b"\r\n0\r\nX-Trailer: 1\r\n\r\n");
    let s = after_interim(&[CONTINUE], "200 OK", &["Content-Type: image/png", "Transfer-Encoding: chunked"], &body);
    assert_eq!(run(&s.url("/p.png"), local()).unwrap().width, Some(8));
}

// ---------------------------------------------------------------------------------------
// TLS

/// An HTTPS server (rustls) with `cert`, answering every request with a small PNG.
fn tls_server(
    cert: rustls::pki_types::CertificateDer<'static>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
) -> RawServer {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    let config = Arc::new(config);
    RawServer::start(move |tcp| {
        let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
        let conn = rustls::ServerConnection::new(config.clone()).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let mut buf = [0u8; 4096];
        let mut req = Vec::new();
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            match tls.read(&mut buf) {
                Ok(n) if n > 0 => req.extend_from_slice(&buf[..n]),
                _ => return, // the client gave up, as it should
            }
        }
        let img = png(&photo(8, 8));
        let _ = tls.write_all(&head(
            "200 OK",
            &["Content-Type: image/png", &format!("Content-Length: {}", img.len()), "Connection: close"],
        ));
        let _ = tls.write_all(&img);
        tls.conn.send_close_notify();
        let _ = tls.flush();
    })
}

/// A GET through a rustls client that trusts `root`: proves the server itself works.
fn get_trusting(root: &rustls::pki_types::CertificateDer<'static>, port: u16) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, TcpStream::connect(("127.0.0.1", port)).unwrap());
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out);
    out
}

#[test]
fn a_self_signed_certificate_is_not_trusted() {
    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key_pair.serialize_der().into());
    let server = tls_server(cert.clone(), key);
    let opts = Options { allow_hosts: vec!["localhost".into()], timeout: Duration::from_secs(5), ..Options::default() };
    let (r, took) = timed(&format!("https://localhost:{}/p.png", server.port), opts);
    match &r {
        Err(e @ Error::Fetch { why, .. }) => {
            assert!(why.contains("invalid peer certificate") && why.contains("UnknownIssuer"), "{e}");
        }
        other => panic!("expected an untrusted-certificate error, got {other:?}"),
    }
    assert!(took < Duration::from_secs(2), "{took:?}");
    // Control: a client that trusts the certificate gets the image from the same server.
    let reply = get_trusting(&cert, server.port);
    assert!(reply.starts_with(b"HTTP/1.1 200 OK"), "{:?}", String::from_utf8_lossy(&reply[..reply.len().min(64)]));
}

#[test]
fn a_certificate_for_another_name_or_out_of_date_is_not_trusted() {
    // Valid for another name only.
    let other = rcgen::generate_simple_self_signed(vec!["media.example.com".to_owned()]).unwrap();
    let server = tls_server(
        other.cert.der().clone(),
        rustls::pki_types::PrivateKeyDer::Pkcs8(other.key_pair.serialize_der().into()),
    );
    let opts = Options { allow_hosts: vec!["localhost".into()], timeout: Duration::from_secs(5), ..Options::default() };
    let r = run(&format!("https://localhost:{}/p.png", server.port), opts.clone());
    assert!(matches!(&r, Err(Error::Fetch { why, .. }) if why.contains("invalid peer certificate")), "{r:?}");

    // Expired in 2001.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2000, 1, 1);
    params.not_after = rcgen::date_time_ymd(2001, 1, 1);
    let expired = params.self_signed(&key).unwrap();
    let server = tls_server(expired.der().clone(), rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()));
    let r = run(&format!("https://localhost:{}/p.png", server.port), opts);
    assert!(matches!(&r, Err(Error::Fetch { why, .. }) if why.contains("invalid peer certificate")), "{r:?}");
}
