//! The Rust half of the benchmark (`bench/run` drives it and prints the table).
//!
//! Every mode prints one JSON object per line on stdout, so the driver can merge rounds run
//! at different times and interleave them with the Python peers:
//!
//! ```text
//! bench time    --runs N [--base URL] FILE...  describe() from memory, then analyze(URL)
//! bench memory  --runs N [--base URL] FILE...  peak heap of one describe() / analyze(), N times
//! bench quality FILE...                        our hash against the blurhash crate's on
//!                                              the full-size decoded picture
//! bench encode  --runs N --ref-runs M FILE...  BlurHash alone on full-size RGB pixels
//! bench phases  --runs N FILE...               describe() split into decode, shrink, encode,
//!                                              and its CPU time over all threads
//! ```
//!
//! Build it as an executable that links its own Lua (the default `module` feature leaves
//! Lua's symbols to the host process):
//! `cargo build --release --example bench --no-default-features --features lua54,vendored`.

use std::alloc::{GlobalAlloc, Layout as AllocLayout, System};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Instant;

use media_metadata::analyze::{analyze, describe};
use media_metadata::blurhash::{self as bh, Layout, SHRINK_TO};
use media_metadata::fetch::{Body, Fetcher};
use media_metadata::jpeg_dc;
use media_metadata::options::Options;
use media_metadata::vp8;

