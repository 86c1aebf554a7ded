//! Untrusted bytes as a server could send them: sniffed, then (for the image types we decode)
//! decoded for their header alone and for a BlurHash, under a small pixel limit so that the
//! fuzzer explores the decoders rather than their allocations.
//!
//! Every decode runs under the documented memory bound (`decoder_memory`: max_pixels * 8 +
//! 16 MiB): past it an allocation fails, and the input is a crash, whether the decoder would
//! have aborted or handled the failure. So a new amplification (issue 18: a few hundred bytes
//! that allocate gigabytes) fails this target, not a server.
//!
//! A PNG is also decoded as a stream arriving a few bytes at a time (how a body larger than
//! the 64 KiB head is read): what decodes from memory must come out the same from the stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use media_metadata::decode::{decode, decoder_memory};
use media_metadata::options::Options;
use media_metadata::sniff::{content_type_essence, sniff, Format};

#[allow(dead_code)] // peak_of: for tests/memory.rs
#[path = "../../tests/common/peak_alloc.rs"]
mod peak_alloc;

#[global_allocator]
static ALLOCATOR: peak_alloc::Counting = peak_alloc::Counting;

/// Runs `f` under `bound` bytes of heap and fails the input if it asked for more.
fn bounded<T>(what: &str, bound: usize, f: impl FnOnce() -> T) -> T {
    let (out, peak) = peak_alloc::within(bound, f);
    assert!(peak.refused.is_none(), "{what}: asked for {:?} bytes past the bound of {bound}", peak.refused);
    out
}

/// Hands out 1 to 7 bytes a read, as a slow socket might.
struct Trickle<'a>(&'a [u8]);

impl std::io::Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.0.len()).min(1 + self.0.first().map_or(0, |b| *b as usize % 7));
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

fuzz_target!(|data: &[u8]| {
    let opts = Options { max_pixels: 1 << 20, ..Options::default() };
    let bound = decoder_memory(&opts) as usize;
    if let Ok(text) = std::str::from_utf8(&data[..data.len().min(200)]) {
        let _ = content_type_essence(text);
    }
    let Some(mime) = sniff(data) else { return };
    if !mime.is_decoded() {
        return;
    }
    let header_only = bounded("header", bound, || decode(data, mime, false, &opts));
    if mime == Format::Jpeg {
        // The DC-only reader on its own: decode() uses it only for large pictures.
        if let Some(dc) = bounded("jpeg_dc", bound, || media_metadata::jpeg_dc::decode(data, opts.max_pixels)) {
            let channels = if matches!(dc.layout, media_metadata::blurhash::Layout::Luma) { 1 } else { 3 };
            assert_eq!(dc.pixels.len() as u64, dc.width as u64 * dc.height as u64 * channels);
        }
    }
    let full = bounded("decode", bound, || decode(data, mime, true, &opts));
    if mime == Format::Png {
        let input = std::io::BufReader::with_capacity(64, Trickle(data));
        let streamed = bounded("png_stream", bound, || media_metadata::decode::png_stream(data, input, &opts));
        // From memory the inflater sees the whole rest of the file at once and may stop at
        // damage past the last row, which a stream never reached: only a success must agree.
        if let Ok(f) = &full {
            assert_eq!(Some(f), streamed.as_ref().ok(), "a PNG decoded as a stream differs from memory");
        }
    }
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
