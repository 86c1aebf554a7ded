//! analyze() against a real HTTP server on 127.0.0.1, with real image bytes.

mod common;

use std::time::{Duration, Instant};

use common::*;
use image::{metadata::Orientation, DynamicImage};
use media_metadata::analyze::analyze;
use media_metadata::error::Error;
use media_metadata::fetch::Fetcher;
use media_metadata::options::Options;

fn local() -> Options {
    Options { allow_private: true, ..Options::default() }
}

fn run(url: &str, opts: Options) -> Result<media_metadata::analyze::Metadata, Error> {
    analyze(&Fetcher::new(opts), url)
}

#[test]
fn jpeg_photo_gets_every_field() {
    let img = photo(640, 427);
    let bytes = jpeg(&img);
    let s = Server::start(vec![("/p.jpg", Reply::Ok("image/jpeg", bytes.clone()))]);
    let m = run(&s.url("/p.jpg#ignored"), local()).unwrap();
    assert_eq!(m.bytes, Some(bytes.len() as u64));
    assert_eq!(m.mime.as_deref(), Some("image/jpeg"));
    assert_eq!((m.width, m.height), (Some(640), Some(427)));
    let hash = m.blurhash.unwrap();
    assert_eq!(hash.len(), 4 + 2 * 4 * 3);
    // Against the reference encoder on the decoded JPEG, so that only our scaled decode and
    // shrink are measured, not the JPEG's own loss. The shrink alone is 0.7 levels off here;
    // the 1/4-scale IDCT rings at this picture's hard-edged block and adds about 2 (measured
    // 2.7; 0.8 to 3.1 across sizes of the same picture). A wrong orientation is 15 to 47.
    let decoded = image::load_from_memory(&bytes).unwrap().into_rgb8();
    let d = hash_distance(&hash, &reference_hash(&decoded, 4, 3));
    assert!(d < 4.0, "{hash}: {d}");
    assert_eq!(s.hits.lock().unwrap().get("/p.jpg"), Some(&1), "fragment dropped, one request");
}

#[test]
fn every_exif_orientation_is_applied_to_size_and_pixels() {
    let stored = photo(300, 200);
    let plain = jpeg(&stored);
    let decoded = image::load_from_memory(&plain).unwrap().into_rgb8();
    let routes: Vec<_> = (1..=8u16)
        .map(|o| {
            (
                ["/o1", "/o2", "/o3", "/o4", "/o5", "/o6", "/o7", "/o8"][o as usize - 1],
                Reply::Ok("image/jpeg", with_exif_orientation(&plain, o)),
            )
        })
        .collect();
    let s = Server::start(routes);
    for o in 1..=8u8 {
        let m = run(&s.url(&format!("/o{o}")), local()).unwrap();
        let mut upright = DynamicImage::ImageRgb8(decoded.clone());
        upright.apply_orientation(Orientation::from_exif(o).unwrap());
        let upright = upright.into_rgb8();
        assert_eq!((m.width, m.height), (Some(upright.width()), Some(upright.height())), "orientation {o}");
        let (cx, cy) = if upright.width() >= upright.height() { (4, 3) } else { (3, 4) };
        let hash = m.blurhash.unwrap();
        let near = hash_distance(&hash, &reference_hash(&upright, cx, cy));
        let unrotated = hash_distance(&hash, &reference_hash(&decoded, 4, 3));
        assert!(near < 4.0, "orientation {o}: {near} from the upright reference");
        if o != 1 && hash.len() == 28 {
            assert!(unrotated > near + 5.0, "orientation {o} made no difference ({unrotated} vs {near})");
        }
    }
}

#[test]
fn transparent_png_is_flattened_onto_grey_not_black() {
    let img = image::RgbaImage::from_fn(200, 100, |x, _| {
        if x < 100 {
            image::Rgba([0, 0, 0, 0])
        } else {
            image::Rgba([255, 255, 255, 0])
        }
    });
    let s = Server::start(vec![("/t.png", Reply::Ok("image/png", png_rgba(&img)))]);
    let m = run(&s.url("/t.png"), local()).unwrap();
    let px = media_metadata::blurhash::decode(&m.blurhash.unwrap(), 8, 8, 1.0).unwrap();
    for p in px.chunks(4) {
        assert!((p[0] as i32 - 128).abs() <= 3, "{p:?}");
    }
}

#[test]
fn gif_and_webp_are_decoded() {
    let img = photo(120, 90);
    let s = Server::start(vec![
        ("/a.gif", Reply::Ok("image/gif", encode_as(&img, image::ImageFormat::Gif))),
        ("/a.webp", Reply::Ok("image/webp", encode_as(&img, image::ImageFormat::WebP))),
    ]);
    for (path, mime) in [("/a.gif", "image/gif"), ("/a.webp", "image/webp")] {
        let m = run(&s.url(path), local()).unwrap();
        assert_eq!(m.mime.as_deref(), Some(mime));
        assert_eq!((m.width, m.height), (Some(120), Some(90)));
        let d = hash_distance(&m.blurhash.unwrap(), &reference_hash(&img, 4, 3));
        assert!(d < 6.0, "{path}: {d}"); // GIF quantises to 256 colours
    }
}

