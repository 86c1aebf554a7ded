//! Untrusted MP4/MOV/M4A/3GP bytes: the top-level walk, the sample-table check and mp4parse
//! on the moov, as the start of a file and as a tail; no panic, and the heap stays within
//! a bound (mp4parse reserves what tables declare: check_tables must stop what is not there).
#![no_main]

use libfuzzer_sys::fuzz_target;
use media_metadata::media::{probe, with_tail};
use media_metadata::mp4;
use media_metadata::sniff::Format;

#[allow(dead_code)] // peak_of: for tests/memory.rs
#[path = "../../tests/common/peak_alloc.rs"]
mod peak_alloc;

#[global_allocator]
static ALLOCATOR: peak_alloc::Counting = peak_alloc::Counting;

/// Heap beyond the input: mp4parse's tables are at most a few times the bytes they come from.
const BOUND: usize = 64 << 20;

fuzz_target!(|data: &[u8]| {
    let (_, peak) = peak_alloc::within(BOUND, || {
        if let mp4::Moov::Here(moov) = mp4::locate(data) {
            let _ = mp4::probe(moov);
        }
        let _ = probe(data, true, Format::Mp4, Some(data.len() as u64), 1 << 20);
        let _ = with_tail(b"", data, true, Format::M4a);
    });
    assert!(peak.refused.is_none(), "asked for {:?} bytes past the bound", peak.refused);
});
