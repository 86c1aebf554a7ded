//! Peak heap memory of one analysis, measured with a counting global allocator: a 12 MP JPEG,
//! a 5K PNG, and decompression bombs of every format just under the pixel limit. Each must
//! stay below the limit the library gives its decoders (`max_pixels * 8 + 16 MiB` bytes,
//! decode.rs `decoder_memory`) and below an absolute figure stated with each case.
//!
//! The allocator (tests/common/peak_alloc.rs) counts every thread of this process, so the
//! tests take one lock and build their input before measuring. Thread stacks (jpeg-decoder's workers) are not heap and are
//! not counted. Run with `-- --nocapture` to see the figures. The bombs use
//! `max_pixels = 8_000_000` (an 81 MB limit) to stay fast; MEMORY_MAX_PIXELS=50000000 runs them
//! at the default limit (slow in a debug build).

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard};

use common::craft::*;
use common::hostile::{read_request, RawServer};
use common::peak_alloc::{peak_of, Counting};
use common::*;
use media_metadata::analyze::{analyze, Metadata};
use media_metadata::decode::decode;
use media_metadata::fetch::Fetcher;
use media_metadata::options::Options;
use media_metadata::sniff::sniff;
use media_metadata::sniff::Format;
use media_metadata::source::{self, LocalFile};
use sha2::{Digest, Sha256};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn exclusive() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

const MB: usize = 1_000_000;

/// The limit decode.rs gives the decoders for `opts`.
fn decoder_limit(opts: &Options) -> usize {
    media_metadata::decode::decoder_memory(opts) as usize
}

/// A server that writes `body` from a shared buffer (no copy per request, so that the
/// server's side adds next to nothing to the measurement).
fn serve(body: Vec<u8>, mime: &'static str) -> RawServer {
    let body = Arc::new(body);
    RawServer::start(move |mut s| {
        if read_request(&mut s).is_some() {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {mime}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes()).and_then(|_| s.write_all(&body));
        }
    })
}

/// Peak of a whole analysis (fetch, sniff, decode, hash) of `body` served over HTTP.
fn analysis_peak(body: Vec<u8>, mime: &'static str, opts: Options) -> (Metadata, usize) {
    let server = serve(body, mime);
    let fetcher = Fetcher::new(Options { allow_private: true, ..opts });
    let url = server.url("/file");
    let (m, peak) = peak_of(|| analyze(&fetcher, &url));
    (m.unwrap_or_else(|e| panic!("{e}")), peak)
}

/// Peak of decoding `bytes` (already in memory) under `opts`.
fn decode_peak(bytes: &[u8], opts: &Options) -> (Option<String>, usize) {
    let mime = sniff(bytes).unwrap();
    let (d, peak) = peak_of(|| decode(bytes, mime, true, opts));
    (d.unwrap_or_else(|e| panic!("{e}")).blurhash, peak)
}

#[track_caller]
fn check(what: &str, peak: usize, opts: &Options, absolute: usize) {
    let limit = decoder_limit(opts);
    eprintln!(
        "{what:<48} peak {:>7.1} MB  (limit {:>5.0} MB, stated bound {:>4.0} MB)",
        peak as f64 / 1e6,
        limit as f64 / 1e6,
        absolute as f64 / 1e6
    );
    assert!(peak < limit, "{what}: peak {peak} bytes is over the decoder limit of {limit}");
    assert!(peak < absolute, "{what}: peak {peak} bytes is over the stated {absolute}");
}

