//! Hostile and unusual images: declared giants, truncated and corrupted files of every format
//! we decode, thousands of GIF frames, 16-bit and CMYK and grey+alpha colour, EXIF orientation
//! outside JPEG, and EXIF blocks that lie. Nothing may panic; every failure is a decode error
//! naming the format; sizes and colours come out right.
//!
//! Peak memory is measured in `memory.rs` (a binary with a counting allocator).

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::{Duration, Instant};

use common::craft::*;
use common::*;
use image::{metadata::Orientation, DynamicImage, RgbImage};
use media_metadata::analyze::analyze;
use media_metadata::decode::{decode, Decoded};
use media_metadata::error::Error;
use media_metadata::fetch::Fetcher;
use media_metadata::options::Options;
use media_metadata::sniff::{sniff, Format};

fn local() -> Options {
    Options { allow_private: true, ..Options::default() }
}

/// Sniffs `bytes` as one of our image types (or fails the test) and decodes it.
#[track_caller]
fn decode_image(bytes: &[u8], opts: &Options) -> Result<Decoded, Error> {
    let mime = sniff(bytes)
        .filter(|m| m.is_decoded())
        .unwrap_or_else(|| panic!("not an image: {:?}", &bytes[..bytes.len().min(16)]));
    decode(bytes, mime, true, opts)
}

/// The DC (average) colour a BlurHash carries, as sRGB.
fn dc(hash: &str) -> [i32; 3] {
    const B83: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~";
    let v = hash[2..6].bytes().fold(0i32, |v, c| v * 83 + B83.iter().position(|&b| b == c).unwrap() as i32);
    [v >> 16, (v >> 8) & 255, v & 255]
}

#[track_caller]
fn assert_colour(hash: &str, want: [i32; 3], tolerance: i32, what: &str) {
    let got = dc(hash);
    assert!(
        (0..3).all(|i| (got[i] - want[i]).abs() <= tolerance),
        "{what}: DC colour {got:?}, expected {want:?} (hash {hash})"
    );
}

/// The seed corpus of the fuzzer: small valid files from Pillow's encoders, every variant (and
/// a cwebp file with four segments and sub-block modes, for src/vp8.rs).
fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/sniff_decode");
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .filter(|(_, b)| sniff(b).is_some_and(Format::is_decoded))
        .collect();
    files.sort();
    files
}

/// Larger samples from the image crate's encoders and from `craft`.
fn generated() -> Vec<(String, Vec<u8>)> {
    let img = photo(64, 48);
    let frames = [[255u8, 0, 0], [0, 0, 255]];
    let gif_frames = (0..4).map(|i| gif_frame(0, 0, 16, 16, &gif_lzw(2, &vec![(i % 2) as u8; 256])));
    vec![
        ("image-crate.jpg".into(), jpeg(&img)),
        ("image-crate.png".into(), png(&img)),
        ("image-crate.gif".into(), encode_as(&img, image::ImageFormat::Gif)),
        ("image-crate.webp".into(), encode_as(&img, image::ImageFormat::WebP)),
        ("craft-progressive-cmyk.jpg".into(), flat_jpeg(40, 24, 4, [255, 0, 0, 255], true)),
        ("craft-progressive-420.jpg".into(), {
            let mut spec = JpegSpec::new(40, 24, 3);
            spec.luma_sampling = (2, 2);
            spec.progressive = true;
            dc_jpeg(&spec, |c, x, y| if c == 0 { (x * 6 + y) as u8 } else { 128 })
        }),
        ("craft-animated.gif".into(), gif_file(16, 16, &frames, gif_frames)),
        ("craft-flat.webp".into(), webp_file(&[(b"VP8L", vp8l_flat(40, 30, [255, 10, 200, 30]))])),
    ]
}

/// Decodes `bytes` with a panic caught: `Err(message)` if it panicked.
fn decode_catching(bytes: &[u8], opts: &Options) -> Result<Result<Decoded, Error>, String> {
    let Some(mime) = sniff(bytes).filter(|m| m.is_decoded()) else {
        return Ok(Err(Error::Decode { format: "none", why: "not sniffed as an image".into() }));
    };
    catch_unwind(AssertUnwindSafe(|| decode(bytes, mime, true, opts))).map_err(|p| match Error::from_panic(p) {
        Error::Panic(s) => s,
        other => other.to_string(),
    })
}

/// How long a damaged file may take. Unoptimised builds are 10-20 times slower in the pixel
/// loops: a damaged animated WebP declaring an 8 x 3.5 M canvas (28 MP, within max_pixels)
/// takes 3.5 s in a debug build, 0.24 s in release.
const QUICK: Duration = if cfg!(debug_assertions) { Duration::from_secs(8) } else { Duration::from_secs(2) };

