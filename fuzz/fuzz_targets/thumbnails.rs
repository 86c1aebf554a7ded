//! Pixels of any size, layout and orientation through the shrink, then the ThumbHash and the
//! tiny PNG: both never panic, and for a picture that shrinks they succeed and keep the
//! interface's promises (8 px long side at most, aspect, a PNG that decodes). The encoder is
//! also called directly with arbitrary sizes (0, over 100, a wrong length): errors, not panics.
//! Input: width, height (1 + b % 120), layout (b % 5), orientation (any byte), two bytes of
//! direct encoder size, then the pixel bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use media_metadata::blurhash::{shrink, Layout};
use media_metadata::thumbnail::{thumbhash, thumbnails, PNG_LONG_SIDE, THUMBHASH_MAX_SIDE};

fuzz_target!(|data: &[u8]| {
    if data.len() < 6 {
        return;
    }
    let (w, h) = (1 + data[0] as u32 % 120, 1 + data[1] as u32 % 120);
    let layout = [Layout::Luma, Layout::LumaAlpha, Layout::Rgb, Layout::Rgba, Layout::Cmyk][data[2] as usize % 5];
    let orientation = data[3];
    let (dw, dh) = (data[4] as usize, data[5] as usize);
    let pixels = &data[6..];

    // The encoder alone: only 1..=100 a side with exactly w*h*4 bytes is accepted.
    let fits = (1..=THUMBHASH_MAX_SIDE).contains(&dw) && (1..=THUMBHASH_MAX_SIDE).contains(&dh);
    let direct = thumbhash(dw, dh, pixels);
    assert_eq!(direct.is_ok(), fits && pixels.len() == dw * dh * 4, "{dw}x{dh}, {} bytes", pixels.len());

    let Ok(small) = shrink(pixels, w, h, layout, orientation) else {
        return;
    };
    let t = thumbnails(&small).expect("a shrunk picture always has thumbnails");
    let (pw, ph) = (t.png_width as usize, t.png_height as usize);
    assert!(pw.max(ph) <= PNG_LONG_SIDE && pw >= 1 && ph >= 1, "{pw}x{ph}");
    assert!(pw <= small.width && ph <= small.height, "{pw}x{ph} from {}x{}", small.width, small.height);
    use base64::Engine;
    let png = base64::engine::general_purpose::STANDARD.decode(&t.png).expect("base64");
    let reader = png::Decoder::new(std::io::Cursor::new(png)).read_info().expect("the PNG decodes");
    assert_eq!((reader.info().width as usize, reader.info().height as usize), (pw, ph));
    let hash = base64::engine::general_purpose::STANDARD.decode(&t.thumbhash).expect("base64");
    assert!((5..=32).contains(&hash.len()), "{} bytes", hash.len());
});
