//! What a JPEG's markers say, read before any decoder runs (or, for a JPEG read as it arrives,
//! by [`crate::jpeg_dc`] segment by segment as it goes): the frame (its coding process and
//! size), the EXIF orientation, and how many scans follow it.
//!
//! This is where JPEGs that no chat client sends are refused: lossless, hierarchical and
//! arithmetic-coded frames, and more scans than any encoder writes. A decoder pays for each
//! scan with a pass over the whole picture, whatever the scan holds: issue 18's 185-byte
//! lossless file of ten empty scans took jpeg-decoder 13.6 s and 1.1 GiB, and 10 KB of empty
//! baseline scans 8.3 s. Such a file is measured (its frame header) and not decoded.

use image::metadata::Orientation;

use crate::background;
use crate::error::Result;

/// More scans than this in a progressive frame are not decoded. libjpeg's progressive
/// script (`jpeg_simple_progression`) writes 10 scans for YCbCr, 6 for grey and 18 for
/// CMYK; mozjpeg's scan optimisation chooses among 64 candidate scans (23 for grey) and
/// writes a subset of them. TurboJPEG's own fuzzers stop at 500 scans, but on pictures of at
/// most 1 MP: a scan costs a pass over the picture, and we decode pictures 50 times larger.
pub const MAX_PROGRESSIVE_SCANS: usize = 100;

/// More decoding work than this, in passes over the whole picture (each scan costs the share
/// of the picture's blocks it covers), is not done: a progressive decoder pays for every scan
/// whatever it holds, so a file of empty scans costs what its picture size allows, many times
/// over. libjpeg's scripts take 4 to 6 passes; mozjpeg's chosen scans stay under 16 (for
/// grey, where each scan covers the whole picture).
pub const MAX_PASSES: f64 = 32.0;

/// How a frame is coded (T.81 Table B.1, from its SOF marker).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// The SOF marker's second byte, 0xC0 to 0xCF.
    pub marker: u8,
    pub width: u16,
    pub height: u16,
    pub components: u8,
}

impl Frame {
    fn hierarchical(&self) -> bool {
        matches!(self.marker, 0xc5..=0xc7 | 0xcd..=0xcf)
    }

    fn arithmetic(&self) -> bool {
        self.marker >= 0xc9
    }

    fn lossless(&self) -> bool {
        self.marker & 3 == 3
    }

    fn progressive(&self) -> bool {
        self.marker & 3 == 2
    }
}

/// The markers of one file, up to its end (EOI) or as far as it goes.
#[derive(Debug, Clone, Default)]
pub struct Markers {
    /// The first frame header.
    pub frame: Option<Frame>,
    /// Frame headers seen (more than one: a hierarchical file).
    pub frames: usize,
    /// A DHP or EXP marker was seen (hierarchical mode).
    pub hierarchical: bool,
    /// Scan headers seen after the first frame header.
    pub scans: usize,
    /// The EXIF orientation (1 to 8) of the last EXIF APP1 segment before the frame (the one
    /// jpeg-decoder keeps); `None` without one.
    pub orientation: Option<u8>,
    /// Bytes of ICC profile chunks (APP2 segments), which jpeg-decoder copies, all of them.
    pub icc_bytes: u64,
    /// The decoding work of the scans, in passes over the picture's blocks.
    pub passes: f64,
    /// Entropy-coded bytes in the scans, and the least any encoder writes for them: every
    /// block of a sequential scan takes at least 2 bits (a DC code and an end of block), of a
    /// progressive DC scan at least 1; AC scans can cover thousands of blocks in a code.
    pub data_bytes: u64,
    pub least_bits: u64,
    /// The frame's components: id, horizontal and vertical sampling factors.
    components: Vec<(u8, u8, u8)>,
}

impl Markers {
    /// Why the file is measured and not decoded, or `None` if a decoder may have it.
    pub fn refusal(&self) -> Option<String> {
        self.refusal_so_far().or_else(|| self.damaged())
    }

