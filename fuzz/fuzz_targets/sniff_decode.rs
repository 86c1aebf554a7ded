//! Untrusted bytes as a server could send them: sniffed, then (for the image types we decode)
//! decoded for their header alone and for a BlurHash, under a small pixel limit so that the
//! fuzzer explores the decoders rather than their allocations.
//!
//! Every decode runs under the documented memory bound (`decoder_memory`: max_pixels * 8 +
//! 16 MiB): past it an allocation fails, and the input is a crash, whether the decoder would
//! have aborted or handled the failure. So a new amplification (issue 18: a few hundred bytes
//! that allocate gigabytes) fails this target, not a server.
//!
//! A PNG and a JPEG are also decoded as a stream arriving a few bytes at a time (how a body
//! larger than the 64 KiB head is read): what decodes from memory must come out the same from
//! the stream, and a JPEG the stream gives back must be the file's first bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use media_metadata::decode::{decode, decoder_memory, JpegStream};
use media_metadata::options::Options;
use media_metadata::sniff::{content_type_essence, sniff, Format};

#[allow(dead_code)] // peak_of: for tests/memory.rs
#[path = "../../tests/common/peak_alloc.rs"]
mod peak_alloc;

#[path = "../../tests/common/trickle.rs"]
mod trickle;
use trickle::Trickle;

#[global_allocator]
static ALLOCATOR: peak_alloc::Counting = peak_alloc::Counting;

/// Runs `f` under `bound` bytes of heap and fails the input if it asked for more.
fn bounded<T>(what: &str, bound: usize, f: impl FnOnce() -> T) -> T {
    let (out, peak) = peak_alloc::within(bound, f);
    assert!(peak.refused.is_none(), "{what}: asked for {:?} bytes past the bound of {bound}", peak.refused);
    out
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
        use media_metadata::jpeg_dc::{self, AtFrame, Streamed};
        // The DC-only reader on its own: decode() uses it only for large pictures.
        let from_memory = bounded("jpeg_dc", bound, || jpeg_dc::decode(data, opts.max_pixels));
        if let Some(dc) = &from_memory {
            let channels = if matches!(dc.layout, media_metadata::blurhash::Layout::Luma) { 1 } else { 3 };
            assert_eq!(dc.pixels.len() as u64, dc.width as u64 * dc.height as u64 * channels);
        }
        let streamed = bounded("jpeg_dc::stream", bound, || {
            jpeg_dc::stream(&mut Trickle(data), opts.max_pixels, |_, _, _| AtFrame::Decode)
        });
        match streamed {
            Streamed::Read(dc) => assert_eq!(Some(dc), from_memory, "a JPEG read as a stream differs from memory"),
            Streamed::Whole(kept) => {
                assert!(data.starts_with(&kept), "the bytes given back are not the file's first");
                assert!(from_memory.is_none(), "declined as a stream, read from memory");
            }
            Streamed::Failed(_) => assert!(from_memory.is_none(), "failed as a stream, read from memory"),
            Streamed::Stopped => panic!("stopped without being asked"),
        }
        // And as the analysis calls it: no panic, within the bound.
        if let JpegStream::Whole(kept) =
            bounded("jpeg_stream", bound, || media_metadata::decode::jpeg_stream(&mut Trickle(data), &opts))
        {
            assert!(data.starts_with(&kept), "jpeg_stream gave back bytes that are not the file's first");
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