#[test]
fn a_lying_content_type_loses_to_the_bytes() {
    let s = Server::start(vec![
        ("/x", Reply::Ok("text/html", png(&photo(10, 10)))),
        ("/doc", Reply::Ok("Application/PDF; charset=binary", b"%PDF-1.7\n...".to_vec())),
        ("/odd", Reply::Ok("text/plain; charset=utf-8", b"hello".to_vec())),
        ("/bad", Reply::Ok("not a type", b"hello".to_vec())),
    ]);
    assert_eq!(run(&s.url("/x"), local()).unwrap().mime.as_deref(), Some("image/png"));
    assert_eq!(run(&s.url("/doc"), local()).unwrap().mime.as_deref(), Some("application/pdf"));
    let odd = run(&s.url("/odd"), local()).unwrap();
    assert_eq!((odd.mime.as_deref(), odd.bytes, odd.width), (Some("text/plain"), Some(5), None));
    assert_eq!(run(&s.url("/bad"), local()).unwrap().mime, None);
}

#[test]
fn private_addresses_are_refused_without_connecting() {
    let s = Server::start(vec![("/p.png", Reply::Ok("image/png", png(&photo(8, 8))))]);
    for host in ["127.0.0.1", "localhost", "127.1", "[::ffff:127.0.0.1]"] {
        let url = format!("http://{host}:{}/p.png", s.port);
        let e = run(&url, Options::default()).unwrap_err();
        assert!(matches!(e, Error::Address { .. }), "{url}: {e}");
        assert!(e.to_string().contains("is loopback") || e.to_string().contains("IPv4-mapped"), "{e}");
    }
    assert_eq!(s.accepted(), 0);
}

#[test]
fn a_redirect_into_a_private_address_is_refused() {
    let inner = Server::start(vec![("/secret", Reply::Ok("image/png", png(&photo(8, 8))))]);
    // `localhost` is trusted by name (allow_hosts); the address it redirects to is not.
    let outer = Server::start(vec![("/r", Reply::Redirect(inner.url("/secret")))]);
    let opts = Options { allow_hosts: vec!["localhost".into()], ..Options::default() };
    let e = run(&format!("http://localhost:{}/r", outer.port), opts).unwrap_err();
    assert_eq!(e.to_string(), "refused: 127.0.0.1 is loopback");
    assert_eq!(outer.accepted(), 1);
    assert_eq!(inner.accepted(), 0);
}

#[test]
fn redirects_are_followed_and_counted() {
    let img = png(&photo(16, 16));
    let s = Server::start(vec![
        ("/a", Reply::Redirect("/b".into())),
        ("/b", Reply::Redirect("/c".into())),
        ("/c", Reply::Ok("image/png", img)),
        ("/loop", Reply::Redirect("/loop".into())),
        ("/ftp", Reply::Redirect("ftp://127.0.0.1/x".into())),
    ]);
    assert_eq!(run(&s.url("/a"), local()).unwrap().width, Some(16));
    let e = run(&s.url("/a"), Options { max_redirects: 1, ..local() }).unwrap_err();
    assert!(matches!(e, Error::TooManyRedirects(1)), "{e}");
    assert!(matches!(run(&s.url("/loop"), local()), Err(Error::TooManyRedirects(3))));
    assert!(matches!(run(&s.url("/ftp"), local()), Err(Error::Scheme(_))));
}

#[test]
fn a_silent_server_times_out_naming_the_phase() {
    let s = Server::start(vec![
        ("/hang", Reply::Hang),
        ("/slow", Reply::Slow(png(&photo(32, 32)), Duration::from_millis(50))),
    ]);
    let opts = Options { timeout: Duration::from_millis(700), ..local() };
    let t = Instant::now();
    let e = run(&s.url("/hang"), opts.clone()).unwrap_err();
    assert!(matches!(e, Error::Timeout { phase: "waiting for the response", .. }), "{e}");
    let e = run(&s.url("/slow"), opts).unwrap_err();
    assert!(matches!(e, Error::Timeout { phase: "reading the body", .. }), "{e}");
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
}

#[test]
fn a_truncated_image_keeps_its_size_type_and_dimensions_and_names_the_error() {
    let full = png(&photo(64, 64));
    let jpg = jpeg(&photo(64, 64));
    let s = Server::start(vec![
        ("/t.png", Reply::Ok("image/png", full[..full.len() / 2].to_vec())),
        ("/t.jpg", Reply::Ok("image/jpeg", jpg[..jpg.len() / 3].to_vec())),
    ]);
    for (path, format, size) in [("/t.png", "image/png", full.len() / 2), ("/t.jpg", "image/jpeg", jpg.len() / 3)] {
        // What was known before the decode failed is kept: size, type, dimensions from the header.
        let m = run(&s.url(path), local()).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(
            (m.bytes, m.mime.as_deref(), m.width, m.height),
            (Some(size as u64), Some(format), Some(64), Some(64))
        );
        assert_eq!((m.blurhash, m.error_kind), (None, Some("undecodable")), "{path}");
        let note = m.note.unwrap_or_default();
        assert!(note.starts_with(&format!("cannot decode {format}")) && note.ends_with(": no blurhash"), "{note}");
    }
}