    /// What [`Markers::refusal`] says from the markers seen so far, for a reader that meets
    /// them as it decodes: the coding process, the number of scans and their passes. (Whether
    /// the scans hold enough data is known only at the end.)
    pub fn refusal_so_far(&self) -> Option<String> {
        let f = self.frame?;
        let process = if f.hierarchical() || self.hierarchical || self.frames > 1 {
            Some("hierarchical")
        } else if f.arithmetic() {
            Some("arithmetic-coded")
        } else if f.lossless() {
            Some("lossless")
        } else {
            None
        };
        if let Some(process) = process {
            return Some(format!("{process} JPEG (SOF{}): no chat client sends one; not decoded", f.marker & 15));
        }
        let (most, of) = if f.progressive() {
            (MAX_PROGRESSIVE_SCANS, format!("a progressive frame (more than {MAX_PROGRESSIVE_SCANS})"))
        } else {
            // T.81 B.2.3: in a sequential frame each component is in exactly one scan.
            let n = f.components;
            (
                n as usize,
                format!("a sequential frame of {n} component{} (one scan each)", if n == 1 { "" } else { "s" }),
            )
        };
        if self.scans > most {
            return Some(format!("{} scans in {of}: not decoded", self.scans));
        }
        (self.passes > MAX_PASSES).then(|| {
            format!("its scans take {:.0} passes over the picture (most {MAX_PASSES}): not decoded", self.passes)
        })
    }

    fn damaged(&self) -> Option<String> {
        // Less than half the data its scans need: empty scans, or a file cut in its first ones.
        // A decoder would fill the picture in from nothing, at full cost.
        (self.data_bytes * 16 < self.least_bits).then(|| {
            format!(
                "its scans hold {} bytes where they need at least {}: damaged, not decoded",
                self.data_bytes,
                self.least_bits.div_ceil(8)
            )
        })
    }

    /// The 8x8 blocks of each component: (id, blocks), and their total.
    fn blocks(&self) -> (Vec<(u8, u64)>, u64) {
        let Some(f) = self.frame else { return (Vec::new(), 0) };
        let hmax = self.components.iter().map(|c| c.1).max().unwrap_or(1).max(1) as u64;
        let vmax = self.components.iter().map(|c| c.2).max().unwrap_or(1).max(1) as u64;
        let per: Vec<(u8, u64)> = self
            .components
            .iter()
            .map(|&(id, h, v)| {
                let w = (f.width as u64 * h as u64).div_ceil(hmax).div_ceil(8);
                let hh = (f.height as u64 * v as u64).div_ceil(vmax).div_ceil(8);
                (id, w * hh)
            })
            .collect();
        let total = per.iter().map(|c| c.1).sum();
        (per, total)
    }

    /// Takes in one marker segment: `marker` (the byte after 0xFF) and what follows its length.
    pub fn add(&mut self, marker: u8, seg: &[u8]) {
        match marker {
            0xc0..=0xc3 | 0xc5..=0xc7 | 0xc9..=0xcb | 0xcd..=0xcf => {
                self.frames += 1;
                if self.frame.is_none() {
                    if let (Some(height), Some(width), Some(&components)) = (be16(seg, 1), be16(seg, 3), seg.get(5)) {
                        self.frame = Some(Frame { marker, width: width as u16, height: height as u16, components });
                        let specs = seg.get(6..).unwrap_or_default().chunks_exact(3).take(components as usize);
                        self.components = specs.map(|c| (c[0], c[1] >> 4, c[1] & 15)).collect();
                    }
                }
            }
            0xde | 0xdf => self.hierarchical = true,
            0xe1 if self.frame.is_none() && seg.starts_with(b"Exif\0\0") => {
                self.orientation = Some(Orientation::from_exif_chunk(&seg[6..]).map_or(1, Orientation::to_exif));
            }
            0xe2 if seg.starts_with(b"ICC_PROFILE\0") => self.icc_bytes += seg.len() as u64,
            0xda if self.frame.is_some() => self.scan(seg),
            _ => {}
        }
    }