/// Checks one damaged variant: no panic, quick, and any error is a decode error for the type
/// the bytes sniff as. Returns whether it decoded.
fn check_variant(name: &str, what: &str, bytes: &[u8], opts: &Options, panics: &mut Vec<String>) -> bool {
    let t = Instant::now();
    let outcome = decode_catching(bytes, opts);
    let took = t.elapsed();
    assert!(took < QUICK, "{name} {what}: took {took:?}");
    match outcome {
        Err(p) => {
            panics.push(format!("{name} {what}: panicked: {p}"));
            false
        }
        Ok(Ok(_)) => true,
        Ok(Err(Error::Decode { format, .. })) => {
            let sniffed = sniff(bytes).filter(|m| m.is_decoded()).map_or("none", Format::mime);
            assert_eq!(format, sniffed, "{name} {what}: the error names another format");
            false
        }
        Ok(Err(e)) => panic!("{name} {what}: not a decode error: {e:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// Declared giants

/// `jpeg` (baseline, from `dc_jpeg`) with the frame header's size replaced.
fn with_sof_size(jpeg: &[u8], w: u16, h: u16) -> Vec<u8> {
    let at = jpeg.windows(2).position(|m| m == [0xff, 0xc0] || m == [0xff, 0xc2]).expect("no SOF");
    let mut out = jpeg.to_vec();
    out[at + 5..at + 7].copy_from_slice(&h.to_be_bytes());
    out[at + 7..at + 9].copy_from_slice(&w.to_be_bytes());
    out
}

#[test]
fn declared_giants_are_measured_not_decoded() {
    let png_giant =
        png_file(png_ihdr(100_000, 100_000, 8, PNG_RGB, false), &[png_chunk(b"IDAT", &zlib_stored(&[0; 64]))]);
    let jpeg_giant = with_sof_size(&flat_jpeg(16, 16, 3, [200, 10, 10, 0], false), 65535, 65535); // JPEG's largest
    let jpeg_giant_progressive = with_sof_size(&flat_jpeg(16, 16, 4, [255, 0, 0, 255], true), 65535, 65535);
    let gif_giant = gif_file(65535, 65535, &[[255, 0, 0]], [gif_frame(0, 0, 1, 1, &gif_lzw(2, &[0]))]);
    // A complete and valid WebP of 16383 x 16383 pixels in 40 bytes. (VP8L's largest is
    // 16384, but image-webp 0.2.4 reads a width of 16384 as 0: `(1 + header) & 0x3FFF`.)
    let webp_giant = webp_file(&[(b"VP8L", vp8l_flat(16383, 16383, [255, 200, 0, 0]))]);
    let cases: [(&str, &[u8], (u32, u32)); 5] = [
        ("png", &png_giant, (100_000, 100_000)),
        ("jpeg", &jpeg_giant, (65535, 65535)),
        ("progressive cmyk jpeg", &jpeg_giant_progressive, (65535, 65535)),
        ("gif", &gif_giant, (65535, 65535)),
        ("webp", &webp_giant, (16383, 16383)),
    ];
    for (what, bytes, (w, h)) in cases {
        let t = Instant::now();
        let d = decode_image(bytes, &Options::default()).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!((d.header.width, d.header.height, d.blurhash.as_deref()), (w, h, None), "{what}");
        assert!(d.note.as_deref().unwrap_or_default().contains("max_pixels"), "{what}: {:?}", d.note);
        assert!(t.elapsed() < Duration::from_millis(500), "{what}: {:?}", t.elapsed());
    }
    // Through the whole pipeline, from a server, for PNG and JPEG.
    let s = Server::start(vec![
        ("/giant.png", Reply::Ok("image/png", png_giant)),
        ("/giant.jpg", Reply::Ok("image/jpeg", jpeg_giant)),
    ]);
    for (path, side) in [("/giant.png", 100_000), ("/giant.jpg", 65535)] {
        let m = analyze(&Fetcher::new(local()), &s.url(path)).unwrap();
        assert_eq!((m.width, m.height, m.blurhash), (Some(side), Some(side), None), "{path}");
    }
}

#[test]
fn the_pixel_limit_is_exact_for_every_format() {
    let (w, h) = (40u32, 25u32);
    let samples: [(&str, Vec<u8>); 5] = [
        ("png", png(&photo(w, h))),
        ("jpeg", jpeg(&photo(w, h))),
        ("progressive jpeg", flat_jpeg(w as u16, h as u16, 3, [10, 200, 10, 0], true)),
        ("gif", encode_as(&photo(w, h), image::ImageFormat::Gif)),
        ("webp", webp_file(&[(b"VP8L", vp8l_flat(w, h, [255, 10, 20, 30]))])),
    ];
    for (what, bytes) in samples {
        let at = decode_image(&bytes, &Options { max_pixels: (w * h) as u64, ..Options::default() }).unwrap();
        assert!(at.blurhash.is_some(), "{what}: at the limit, hashed");
        let over = decode_image(&bytes, &Options { max_pixels: (w * h) as u64 - 1, ..Options::default() }).unwrap();
        assert_eq!((over.blurhash, over.header.width), (None, w), "{what}: one pixel over, measured only");
    }
}

/// Bombs within the pixel limit are decoded, fast (their memory is in memory.rs).
#[test]
fn decompression_bombs_under_the_limit_decode_quickly() {
    let opts = Options { max_pixels: 4_000_000, ..Options::default() };
    // All-zero pixels: transparent ones (flattened onto grey 128) or opaque black.
    let cases: Vec<(&str, Vec<u8>, i32)> = vec![
        ("png rgba 2000x2000", png_bomb(2000, 2000, 8, PNG_RGBA, false), 128),
        ("png rgba16 interlaced 2000x2000", png_bomb(2000, 2000, 16, PNG_RGBA, true), 128),
        ("png palette 1-bit 2000x2000", png_bomb(2000, 2000, 1, PNG_PALETTE, false), 0),
        ("webp 2000x2000", webp_file(&[(b"VP8L", vp8l_flat(2000, 2000, [255, 0, 0, 0]))]), 0),
        (
            "gif 2000x2000",
            gif_file(2000, 2000, &[[0, 0, 0]], [gif_frame(0, 0, 2000, 2000, &gif_lzw(2, &vec![0; 4_000_000]))]),
            0,
        ),
    ];
    for (what, bytes, grey) in cases {
        let t = Instant::now();
        let d = decode_image(&bytes, &opts).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(d.blurhash.is_some(), "{what}");
        assert_colour(d.blurhash.as_deref().unwrap(), [grey; 3], 1, what);
        eprintln!("{what}: {} bytes, decoded in {:?}", bytes.len(), t.elapsed());
        assert!(t.elapsed() < Duration::from_secs(10), "{what}: {:?}", t.elapsed());
    }
}

// ---------------------------------------------------------------------------------------
// Damaged files

#[test]
fn truncated_files_of_every_format_are_decode_errors_never_panics() {
    let opts = Options::default();
    let mut panics = Vec::new();
    let (mut variants, mut decoded) = (0, 0);
    for (name, bytes) in corpus().into_iter().chain(generated()) {
        let step = (bytes.len() / 400).max(1);
        for cut in (0..bytes.len()).step_by(step) {
            variants += 1;
            decoded += check_variant(&name, &format!("cut at {cut}"), &bytes[..cut], &opts, &mut panics) as usize;
        }
        // (The issue 18 seeds are there to be refused, or cut short themselves.)
        if !name.starts_with("regression-issue18-") {
            assert!(decode_image(&bytes, &opts).is_ok(), "{name}: the whole file must decode");
        }
    }
    eprintln!("{variants} truncations, {decoded} still decoded (a partial last frame or scan)");
    assert!(panics.is_empty(), "{} panics:\n{}", panics.len(), panics.join("\n"));
    assert!(variants > 5000, "{variants}");
}

/// xorshift64*: reproducible damage without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn corrupted_files_of_every_format_are_decode_errors_never_panics() {
    let opts = Options::default();
    let mut panics = Vec::new();
    let (mut variants, mut decoded) = (0, 0);
    for (name, bytes) in corpus().into_iter().chain(generated()) {
        // Seeded by the file's name, so that a new seed file leaves the others' variants alone.
        let mut rng =
            Rng(name.bytes().fold(0x9e37_79b9_7f4a_7c15, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3)));
        for v in 0..300 {
            let mut damaged = bytes.clone();
            let edits = 1 + rng.below(8);
            for _ in 0..edits {
                // Half the edits land in the first 64 bytes, where the headers are.
                let at = if rng.below(2) == 0 { rng.below(damaged.len().min(64)) } else { rng.below(damaged.len()) };
                match rng.below(4) {
                    0 => damaged[at] ^= 1 << rng.below(8),
                    1 => damaged[at] = rng.next() as u8,
                    2 => damaged[at] = [0x00, 0xff, 0x7f, 0x80][rng.below(4)],
                    _ => {
                        // A length or size field set to something huge.
                        let end = (at + 4).min(damaged.len());
                        damaged[at..end].iter_mut().for_each(|b| *b = 0xff);
                    }
                }
            }
            // Keep the signature sometimes broken, mostly not: the decoders are the target.
            if v % 10 != 0 {
                let keep = 12.min(bytes.len());
                damaged[..keep].copy_from_slice(&bytes[..keep]);
            }
            variants += 1;
            decoded += check_variant(&name, &format!("variant {v}"), &damaged, &opts, &mut panics) as usize;
        }
    }
    eprintln!("{variants} corrupted variants, {decoded} still decoded");
    assert!(panics.is_empty(), "{} panics:\n{}", panics.len(), panics.join("\n"));
}

#[test]
fn targeted_header_lies_are_decode_errors() {
    let good_png = png(&photo(8, 8));
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    for (what, depth, color) in [
        ("png bit depth 3", 3u8, PNG_RGB),
        ("png colour type 5", 8, 5),
        ("png 16-bit palette", 16, PNG_PALETTE),
        ("png 1-bit rgb", 1, PNG_RGB),
    ] {
        cases.push((
            what,
            png_file(png_ihdr(8, 8, depth, color, false), &[png_chunk(b"IDAT", &zlib_stored(&[0; 200]))]),
        ));
    }
    cases.push((
        "png width 0",
        png_file(png_ihdr(0, 8, 8, PNG_RGB, false), &[png_chunk(b"IDAT", &zlib_stored(&[0; 8]))]),
    ));
    cases.push((
        "png palette without PLTE",
        png_file(png_ihdr(8, 8, 8, PNG_PALETTE, false), &[png_chunk(b"IDAT", &zlib_stored(&[0; 72]))]),
    ));
    cases.push(("png chunk length 2^31", {
        let mut b = good_png.clone();
        b[33..37].copy_from_slice(&0x7fff_ffffu32.to_be_bytes());
        b
    }));
    cases.push((
        "png IDAT of garbage",
        png_file(png_ihdr(8, 8, 8, PNG_RGB, false), &[png_chunk(b"IDAT", b"\x78\x01garbage, not deflate")]),
    ));
    cases.push(("png no IDAT", png_file(png_ihdr(8, 8, 8, PNG_RGB, false), &[])));
    let jpg = flat_jpeg(16, 16, 3, [1, 2, 3, 0], false);
    let sof = jpg.windows(2).position(|m| m == [0xff, 0xc0]).unwrap();
    cases.push(("jpeg width 0", with_sof_size(&jpg, 0, 16)));
    cases.push(("jpeg 0 components", {
        let mut b = jpg.clone();
        b[sof + 9] = 0;
        b
    }));
    cases.push(("jpeg 255 components", {
        let mut b = jpg.clone();
        b[sof + 9] = 255;
        b
    }));
    cases.push(("jpeg sampling 0x0", {
        let mut b = jpg.clone();
        b[sof + 11] = 0;
        b
    }));
    cases.push(("jpeg sampling 15x15", {
        let mut b = jpg.clone();
        b[sof + 11] = 0xff;
        b
    }));
    cases.push(("jpeg missing Huffman table", {
        let dht = jpg.windows(2).position(|m| m == [0xff, 0xc4]).unwrap();
        let len = u16::from_be_bytes([jpg[dht + 2], jpg[dht + 3]]) as usize;
        [&jpg[..dht], &jpg[dht + 2 + len..]].concat()
    }));
    cases.push(("jpeg SOS before SOF", {
        let sos = jpg.windows(2).position(|m| m == [0xff, 0xda]).unwrap();
        [&jpg[..sof], &jpg[sos..]].concat()
    }));
    cases
        .push(("gif LZW code size 12", gif_file(8, 8, &[[0, 0, 0]], [gif_frame(0, 0, 8, 8, &[12, 2, 0xff, 0xff, 0])])));
    cases.push(("gif LZW code size 0", gif_file(8, 8, &[[0, 0, 0]], [gif_frame(0, 0, 8, 8, &[0, 2, 0xff, 0xff, 0])])));
    cases.push((
        "gif frame outside the screen",
        gif_file(8, 8, &[[9, 9, 9]], [gif_frame(60000, 60000, 8, 8, &gif_lzw(2, &[0; 64]))]),
    ));
    cases.push((
        "gif frame larger than the screen",
        gif_file(8, 8, &[[9, 9, 9]], [gif_frame(0, 0, 300, 300, &gif_lzw(2, &vec![0; 90000]))]),
    ));
    cases.push(("gif no frames", gif_file(8, 8, &[[9, 9, 9]], [])));
    cases.push(("gif frame of 0x0", gif_file(8, 8, &[[9, 9, 9]], [gif_frame(0, 0, 0, 0, &gif_lzw(2, &[]))])));
    cases.push(("webp RIFF size 2^32-1", {
        let mut b = webp_file(&[(b"VP8L", vp8l_flat(8, 8, [255, 1, 2, 3]))]);
        b[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        b
    }));
    cases.push(("webp chunk size 2^32-1", {
        let mut b = webp_file(&[(b"VP8L", vp8l_flat(8, 8, [255, 1, 2, 3]))]);
        b[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        b
    }));
    cases.push(("webp VP8X canvas 2^24 without an image", webp_file(&[(b"VP8X", vp8x(1 << 24, 1 << 24, 0))])));
    cases.push((
        "webp VP8X canvas unlike the image",
        webp_file(&[(b"VP8X", vp8x(16384, 16384, 0)), (b"VP8L", vp8l_flat(8, 8, [255, 1, 2, 3]))]),
    ));
    cases.push((
        "webp animation flag without frames",
        webp_file(&[(b"VP8X", vp8x(100, 100, 0x02)), (b"ANIM", vec![0; 6])]),
    ));
    cases.push(("webp empty VP8 chunk", webp_file(&[(b"VP8 ", vec![])])));
    let mut panics = Vec::new();
    for (what, bytes) in &cases {
        let decoded = check_variant(what, "", bytes, &Options::default(), &mut panics);
        if decoded {
            eprintln!("{what}: decoded anyway");
        }
    }
    assert!(panics.is_empty(), "{} panics:\n{}", panics.len(), panics.join("\n"));
}

// ---------------------------------------------------------------------------------------
// Animation

#[test]
fn an_animated_gif_of_thousands_of_frames_decodes_only_the_first() {
    let (side, count) = (200u16, 5000);
    let first = gif_frame(0, 0, side, side, &gif_lzw(2, &vec![0; side as usize * side as usize]));
    let blue = gif_lzw(2, &vec![1; side as usize * side as usize]);
    let many = gif_file(
        side,
        side,
        &[[255, 0, 0], [0, 0, 255]],
        std::iter::once(first.clone()).chain((1..count).map(|_| gif_frame(0, 0, side, side, &blue))),
    );
    let single = gif_file(side, side, &[[255, 0, 0], [0, 0, 255]], [first]);
    assert!(many.len() > 400_000, "{}", many.len());

    let t = Instant::now();
    let one = decode_image(&single, &Options::default()).unwrap();
    let single_time = t.elapsed();
    let t = Instant::now();
    let d = decode_image(&many, &Options::default()).unwrap();
    let many_time = t.elapsed();
    eprintln!("1 frame: {single_time:?}; {count} frames: {many_time:?}");
    assert_eq!((d.header.width, d.header.height), (side as u32, side as u32));
    let hash = d.blurhash.unwrap();
    assert_eq!(Some(&hash), one.blurhash.as_ref());
    assert_colour(&hash, [255, 0, 0], 1, "the first frame is red, every later one blue");
    // Decoding every frame would cost `count` times a single frame.
    assert!(
        many_time < single_time * 20 + Duration::from_millis(300),
        "{count} frames took {many_time:?}, one {single_time:?}"
    );

    // And through a server: the whole file is fetched, still only one frame decoded.
    let s = Server::start(vec![("/many.gif", Reply::Ok("image/gif", many))]);
    let t = Instant::now();
    let m = analyze(&Fetcher::new(local()), &s.url("/many.gif")).unwrap();
    assert_eq!(m.blurhash, Some(hash));
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

#[test]
fn an_animated_webp_hashes_its_first_frame() {
    let anim = corpus().into_iter().find(|(n, _)| n == "webp-animated.webp").unwrap().1;
    let d = decode_image(&anim, &Options::default()).unwrap();
    assert_eq!((d.header.width, d.header.height), (8, 8));
    // Frame 2 is pure blue; frame 1 is the test picture (red block, gradients).
    assert!(dc(d.blurhash.as_deref().unwrap())[2] < 200, "{:?}", d.blurhash);
}

// ---------------------------------------------------------------------------------------
// Colour models

/// A picture as 16-bit samples: the 8-bit value repeated (v * 257), so both hash alike.
fn to_16_bit(raw8: &[u8]) -> Vec<u8> {
    raw8.iter().flat_map(|&v| (v as u16 * 257).to_be_bytes()).collect()
}

#[test]
fn sixteen_bit_png_hashes_like_its_eight_bit_twin() {
    let img = photo(48, 32);
    let rgba = DynamicImage::ImageRgb8(img.clone()).into_rgba8();
    let luma = DynamicImage::ImageRgb8(img.clone()).into_luma8();
    let luma_alpha = DynamicImage::ImageRgb8(img.clone()).into_luma_alpha8();
    let cases: [(&str, u8, &[u8]); 4] = [
        ("rgb", PNG_RGB, img.as_raw()),
        ("rgba", PNG_RGBA, rgba.as_raw()),
        ("grey", PNG_GREY, luma.as_raw()),
        ("grey+alpha", PNG_GREY_ALPHA, luma_alpha.as_raw()),
    ];
    for (what, color, raw8) in cases {
        let eight = decode_image(&png_stored(48, 32, 8, color, raw8), &Options::default()).unwrap();
        let sixteen = decode_image(&png_stored(48, 32, 16, color, &to_16_bit(raw8)), &Options::default()).unwrap();
        assert_eq!((sixteen.header.width, sixteen.header.height), (48, 32), "{what}");
        let (a, b) = (eight.blurhash.unwrap(), sixteen.blurhash.unwrap());
        assert!(hash_distance(&a, &b) < 1.0, "{what}: 8-bit {a} vs 16-bit {b}");
    }
    // Pure red at 16 bits is red.
    let red: Vec<u8> = (0..16 * 16).flat_map(|_| [0xff, 0xff, 0, 0, 0, 0]).collect();
    let d = decode_image(&png_stored(16, 16, 16, PNG_RGB, &red), &Options::default()).unwrap();
    assert_colour(&d.blurhash.unwrap(), [255, 0, 0], 1, "16-bit red");
    // Pillow's 16-bit RGBA (built by hand in make_corpus.py) decodes too.
    let pillow = corpus().into_iter().find(|(n, _)| n == "png-rgba16.png").unwrap().1;
    assert_eq!(decode_image(&pillow, &Options::default()).unwrap().header.width, 6);
}

#[test]
fn cmyk_jpeg_hashes_to_its_colour() {
    // Pillow's CMYK JPEG (libjpeg, Adobe APP14, inverted): ink C=0 M=255 Y=255 K=0 is red.
    let pillow = corpus().into_iter().find(|(n, _)| n == "jpeg-cmyk-red.jpg").unwrap().1;
    let d = decode_image(&pillow, &Options::default()).unwrap();
    assert_colour(d.blurhash.as_deref().unwrap(), [255, 0, 0], 2, "Pillow CMYK red");

    // Hand-made, baseline and progressive: Adobe-inverted values as stored in the file.
    for progressive in [false, true] {
        for (what, stored, rgb) in [
            ("red", [255u8, 0, 0, 255], [255, 0, 0]),
            ("green", [0, 255, 0, 255], [0, 255, 0]),
            ("blue", [0, 0, 255, 255], [0, 0, 255]),
            ("black (K)", [255, 255, 255, 0], [0, 0, 0]),
            ("white", [255, 255, 255, 255], [255, 255, 255]),
        ] {
            let d = decode_image(&flat_jpeg(32, 16, 4, stored, progressive), &Options::default()).unwrap();
            assert_colour(d.blurhash.as_deref().unwrap(), rgb, 2, &format!("CMYK {what} (progressive {progressive})"));
        }
    }
    // Left half red, right half blue: the channels land on the right side too.
    let mut spec = JpegSpec::new(64, 16, 4);
    spec.adobe = Some(0);
    let jpeg = dc_jpeg(&spec, |c, x, _| if x < 32 { [255, 0, 0, 255][c] } else { [0, 0, 255, 255][c] });
    let d = decode_image(&jpeg, &Options::default()).unwrap();
    let px = media_metadata::blurhash::decode(d.blurhash.as_deref().unwrap(), 4, 1, 1.0).unwrap();
    let (left, right) = (&px[0..3], &px[12..15]);
    // Four cosine terms cannot hold a hard edge: the reference encoder paints the same RGB
    // picture's left pixel as [246, 2, 129]. What must hold is which side is which colour.
    assert!(left[0] > 200 && left[0] > left[2] + 60, "left should be red: {left:?}");
    assert!(right[2] > 200 && right[2] > right[0] + 60, "right should be blue: {right:?}");
}

/// sRGB `c` at `alpha` over the grey (128) the library flattens onto, blended in sRGB as
/// browsers composite (src/blurhash.rs `to_linear`).
fn over_grey(c: u8, alpha: u8) -> i32 {
    let (c, a) = (c as i32, alpha as i32);
    (c * a + 128 * (255 - a) + 127) / 255
}

#[test]
fn grey_alpha_png_is_flattened_onto_grey() {
    for (grey, alpha) in [(255u8, 128u8), (0, 128), (255, 0), (0, 255), (200, 255), (30, 64)] {
        let raw: Vec<u8> = (0..24 * 16).flat_map(|_| [grey, alpha]).collect();
        let d = decode_image(&png_stored(24, 16, 8, PNG_GREY_ALPHA, &raw), &Options::default()).unwrap();
        let want = over_grey(grey, alpha);
        assert_colour(d.blurhash.as_deref().unwrap(), [want; 3], 1, &format!("grey {grey} alpha {alpha}"));
        // The same at 16 bits.
        let d16 = decode_image(&png_stored(24, 16, 16, PNG_GREY_ALPHA, &to_16_bit(&raw)), &Options::default()).unwrap();
        assert_colour(d16.blurhash.as_deref().unwrap(), [want; 3], 1, &format!("16-bit grey {grey} alpha {alpha}"));
    }
    let pillow = corpus().into_iter().find(|(n, _)| n == "png-grey-alpha.png").unwrap().1;
    assert!(decode_image(&pillow, &Options::default()).unwrap().blurhash.is_some());
}

// ---------------------------------------------------------------------------------------
// EXIF

/// Checks that `make(o)` (the picture `stored` with EXIF orientation `o`) comes out upright.
fn check_orientations(format: &str, stored: &RgbImage, make: impl Fn(u16) -> Vec<u8>) {
    for o in 1..=8u8 {
        let d = decode_image(&make(o as u16), &Options::default()).unwrap_or_else(|e| panic!("{format} {o}: {e}"));
        assert_eq!(d.header.orientation, o, "{format}: orientation {o} not read");
        let mut upright = DynamicImage::ImageRgb8(stored.clone());
        upright.apply_orientation(Orientation::from_exif(o).unwrap());
        let upright = upright.into_rgb8();
        assert_eq!(d.header.upright(), (upright.width(), upright.height()), "{format} orientation {o}");
        let (cx, cy) = if upright.width() >= upright.height() { (4, 3) } else { (3, 4) };
        let hash = d.blurhash.unwrap();
        let near = hash_distance(&hash, &reference_hash(&upright, cx, cy));
        assert!(near < 3.0, "{format} orientation {o}: {near} from the upright reference");
        if o != 1 && hash.len() == 28 {
            let unrotated = hash_distance(&hash, &reference_hash(stored, 4, 3));
            assert!(unrotated > near + 5.0, "{format} orientation {o} made no difference ({unrotated} vs {near})");
        }
    }
}

#[test]
fn every_exif_orientation_is_applied_to_png_via_exif_chunk() {
    let stored = photo(90, 60);
    let plain = png(&stored);
    for big_endian in [true, false] {
        check_orientations("png eXIf", &stored, |o| {
            png_insert_after_ihdr(&plain, &png_chunk(b"eXIf", &exif_tiff(o, big_endian)))
        });
    }
    // Pillow's PNG with orientation 8.
    let pillow = corpus().into_iter().find(|(n, _)| n == "png-exif-orientation-8.png").unwrap().1;
    let d = decode_image(&pillow, &Options::default()).unwrap();
    assert_eq!((d.header.orientation, d.header.upright()), (8, (12, 16)));
}

#[test]
fn every_exif_orientation_is_applied_to_webp() {
    let stored = photo(90, 60);
    let lossless = encode_as(&stored, image::ImageFormat::WebP);
    let vp8l = webp_chunk(&lossless, b"VP8L").expect("the image crate writes VP8L");
    check_orientations("webp EXIF", &stored, |o| {
        webp_file(&[(b"VP8X", vp8x(90, 60, 0x08)), (b"VP8L", vp8l.clone()), (b"EXIF", exif_tiff(o, o % 2 == 0))])
    });
    let pillow = corpus().into_iter().find(|(n, _)| n == "webp-exif-orientation-3.webp").unwrap().1;
    let d = decode_image(&pillow, &Options::default()).unwrap();
    assert_eq!((d.header.orientation, d.header.upright()), (3, (16, 12)));
}

#[test]
fn exif_that_lies_is_ignored_or_an_error_never_a_panic() {
    let stored = photo(48, 32);
    let plain_jpeg = jpeg(&stored);
    let plain_png = png(&stored);
    let good = exif_tiff(6, true);
    let patched = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut t = good.clone();
        f(&mut t);
        t
    };
    // TIFF blocks that lie inside; each is carried in a well-formed APP1, eXIf chunk and EXIF chunk.
    let lying_tiffs: Vec<(&str, Vec<u8>)> = vec![
        ("IFD offset past the end", patched(&|t| t[4..8].copy_from_slice(&0xffff_fff0u32.to_be_bytes()))),
        ("IFD offset 0", patched(&|t| t[4..8].copy_from_slice(&0u32.to_be_bytes()))),
        ("65535 entries, one present", patched(&|t| t[8..10].copy_from_slice(&[0xff, 0xff]))),
        ("orientation 9", patched(&|t| t[18..20].copy_from_slice(&9u16.to_be_bytes()))),
        ("orientation 0", patched(&|t| t[18..20].copy_from_slice(&0u16.to_be_bytes()))),
        ("orientation 65535", patched(&|t| t[18..20].copy_from_slice(&[0xff, 0xff]))),
        ("count 2^32-1", patched(&|t| t[14..18].copy_from_slice(&u32::MAX.to_be_bytes()))),
        ("type LONG", patched(&|t| t[12..14].copy_from_slice(&4u16.to_be_bytes()))),
        ("cut after the header", good[..8].to_vec()),
        ("cut in the entry", good[..15].to_vec()),
        ("byte order XX", patched(&|t| t[..2].copy_from_slice(b"XX"))),
        ("empty", Vec::new()),
    ];
    for (what, tiff) in &lying_tiffs {
        let cases = [
            ("jpeg", jpeg_insert_after_soi(&plain_jpeg, &jpeg_app1(tiff, None))),
            ("png", png_insert_after_ihdr(&plain_png, &png_chunk(b"eXIf", tiff))),
        ];
        for (format, bytes) in cases {
            let d = decode_image(&bytes, &Options::default()).unwrap_or_else(|e| panic!("{format}, {what}: {e}"));
            // Only an intact orientation entry may count (the 65535-entry IFD still has its
            // first entry intact); anything else is orientation 1, and the pixels are intact.
            let expect = if *what == "65535 entries, one present" { 6 } else { 1 };
            assert_eq!(d.header.orientation, expect, "{format}, {what}");
            assert!(d.blurhash.is_some(), "{format}, {what}");
        }
    }

    // APP1 segments whose length field lies about the segment itself.
    let mut panics = Vec::new();
    for declared in [0u16, 1, 2, 3, 8, 0x7fff, 0xffff] {
        let bytes = jpeg_insert_after_soi(&plain_jpeg, &jpeg_app1(&good, Some(declared)));
        check_variant("jpeg APP1", &format!("declaring {declared} bytes"), &bytes, &Options::default(), &mut panics);
    }
    // An APP1 longer than the file: it swallows the image, which cannot then decode.
    let bytes = jpeg_insert_after_soi(&plain_jpeg, &jpeg_app1(&good, Some(0xffff)));
    assert!(matches!(decode_image(&bytes, &Options::default()), Err(Error::Decode { format: "image/jpeg", .. })));
    // A PNG eXIf chunk whose length runs past the end of the file.
    let mut long_chunk = png_chunk(b"eXIf", &good);
    long_chunk[..4].copy_from_slice(&0x00ff_ffffu32.to_be_bytes());
    let bytes = png_insert_after_ihdr(&plain_png, &long_chunk);
    check_variant("png eXIf", "longer than the file", &bytes, &Options::default(), &mut panics);
    assert!(matches!(decode_image(&bytes, &Options::default()), Err(Error::Decode { format: "image/png", .. })));
    // A WebP EXIF chunk whose length runs past the end of the file.
    let vp8l = webp_chunk(&encode_as(&stored, image::ImageFormat::WebP), b"VP8L").unwrap();
    let mut bytes = webp_file(&[(b"VP8X", vp8x(48, 32, 0x08)), (b"VP8L", vp8l), (b"EXIF", good.clone())]);
    let exif_at = bytes.windows(4).position(|w| w == b"EXIF").unwrap();
    bytes[exif_at + 4..exif_at + 8].copy_from_slice(&0x0fff_ffffu32.to_le_bytes());
    check_variant("webp EXIF", "longer than the file", &bytes, &Options::default(), &mut panics);
    assert!(panics.is_empty(), "{}", panics.join("\n"));
}

// ---------------------------------------------------------------------------------------
// Regressions from fuzzing (fuzz/fuzz_targets/sniff_decode.rs)

/// The crash `oom-e57c79d8c903b6dd392ce962b264b34c841fb43e` (sniff_decode, found in 10 s):
/// Pillow's WebP with its EXIF chunk's size field set to 0x8C8C001A. Reading the orientation
/// (decode.rs `decoder.orientation()`) makes image-webp allocate the declared 2.36 GB
/// (`vec![0; size]` in `read_chunk`), without checking it against the file or a limit: image
/// 0.25 does not pass `max_alloc` on to image-webp. Up to 4 GiB per 150-byte file. Fixed by
/// reading the chunk ourselves (decode.rs `webp_exif`).
fn webp_with_lying_exif_size(size: u32) -> Vec<u8> {
    let mut bytes = corpus().into_iter().find(|(n, _)| n == "webp-exif-orientation-3.webp").unwrap().1;
    let at = bytes.windows(4).position(|w| w == b"EXIF").unwrap();
    bytes[at + 4..at + 8].copy_from_slice(&size.to_le_bytes());
    bytes
}

const CHILD: &str = "MEDIA_METADATA_TEST_RLIMIT_CHILD";

/// In a child process (see below): decodes the file under an address-space limit.
#[test]
fn rlimit_child_decodes_the_lying_webp() {
    if std::env::var_os(CHILD).is_none() {
        return; // only meaningful when started by the test below
    }
    // Room for what the process has mapped already, plus 512 MiB: more than the decoder limit
    // for these options (8 * max_pixels = 8 MiB), far less than the declared chunk.
    let vm_kb: u64 = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    let limit = (vm_kb * 1024 + (512 << 20)) as libc::rlim_t;
    let rl = libc::rlimit { rlim_cur: limit, rlim_max: limit };
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &rl) }, 0);
    let opts = Options { max_pixels: 1 << 20, ..Options::default() };
    let outcome = decode_image(&webp_with_lying_exif_size(0x8c8c_001a), &opts);
    println!("survived: {:?}", outcome.map(|d| d.header));
}

