//! MP4, M4A, QuickTime and 3GP: duration and the video's displayed size, from the `moov`
//! box, read by Mozilla's `mp4parse` (the parser Firefox ships, fuzzed there, with fallible
//! allocation throughout, so a `moov` declaring 2^32 samples fails instead of allocating).
//!
//! mp4parse reads the boxes of a stream in order and fails on an `mdat` cut short, so it is
//! given the `moov` box alone, found by the bounded top-level walk in [`crate::isobmff`];
//! [`locate`] also says where a `moov` after the media data would start, for a tail read.

use std::io::Cursor;

use mp4parse::TrackType;

use crate::analyze::Probed;
use crate::isobmff;

/// Where the `moov` box is, as far as the top-level walk over `data` can tell.
#[derive(Debug, PartialEq, Eq)]
pub enum Moov<'a> {
    /// The whole box (header included) is in the data.
    Here(&'a [u8]),
    /// Not in the data, which ends inside a box; the next top-level box starts at this offset
    /// of the file (the `moov`, most likely, after a phone's `mdat`).
    After(u64),
    /// Not in the data, and nothing follows the last box.
    Missing,
    /// The `moov` starts in the data but is cut at its end: the file from its start is needed.
    Cut(u64),
}

/// Finds the `moov` among the top-level boxes of `data`, the start of a file.
pub fn locate(data: &[u8]) -> Moov<'_> {
    let mut next = 0;
    for b in isobmff::boxes(data) {
        if &b.kind == b"moov" {
            return if b.is_whole() { Moov::Here(b.bytes(data)) } else { Moov::Cut(b.start) };
        }
        next = b.end();
    }
    if next > data.len() as u64 {
        Moov::After(next)
    } else {
        Moov::Missing
    }
}

/// Reads a whole `moov` box: the longest track's duration, the first video track's size with
/// its matrix's quarter turn applied.
pub fn probe(moov: &[u8]) -> Result<Probed, String> {
    check_tables(moov)?;
    check_sizes(moov, 0)?;
    let context = mp4parse::read_mp4(&mut Cursor::new(moov)).map_err(|e| format!("mp4parse: {e:?}"))?;
    let mut probed = Probed::default();
    for track in context.tracks.iter() {
        if let (Some(d), Some(ts)) = (track.duration, track.timescale) {
            if ts.0 > 0 {
                let ms = u64::try_from(u128::from(d.0) * 1000 / u128::from(ts.0)).unwrap_or(u64::MAX);
                probed.length = Some(probed.length.map_or(ms, |l: u64| l.max(ms)));
            }
        }
        if track.track_type == TrackType::Video && probed.width.is_none() {
            if let Some(tkhd) = &track.tkhd {
                let (w, h) = (tkhd.width >> 16, tkhd.height >> 16);
                let m = tkhd.matrix;
                // A quarter turn has no cosine: a = d = 0, b = ±1, c = ∓1.
                let turned = m.a == 0 && m.d == 0 && m.b != 0 && m.c != 0;
                if w > 0 && h > 0 {
                    (probed.width, probed.height) = if turned { (Some(h), Some(w)) } else { (Some(w), Some(h)) };
                }
            }
        }
    }
    if probed.length.is_none() && probed.width.is_none() {
        return Err("no track with a duration or a video size".to_owned());
    }
    Ok(probed)
}