    /// Counts a scan (its header `seg`) and the work and data it needs.
    fn scan(&mut self, seg: &[u8]) {
        self.scans += 1;
        let Some(f) = self.frame else { return };
        let (per, total) = self.blocks();
        let ns = seg.first().copied().unwrap_or(0) as usize;
        let ids = seg.get(1..1 + 2 * ns).unwrap_or_default().chunks_exact(2).map(|s| s[0]);
        let blocks: u64 = ids.filter_map(|id| per.iter().find(|c| c.0 == id)).map(|c| c.1).sum();
        self.passes += blocks as f64 / total.max(1) as f64;
        let dc = seg.get(1 + 2 * ns) == Some(&0); // spectral selection starts at 0
        self.least_bits += match (f.progressive(), dc) {
            (false, _) => 2 * blocks,
            (true, true) => blocks,
            (true, false) => 0,
        };
    }
}

fn be16(d: &[u8], at: usize) -> Option<usize> {
    Some(u16::from_be_bytes([*d.get(at)?, *d.get(at + 1)?]) as usize)
}

/// Bytes searched for a marker between two yield points.
const SEARCH_STEP: usize = 64 * 1024;

/// The position of the next marker (0xFF, then neither 0, 0xFF nor a restart marker) at or
/// after `from`, stepping over entropy-coded data; `None` at the end of the data. Fails only
/// when the time budget is spent.
fn next_marker(data: &[u8], mut from: usize) -> Result<Option<usize>> {
    loop {
        let window = match data.get(from..) {
            Some(rest) if !rest.is_empty() => &rest[..rest.len().min(SEARCH_STEP)],
            _ => return Ok(None),
        };
        let Some(i) = window.iter().position(|&b| b == 0xff) else {
            from += window.len();
            background::yield_point()?;
            continue;
        };
        let at = from + i;
        match data.get(at + 1) {
            None => return Ok(None),
            Some(0) | Some(0xff) | Some(0xd0..=0xd7) => from = at + 1,
            Some(_) => return Ok(Some(at)),
        }
    }
}

