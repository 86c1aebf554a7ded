//! Our VP8 decoder (`media_metadata::vp8`) against libwebp's own: real files from cwebp (and,
//! for several token partitions, which cwebp never writes, a key frame from libvpx through
//! ffmpeg), each decoded by `dwebp -nofilter -yuv` and by us, plane for plane. Our decoder
//! does not run the loop filter, so without it the two must agree to the bit; any wrong table
//! entry, prediction mode or edge rule shows as a difference. Then a 4K photo's memory and
//! shrunk picture against image-webp's full decode, and broken and cut files.

#[path = "common/peak_alloc.rs"]
#[allow(dead_code)] // this binary uses peak_of alone
mod peak_alloc;
#[path = "common/tools.rs"]
mod tools;

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use media_metadata::blurhash::{self, Layout};
use media_metadata::decode::decode;
use media_metadata::error::Error;
use media_metadata::options::Options;
use media_metadata::sniff::Format;
use media_metadata::vp8::{self, MbRow, Rows};
use peak_alloc::{peak_of, Counting};
use tools::{have, run, workdir};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The allocator counts every thread: the tests here run one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn exclusive() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

/// A picture with what makes an encoder use every mode: smooth gradients, fine noise, hard
/// diagonal edges, flat areas and small high-contrast detail.
fn source(w: u32, h: u32, path: &Path) {
    let mut seed = 0x2545_f491u32;
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let noise = (seed % 48) as i32 - 24;
        let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
        let base = if (x + 2 * y) % 97 < 40 { 230.0 } else { 40.0 + 150.0 * fx };
        let wave = 40.0 * ((x as f32 / 7.0).sin() * (y as f32 / 11.0).cos());
        let detail = if x % 23 < 3 && y % 17 < 3 { 200 } else { 0 };
        let v = |c: f32| (c as i32 + noise + detail).clamp(0, 255) as u8;
        if fy > 0.7 && fx < 0.3 {
            image::Rgb([128, 128, 128]) // flat: skipped macroblocks
        } else {
            image::Rgb([v(base + wave), v(255.0 * fy), v(200.0 - base / 2.0 + wave)])
        }
    });
    img.save(path).unwrap();
}

/// The VP8 chunk's payload of a simple-format WebP.
fn vp8_payload(webp: &[u8]) -> &[u8] {
    assert_eq!(&webp[12..16], b"VP8 ", "not a simple lossy WebP");
    let len = u32::from_le_bytes(webp[16..20].try_into().unwrap()) as usize;
    &webp[20..20 + len]
}

/// A simple-format WebP around a VP8 key frame.
fn wrap(frame: &[u8]) -> Vec<u8> {
    let pad = frame.len() & 1;
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&((4 + 8 + frame.len() + pad) as u32).to_le_bytes());
    out.extend_from_slice(b"WEBPVP8 ");
    out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
    out.extend_from_slice(frame);
    out.resize(out.len() + pad, 0);
    out
}

/// The Y, U and V planes, cropped to the picture, as `dwebp -yuv` writes them.
struct Planes {
    width: usize,
    height: usize,
    y: Vec<u8>,
    u: Vec<u8>,
    v: Vec<u8>,
}

impl Planes {
    /// Empty planes for the frame in `chunk`.
    fn of(chunk: &[u8]) -> Planes {
        let (w, h) = vp8::frame_size(chunk).unwrap();
        Planes { width: w as usize, height: h as usize, y: vec![], u: vec![], v: vec![] }
    }
}

impl Rows for Planes {
    fn row(&mut self, row: &MbRow) -> Result<(), Error> {
        let mb_w = self.width.div_ceil(16);
        let (cw, ch) = (self.width.div_ceil(2), self.height.div_ceil(2));
        for r in 0..row.rows as usize {
            self.y.extend_from_slice(&row.y[r * mb_w * 16..][..self.width]);
        }
        for r in 0..8.min(ch - row.index as usize * 8) {
            self.u.extend_from_slice(&row.u[r * mb_w * 8..][..cw]);
            self.v.extend_from_slice(&row.v[r * mb_w * 8..][..cw]);
        }
        Ok(())
    }
}

fn ours(webp: &[u8]) -> Planes {
    let frame = vp8_payload(webp);
    let mut planes = Planes::of(frame);
    vp8::decode(frame, &mut planes).unwrap();
    planes
}