/// Containers mp4parse walks into, whose children are boxes from their first byte.
const CONTAINERS: &[&[u8; 4]] = &[b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf", b"mvex", b"udta"];

/// mp4parse reserves some boxes' declared size before reading them (a `hdlr` claiming 2 GiB
/// inside a `mdia` of 500 bytes was a 2 GiB reservation, found by the mp4 fuzz target): every
/// box in the containers it walks must fit inside its parent, checked on the bytes first.
fn check_sizes(data: &[u8], depth: usize) -> Result<(), String> {
    check_level(data, depth, false)
}

/// One level of [`check_sizes`]; `items` for the children of an `ilst`, each of which holds
/// boxes (`data`, `mean`, `name`) whatever its type.
fn check_level(data: &[u8], depth: usize, items: bool) -> Result<(), String> {
    if depth > 8 {
        return Err("boxes nested deeper than a movie's".to_owned());
    }
    for b in isobmff::boxes(data) {
        if !b.is_whole() {
            let kind = String::from_utf8_lossy(&b.kind);
            return Err(format!("{kind} claims {} bytes, past the end of its parent", b.size));
        }
        // Children from the first byte; after a full box's version and flags (meta); after
        // that and an entry count (stsd, whose entries mp4parse reads one by one).
        let children = match &b.kind {
            _ if items => Some(b.body),
            kind if CONTAINERS.contains(&kind) || kind == b"ilst" => Some(b.body),
            b"meta" => b.body.get(4..),
            b"stsd" => b.body.get(8..),
            _ => None,
        };
        if let Some(children) = children {
            check_level(children, depth + 1, &b.kind == b"ilst")?;
        }
    }
    Ok(())
}

/// mp4parse reserves a sample table's declared entries before reading them (fallibly, but
/// a `stsz` declaring 2^32 samples is a 16 GiB reservation that overcommit grants): each
/// table of each track must hold the entries it declares, checked on the bytes first.
fn check_tables(moov_box: &[u8]) -> Result<(), String> {
    let Some(moov) = isobmff::boxes(moov_box).next() else { return Ok(()) };
    let children = isobmff::bodies;
    for trak in children(moov.body, b"trak") {
        let edits = children(trak, b"edts").flat_map(isobmff::boxes);
        let stbl = children(trak, b"mdia").flat_map(|m| children(m, b"minf")).flat_map(|m| children(m, b"stbl"));
        for table in edits.chain(stbl.flat_map(isobmff::boxes)) {
            let version = table.body.first().copied().unwrap_or(0);
            // (bytes an entry takes at least, offset of the count in the body)
            let (entry, count_at) = match &table.kind {
                b"elst" => (if version == 1 { 20 } else { 12 }, 4),
                b"stts" | b"ctts" | b"co64" => (8, 4),
                b"stsc" => (12, 4),
                b"stsd" => (8, 4), // sample entries, each a box

                b"stco" | b"stss" => (4, 4),
                // sample_size first: entries follow only when it is 0.
                b"stsz" if table.body.get(4..8) == Some(&[0; 4]) => (4, 8),
                b"sbgp" => (8, if version == 1 { 12 } else { 8 }),
                b"sgpd" => (1, if version == 0 { 8 } else { 12 }),
                _ => continue,
            };
            let Some(count) = table.body.get(count_at..count_at + 4) else { continue };
            let count = u64::from(u32::from_be_bytes([count[0], count[1], count[2], count[3]]));
            let room = (table.body.len() as u64).saturating_sub(count_at as u64 + 4);
            if count * entry > room {
                let kind = String::from_utf8_lossy(&table.kind);
                return Err(format!("{kind} declares {count} entries in {room} bytes"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isobmff::bx;

    #[test]
    fn moov_before_after_or_cut() {
        let ftyp = bx(b"ftyp", b"isom\0\0\0\0isom");
        let moov = bx(b"moov", &[0; 8]);
        let data = [ftyp.clone(), moov.clone()].concat();
        assert_eq!(locate(&data), Moov::Here(&moov[..]));
        let mut mdat = 1_000_000u32.to_be_bytes().to_vec();
        mdat.extend_from_slice(b"mdat\0\0");
        let head = [ftyp.clone(), mdat].concat();
        assert_eq!(locate(&head), Moov::After(ftyp.len() as u64 + 1_000_000));
        assert_eq!(locate(&[ftyp.clone(), moov[..10].to_vec()].concat()), Moov::Cut(ftyp.len() as u64));
        assert_eq!(locate(&ftyp), Moov::Missing);
    }

    #[test]
    fn nested_ten_thousand_deep_is_an_error() {
        let mut inner = Vec::new();
        for _ in 0..10_000 {
            inner = bx(b"trak", &inner);
        }
        let moov = bx(b"moov", &inner);
        assert!(probe(&moov).is_err());
    }
}