/// Reads the markers of `bytes` (a JPEG: SOI first). Linear in the file's size, with yield
/// points; fails only when the time budget is spent.
pub fn read(bytes: &[u8]) -> Result<Markers> {
    let mut m = Markers::default();
    if bytes.get(..2) != Some(&[0xff, 0xd8]) {
        return Ok(m);
    }
    let mut pos = 2;
    // Where the entropy-coded data of the scan just read starts.
    let mut data_from = None;
    loop {
        let found = next_marker(bytes, pos)?;
        if let Some(from) = data_from.take() {
            m.data_bytes += found.unwrap_or(bytes.len()).saturating_sub(from) as u64;
        }
        let Some(at) = found else { break };
        let marker = bytes[at + 1];
        pos = at + 2;
        match marker {
            0xd9 => break,    // EOI
            0x01 => continue, // TEM: no length
            _ => {}
        }
        let Some(len) = be16(bytes, pos) else { break };
        let seg = bytes.get(pos + 2..(pos + len).max(pos + 2)).unwrap_or_default();
        pos += len.max(2);
        m.add(marker, seg);
        if marker == 0xda && m.frame.is_some() {
            data_from = Some(pos); // stepped over by the next search for a marker
        }
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sof(marker: u8, components: u8) -> Vec<u8> {
        let mut s = vec![0xff, marker, 0, 8 + 3 * components, 8, 0, 16, 0, 32, components];
        for c in 0..components {
            s.extend_from_slice(&[c + 1, 0x11, 0]);
        }
        s
    }

    fn sos() -> Vec<u8> {
        // One component, then entropy-coded data holding a stuffed 0xFF and a restart marker.
        vec![0xff, 0xda, 0, 8, 1, 1, 0, 0, 63, 0, 0x12, 0xff, 0x00, 0x34, 0xff, 0xd0, 0x56]
    }

    fn file(parts: &[Vec<u8>]) -> Vec<u8> {
        let mut out = vec![0xff, 0xd8];
        parts.iter().for_each(|p| out.extend_from_slice(p));
        out.extend_from_slice(&[0xff, 0xd9]);
        out
    }

    #[test]
    fn frame_scans_and_exif_are_read() {
        // A TIFF block of one IFD entry: orientation (0x0112) 6.
        let tiff = b"MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01\0\x06\0\0\0\0\0\0";
        let app1 = [&[0xff, 0xe1, 0, 34][..], b"Exif\0\0", tiff].concat();
        let app2 = [&[0xff, 0xe2, 0, 18][..], b"ICC_PROFILE\0\x01\x01abcd"].concat();
        let bytes = file(&[app1, app2.clone(), sof(0xc0, 3), sos(), app2, sos(), sos()]);
        let m = read(&bytes).unwrap();
        assert_eq!(m.frame, Some(Frame { marker: 0xc0, width: 32, height: 16, components: 3 }));
        assert_eq!((m.frames, m.scans, m.orientation, m.icc_bytes), (1, 3, Some(6), 2 * 16));
        assert_eq!(m.refusal(), None);
    }

    #[test]
    fn what_no_chat_client_sends_is_refused() {
        for (marker, what) in [
            (0xc3, "lossless JPEG (SOF3)"),
            (0xc5, "hierarchical JPEG (SOF5)"),
            (0xc9, "arithmetic-coded JPEG (SOF9)"),
            (0xcb, "arithmetic-coded JPEG (SOF11)"),
            (0xcf, "hierarchical JPEG (SOF15)"),
        ] {
            let why = read(&file(&[sof(marker, 1), sos()])).unwrap().refusal().unwrap_or_default();
            assert!(why.starts_with(what), "{marker:#x}: {why}");
        }
        let two_frames = file(&[sof(0xc0, 1), sos(), sof(0xc0, 1), sos()]);
        assert!(read(&two_frames).unwrap().refusal().unwrap().starts_with("hierarchical"));
        let dhp = file(&[vec![0xff, 0xde, 0, 2], sof(0xc0, 1), sos()]);
        assert!(read(&dhp).unwrap().refusal().unwrap().starts_with("hierarchical"));
    }

    #[test]
    fn more_scans_than_any_encoder_writes_are_refused() {
        let scans = |marker, components, n| {
            let mut parts = vec![sof(marker, components)];
            parts.extend((0..n).map(|_| sos()));
            read(&file(&parts)).unwrap().refusal()
        };
        assert_eq!(scans(0xc0, 3, 3), None, "one scan per component");
        let why = scans(0xc0, 3, 4).unwrap();
        assert_eq!(why, "4 scans in a sequential frame of 3 components (one scan each): not decoded");
        // Scans of one component in four: a quarter of a pass each.
        assert_eq!(scans(0xc2, 4, MAX_PROGRESSIVE_SCANS), None);
        let over = scans(0xc2, 4, MAX_PROGRESSIVE_SCANS + 1).unwrap();
        assert!(over.starts_with("101 scans in a progressive frame"), "{over}");
        // Grey: each scan is a whole pass.
        assert_eq!(scans(0xc2, 1, MAX_PASSES as usize), None);
        let over = scans(0xc2, 1, MAX_PASSES as usize + 1).unwrap();
        assert!(over.starts_with("its scans take 33 passes"), "{over}");
    }

    #[test]
    fn scans_without_the_data_their_blocks_need_are_refused() {
        // A sequential scan of one 32x16 component (8 blocks) needs 16 bits; one that holds a
        // byte is damaged, two will do.
        let with_data = |n: usize| {
            let mut scan = vec![0xff, 0xda, 0, 8, 1, 1, 0, 0, 63, 0];
            scan.extend(std::iter::repeat_n(0x55, n));
            let bytes = file(&[sof(0xc0, 1), scan]);
            let m = read(&bytes).unwrap();
            (m.data_bytes, m.least_bits, m.refusal())
        };
        assert_eq!(with_data(2), (2, 16, None));
        assert_eq!(with_data(1).2, None, "half the least is still let through");
        let why = with_data(0).2.unwrap();
        assert_eq!(why, "its scans hold 0 bytes where they need at least 2: damaged, not decoded");
    }

    #[test]
    fn truncated_and_foreign_bytes_give_what_is_there() {
        let whole = file(&[sof(0xc3, 3), sos()]);
        for cut in 0..whole.len() {
            let m = read(&whole[..cut]).unwrap();
            if cut >= 2 + 10 + 9 {
                assert_eq!(m.frame.map(|f| (f.width, f.height)), Some((32, 16)), "cut at {cut}");
            }
        }
        assert!(read(b"\x89PNG\r\n\x1a\n").unwrap().frame.is_none());
        assert!(read(&[0xff, 0xd8, 0xff]).unwrap().frame.is_none());
    }
}
