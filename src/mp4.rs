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
    check_sizes(moov)?;
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
const CONTAINERS: &[&[u8; 4]] = &[
    b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf", b"mvex", b"udta", b"ilst", b"wave", b"sinf", b"schi",
];

/// mp4parse reserves some boxes' declared size before reading them (a `hdlr` claiming 2 GiB
/// inside a `mdia` of 500 bytes was a 2 GiB reservation; an `esds` claiming 4 GiB inside an
/// `mp4a` sample entry another; both found by the mp4 fuzz target): every box in the
/// containers it walks, sample entries included, must fit inside its parent, checked on the
/// bytes first.
fn check_sizes(moov: &[u8]) -> Result<(), String> {
    check_level(moov, 0, b"\0\0\0\0", &mut None)
}

/// One level of [`check_sizes`]: the boxes of `data`, children of a `parent` box. `handler`
/// is the current track's handler type, as mp4parse knows it when it reaches the `stsd`: set
/// by the `hdlr` of a `mdia`, reset by each `trak`.
fn check_level(data: &[u8], depth: usize, parent: &[u8; 4], handler: &mut Option<[u8; 4]>) -> Result<(), String> {
    if depth > 8 {
        return Err("boxes nested deeper than a movie's".to_owned());
    }
    for b in isobmff::boxes(data) {
        if !b.is_whole() {
            let kind = String::from_utf8_lossy(&b.kind);
            return Err(format!("{kind} claims {} bytes, past the end of its parent", b.size));
        }
        match (parent, &b.kind) {
            (_, b"trak") => *handler = None,
            (b"mdia", b"hdlr") => *handler = b.body.get(8..12).and_then(|h| h.try_into().ok()),
            _ => {}
        }
        // Children from the first byte; after a full box's version and flags (meta); after
        // that and an entry count (stsd); after a sample entry's fields; each item of an
        // `ilst` holds boxes (`data`, `mean`, `name`) whatever its type.
        let children = match &b.kind {
            _ if parent == b"ilst" => Some(b.body),
            _ if parent == b"stsd" => sample_entry_fields(*handler, b.body).and_then(|n| b.body.get(n..)),
            kind if CONTAINERS.contains(&kind) => Some(b.body),
            b"meta" => b.body.get(4..),
            b"stsd" => b.body.get(8..),
            _ => None,
        };
        if let Some(children) = children {
            check_level(children, depth + 1, &b.kind, handler)?;
        }
    }
    Ok(())
}

/// Bytes of a sample entry's body before its child boxes, as mp4parse reads the entry for the
/// track's handler: a visual entry's fixed 78; an audio entry's 28, or 44 and 64 for
/// QuickTime's sound descriptions 1 and 2. `None` where mp4parse reads no children.
fn sample_entry_fields(handler: Option<[u8; 4]>, entry: &[u8]) -> Option<usize> {
    match &handler? {
        b"vide" | b"pict" | b"auxv" => Some(78),
        b"soun" => match entry.get(8..10)? {
            [0, 0] => Some(28),
            [0, 1] => Some(44),
            [0, 2] => Some(64),
            _ => None,
        },
        _ => None,
    }
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

    /// A movie of one track of `handler` whose `stsd` holds one sample `entry`.
    fn one_track(handler: &[u8; 4], entry: &[u8]) -> Vec<u8> {
        let hdlr = bx(b"hdlr", &[&[0; 8][..], handler, &[0; 13]].concat());
        let stsd = bx(b"stsd", &[&[0, 0, 0, 0, 0, 0, 0, 1][..], entry].concat());
        let minf = bx(b"minf", &bx(b"stbl", &stsd));
        bx(b"moov", &bx(b"trak", &bx(b"mdia", &[hdlr, minf].concat())))
    }

    #[test]
    fn a_sample_entrys_children_must_fit_in_it() {
        // An mp4a entry (version 0: 28 bytes of fields) holding an esds, which mp4parse
        // reserves its declared size for; the mp4 fuzz target found one claiming 4 GiB.
        let fields = [0u8; 28];
        let esds = bx(b"esds", &[0; 12]);
        let fits = bx(b"mp4a", &[&fields[..], &esds].concat());
        assert_eq!(check_sizes(&one_track(b"soun", &fits)), Ok(()));
        let mut lying = esds.clone();
        lying[..4].copy_from_slice(&0xFFFF_0000u32.to_be_bytes());
        let claims = bx(b"mp4a", &[&fields[..], &lying].concat());
        let err = check_sizes(&one_track(b"soun", &claims)).unwrap_err();
        assert!(err.contains("esds claims 4294901760 bytes"), "{err}");
        // QuickTime's sound description 1 has 16 more bytes of fields, a visual entry 78:
        // the same lie is found after them, and the fields are never taken for boxes.
        let mut v1 = [0u8; 44];
        v1[9] = 1;
        let claims_v1 = bx(b"mp4a", &[&v1[..], &lying].concat());
        assert!(check_sizes(&one_track(b"soun", &claims_v1)).is_err());
        assert_eq!(check_sizes(&one_track(b"soun", &bx(b"mp4a", &[&v1[..], &esds].concat()))), Ok(()));
        let avc1 = |child: &[u8]| bx(b"avc1", &[&[0u8; 78][..], child].concat());
        assert_eq!(check_sizes(&one_track(b"vide", &avc1(&bx(b"avcC", &[1; 8])))), Ok(()));
        let mut avcc = bx(b"avcC", &[1; 8]);
        avcc[..4].copy_from_slice(&0x7FFF_FFFFu32.to_be_bytes());
        assert!(check_sizes(&one_track(b"vide", &avc1(&avcc))).is_err());
        // A track whose handler mp4parse does not read entries for: nothing to check.
        assert_eq!(check_sizes(&one_track(b"text", &claims)), Ok(()));
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
