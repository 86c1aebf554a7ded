//! Decoded pixels of any layout, size and EXIF orientation (valid or not) through the shrink
//! and the encoder: errors for what is invalid, and a hash that decodes for the rest.
//! Input: width, height (1 + b % 48), layout (b % 5), orientation (any byte), components x
//! and y (b % 11, so 0 and 10 come up), then the pixel bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use media_metadata::blurhash::{decode, encode, shrink, Layout, SHRINK_TO};

fuzz_target!(|data: &[u8]| {
    if data.len() < 6 {
        return;
    }
    let (w, h) = (1 + data[0] as u32 % 48, 1 + data[1] as u32 % 48);
    let layout = [Layout::Luma, Layout::LumaAlpha, Layout::Rgb, Layout::Rgba, Layout::Cmyk][data[2] as usize % 5];
    let orientation = data[3];
    let (cx, cy) = (data[4] as u32 % 11, data[5] as u32 % 11);
    let pixels = &data[6..];
    let Ok(small) = shrink(pixels, w, h, layout, orientation) else {
        assert!(pixels.len() < (w * h) as usize * layout.channels());
        return;
    };
    assert!(small.width <= SHRINK_TO as usize && small.height <= SHRINK_TO as usize);
    assert!(small.pixels.iter().flatten().all(|c| c.is_finite()));
    match encode(&small, cx, cy) {
        Ok(hash) => {
            assert_eq!(hash.len(), 4 + 2 * (cx * cy) as usize, "{hash}");
            assert!(decode(&hash, 8, 8, 1.0).is_ok(), "{hash}");
        }
        Err(_) => assert!(!(1..=9).contains(&cx) || !(1..=9).contains(&cy)),
    }
});
