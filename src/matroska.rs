//! WebM and Matroska: the duration (Info's Duration times TimestampScale) and the first
//! video track's displayed size (DisplayWidth/DisplayHeight where set, else the pixel size),
//! from the EBML elements before the first Cluster. A small walker over fixed paths
//! (Segment > Info, Segment > Tracks > TrackEntry > Video), never recursive, bounded in the
//! elements it reads; no crate: the Matroska demuxers on crates.io read whole clusters.

use crate::analyze::Probed;

const EBML: u32 = 0x1A45_DFA3;
const SEGMENT: u32 = 0x1853_8067;
const INFO: u32 = 0x1549_A966;
const TIMESTAMP_SCALE: u32 = 0x2A_D7B1;
const DURATION: u32 = 0x4489;
const TRACKS: u32 = 0x1654_AE6B;
const TRACK_ENTRY: u32 = 0xAE;
const TRACK_TYPE: u32 = 0x83;
const VIDEO: u32 = 0xE0;
const PIXEL_WIDTH: u32 = 0xB0;
const PIXEL_HEIGHT: u32 = 0xBA;
const DISPLAY_WIDTH: u32 = 0x54B0;
const DISPLAY_HEIGHT: u32 = 0x54BA;
const DISPLAY_UNIT: u32 = 0x54B2;
const CLUSTER: u32 = 0x1F43_B675;

/// Elements read at one level before the walk gives up.
const MAX_ELEMENTS: usize = 1024;

/// Reads the head of a WebM or Matroska file.
pub fn probe(data: &[u8]) -> Result<Probed, String> {
    let mut top = Elements::new(data);
    let ebml = top.next().ok_or("no EBML header")?;
    if ebml.id != EBML {
        return Err("no EBML header".to_owned());
    }
    let segment = top.find(|e| e.id == SEGMENT).ok_or("no Segment")?;
    let mut probed = Probed::default();
    let (mut scale, mut duration) = (1_000_000u64, None);
    for e in Elements::new(segment.body) {
        match e.id {
            INFO => {
                for f in Elements::new(e.body) {
                    match f.id {
                        TIMESTAMP_SCALE => scale = uint(f.body).filter(|&s| s > 0).unwrap_or(scale),
                        DURATION => duration = float(f.body),
                        _ => {}
                    }
                }
            }
            TRACKS => {
                for entry in Elements::new(e.body).filter(|t| t.id == TRACK_ENTRY) {
                    if probed.width.is_none() {
                        (probed.width, probed.height) = video_size(entry.body).unzip();
                    }
                }
            }
            CLUSTER => break, // the media: everything we read comes before it
            _ => {}
        }
    }
    // Duration is in TimestampScale units (nanoseconds each by default).
    probed.length = duration
        .map(|d| d * scale as f64 / 1e6)
        .filter(|ms| ms.is_finite() && *ms >= 0.0 && *ms < u64::MAX as f64)
        .map(|ms| ms.round() as u64);
    if probed.length.is_none() && probed.width.is_none() {
        return Err("no Duration and no video track before the first Cluster".to_owned());
    }
    Ok(probed)
}

/// The displayed size of a video TrackEntry.
fn video_size(entry: &[u8]) -> Option<(u32, u32)> {
    let mut is_video = false;
    let mut size = None;
    for e in Elements::new(entry) {
        match e.id {
            TRACK_TYPE => is_video = uint(e.body) == Some(1),
            VIDEO => size = Some(display(e.body)?),
            _ => {}
        }
    }
    size.filter(|_| is_video)
}

fn display(video: &[u8]) -> Option<(u32, u32)> {
    let (mut pw, mut ph, mut dw, mut dh, mut unit) = (None, None, None, None, 0);
    for e in Elements::new(video) {
        let v = uint(e.body).and_then(|v| u32::try_from(v).ok()).filter(|&v| v > 0);
        match e.id {
            PIXEL_WIDTH => pw = v,
            PIXEL_HEIGHT => ph = v,
            DISPLAY_WIDTH => dw = v,
            DISPLAY_HEIGHT => dh = v,
            DISPLAY_UNIT => unit = uint(e.body).unwrap_or(0),
            _ => {}
        }
    }
    let (pw, ph) = (pw?, ph?);
    Some(match (dw, dh, unit) {
        (Some(w), Some(h), 0) => (w, h), // pixels
        // Display aspect ratio only: keep the height, widen or narrow to the ratio.
        (Some(w), Some(h), 3) => (u32::try_from(u64::from(ph) * u64::from(w) / u64::from(h)).ok()?.max(1), ph),
        _ => (pw, ph),
    })
}