#[test]
fn a_webp_exif_chunk_declaring_gigabytes_is_not_allocated() {
    // A child process with an address-space limit, as a small server without overcommit has:
    // an allocation failure there is an abort, which no catch_unwind turns into an error.
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "rlimit_child_decodes_the_lying_webp", "--nocapture", "--test-threads", "1"])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("survived"),
        "the decode killed its process ({}):\n{}\n{}",
        out.status,
        stdout.lines().filter(|l| l.contains("survived")).collect::<Vec<_>>().join("\n"),
        stderr
            .lines()
            .filter(|l| l.contains("memory allocation") || l.contains("panicked"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Without a memory limit the same file must still be an error or a header, never a panic,
/// whatever size its EXIF chunk declares.
#[test]
fn a_webp_exif_chunk_of_any_declared_size_never_panics() {
    let opts = Options { max_pixels: 1 << 20, ..Options::default() };
    let mut panics = Vec::new();
    for size in [0u32, 1, 7, 8, 9, 100, 1 << 20, 0x0fff_ffff] {
        check_variant(
            "webp EXIF",
            &format!("declaring {size} bytes"),
            &webp_with_lying_exif_size(size),
            &opts,
            &mut panics,
        );
    }
    assert!(panics.is_empty(), "{}", panics.join("\n"));
}

// ---------------------------------------------------------------------------------------
// Issue 18: files that cost far more to decode than they weigh (their memory: memory.rs)

/// The least of three timings of `f`.
fn fastest(mut f: impl FnMut()) -> Duration {
    (0..3)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap()
}

/// Each of issue 18's files is measured at its header (or, for the iCCP one, decoded without
/// its profile), with a note saying why, in less time than decoding a 640x480 photo takes:
/// a ratio, not a raw timing, so that it holds in any build on a busy machine. Before the fix
/// they took 0.4 to 13.6 s (release).
#[test]
fn issue_18_files_are_measured_or_decoded_in_less_than_a_photo_takes() {
    let photo_jpeg = jpeg(&photo(640, 480));
    let opts = Options::default();
    let reference = fastest(|| assert!(decode_image(&photo_jpeg, &opts).unwrap().blurhash.is_some()));
    // name -> (stored width, height, what the note says; None: hashed)
    let expect = |name: &str| -> ((u32, u32), Option<&str>) {
        match name {
            n if n.starts_with("lossless JPEG") => ((7000, 7000), Some("lossless JPEG (SOF3)")),
            n if n.starts_with("baseline JPEG") => ((7000, 7000), Some("1000 scans in a sequential frame")),
            n if n.starts_with("VP8L") => ((1, 1), Some("names prefix-code group 65535")),
            n if n.starts_with("PNG 50000000x1") => ((50_000_000, 1), Some("over 65535")),
            n if n.contains("iCCP") => ((1, 1), None),
            n if n.starts_with("GIF") => ((1, 1), Some("first frame of 10000x10000")),
            n if n.starts_with("animated WebP") => ((7071, 7071), Some("over the decoder limit")),
            other => panic!("no expectation for {other}"),
        }
    };
    let mut slow = Vec::new();
    for (name, bytes) in issue_18_files() {
        let ((w, h), note) = expect(name);
        let mut d = None;
        let took = fastest(|| d = Some(decode_image(&bytes, &opts).unwrap_or_else(|e| panic!("{name}: {e}"))));
        let d = d.unwrap();
        eprintln!(
            "{name:<48} {took:>10.3?} ({:.3} of a photo)  {:?}",
            took.as_secs_f64() / reference.as_secs_f64(),
            d.note
        );
        assert_eq!((d.header.width, d.header.height), (w, h), "{name}");
        match note {
            Some(n) => {
                assert_eq!(d.blurhash, None, "{name}");
                assert!(d.note.as_deref().unwrap_or_default().contains(n), "{name}: {:?}", d.note);
            }
            None => assert_colour(d.blurhash.as_deref().expect(name), [0, 0, 0], 1, name),
        }
        if took > reference {
            slow.push(format!("{name}: {took:?}, a photo {reference:?}"));
        }
    }
    assert!(slow.is_empty(), "slower than decoding a 640x480 photo:\n{}", slow.join("\n"));
}

/// JPEG in a coding process no chat client sends: measured from its frame header (EXIF
/// orientation applied), never handed to jpeg-decoder, which took 13.6 s and 1.1 GiB for ten
/// empty lossless scans and refuses arithmetic and hierarchical files outright.
#[test]
fn jpeg_that_no_chat_client_sends_is_measured_not_decoded() {
    let plain = flat_jpeg(48, 32, 3, [200, 10, 10, 0], false);
    let sof = plain.windows(2).position(|m| m == [0xff, 0xc0]).unwrap();
    let with_marker = |marker: u8| {
        let mut b = with_exif_orientation(&plain, 6);
        let at = sof + 1 + b.len() - plain.len(); // the APP1 segment went in before it
        b[at] = marker;
        b
    };
    for (marker, what) in [(0xc3, "lossless"), (0xc5, "hierarchical"), (0xc9, "arithmetic-coded"), (0xca, "arithmetic")]
    {
        let d = decode_image(&with_marker(marker), &Options::default()).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!((d.header.upright(), d.blurhash.as_deref()), ((32, 48), None), "{what}: orientation 6 applied");
        assert!(d.note.as_deref().unwrap_or_default().starts_with(what), "{what}: {:?}", d.note);
    }
    // The same from a server: type and dimensions known, no blurhash.
    let s =
        Server::start(vec![("/lossless.jpg", Reply::Ok("image/jpeg", jpeg_lossless_empty_scans(7000, 7000, 3, 10)))]);
    let m = analyze(&Fetcher::new(local()), &s.url("/lossless.jpg")).unwrap();
    assert_eq!((m.mime.as_deref(), m.width, m.height, m.blurhash), (Some("image/jpeg"), Some(7000), Some(7000), None));
    assert!(m.note.unwrap().contains("lossless"));
}

/// `jpeg` with `n` more AC scans, holding no data, before its end.
fn with_empty_ac_scans(jpeg: &[u8], n: usize) -> Vec<u8> {
    let mut out = jpeg[..jpeg.len() - 2].to_vec();
    for _ in 0..n {
        out.extend_from_slice(&[0xff, 0xda, 0, 8, 1, 1, 0x00, 1, 63, 0]);
    }
    out.extend_from_slice(&[0xff, 0xd9]);
    out
}

/// Scans past what any encoder writes, or work past what any encoder's scans take: a
/// sequential frame has one scan per component (T.81); a progressive one at most
/// `MAX_PROGRESSIVE_SCANS`, and at most `MAX_PASSES` passes over the picture; and scans hold
/// at least the data their blocks need (empty ones are damage). At each limit the file still
/// decodes.
#[test]
fn jpeg_with_more_scans_or_work_than_any_encoder_writes_is_measured_not_decoded() {
    use media_metadata::jpeg_markers::MAX_PASSES;
    let opts = Options::default();
    let refused = |bytes: &[u8], says: &str| {
        let d = decode_image(bytes, &opts).unwrap();
        assert_eq!((d.header.width, d.blurhash.as_deref()), (64, None), "{says}");
        assert!(d.note.as_deref().unwrap_or_default().contains(says), "{:?} should say {says}", d.note);
    };
    // Grey, progressive: a DC scan and an AC scan, each a whole pass.
    let grey = flat_jpeg(64, 48, 1, [90, 0, 0, 0], true);
    let most = MAX_PASSES as usize - 2;
    assert!(decode_image(&with_empty_ac_scans(&grey, most), &opts).unwrap().blurhash.is_some());
    refused(&with_empty_ac_scans(&grey, most + 1), "33 passes");
    // Four components at a quarter of a pass a scan: the count binds first.
    let cmyk = flat_jpeg(64, 48, 4, [0, 0, 0, 255], true);
    let most = media_metadata::jpeg_markers::MAX_PROGRESSIVE_SCANS - 5; // it has 5 of its own
    assert!(decode_image(&with_empty_ac_scans(&cmyk, most), &opts).unwrap().blurhash.is_some());
    refused(&with_empty_ac_scans(&cmyk, most + 1), "101 scans in a progressive frame");
    // Sequential: one scan per component.
    refused(&with_empty_ac_scans(&flat_jpeg(64, 48, 1, [90, 0, 0, 0], false), 1), "2 scans in a sequential frame");
    // Scans that hold nothing: no encoder writes them; a decoder would fill the picture in.
    refused(&jpeg_empty_scans(64, 48, false, 1), "damaged");
    refused(&jpeg_empty_scans(64, 48, true, 2), "damaged");
    // A real encoder's progressive file (Pillow's libjpeg: 10 scans) is decoded as before.
    let pillow = corpus().into_iter().find(|(n, _)| n == "jpeg-progressive.jpg").unwrap().1;
    assert!(decode_image(&pillow, &opts).unwrap().blurhash.is_some());
}

/// A lossless WebP whose entropy image numbers its groups densely (as libwebp writes them)
/// decodes; one naming more groups than its entropy image has pixels is refused before
/// image-webp builds them.
#[test]
fn lossless_webp_groups_must_be_plausible_for_the_entropy_image() {
    // 8x8 at 1/4: an entropy image of 2x2 pixels, so at most four groups.
    let dense = webp_file(&[(b"VP8L", vp8l_huffman_groups(8, 8, 3, 4))]);
    let d = decode_image(&dense, &Options::default()).unwrap();
    assert!(d.blurhash.is_some() && d.note.is_none(), "{:?}", d.note);
    // What it costs, counted before image-webp runs: at least four groups of five 4 KiB tables.
    let cost = media_metadata::vp8l::cost(&webp_chunk(&dense, b"VP8L").unwrap(), 8, 8, false).unwrap();
    assert!(matches!(cost, media_metadata::vp8l::Verdict::Costs(c) if c >= 4 * 5 * 4096), "{cost:?}");
    let implausible = webp_file(&[(b"VP8L", vp8l_huffman_groups(8, 8, 4, 5))]);
    let d = decode_image(&implausible, &Options::default()).unwrap();
    assert_eq!((d.header.width, d.blurhash), (8, None));
    assert!(d.note.unwrap().contains("group 4 but its entropy image has 4 pixels"));
}

/// Every valid file of the seed corpus is hashed: none is refused by the rules above (the
/// regression seeds are there to be refused).
#[test]
fn every_encoder_written_seed_is_hashed_not_refused() {
    for (name, bytes) in corpus().into_iter().filter(|(n, _)| !n.starts_with("regression-")) {
        let d = decode_image(&bytes, &Options::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(d.blurhash.is_some() && d.note.is_none(), "{name}: {:?}", d.note);
    }
}

/// PNG ancillary chunks that only cost: ICC profiles and text (compressed or not) are
/// stepped over unread; the picture decodes as without them.
#[test]
fn png_icc_and_text_chunks_are_skipped_not_inflated() {
    let plain = png(&photo(32, 24));
    let mut itxt = b"Comment\0\x01\0en\0Comment\0".to_vec();
    itxt.extend(zlib_zeros(1 << 20));
    let mut ztxt = b"Comment\0\0".to_vec();
    ztxt.extend(zlib_zeros(1 << 20));
    let chunks = [
        png_iccp_zeros(1 << 20),
        png_chunk(b"tEXt", b"Comment\0hello"),
        png_chunk(b"zTXt", &ztxt),
        png_chunk(b"iTXt", &itxt),
    ];
    let with_all = chunks.iter().fold(plain.clone(), |b, c| png_insert_after_ihdr(&b, c));
    let (a, b) =
        (decode_image(&plain, &Options::default()).unwrap(), decode_image(&with_all, &Options::default()).unwrap());
    assert_eq!((&a.blurhash, a.header), (&b.blurhash, b.header));
    // A damaged one is dropped like any ancillary chunk with a bad CRC (as libpng does).
    let mut bad = png_insert_after_ihdr(&plain, &png_iccp_zeros(1000));
    let at = bad.windows(4).position(|w| w == b"iCCP").unwrap() + 10;
    bad[at] ^= 0xff;
    assert_eq!(decode_image(&bad, &Options::default()).unwrap().blurhash, a.blurhash);
}

/// The seeds of issue 18's files in the fuzz corpus are what `issue_18_seeds` makes;
/// `MEDIA_METADATA_WRITE_SEEDS=1` writes them.
#[test]
fn issue_18_seeds_in_the_fuzz_corpus_are_current() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/sniff_decode");
    for (name, bytes) in issue_18_seeds() {
        let path = dir.join(name);
        if std::env::var_os("MEDIA_METADATA_WRITE_SEEDS").is_some() {
            std::fs::write(&path, &bytes).unwrap();
        }
        assert!(bytes.len() <= 2048, "{name}: {} bytes is not a small seed", bytes.len());
        let on_disk = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (MEDIA_METADATA_WRITE_SEEDS=1 writes it)", path.display()));
        assert!(on_disk == bytes, "{name} differs from issue_18_seeds() (MEDIA_METADATA_WRITE_SEEDS=1 rewrites it)");
        // Refused at their headers, with a note, but the iCCP one (decoded without its
        // profile), the animation (within the bound at this size) and the GIF (its frame is
        // cut short: a decode error).
        let d = decode_image(&bytes, &Options::default());
        match name {
            n if n.contains("iccp") || n.contains("animated") => assert!(d.unwrap().blurhash.is_some(), "{name}"),
            n if n.contains("gif") => assert!(matches!(d, Err(Error::Decode { .. })), "{name}: {d:?}"),
            _ => assert!(d.as_ref().is_ok_and(|d| d.blurhash.is_none() && d.note.is_some()), "{name}: {d:?}"),
        }
    }
}