#[test]
fn a_12_megapixel_jpeg() {
    let _one = exclusive();
    let img = photo(4000, 3000);
    let bytes = jpeg(&img);
    drop(img);
    let opts = Options::default();
    let size = bytes.len();
    let sha256 = b64(&Sha256::digest(&bytes));
    let (_, decode_only) = decode_peak(&bytes, &opts);
    let dir = tempfile_dir("jpeg12mp");
    let path = dir.join("slot.bin");
    std::fs::write(&path, &bytes).unwrap();
    let (m, peak) = analysis_peak(bytes, "image/jpeg", opts.clone());
    assert_eq!((m.width, m.height), (Some(4000), Some(3000)));
    assert!(m.blurhash.is_some());
    assert_eq!(m.sha256.as_deref(), Some(sha256.as_str()), "every byte went through the hash");
    eprintln!("12 MP JPEG: {size} bytes; decode alone {:.1} MB", decode_only as f64 / 1e6);
    // The body (5.2 MB here, up to max_bytes) is never held: it goes through the DC reader as
    // it arrives (a window of 64 KiB or so), which keeps one DC value a block (4 bytes: 2.3 MB
    // here, unsubsampled) and the 1/8-scale picture. A full-size RGB decode would take 36 MB.
    check("12 MP JPEG (4000x3000), whole analysis", peak, &opts, 7 * MB);
    check("12 MP JPEG (4000x3000), decode only", decode_only, &opts, 12 * MB);
    assert!(peak < decode_only + MB, "the analysis holds more than the decode ({decode_only}): {peak}");
    // The same from a local upload's file.
    let file = LocalFile { path, name: None, date: None, content_type: None };
    let fetcher = Fetcher::new(opts.clone());
    let (m, peak) = peak_of(|| source::analyze(&file, &fetcher, None));
    let m = m.unwrap();
    assert_eq!((m.width, m.sha256.as_deref()), (Some(4000), Some(sha256.as_str())));
    check("12 MP JPEG (4000x3000), from a file", peak, &opts, 7 * MB);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_12_megapixel_progressive_jpeg() {
    let _one = exclusive();
    let mut spec = JpegSpec::new(4000, 3000, 3);
    spec.luma_sampling = (2, 2);
    spec.progressive = true;
    let bytes = dc_jpeg(&spec, |c, x, y| if c == 0 { ((x + y) / 30) as u8 } else { 100 + (x / 100) as u8 });
    let opts = Options::default();
    let (hash, peak) = decode_peak(&bytes, &opts);
    assert!(hash.is_some());
    // Progressive JPEG keeps every coefficient: 2 bytes per sample, 1.5 samples per pixel at 4:2:0.
    check("12 MP progressive JPEG 4:2:0, decode", peak, &opts, 12_000_000 * 3 + 8 * MB);
}

#[test]
fn a_5k_png() {
    let _one = exclusive();
    let (w, h) = (5120u32, 2880u32);
    // Gradients and stripes, made row by row (fast in a debug build), stored uncompressed.
    let mut raw = vec![0u8; (w * h * 3) as usize];
    for (y, row) in raw.chunks_mut((w * 3) as usize).enumerate() {
        for (x, p) in row.chunks_mut(3).enumerate() {
            p.copy_from_slice(&[(x / 21) as u8, (y / 12) as u8, if x % 7 == 0 { 200 } else { 60 }]);
        }
    }
    let bytes = png_stored(w, h, 8, PNG_RGB, &raw);
    drop(raw);
    let size = bytes.len();
    let sha256 = b64(&Sha256::digest(&bytes));
    // Stored, the file is over the default max_bytes (32 MiB): allow it so that it is decoded.
    let opts = Options { max_bytes: 64 * 1024 * 1024, ..Options::default() };
    let dir = tempfile_dir("png5k");
    let path = dir.join("slot.bin");
    std::fs::write(&path, &bytes).unwrap();
    let (m, peak) = analysis_peak(bytes, "image/png", opts.clone());
    assert_eq!((m.width, m.height, m.bytes), (Some(w), Some(h), Some(size as u64)));
    assert!(m.blurhash.is_some());
    assert_eq!(m.sha256.as_deref(), Some(sha256.as_str()), "every byte went through the hash");
    eprintln!("5K PNG: {size} bytes");
    // The body (44 MB) is never held: it goes through the row decoder as it arrives, so the
    // analysis holds its head, the decoder's rows and the shrink.
    check("5K PNG (5120x2880), whole analysis", peak, &opts, 2 * MB);
    // The same from a local upload's file.
    let file = LocalFile { path, name: None, date: None, content_type: None };
    let fetcher = Fetcher::new(opts.clone());
    let (m, peak) = peak_of(|| source::analyze(&file, &fetcher, None));
    let m = m.unwrap();
    assert_eq!((m.width, m.sha256.as_deref()), (Some(w), Some(sha256.as_str())));
    check("5K PNG (5120x2880), from a file", peak, &opts, 2 * MB);
    std::fs::remove_dir_all(dir).unwrap();
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn tempfile_dir(what: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("media-metadata-{what}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The configured pixel limit for the bombs.
fn bomb_opts() -> Options {
    let max_pixels = std::env::var("MEMORY_MAX_PIXELS").ok().and_then(|v| v.parse().ok()).unwrap_or(8_000_000);
    Options { max_pixels, ..Options::default() }
}

/// The largest square side within the limit.
fn side(opts: &Options) -> u32 {
    (opts.max_pixels as f64).sqrt() as u32
}

fn bomb(what: &str, bytes: Vec<u8>, opts: &Options, absolute: usize) {
    let (hash, peak) = decode_peak(&bytes, opts);
    assert!(hash.is_some(), "{what}: not decoded");
    check(&format!("{what} ({} KB file)", bytes.len() / 1000), peak, opts, absolute);
}

#[test]
fn bombs_just_under_the_pixel_limit() {
    let _one = exclusive();
    let opts = bomb_opts();
    let s = side(&opts);
    let px = (s as usize) * (s as usize);
    eprintln!("bombs: {s}x{s} = {px} pixels, max_pixels {}", opts.max_pixels);
    // 8-bit PNG: one buffer of 3 or 4 bytes a pixel.
    bomb("PNG RGBA8 deflate bomb", png_bomb(s, s, 8, PNG_RGBA, false), &opts, px * 4 + 4 * MB);
    bomb("PNG RGBA8 Adam7 deflate bomb", png_bomb(s, s, 8, PNG_RGBA, true), &opts, px * 4 + 4 * MB);
    bomb("PNG palette 1-bit deflate bomb", png_bomb(s, s, 1, PNG_PALETTE, false), &opts, px * 4 + 4 * MB);
    // 16-bit grey: 2 bytes a pixel decoded, then 4 in the RGBA8 copy.
    bomb("PNG grey 16-bit deflate bomb", png_bomb(s, s, 16, PNG_GREY, false), &opts, px * 6 + 4 * MB);
    // JPEG: baseline decodes at 1/8 scale; progressive holds all coefficients (2 bytes a sample).
    let mut spec = JpegSpec::new(s as u16, s as u16, 3);
    bomb("JPEG baseline 4:4:4", dc_jpeg(&spec, |_, _, _| 90), &opts, px / 2 + 4 * MB);
    spec.progressive = true;
    bomb("JPEG progressive 4:4:4", dc_jpeg(&spec, |_, _, _| 90), &opts, px * 7 + 4 * MB);
    // GIF: one full-screen frame, or a 1x1 frame on a full-size screen.
    let gif_full =
        gif_file(s as u16, s as u16, &[[0, 0, 0]], [gif_frame(0, 0, s as u16, s as u16, &gif_lzw(2, &vec![0; px]))]);
    bomb("GIF one full frame", gif_full, &opts, px * 5 + 4 * MB);
    let gif_dot = gif_file(s as u16, s as u16, &[[0, 0, 0]], [gif_frame(0, 0, 1, 1, &gif_lzw(2, &[0]))]);
    bomb("GIF 1x1 frame on a full screen", gif_dot, &opts, px * 4 + 4 * MB);
    // WebP: lossless, every pixel in zero bits; the decoder's ARGB words, then RGB(A) bytes.
    bomb("WebP VP8L flat", webp_file(&[(b"VP8L", vp8l_flat(s, s, [255, 0, 0, 0]))]), &opts, px * 7 + 4 * MB);
    bomb("WebP VP8L flat with alpha", webp_file(&[(b"VP8L", vp8l_flat(s, s, [0, 0, 0, 0]))]), &opts, px * 7 + 4 * MB);
}

#[test]
fn sixteen_bit_png_bombs_just_under_the_pixel_limit() {
    let _one = exclusive();
    let opts = bomb_opts();
    let s = side(&opts);
    let limit = decoder_limit(&opts);
    eprintln!("16-bit bombs: {s}x{s}, max_pixels {}", opts.max_pixels);
    // Measure all three before asserting, so that a failure reports every figure.
    let peaks: Vec<(&str, usize)> = [
        ("PNG RGBA16 deflate bomb", PNG_RGBA),
        ("PNG RGB16 deflate bomb", PNG_RGB),
        ("PNG grey+alpha 16-bit deflate bomb", PNG_GREY_ALPHA),
    ]
    .into_iter()
    .map(|(what, color)| (what, decode_peak(&png_bomb(s, s, 16, color, false), &opts).1))
    .collect();
    for (what, peak) in &peaks {
        eprintln!("{what:<48} peak {:>7.1} MB", *peak as f64 / 1e6);
    }
    for (what, peak) in peaks {
        check(what, peak, &opts, limit);
    }
}

#[test]
fn progressive_cmyk_jpeg_just_under_the_pixel_limit() {
    let _one = exclusive();
    let opts = bomb_opts();
    let s = side(&opts);
    let mut spec = JpegSpec::new(s as u16, s as u16, 4);
    spec.progressive = true;
    spec.adobe = Some(0);
    bomb("JPEG progressive CMYK", dc_jpeg(&spec, |_, _, _| 90), &opts, decoder_limit(&opts));
}

#[test]
fn declared_giants_cost_nothing() {
    let _one = exclusive();
    let opts = Options::default();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "PNG declaring 100000x100000",
            png_file(png_ihdr(100_000, 100_000, 8, PNG_RGBA, false), &[png_chunk(b"IDAT", &zlib_stored(&[0; 64]))]),
        ),
        ("GIF declaring 65535x65535", gif_file(65535, 65535, &[[0, 0, 0]], [gif_frame(0, 0, 1, 1, &gif_lzw(2, &[0]))])),
        ("WebP VP8L 16383x16383 (complete)", webp_file(&[(b"VP8L", vp8l_flat(16383, 16383, [255, 0, 0, 0]))])),
    ];
    for (what, bytes) in cases {
        let mime = sniff(&bytes).unwrap();
        let (d, peak) = peak_of(|| decode(&bytes, mime, true, &opts));
        assert!(d.unwrap().blurhash.is_none(), "{what}");
        check(what, peak, &opts, MB);
    }
    // JPEG declaring 65535x65535, progressive, CMYK: stopped at the header.
    let bytes = flat_jpeg(16, 16, 4, [0; 4], true);
    let at = bytes.windows(2).position(|m| m == [0xff, 0xc2]).unwrap();
    let mut giant = bytes.clone();
    giant[at + 5..at + 9].copy_from_slice(&[0xff, 0xff, 0xff, 0xff]);
    let (d, peak) = peak_of(|| decode(&giant, Format::Jpeg, true, &opts));
    assert!(d.unwrap().blurhash.is_none());
    check("JPEG declaring 65535x65535", peak, &opts, MB);
}

/// Fuzz crash oom-e57c79d8: image-webp allocated what the EXIF chunk declared (decode.rs
/// now reads the chunk itself, cut at the end of the file).
#[test]
fn a_webp_exif_chunk_declaring_gigabytes() {
    let _one = exclusive();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/sniff_decode");
    let mut bytes = std::fs::read(dir.join("webp-exif-orientation-3.webp")).unwrap();
    let at = bytes.windows(4).position(|w| w == b"EXIF").unwrap();
    bytes[at + 4..at + 8].copy_from_slice(&0x8c8c_001au32.to_le_bytes());
    let opts = Options::default();
    let (_, peak) = peak_of(|| decode(&bytes, Format::WebP, true, &opts));
    check(&format!("WebP of {} bytes, EXIF chunk declaring 2.36 GB", bytes.len()), peak, &opts, MB);
}

/// Issue 18: the files that made a decoder work and allocate far beyond their size. Each is
/// now refused at its header (dimensions and a note) or decoded within the bound, and costs
/// next to nothing either way (times: tests/hostile_images.rs).
#[test]
fn issue_18_files_stay_within_the_decoder_bound() {
    let _one = exclusive();
    let opts = Options::default();
    let mut peaks = Vec::new();
    for (what, bytes) in issue_18_files() {
        let mime = sniff(&bytes).unwrap();
        let t = std::time::Instant::now();
        let (d, peak) = peak_of(|| decode(&bytes, mime, true, &opts));
        let took = t.elapsed();
        let d = d.unwrap_or_else(|e| panic!("{what}: {e}"));
        eprintln!(
            "{what:<48} {:>8} bytes  peak {:>9.1} MB  {:>10.3?}  {}x{} {:?} {:?}",
            bytes.len(),
            peak as f64 / 1e6,
            took,
            d.header.width,
            d.header.height,
            d.blurhash,
            d.note
        );
        peaks.push((what, peak));
    }
    for (what, peak) in peaks {
        check(what, peak, &opts, 8 * MB);
    }
}

/// What webp.rs works out before decoding (the buffers image-webp will take) is an upper
/// bound of what the decode then takes, for each kind of WebP: still lossless with and
/// without alpha, lossless with transforms and prefix-code groups, lossy with alpha, and
/// animations of lossless frames. The opaque lossy files (one with a frame header declaring
/// more than the container) now go to src/vp8.rs, which takes a row of macroblocks: the rule
/// bounds them too, by far.
#[test]
fn the_webp_rule_bounds_what_image_webp_takes() {
    let _one = exclusive();
    let opts = Options::default();
    let lossy =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/sniff_decode/webp-lossy.webp")).unwrap();
    // The same lossy file, its VP8 frame header declaring 2000x2000 (the planes are allocated
    // at that size before the mismatch is found) and its RIFF container claiming so too.
    let mut lossy_2000 = lossy.clone();
    let at = lossy_2000.windows(4).position(|w| w == b"VP8 ").unwrap() + 8;
    lossy_2000[at + 6..at + 10].copy_from_slice(&[0xd0, 0x07, 0xd0, 0x07]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("VP8L flat 1500x1000", webp_file(&[(b"VP8L", vp8l_flat(1500, 1000, [255, 9, 9, 9]))])),
        ("VP8L flat with alpha 1500x1000", webp_file(&[(b"VP8L", vp8l_flat(1500, 1000, [7, 9, 9, 9]))])),
        ("VP8L photo 600x400 (image-webp's encoder)", encode_as(&photo(600, 400), image::ImageFormat::WebP)),
        ("VP8L 64 groups of 10-bit codes, 32x32", webp_file(&[(b"VP8L", vp8l_huffman_groups(32, 32, 63, 64))])),
        ("VP8 16x12 declaring 2000x2000", lossy_2000),
        (
            "VP8 with ALPH (image-webp)",
            std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/sniff_decode/webp-lossy-alpha.webp"))
                .unwrap(),
        ),
        // The sniff_decode fuzz target's finding (2026-12-03): a VP8 frame declaring 2377x4146
        // (planes of 14.9 MB) and a second partition of 13.2 MB, in 242 bytes.
        (
            "VP8 declaring a 13 MB partition",
            std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/webp-partition-13mb.webp")).unwrap(),
        ),
        (
            "animated, two VP8L frames on 1500x1000",
            webp_animated(
                1500,
                1000,
                &[
                    (0, 0, 1500, 1000, vp8l_flat(1500, 1000, [255, 0, 0, 255])),
                    (100, 100, 800, 600, vp8l_flat(800, 600, [255, 255, 0, 0])),
                ],
            ),
        ),
        (
            "animated, a small frame on 1500x1000",
            webp_animated(1500, 1000, &[(10, 20, 300, 200, vp8l_flat(300, 200, [9; 4]))]),
        ),
    ];
    let mut over = Vec::new();
    for (what, bytes) in cases {
        let (w, h) = image::ImageReader::new(std::io::Cursor::new(&bytes))
            .with_guessed_format()
            .unwrap()
            .into_dimensions()
            .unwrap();
        let rule = match media_metadata::webp::decode_cost(&bytes, w, h).unwrap() {
            media_metadata::vp8l::Verdict::Costs(c) => c as usize,
            refused => panic!("{what}: {refused:?}"),
        };
        let (d, peak) = peak_of(|| decode(&bytes, Format::WebP, true, &opts));
        eprintln!(
            "{what:<48} rule {:>7.2} MB  peak {:>7.2} MB  {:?}",
            rule as f64 / 1e6,
            peak as f64 / 1e6,
            d.map(|d| d.note)
        );
        // What the rule leaves out is in the fixed part of the overhead (tables, the shrink).
        if peak > rule + 4 * (1 << 20) {
            over.push(format!("{what}: peak {peak}, rule {rule}"));
        }
    }
    assert!(over.is_empty(), "the rule is below the peak:\n{}", over.join("\n"));
}

/// At the edge of what each rule lets through, the decode stays within the decoder bound: an
/// animated WebP and a GIF whose first frame is larger than its screen, just under the
/// refusal, and the same just over it, refused.
#[test]
fn files_just_under_the_memory_rules_decode_within_the_bound() {
    let _one = exclusive();
    let opts = bomb_opts();
    let limit = decoder_limit(&opts) as u64;
    // Animated WebP with alpha: output, canvas and frame, RGBA each, 12 bytes a pixel.
    let side = |bytes_per_pixel: u64| ((limit - 4 * (1 << 20)) as f64 / bytes_per_pixel as f64).sqrt() as u32 - 8;
    let s = side(12).min(16383) & !1;
    let under = webp_animated(s, s, &[(0, 0, s, s, vp8l_flat(s, s, [255, 0, 0, 0]))]);
    bomb(&format!("animated WebP {s}x{s}, one frame"), under, &opts, decoder_limit(&opts));
    let s = s + 64;
    let over = webp_animated(s, s, &[(0, 0, s, s, vp8l_flat(s, s, [255, 0, 0, 0]))]);
    let (d, peak) = peak_of(|| decode(&over, Format::WebP, true, &opts));
    assert!(d.unwrap().note.unwrap().contains("over the decoder limit"));
    check(&format!("animated WebP {s}x{s}, refused"), peak, &opts, MB);
    // GIF: a 1x1 screen, a first frame of max_pixels (one index and four bytes a pixel).
    let frame = (opts.max_pixels as f64).sqrt() as u16;
    let gif =
        gif_file(1, 1, &[[0, 0, 0]], [gif_frame(0, 0, frame, frame, &gif_lzw_zeros(2, frame as u64 * frame as u64))]);
    bomb(&format!("GIF {frame}x{frame} first frame on a 1x1 screen"), gif, &opts, decoder_limit(&opts));
}
