//! Untrusted Ogg, WAV, FLAC, MP3 and WebM/Matroska bytes through the duration readers, whole and split into
//! a head and a tail at every length the input gives: no panic, no allocation past a small
//! bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use media_metadata::media::{probe, with_tail};
use media_metadata::sniff::Format;

#[allow(dead_code)] // peak_of: for tests/memory.rs
#[path = "../../tests/common/peak_alloc.rs"]
mod peak_alloc;

#[global_allocator]
static ALLOCATOR: peak_alloc::Counting = peak_alloc::Counting;

const BOUND: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let (_, peak) = peak_alloc::within(BOUND, || {
        for format in [Format::OggAudio, Format::Wav, Format::Flac, Format::Mp3, Format::WebM] {
            let _ = probe(data, true, format, Some(data.len() as u64), 1 << 16);
            let _ = probe(data, false, format, None, 1 << 16);
        }
        let split = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
        let (head, tail) = data.split_at(split);
        let _ = with_tail(head, tail, true, Format::OggAudio);
    });
    assert!(peak.refused.is_none(), "asked for {:?} bytes past the bound", peak.refused);
});