fn uint(b: &[u8]) -> Option<u64> {
    (b.len() <= 8).then(|| b.iter().fold(0u64, |n, &x| (n << 8) | u64::from(x)))
}

fn float(b: &[u8]) -> Option<f64> {
    match b.len() {
        4 => Some(f64::from(f32::from_be_bytes(b.try_into().ok()?))),
        8 => Some(f64::from_be_bytes(b.try_into().ok()?)),
        _ => None,
    }
}

/// One element: its ID (marker bits kept, as the spec writes IDs) and its body, cut at the
/// end of the data; an unknown size runs to the end of the data.
struct Element<'a> {
    id: u32,
    body: &'a [u8],
}

struct Elements<'a> {
    data: &'a [u8],
    at: usize,
    count: usize,
}

impl<'a> Elements<'a> {
    fn new(data: &'a [u8]) -> Self {
        Elements { data, at: 0, count: 0 }
    }
}

impl<'a> Iterator for Elements<'a> {
    type Item = Element<'a>;

    fn next(&mut self) -> Option<Element<'a>> {
        if self.count >= MAX_ELEMENTS {
            return None;
        }
        self.count += 1;
        let rest = self.data.get(self.at..)?;
        let (id_len, id) = vint(rest, 4, true)?;
        let (size_len, size) = vint(rest.get(id_len..)?, 8, false)?;
        let start = id_len + size_len;
        let avail = rest.len() - start;
        let len = size.map_or(avail, |s| usize::try_from(s).unwrap_or(usize::MAX).min(avail));
        let body = &rest[start..start + len];
        self.at = match size {
            Some(s) => {
                usize::try_from(s).ok().and_then(|s| self.at.checked_add(start)?.checked_add(s)).unwrap_or(usize::MAX)
            }
            None => self.data.len(),
        };
        Some(Element { id: u32::try_from(id?).ok()?, body })
    }
}

/// A variable-length integer of at most `max` bytes: its length and value (with the marker
/// bit kept for IDs; `None` for a size of all ones, "unknown").
fn vint(b: &[u8], max: usize, keep_marker: bool) -> Option<(usize, Option<u64>)> {
    let first = *b.first()?;
    let len = first.leading_zeros() as usize + 1;
    if len > max {
        return None;
    }
    let bytes = b.get(..len)?;
    let mask = if keep_marker { 0xff } else { (0xffu16 >> len) as u8 }; // len is 1 to 8
    let value = bytes[1..].iter().fold(u64::from(first & mask), |n, &x| (n << 8) | u64::from(x));
    let all_ones = !keep_marker && value == (1u64 << (7 * len)) - 1;
    Some((len, if all_ones { None } else { Some(value) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(id: u32, body: &[u8]) -> Vec<u8> {
        let id_bytes: Vec<u8> = id.to_be_bytes().into_iter().skip_while(|&b| b == 0).collect();
        let mut out = id_bytes;
        out.extend_from_slice(&(0x0100_0000_0000_0000u64 | body.len() as u64).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn duration_and_display_size() {
        let info =
            el(INFO, &[el(TIMESTAMP_SCALE, &[0x0f, 0x42, 0x40]), el(DURATION, &4200.5f64.to_be_bytes())].concat());
        let video = el(
            VIDEO,
            &[
                el(PIXEL_WIDTH, &[0x01, 0x40]),
                el(PIXEL_HEIGHT, &[0xf0]),
                el(DISPLAY_WIDTH, &[0xf0]),
                el(DISPLAY_HEIGHT, &[0x01, 0x40]),
            ]
            .concat(),
        );
        let tracks = el(TRACKS, &el(TRACK_ENTRY, &[el(TRACK_TYPE, &[1]), video].concat()));
        let file = [el(EBML, &[]), el(SEGMENT, &[info, tracks, el(CLUSTER, &[0; 16])].concat())].concat();
        assert_eq!(probe(&file), Ok(Probed { width: Some(240), height: Some(320), length: Some(4201) }));
        assert!(probe(&file[..6]).is_err());
        // An unknown-size Segment (live WebM) reads to the end of the data.
        let mut live = el(EBML, &[]);
        live.extend_from_slice(&[0x18, 0x53, 0x80, 0x67, 0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        live.extend_from_slice(&el(INFO, &el(DURATION, &1000f32.to_be_bytes())));
        assert_eq!(probe(&live).map(|p| p.length), Ok(Some(1000)));
    }
}
