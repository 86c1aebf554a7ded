//! Untrusted HEIC/HEIF/AVIF, JPEG XL, SVG, BMP and ICO bytes through the header readers
//! (each format tried on every input, so the fuzzer need not find the signature first), and
//! the animation checks of GIF, PNG and WebP: no panic, no allocation past a small bound, and
//! a size that comes out is never 0.
#![no_main]

use libfuzzer_sys::fuzz_target;
use media_metadata::measure::{animated, measure};
use media_metadata::sniff::Format;

#[allow(dead_code)] // peak_of: for tests/memory.rs
#[path = "../../tests/common/peak_alloc.rs"]
mod peak_alloc;

#[global_allocator]
static ALLOCATOR: peak_alloc::Counting = peak_alloc::Counting;

const BOUND: usize = 4 << 20;

fuzz_target!(|data: &[u8]| {
    let (_, peak) = peak_alloc::within(BOUND, || {
        for format in [Format::Heic, Format::Jxl, Format::Svg, Format::Bmp, Format::Ico] {
            if let Ok(p) = measure(data, format) {
                assert!(p.width.is_some_and(|w| w > 0) && p.height.is_some_and(|h| h > 0), "{format:?}: {p:?}");
            }
        }
        for format in [Format::Gif, Format::Png, Format::WebP] {
            let _ = animated(data, format);
        }
    });
    assert!(peak.refused.is_none(), "asked for {:?} bytes past the bound", peak.refused);
});
