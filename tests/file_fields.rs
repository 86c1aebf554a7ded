//! The fields the XEP-0447 file share and the SIMS reference need (name, date, sha256,
//! thumbhash, tiny PNG), through analyze() against a real HTTP server on 127.0.0.1.

mod common;

use base64::Engine;
use common::*;
use media_metadata::analyze::{analyze, Metadata};
use media_metadata::fetch::Fetcher;
use media_metadata::options::{Formats, Options};
use sha2::{Digest, Sha256};

fn local() -> Options {
    Options { allow_private: true, ..Options::default() }
}

fn metadata_only() -> Options {
    Options { formats: Formats { metadata: true, sfs: false, sims: false }, ..local() }
}

fn run(url: &str, opts: Options) -> Metadata {
    analyze(&Fetcher::new(opts), url).unwrap()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn sha256(bytes: &[u8]) -> String {
    b64(&Sha256::digest(bytes))
}

/// A 200 response with these extra header lines, framed by Content-Length or chunked.
fn reply(ctype: &str, extra: &[&str], body: &[u8], chunked: bool) -> Reply {
    let mut r = format!("HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nConnection: close\r\n");
    for h in extra {
        r.push_str(h);
        r.push_str("\r\n");
    }
    let mut bytes = if chunked {
        r.push_str("Transfer-Encoding: chunked\r\n\r\n");
        let mut out = r.into_bytes();
        for chunk in body.chunks(10_000) {
            out.extend(format!("{:x}\r\n", chunk.len()).as_bytes());
            out.extend(chunk);
            out.extend(b"\r\n");
        }
        out.extend(b"0\r\n\r\n");
        return Reply::Raw(out);
    } else {
        r.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        r.into_bytes()
    };
    bytes.extend(body);
    Reply::Raw(bytes)
}

/// The decoded thumbnail: (width, height, colour type).
fn thumbnail(m: &Metadata) -> (u32, u32, png::ColorType) {
    let bytes = base64::engine::general_purpose::STANDARD.decode(m.thumbnail.as_deref().unwrap()).unwrap();
    let reader = png::Decoder::new(std::io::Cursor::new(bytes)).read_info().unwrap();
    let info = reader.info();
    (info.width, info.height, info.color_type)
}

fn placeholder_bytes(m: &Metadata) -> usize {
    [&m.blurhash, &m.thumbhash, &m.thumbnail].iter().map(|f| f.as_deref().map_or(0, str::len)).sum()
}

#[test]
fn a_photo_gets_name_date_hash_and_both_thumbnails() {
    let bytes = jpeg(&photo(640, 427));
    let s = Server::start(vec![(
        "/up/p.jpg",
        reply(
            "image/jpeg",
            &[
                "Last-Modified: Wed, 21 Oct 2015 07:28:00 GMT",
                "Content-Disposition: inline; filename=\"plain.jpg\"; filename*=UTF-8''Caf%C3%A9%20photo.jpg",
            ],
            &bytes,
            false,
        ),
    )]);
    let m = run(&s.url("/up/p.jpg"), local());
    assert_eq!(m.name.as_deref(), Some("Café photo.jpg"));
    assert_eq!(m.date.as_deref(), Some("2015-10-21T07:28:00Z"));
    assert_eq!(m.sha256, Some(sha256(&bytes)));
    assert_eq!(m.bytes, Some(bytes.len() as u64));
    assert_eq!((m.thumbnail_width, m.thumbnail_height), (Some(8), Some(5)));
    assert_eq!(thumbnail(&m), (8, 5, png::ColorType::Rgb));
    let th = base64::engine::general_purpose::STANDARD.decode(m.thumbhash.as_deref().unwrap()).unwrap();
    assert!(th.len() >= 5 && th[4] >> 7 == 1, "a landscape ThumbHash: {th:?}");
    println!("640x427 JPEG: {} bytes of placeholders: {m:?}", placeholder_bytes(&m));
    assert!(placeholder_bytes(&m) < 1024);

    // A portrait by EXIF: its thumbnail is upright.
    let s = Server::start(vec![("/o6.jpg", Reply::Ok("image/jpeg", with_exif_orientation(&bytes, 6)))]);
    let m = run(&s.url("/o6.jpg"), local());
    assert_eq!((m.width, m.height, m.thumbnail_width, m.thumbnail_height), (Some(427), Some(640), Some(5), Some(8)));
    assert_eq!(m.name.as_deref(), Some("o6.jpg"));
    assert_eq!(m.date, None);
}

#[test]
fn formats_without_sfs_or_sims_read_and_make_nothing_extra() {
    let bytes = jpeg(&photo(320, 240));
    let pdf = [b"%PDF-1.7\n".as_slice(), &vec![b'x'; 300_000]].concat();
    let s =
        Server::start(vec![("/p.jpg", Reply::Ok("image/jpeg", bytes)), ("/d.pdf", Reply::Ok("application/pdf", pdf))]);
    let m = run(&s.url("/p.jpg"), metadata_only());
    assert!(m.blurhash.is_some() && m.name.is_some());
    assert_eq!((m.sha256, m.thumbhash, m.thumbnail, m.thumbnail_width), (None, None, None, None));
    let m = run(&s.url("/d.pdf"), metadata_only());
    assert_eq!((m.sha256, m.bytes, m.note), (None, Some(300_009), None));
}

#[test]
fn a_transparent_png_gets_an_rgba_thumbnail() {
    let img = image::RgbaImage::from_fn(300, 150, |x, _| {
        if x < 150 {
            image::Rgba([0, 0, 0, 0])
        } else {
            image::Rgba([20, 90, 250, 255])
        }
    });
    let bytes = png_rgba(&img);
    let s = Server::start(vec![("/logo.png", Reply::Ok("image/png", bytes.clone()))]);
    let m = run(&s.url("/logo.png"), local());
    assert_eq!(thumbnail(&m), (8, 4, png::ColorType::Rgba));
    assert_eq!(m.sha256, Some(sha256(&bytes)));
    let th = base64::engine::general_purpose::STANDARD.decode(m.thumbhash.as_deref().unwrap()).unwrap();
    assert_eq!(th[2] >> 7, 1, "the ThumbHash has alpha");
    // The BlurHash is still the picture flattened on grey (the left half is grey, not black).
    let px = media_metadata::blurhash::decode(m.blurhash.as_deref().unwrap(), 8, 1, 1.0).unwrap();
    assert!((px[0] as i32 - 128).abs() <= 12, "{:?}", &px[..4]);
    println!("300x150 transparent PNG: {} bytes of placeholders", placeholder_bytes(&m));
    assert!(placeholder_bytes(&m) < 1024);
}

#[test]
fn a_pdf_is_read_to_its_end_for_its_hash_but_not_kept() {
    let pdf = [b"%PDF-1.7\n".as_slice(), &(0..500_000u32).map(|i| (i * 7 % 251) as u8).collect::<Vec<_>>()].concat();
    for chunked in [false, true] {
        let s = Server::start(vec![("/docs/report%202026.pdf", reply("application/pdf", &[], &pdf, chunked))]);
        let url = s.url("/docs/report%202026.pdf");
        let body = Fetcher::new(local()).get(&url).unwrap();
        assert!(body.data.len() <= 64 * 1024 + 1, "chunked {chunked}: kept {}", body.data.len());
        let m = run(&url, local());
        assert_eq!(m.mime.as_deref(), Some("application/pdf"));
        assert_eq!(m.sha256, Some(sha256(&pdf)), "chunked {chunked}");
        assert_eq!(m.bytes, Some(pdf.len() as u64), "chunked {chunked}: the length read");
        assert_eq!(m.name.as_deref(), Some("report 2026.pdf"));
        assert_eq!((m.thumbnail, m.note), (None, None));
    }
}

#[test]
fn past_max_bytes_there_is_no_hash_and_a_note() {
    let pdf = [b"%PDF-1.7\n".as_slice(), &vec![b'x'; 200_000]].concat();
    let big = jpeg(&photo(800, 600));
    let opts = || Options { max_bytes: 100_000, ..local() };
    for chunked in [false, true] {
        let s = Server::start(vec![
            ("/d.pdf", reply("application/pdf", &[], &pdf, chunked)),
            ("/p.jpg", reply("image/jpeg", &[], &big, chunked)),
        ]);
        let m = run(&s.url("/d.pdf"), opts());
        assert_eq!(m.sha256, None, "chunked {chunked}");
        assert!(m.note.as_deref().is_some_and(|n| n.contains("max_bytes") && n.contains("sha256")), "{:?}", m.note);
        assert_eq!(m.bytes, (!chunked).then_some(pdf.len() as u64));
        let m = run(&s.url("/p.jpg"), Options { max_bytes: (big.len() - 1) as u64, ..local() });
        assert_eq!((m.sha256, m.blurhash, m.thumbhash, m.thumbnail), (None, None, None, None), "chunked {chunked}");
        assert!(m.note.as_deref().is_some_and(|n| n.contains("max_bytes")), "{:?}", m.note);
        // Exactly max_bytes is the whole body: hashed.
        let m = run(&s.url("/p.jpg"), Options { max_bytes: big.len() as u64, ..local() });
        assert_eq!(m.sha256, Some(sha256(&big)), "chunked {chunked}");
    }
}

#[test]
fn the_name_is_the_shared_urls_not_the_redirect_targets() {
    let bytes = png(&photo(40, 30));
    let s = Server::start(vec![("/store/8f3a9c", Reply::Ok("image/png", bytes))]);
    let s2 = Server::start(vec![("/share/Holiday%20beach.png", Reply::Redirect(s.url("/store/8f3a9c")))]);
    let m = run(&s2.url("/share/Holiday%20beach.png#frag"), local());
    assert_eq!(m.name.as_deref(), Some("Holiday beach.png"));
    assert!(m.sha256.is_some() && m.thumbnail.is_some());
}

#[test]
fn hostile_names_from_the_server_are_made_safe_or_dropped() {
    let bytes = png(&photo(16, 16));
    let ten_kb = "A".repeat(10_000);
    let cases: Vec<(String, Option<String>)> = vec![
        ("attachment; filename=\"../../x\"".into(), Some("x".into())),
        ("attachment; filename*=UTF-8''%2E%2E%2F%2E%2E%2Fetc%2Fpasswd".into(), Some("passwd".into())),
        ("attachment; filename*=UTF-8''a%00b.png".into(), Some("ab.png".into())),
        ("attachment; filename*=UTF-8''invoice%E2%80%AEgnp.exe".into(), Some("invoicegnp.exe".into())),
        (format!("attachment; filename=\"{ten_kb}.png\""), Some(format!("{}.png", &ten_kb[..251]))),
        // Nothing usable in the header: the URL's own name is used.
        ("attachment; filename=\"..\"".into(), Some("fallback.png".into())),
        ("attachment; filename*=UTF-8''%E2%80%AE".into(), Some("fallback.png".into())),
    ];
    for (cd, want) in cases {
        let header = format!("Content-Disposition: {cd}");
        let s = Server::start(vec![("/fallback.png", reply("image/png", &[header.as_str()], &bytes, false))]);
        let m = run(&s.url("/fallback.png"), local());
        assert_eq!(m.name, want, "{}", &cd[..cd.len().min(80)]);
    }
    // A URL whose last segment is hostile and no header: safe or nothing.
    let s = Server::start(vec![
        ("/a/..%2F..%2Fx", Reply::Ok("image/png", bytes.clone())),
        ("/a/%E2%80%AE", Reply::Ok("image/png", bytes.clone())),
        ("/a/%FF.png", Reply::Ok("image/png", bytes.clone())),
    ]);
    assert_eq!(run(&s.url("/a/..%2F..%2Fx"), local()).name.as_deref(), Some("x"));
    assert_eq!(run(&s.url("/a/%E2%80%AE"), local()).name, None);
    assert_eq!(run(&s.url("/a/%FF.png"), local()).name, None, "not UTF-8");
}