fn dwebp(dir: &Path, webp_path: &Path) -> Vec<u8> {
    let out = dir.join("ref.yuv");
    run("dwebp", &["-quiet", "-nofilter", "-yuv", webp_path.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    std::fs::read(out).unwrap()
}

fn assert_same(name: &str, ours: &Planes, reference: &[u8]) {
    let (ylen, clen) = (ours.y.len(), ours.u.len());
    assert_eq!(reference.len(), ylen + 2 * clen, "{name}: plane sizes");
    for (plane, mine, theirs) in [
        ("Y", &ours.y, &reference[..ylen]),
        ("U", &ours.u, &reference[ylen..ylen + clen]),
        ("V", &ours.v, &reference[ylen + clen..]),
    ] {
        if let Some(i) = mine.iter().zip(theirs).position(|(a, b)| a != b) {
            let w = if plane == "Y" { ours.width } else { ours.width.div_ceil(2) };
            panic!("{name}: {plane} differs first at ({}, {}): ours {} libwebp {}", i % w, i / w, mine[i], theirs[i]);
        }
    }
}

#[test]
fn every_pixel_is_libwebps_without_the_loop_filter() {
    let _one = exclusive();
    if !have(&["cwebp", "dwebp"]) {
        return;
    }
    let dir = workdir("vp8", "cwebp");
    // (width, height, cwebp options): odd sizes for the edge macroblocks, one segment and
    // four, the fastest and the slowest method (which choose modes differently), qualities
    // from coarse to near-lossless (large coefficients, the long token categories).
    let cases: &[(u32, u32, &[&str])] = &[
        (1, 1, &["-q", "75"]),
        (17, 33, &["-q", "90", "-m", "6"]),
        (250, 131, &["-q", "30", "-segments", "4", "-sns", "100"]),
        (333, 222, &["-q", "5", "-m", "0"]),
        (480, 320, &["-q", "100", "-m", "6", "-segments", "1"]),
        (640, 480, &["-q", "80"]),
    ];
    for &(w, h, opts) in cases {
        let bytes = cwebp(&dir, w, h, opts);
        assert_same(&format!("{w}x{h} {opts:?}"), &ours(&bytes), &dwebp(&dir, &dir.join(format!("{w}x{h}.webp"))));
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_frame_in_eight_token_partitions_decodes_as_libwebp_does() {
    let _one = exclusive();
    if !have(&["ffmpeg", "dwebp"]) {
        return;
    }
    let dir = workdir("vp8", "libvpx");
    let ivf = dir.join("frame.ivf");
    let args = ["-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=200x120", "-frames:v", "1"];
    let mut all = args.to_vec();
    all.extend_from_slice(&["-c:v", "libvpx", "-slices", "8", "-b:v", "2M", ivf.to_str().unwrap()]);
    run("ffmpeg", &all);
    let ivf = std::fs::read(ivf).unwrap();
    let frame = &ivf[32 + 12..]; // the IVF file header, then the frame's
    let first_len = (u32::from_le_bytes([frame[0], frame[1], frame[2], 0]) >> 5) as usize;
    // The partition count is in the compressed header; the size table after the first
    // partition has three bytes for each partition but the last.
    let webp = wrap(frame);
    let path = dir.join("frame.webp");
    std::fs::write(&path, &webp).unwrap();
    let planes = ours(&webp);
    assert_same("libvpx, 8 partitions", &planes, &dwebp(&dir, &path));
    let table = &frame[10 + first_len..][..21];
    let sizes: Vec<u32> = table.chunks(3).map(|s| u32::from_le_bytes([s[0], s[1], s[2], 0])).collect();
    assert!(sizes.iter().all(|&s| s > 0), "expected 8 token partitions, the table reads {sizes:?}");
    std::fs::remove_dir_all(dir).ok();
}

/// A cwebp file of `source(w, h)` with `opts`.
fn cwebp(dir: &Path, w: u32, h: u32, opts: &[&str]) -> Vec<u8> {
    let (png, webp) = (dir.join(format!("{w}x{h}.png")), dir.join(format!("{w}x{h}.webp")));
    source(w, h, &png);
    let mut args = vec!["-quiet"];
    args.extend_from_slice(opts);
    args.extend_from_slice(&[png.to_str().unwrap(), "-o", webp.to_str().unwrap()]);
    run("cwebp", &args);
    std::fs::read(&webp).unwrap()
}

#[test]
fn a_4k_photo_takes_a_row_of_macroblocks_and_shrinks_as_the_full_decode_does() {
    let _one = exclusive();
    if !have(&["cwebp"]) {
        return;
    }
    let dir = workdir("vp8", "4k");
    let bytes = cwebp(&dir, 3840, 2160, &["-q", "80"]);
    let (d, peak) = peak_of(|| decode(&bytes, Format::WebP, true, &Options::default()));
    let d = d.unwrap();
    assert_eq!((d.header.width, d.header.height), (3840, 2160));
    assert!(d.blurhash.is_some(), "{:?}", d.note);
    // image-webp held 37 MB here (planes and an RGB picture); the decoder holds a row of
    // macroblocks (92 KB at this width), the shrink and the thumbnails.
    eprintln!("4K lossy WebP ({} bytes): decode peak {:.2} MB", bytes.len(), peak as f64 / 1e6);
    assert!(peak < 1_000_000, "peak {peak} bytes");
    // The shrunk picture against image-webp's full decode (loop filter, fancy upsampling)
    // shrunk by the same code: block means in YUV stay within a level or two.
    let frame = media_metadata::webp::opaque_vp8(&bytes).unwrap();
    let ours = vp8::shrink(frame, 1).unwrap().rgba8();
    let full = image::load_from_memory(&bytes).unwrap().to_rgb8();
    let theirs = blurhash::shrink(full.as_raw(), 3840, 2160, Layout::Rgb, 1).unwrap().rgba8();
    assert_eq!(ours.len(), theirs.len());
    let diff = ours.iter().zip(&theirs).map(|(&a, &b)| (a as f64 - b as f64).abs()).sum::<f64>() / ours.len() as f64;
    eprintln!("shrunk 4K WebP: mean difference from image-webp's full decode {diff:.2} levels");
    assert!(diff < 2.0, "mean difference {diff:.2} levels");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn cut_and_damaged_frames_fail_cleanly() {
    let _one = exclusive();
    if !have(&["cwebp"]) {
        return;
    }
    let dir = workdir("vp8", "damaged");
    let bytes = cwebp(&dir, 320, 200, &["-q", "70"]);
    let frame = vp8_payload(&bytes).to_vec();
    // Cut anywhere, the frame is refused with a reason (the last bytes may be padding the
    // decoder never reads).
    for cut in (0..frame.len() - 8).step_by(97) {
        let err = vp8::decode(&frame[..cut], &mut Planes::of(&frame)).expect_err(&format!("cut at {cut}"));
        assert!(!err.to_string().is_empty());
    }
    // Damaged anywhere: decoded or refused, never a panic (every index is checked).
    let mut seed = 7u32;
    for _ in 0..300 {
        let mut damaged = frame.clone();
        for _ in 0..4 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let at = 10 + (seed as usize >> 8) % (damaged.len() - 10);
            damaged[at] ^= 1 << (seed % 8);
        }
        let _ = vp8::decode(&damaged, &mut Planes::of(&frame));
    }
    // The same frame's header declaring 16383x16383, with 50 bytes of picture data: refused
    // within its first row (its modes and tokens run out long before 1,024 macroblocks).
    let first_len = (u32::from_le_bytes([frame[0], frame[1], frame[2], 0]) >> 5) as usize;
    let mut huge = frame[..10 + first_len + 50].to_vec();
    huge[6..10].copy_from_slice(&[0xff, 0x3f, 0xff, 0x3f]);
    let mut rows = 0;
    struct Count<'a>(&'a mut u32);
    impl Rows for Count<'_> {
        fn row(&mut self, _: &MbRow) -> Result<(), Error> {
            *self.0 += 1;
            Ok(())
        }
    }
    let (result, peak) = peak_of(|| vp8::decode(&huge, &mut Count(&mut rows)));
    let err = result.expect_err("a 16383x16383 frame in a 320x200 frame's bytes");
    assert!(err.to_string().contains("ends early") || err.to_string().contains("cut short"), "{err}");
    assert_eq!(rows, 0, "refused before its first row went out");
    assert!(peak < 1_000_000, "peak {peak} bytes for a 16383-pixel-wide row");
    std::fs::remove_dir_all(dir).ok();
}
