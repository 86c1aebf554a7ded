//! Ogg (Opus, Vorbis, FLAC) duration: the last page's granule position of the first logical
//! stream, less Opus's pre-skip, over the codec's rate. The rate is in the first page; the
//! last page is at the end of the file, which may need a tail read ([`crate::media`]).

/// The codec's clock, from the first page's first packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stream {
    serial: u32,
    rate: u64,
    pre_skip: u64,
}

/// Reads the first page: its stream's serial and the codec's rate.
pub fn first_page(data: &[u8]) -> Result<Stream, String> {
    let page = Page::at(data, 0).ok_or("no Ogg page")?;
    let packet = data.get(page.body..).ok_or("a truncated first page")?;
    let (rate, pre_skip) = if packet.starts_with(b"OpusHead") {
        (
            48_000,
            u64::from(u16::from_le_bytes(
                packet.get(10..12).ok_or("a truncated OpusHead")?.try_into().unwrap_or_default(),
            )),
        )
    } else if packet.starts_with(b"\x01vorbis") {
        (
            u64::from(u32::from_le_bytes(
                packet.get(12..16).ok_or("a truncated Vorbis header")?.try_into().unwrap_or_default(),
            )),
            0,
        )
    } else if packet.starts_with(b"\x7fFLAC") {
        // Mapping header (9 bytes), "fLaC", a block header, then STREAMINFO: its rate is 20
        // bits at byte 10.
        let info = packet.get(9 + 4 + 4..9 + 4 + 4 + 13).ok_or("a truncated Ogg FLAC header")?;
        let rate = (u64::from(info[10]) << 12) | (u64::from(info[11]) << 4) | (u64::from(info[12]) >> 4);
        (rate, 0)
    } else {
        return Err("not Opus, Vorbis or FLAC".to_owned());
    };
    if rate == 0 {
        return Err("a sample rate of 0".to_owned());
    }
    Ok(Stream { serial: page.serial, rate, pre_skip })
}

/// The duration in `tail` (the end of the file): the last page of `stream` with a granule
/// position. `None` when `tail` holds no such page (an Ogg stream with no last page).
pub fn length(stream: Stream, tail: &[u8]) -> Option<u64> {
    let mut at = tail.len().saturating_sub(27);
    loop {
        if tail.get(at..at + 4) == Some(b"OggS") {
            if let Some(page) = Page::at(tail, at) {
                // Header pages have granule 0; -1 is "no packet ends here".
                if page.serial == stream.serial && page.granule > 0 {
                    let samples = (page.granule as u64).saturating_sub(stream.pre_skip);
                    return u64::try_from(u128::from(samples) * 1000 / u128::from(stream.rate)).ok();
                }
            }
        }
        at = at.checked_sub(1)?;
    }
}

struct Page {
    granule: i64,
    serial: u32,
    /// Offset of the page's body.
    body: usize,
}

impl Page {
    fn at(data: &[u8], at: usize) -> Option<Page> {
        let h = data.get(at..at + 27)?;
        if &h[..4] != b"OggS" || h[4] != 0 {
            return None;
        }
        let segments = usize::from(h[26]);
        data.get(at + 27..at + 27 + segments)?;
        Some(Page {
            granule: i64::from_le_bytes(h[6..14].try_into().ok()?),
            serial: u32::from_le_bytes(h[14..18].try_into().ok()?),
            body: at + 27 + segments,
        })
    }
}