#[test]
fn past_the_byte_cap_only_the_header_is_reported() {
    let img = photo(800, 600);
    let bytes = jpeg(&img);
    let s = Server::start(vec![("/big.jpg", Reply::Ok("image/jpeg", bytes.clone())), ("/endless", Reply::Endless)]);
    let opts = Options { max_bytes: 8 * 1024, ..local() };
    let m = run(&s.url("/big.jpg"), opts.clone()).unwrap();
    assert_eq!(m.bytes, Some(bytes.len() as u64));
    assert_eq!((m.width, m.height, m.blurhash.as_deref()), (Some(800), Some(600), None));
    assert!(m.note.unwrap().contains("max_bytes"));
    let t = Instant::now();
    let m = run(&s.url("/endless"), Options { max_bytes: 1024 * 1024, ..local() }).unwrap();
    assert_eq!((m.mime.as_deref(), m.bytes, m.blurhash), (Some("image/png"), None, None));
    assert!(t.elapsed() < Duration::from_secs(3));
}

/// A PNG whose header declares `w` x `h` and whose data is a few bytes: a decompression bomb.
fn png_declaring(w: u32, h: u32) -> Vec<u8> {
    let mut real = png(&photo(4, 4));
    real[16..20].copy_from_slice(&w.to_be_bytes());
    real[20..24].copy_from_slice(&h.to_be_bytes());
    // Fix the IHDR CRC so the decoder gets as far as the size check.
    let crc = craft::crc32(&real[12..29]);
    real[29..33].copy_from_slice(&crc.to_be_bytes());
    real
}

#[test]
fn a_decompression_bomb_is_measured_not_decoded() {
    let s = Server::start(vec![("/bomb.png", Reply::Ok("image/png", png_declaring(100_000, 100_000)))]);
    let t = Instant::now();
    let m = run(&s.url("/bomb.png"), local()).unwrap();
    assert_eq!((m.width, m.height, m.blurhash.as_deref()), (Some(100_000), Some(100_000), None));
    assert!(m.note.unwrap().contains("max_pixels"));
    assert!(t.elapsed() < Duration::from_secs(2));
}

#[test]
fn non_images_stop_after_the_head() {
    let mut pdf = b"%PDF-1.7\n".to_vec();
    pdf.resize(8 * 1024 * 1024, b' ');
    let s = Server::start(vec![("/doc.pdf", Reply::Ok("application/pdf", pdf))]);
    let fetcher = Fetcher::new(local());
    let body = fetcher.get(&s.url("/doc.pdf")).unwrap();
    assert!(!body.complete && body.data.len() <= 64 * 1024 + 1, "{}", body.data.len());
    let m = analyze(&fetcher, &s.url("/doc.pdf")).unwrap();
    assert_eq!((m.mime.as_deref(), m.bytes), (Some("application/pdf"), Some(8 * 1024 * 1024)));
}

#[test]
fn http_errors_and_bad_urls_say_what_happened() {
    let s = Server::start(vec![]);
    assert_eq!(
        run(&s.url("/missing"), local()).unwrap_err().to_string(),
        format!("HTTP 404 from {}", s.url("/missing"))
    );
    assert!(matches!(run("gopher://x/", local()), Err(Error::Scheme(_))));
    assert!(matches!(run("http://", local()), Err(Error::BadUrl { .. })));
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let e = run(&format!("http://127.0.0.1:{closed}/"), local()).unwrap_err();
    assert!(matches!(e, Error::Fetch { .. }), "{e}");
}

#[test]
fn broken_images_never_panic() {
    let mut cases: Vec<Vec<u8>> = vec![
        b"\xff\xd8\xff".to_vec(),
        b"\xff\xd8\xff\xc0\x00\x11\x08\x00\x00\x00\x00\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01\xff\xd9".to_vec(),
        b"\x89PNG\r\n\x1a\n".to_vec(),
        b"GIF89a\x00\x00\x00\x00\x00\x00\x00;".to_vec(),
        b"RIFF\x10\x00\x00\x00WEBPVP8 \x04\x00\x00\x00\x00\x00\x00\x00".to_vec(),
        png_declaring(0, 5),
    ];
    let jpg = jpeg(&photo(64, 64));
    for cut in [20, 200, 600] {
        let mut broken = jpg.clone();
        for b in broken.iter_mut().skip(cut).step_by(7) {
            *b ^= 0x5a;
        }
        cases.push(broken);
    }
    let routes: Vec<_> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| (Box::leak(format!("/{i}").into_boxed_str()) as &str, Reply::Ok("image/x", c.clone())))
        .collect();
    let s = Server::start(routes);
    for i in 0..cases.len() {
        if let Err(e) = run(&s.url(&format!("/{i}")), local()) {
            assert!(!matches!(e, Error::Panic(_)), "case {i} panicked: {e}");
        }
    }
}
