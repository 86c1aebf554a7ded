//! Timings for the README and the issue, not a pass/fail test (ignored by default):
//! `cargo test --release --no-default-features --features lua54,vendored --test timing -- --ignored --nocapture`
//! A 12 MP JPEG through describe() (decode, shrink, BlurHash, and with all formats the
//! ThumbHash and PNG too), and the shrink alone on 12 MP of raw RGB and RGBA pixels.

mod common;

use std::time::Instant;

use common::*;
use media_metadata::analyze::describe;
use media_metadata::blurhash::{encode, shrink, Layout};
use media_metadata::fetch::Body;
use media_metadata::options::{Formats, Options};
use media_metadata::thumbnail::thumbnails;

/// The median of `runs` timings of `f`, in milliseconds.
fn median_ms(runs: usize, mut f: impl FnMut()) -> f64 {
    let mut t: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[runs / 2]
}

#[test]
#[ignore]
fn twelve_megapixels() {
    let (w, h) = (4000, 3000);
    let img = photo(w, h);
    let bytes = jpeg(&img);
    let body = Body { data: bytes.clone(), complete: true, ..Body::default() };
    let metadata_only = Options { formats: Formats { metadata: true, sfs: false, sims: false }, ..Options::default() };
    let all = Options::default();
    let runs = 15;
    let meta = median_ms(runs, || assert!(describe(&body, &metadata_only).unwrap().blurhash.is_some()));
    let full = median_ms(runs, || assert!(describe(&body, &all).unwrap().thumbnail.is_some()));
    println!("12 MP JPEG ({} bytes) describe(): formats=metadata {meta:.2} ms, all formats {full:.2} ms", bytes.len());

    let rgb = img.as_raw().clone();
    let rgba: Vec<u8> = rgb.chunks(3).flat_map(|p| [p[0], p[1], p[2], if p[0] > 128 { 255 } else { 90 }]).collect();
    let t_rgb = median_ms(5, || drop(shrink(&rgb, w, h, Layout::Rgb, 1).unwrap()));
    let t_rgba = median_ms(5, || drop(shrink(&rgba, w, h, Layout::Rgba, 1).unwrap()));
    let shrunk = shrink(&rgba, w, h, Layout::Rgba, 1).unwrap();
    let t_bh = median_ms(runs, || drop(encode(&shrunk, 4, 3).unwrap()));
    let rgb_shrunk = shrink(&rgb, w, h, Layout::Rgb, 6).unwrap();
    println!(
        "hashes: JPEG {}, RGB {}, RGBA {}",
        describe(&body, &Options::default()).unwrap().blurhash.unwrap(),
        encode(&rgb_shrunk, 3, 4).unwrap(),
        encode(&shrunk, 4, 3).unwrap()
    );
    let t_thumbs = median_ms(runs, || drop(thumbnails(&shrunk).unwrap()));
    println!("shrink of 12 MP raw pixels: RGB {t_rgb:.1} ms, RGBA {t_rgba:.1} ms");
    println!("on the 64x48 shrunk picture: BlurHash {t_bh:.3} ms, ThumbHash + PNG {t_thumbs:.3} ms");
}
