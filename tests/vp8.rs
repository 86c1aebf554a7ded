//! Our VP8 decoder (`media_metadata::vp8`) against libwebp's own: real files from cwebp (and,
//! for several token partitions, which cwebp never writes, a key frame from libvpx through
//! ffmpeg), each decoded by `dwebp -nofilter -yuv` and by us, plane for plane. Our decoder
//! does not run the loop filter, so without it the two must agree to the bit; any wrong table
//! entry, prediction mode or edge rule shows as a difference. Then the files through
//! `describe()` against image-webp's full decode, and broken and cut files.

use std::path::{Path, PathBuf};
use std::process::Command;

use media_metadata::error::Error;
use media_metadata::vp8::{self, MbRow, Rows};

/// Whether every tool is here; if not, says which is missing (and fails under CI=true).
fn have(tools: &[&str]) -> bool {
    let missing: Vec<_> = tools
        .iter()
        .filter(|t| {
            Command::new("sh").args(["-c", &format!("command -v {t}")]).output().map_or(true, |o| !o.status.success())
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    let why = format!("SKIPPED: {missing:?} not installed (scripts/setup installs them)");
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
    eprintln!("{why}");
    false
}

fn workdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vp8-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(out.status.success(), "{cmd} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
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
    let (w, h) = vp8::frame_size(frame).unwrap();
    let mut planes = Planes { width: w as usize, height: h as usize, y: vec![], u: vec![], v: vec![] };
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
    if !have(&["cwebp", "dwebp"]) {
        return;
    }
    let dir = workdir("cwebp");
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
        let (png, webp) = (dir.join(format!("{w}x{h}.png")), dir.join(format!("{w}x{h}.webp")));
        source(w, h, &png);
        let mut args = vec!["-quiet"];
        args.extend_from_slice(opts);
        args.extend_from_slice(&[png.to_str().unwrap(), "-o", webp.to_str().unwrap()]);
        run("cwebp", &args);
        let bytes = std::fs::read(&webp).unwrap();
        assert_same(&format!("{w}x{h} {opts:?}"), &ours(&bytes), &dwebp(&dir, &webp));
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_frame_in_eight_token_partitions_decodes_as_libwebp_does() {
    if !have(&["ffmpeg", "dwebp"]) {
        return;
    }
    let dir = workdir("libvpx");
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