/// Counts live heap bytes and their high-water mark, so that one analysis's peak can be read.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = LIVE.fetch_add(by, Relaxed) + by;
    PEAK.fetch_max(now, Relaxed);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: AllocLayout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: AllocLayout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: AllocLayout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: AllocLayout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f` and returns its result with the heap bytes it needed beyond what was live before.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = LIVE.load(Relaxed);
    PEAK.store(before, Relaxed);
    let out = f();
    (out, PEAK.load(Relaxed) - before)
}

/// CPU time of the whole process (every thread, exited ones too), in ms: jpeg-decoder may
/// spawn worker threads, and on a shared machine CPU time is steadier than wall time.
fn cpu_ms() -> f64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 * 1e3 + t.tv_nsec as f64 / 1e6
}

/// Wall and process CPU time of `f`, in ms.
fn ms_cpu(f: impl FnOnce()) -> (f64, f64) {
    let c = cpu_ms();
    let w = ms(f);
    (w, cpu_ms() - c)
}

fn ms(f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64() * 1e3
}

/// A JSON string literal (file names and BlurHashes never need more than this).
fn js(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn name(path: &str) -> String {
    Path::new(path).file_name().map_or(path.into(), |n| n.to_string_lossy().into_owned())
}

fn body(data: Vec<u8>) -> Body {
    Body { data, complete: true, ..Body::default() }
}

fn read(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| fail(&format!("{path}: {e}")))
}

fn fail(why: &str) -> ! {
    eprintln!("bench: {why}");
    std::process::exit(2)
}

/// The pool's options, but allowed to fetch from 127.0.0.1 (loopback is refused by default).
fn loopback() -> Options {
    Options { allow_private: true, ..Options::default() }
}

fn hash_of(data: &[u8], opts: &Options) -> String {
    describe(&body(data.to_vec()), opts)
        .unwrap_or_else(|e| fail(&format!("describe: {e}")))
        .blurhash
        .unwrap_or_else(|| fail("describe gave no blurhash"))
}

/// `time`: each run visits every file (describe), then every URL (analyze), so that slow
/// moments of the machine spread over all rows.
fn time(runs: usize, base: Option<&str>, files: &[String]) {
    let opts = Options::default();
    let bodies: Vec<Body> = files.iter().map(|f| body(read(f))).collect();
    let fetcher = Fetcher::new(loopback());
    let url = |f: &str| format!("{}/{}", base.unwrap_or_default().trim_end_matches('/'), name(f));
    // Warm-up: page in the code, fill the sRGB table, open the first connection.
    for (f, b) in files.iter().zip(&bodies) {
        let hash = describe(b, &opts).unwrap_or_else(|e| fail(&format!("{f}: {e}"))).blurhash;
        if hash.is_none() {
            fail(&format!("{f}: no blurhash"));
        }
        if base.is_some() {
            let m = analyze(&fetcher, &url(f)).unwrap_or_else(|e| fail(&format!("{}: {e}", url(f))));
            if m.blurhash != hash {
                fail(&format!("{f}: analyze() and describe() disagree: {:?} vs {hash:?}", m.blurhash));
            }
        }
    }
    for _ in 0..runs {
        for (f, b) in files.iter().zip(&bodies) {
            let (t, cpu) = ms_cpu(|| {
                std::hint::black_box(describe(std::hint::black_box(b), &opts).ok());
            });
            println!(
                r#"{{"mode":"time","impl":"ours","via":"memory","file":{},"ms":{t:.4},"cpu_ms":{cpu:.4}}}"#,
                js(&name(f))
            );
        }
        if base.is_some() {
            for f in files {
                let u = url(f);
                let (t, cpu) = ms_cpu(|| {
                    std::hint::black_box(analyze(&fetcher, &u).ok());
                });
                println!(
                    r#"{{"mode":"time","impl":"ours","via":"http","file":{},"ms":{t:.4},"cpu_ms":{cpu:.4}}}"#,
                    js(&name(f))
                );
            }
        }
    }
}

/// `memory`: heap needed by one describe() beyond the body already in memory, and by one
/// analyze() including the body it downloads; `repeat` times each, because the peak depends
/// on scheduling (jpeg-decoder queues coefficient rows for its worker threads).
fn memory(repeat: usize, base: Option<&str>, files: &[String]) {
    let opts = Options::default();
    let fetcher = Fetcher::new(loopback());
    let list = |v: &[usize]| v.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
    for f in files {
        let b = body(read(f));
        describe(&b, &opts).ok(); // warm-up: lazily built tables are not the analysis's
        let mut ok = true;
        let peaks: Vec<usize> = (0..repeat)
            .map(|_| {
                let (m, peak) = peak_of(|| describe(&b, &opts));
                ok &= m.is_ok_and(|m| m.blurhash.is_some());
                peak
            })
            .collect();
        let input = b.data.len();
        drop(b);
        let http: Vec<usize> = match base {
            Some(base) => {
                let u = format!("{}/{}", base.trim_end_matches('/'), name(f));
                analyze(&fetcher, &u).ok();
                (0..repeat).map(|_| peak_of(|| analyze(&fetcher, &u).is_ok()).1).collect()
            }
            None => Vec::new(),
        };
        println!(
            r#"{{"mode":"memory","file":{},"input_bytes":{input},"describe_peaks":[{}],"analyze_peaks":[{}],"ok":{ok}}}"#,
            js(&name(f)),
            list(&peaks),
            list(&http)
        );
    }
}

/// Full-size RGB pixels, decoded by the image crate (zune-jpeg, png, image-webp).
fn full_rgb(path: &str) -> (Vec<u8>, u32, u32) {
    let img = image::load_from_memory(&read(path)).unwrap_or_else(|e| fail(&format!("{path}: {e}")));
    let rgb = img.into_rgb8();
    let (w, h) = rgb.dimensions();
    (rgb.into_raw(), w, h)
}

fn rgba(rgb: &[u8]) -> Vec<u8> {
    rgb.chunks_exact(3).flat_map(|p| [p[0], p[1], p[2], 255]).collect()
}

fn components(w: u32, h: u32) -> (u32, u32) {
    let o = Options::default();
    bh::components(w, h, o.components_long, o.components_short)
}

/// Mean absolute difference per colour channel (0..255) of two hashes painted at 32x32.
fn distance(a: &str, b: &str) -> f64 {
    let pa = bh::decode(a, 32, 32, 1.0).unwrap_or_else(|e| fail(&e.to_string()));
    let pb = bh::decode(b, 32, 32, 1.0).unwrap_or_else(|e| fail(&e.to_string()));
    let (sum, n) = pa
        .chunks_exact(4)
        .zip(pb.chunks_exact(4))
        .flat_map(|(x, y)| (0..3).map(move |i| (x[i] as i64 - y[i] as i64).unsigned_abs()))
        .fold((0u64, 0u64), |(s, n), d| (s + d, n + 1));
    sum as f64 / n as f64
}

/// `quality`: our hash (describe, as shipped) against the blurhash crate on the full-size
/// decoded picture.
fn quality(files: &[String]) {
    for f in files {
        let ours = hash_of(&read(f), &Options::default());
        let (rgb, w, h) = full_rgb(f);
        let (cx, cy) = components(w, h);
        let reference = blurhash::encode(cx, cy, w, h, &rgba(&rgb)).unwrap_or_else(|e| fail(&e.to_string()));
        println!(
            r#"{{"mode":"quality","file":{},"ours":{},"crate_full":{},"mad_crate":{:.3}}}"#,
            js(&name(f)),
            js(&ours),
            js(&reference),
            distance(&ours, &reference)
        );
    }
}

/// `encode`: the BlurHash step alone on full-size pixels already in memory: our shrink +
/// encode against the blurhash crate's plain encode (which wants RGBA; converted untimed).
fn encode(runs: usize, ref_runs: usize, files: &[String]) {
    for f in files {
        let (rgb, w, h) = full_rgb(f);
        let (cx, cy) = components(w, h);
        let ours = || bh::encode(&bh::shrink(&rgb, w, h, Layout::Rgb, 1).unwrap(), cx, cy).unwrap();
        let hash = ours();
        for _ in 0..runs {
            let t = ms(|| {
                std::hint::black_box(ours());
            });
            println!(r#"{{"mode":"encode","impl":"ours","file":{},"ms":{t:.4},"hash":{}}}"#, js(&name(f)), js(&hash));
        }
        let px = rgba(&rgb);
        drop(rgb);
        for _ in 0..ref_runs {
            let mut hash = String::new();
            let t = ms(|| hash = blurhash::encode(cx, cy, w, h, std::hint::black_box(&px)).unwrap());
            println!(r#"{{"mode":"encode","impl":"crate","file":{},"ms":{t:.4},"hash":{}}}"#, js(&name(f)), js(&hash));
        }
    }
}

/// `phases`: the steps of describe() timed one by one, mirroring decode.rs (JPEG at the
/// smallest DCT scale leaving 2 x SHRINK_TO pixels on the long side, by jpeg_dc at 1/8 and
/// jpeg-decoder otherwise; a still opaque lossy WebP by vp8.rs, decode and shrink in one; other
/// formats through the image crate), to show where the time goes.
fn phases(runs: usize, files: &[String]) {
    for f in files {
        let data = read(f);
        let jpeg = data.starts_with(b"\xff\xd8\xff");
        let decode = || -> (Vec<u8>, u32, u32, Layout, &'static str) {
            if jpeg {
                let mut d = jpeg_decoder::Decoder::new(&data[..]);
                d.read_info().unwrap();
                let info = d.info().unwrap();
                let (w, h) = (info.width as u64, info.height as u64);
                let long = w.max(h);
                let need = |side: u64| (side * 2 * SHRINK_TO as u64).div_ceil(long).max(1) as u16;
                if need(w) as u64 <= w.div_ceil(8) && need(h) as u64 <= h.div_ceil(8) {
                    if let Some(dc) = jpeg_dc::decode(&data, u64::MAX) {
                        return (dc.pixels, dc.width, dc.height, dc.layout, "jpeg_dc");
                    }
                }
                let (sw, sh) = d.scale(need(w), need(h)).unwrap();
                let px = d.decode().unwrap();
                let layout = match info.pixel_format {
                    jpeg_decoder::PixelFormat::L8 => Layout::Luma,
                    jpeg_decoder::PixelFormat::CMYK32 => Layout::Cmyk,
                    _ => Layout::Rgb,
                };
                (px, sw as u32, sh as u32, layout, "jpeg-decoder")
            } else {
                let img = image::load_from_memory(&data).unwrap();
                let (w, h) = (img.width(), img.height());
                match img {
                    image::DynamicImage::ImageRgb8(b) => (b.into_raw(), w, h, Layout::Rgb, "image"),
                    other => (other.into_rgba8().into_raw(), w, h, Layout::Rgba, "image"),
                }
            }
        };
        let (px, w, h, layout, by) = decode();
        let vp8_frame = media_metadata::webp::opaque_vp8(&data);
        let by = if vp8_frame.is_some() { "vp8, shrink included" } else { by };
        let b = body(data.clone());
        let opts = Options::default();
        let shrunk = bh::shrink(&px, w, h, layout, 1).unwrap();
        let (cx, cy) = components(w, h);
        for _ in 0..runs {
            let mut out = None;
            let header = ms(|| {
                if jpeg {
                    let mut d = jpeg_decoder::Decoder::new(&data[..]);
                    d.read_info().unwrap();
                } else {
                    let r = image::ImageReader::new(std::io::Cursor::new(&data[..])).with_guessed_format().unwrap();
                    std::hint::black_box(r.into_dimensions().unwrap());
                }
            });
            // A still opaque lossy WebP is decoded into the shrink a row of macroblocks at a
            // time (src/vp8.rs): one step, timed as the decode, the shrink inside it.
            let (t_decode, t_shrink) = match vp8_frame {
                Some(frame) => (
                    ms(|| {
                        std::hint::black_box(vp8::shrink(frame, 1).unwrap());
                    }),
                    0.0,
                ),
                None => {
                    let t_decode = ms(|| out = Some(decode()));
                    let (px, w, h, layout, _) = out.take().unwrap();
                    let t_shrink = ms(|| {
                        std::hint::black_box(bh::shrink(&px, w, h, layout, 1).unwrap());
                    });
                    (t_decode, t_shrink)
                }
            };
            let t_encode = ms(|| {
                std::hint::black_box(bh::encode(&shrunk, cx, cy).unwrap());
            });
            let (t_total, cpu) = ms_cpu(|| {
                std::hint::black_box(describe(&b, &opts).ok());
            });
            println!(
                r#"{{"mode":"phases","file":{},"decoded":"{w}x{h} ({by})","header_ms":{header:.4},"decode_ms":{t_decode:.4},"shrink_ms":{t_shrink:.4},"encode_ms":{t_encode:.4},"describe_ms":{t_total:.4},"describe_cpu_ms":{cpu:.4}}}"#,
                js(&name(f))
            );
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(mode) = args.first() else {
        fail("usage: bench time|memory|quality|encode|phases [--runs N] [--ref-runs M] [--base URL] FILE...")
    };
    let (mut runs, mut ref_runs, mut base, mut files) = (15usize, 3usize, None::<String>, Vec::new());
    let mut it = args[1..].iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().unwrap_or_else(|| fail(&format!("{a} needs a value")));
        match a.as_str() {
            "--runs" => runs = value().parse().unwrap_or_else(|_| fail("--runs: not a number")),
            "--ref-runs" => ref_runs = value().parse().unwrap_or_else(|_| fail("--ref-runs: not a number")),
            "--base" => base = Some(value()),
            _ => files.push(a.clone()),
        }
    }
    match mode.as_str() {
        "time" => time(runs, base.as_deref(), &files),
        "memory" => memory(runs, base.as_deref(), &files),
        "quality" => quality(&files),
        "encode" => encode(runs, ref_runs, &files),
        "phases" => phases(runs, &files),
        other => fail(&format!("unknown mode {other:?}")),
    }
}
