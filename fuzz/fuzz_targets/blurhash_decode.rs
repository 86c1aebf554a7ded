//! BlurHash strings from a client or a stanza: painted at small sizes with any punch.
//! Input: width and height bytes (1 + b % 64), four bytes of punch (f32, little endian, so
//! NaN, infinities, zero and negatives come up), then the hash.
#![no_main]

use libfuzzer_sys::fuzz_target;
use media_metadata::blurhash::decode;

fuzz_target!(|data: &[u8]| {
    if data.len() < 6 {
        return;
    }
    let (w, h) = (1 + data[0] as u32 % 64, 1 + data[1] as u32 % 64);
    let punch = f32::from_le_bytes([data[2], data[3], data[4], data[5]]);
    let hash = String::from_utf8_lossy(&data[6..]);
    if let Ok(px) = decode(&hash, w, h, punch) {
        assert_eq!(px.len(), (w * h * 4) as usize);
    }
});
