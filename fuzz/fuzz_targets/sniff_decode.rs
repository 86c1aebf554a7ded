//! Untrusted bytes as a server could send them: sniffed, then (for the image types we decode)
//! decoded for their header alone and for a BlurHash, under a small pixel limit so that the
//! fuzzer explores the decoders rather than their allocations.
#![no_main]

use libfuzzer_sys::fuzz_target;
use media_metadata::decode::decode;
use media_metadata::options::Options;
use media_metadata::sniff::{content_type_essence, is_decodable, sniff};

fuzz_target!(|data: &[u8]| {
    let opts = Options { max_pixels: 1 << 20, ..Options::default() };
    if let Ok(text) = std::str::from_utf8(&data[..data.len().min(200)]) {
        let _ = content_type_essence(text);
    }
    let Some(mime) = sniff(data) else { return };
    if !is_decodable(mime) {
        return;
    }
    let header_only = decode(data, mime, false, &opts);
    if mime == "image/jpeg" {
        // The DC-only reader on its own: decode() uses it only for large pictures.
        if let Some(dc) = media_metadata::jpeg_dc::decode(data, opts.max_pixels) {
            let channels = if matches!(dc.layout, media_metadata::blurhash::Layout::Luma) { 1 } else { 3 };
            assert_eq!(dc.pixels.len() as u64, dc.width as u64 * dc.height as u64 * channels);
        }
    }
    let full = decode(data, mime, true, &opts);
    if let (Ok(h), Ok(f)) = (&header_only, &full) {
        // Both paths read the same header.
        assert_eq!(h.header, f.header);
        assert!((1..=8).contains(&f.header.orientation));
        if let Some(hash) = &f.blurhash {
            // What we produce, we can paint.
            assert!(media_metadata::blurhash::decode(hash, 4, 4, 1.0).is_ok(), "{hash}");
        }
    }
});
