//! A bounded walker over the boxes of one level of an ISO base media file (MP4, HEIF, AVIF,
//! the JPEG XL container): it never recurses, never allocates, and stops after
//! [`MAX_BOXES`] boxes, so a file of a million empty boxes or boxes nested 10,000 deep costs
//! no more than its bytes. A box that claims more bytes than there are (2^64, or an `mdat`
//! past what was read) comes back cut at the end of the data, with its declared size.

/// Boxes read at one level before the walk gives up.
pub const MAX_BOXES: usize = 4096;

/// One box: its type, where it starts, its declared size, and as much of its body as there is.
#[derive(Debug, Clone, Copy)]
pub struct Bmff<'a> {
    pub kind: [u8; 4],
    /// Offset of the box's first byte from the start of the walked data.
    pub start: u64,
    /// Size in bytes as declared (header included); for size 0, up to the end of the data.
    pub size: u64,
    /// Bytes of its header: 8, or 16 with a 64-bit size.
    pub header: usize,
    /// The body (after the header), cut at the end of the data.
    pub body: &'a [u8],
}

impl Bmff<'_> {
    /// Whether all of the declared box is in the data.
    pub fn is_whole(&self) -> bool {
        self.body.len() as u64 + self.header as u64 >= self.size
    }

    /// The whole box, header included, as far as it is in `data` (the walked data).
    pub fn bytes<'d>(&self, data: &'d [u8]) -> &'d [u8] {
        let start = self.start as usize;
        &data[start..start + self.header + self.body.len()]
    }

    /// Offset of the first byte after the box.
    pub fn end(&self) -> u64 {
        self.start.saturating_add(self.size)
    }
}

/// The boxes of `data`, one level, in order; stops at the first header that does not fit or
/// is malformed (a size below its header's), or after [`MAX_BOXES`].
pub fn boxes(data: &[u8]) -> impl Iterator<Item = Bmff<'_>> {
    let mut at = 0usize;
    let mut count = 0usize;
    std::iter::from_fn(move || {
        if count >= MAX_BOXES {
            return None;
        }
        count += 1;
        let rest = data.get(at..)?;
        let size32 = u32::from_be_bytes(rest.get(0..4)?.try_into().ok()?);
        let kind: [u8; 4] = rest.get(4..8)?.try_into().ok()?;
        let (size, header) = match size32 {
            0 => (rest.len() as u64, 8),
            1 => (u64::from_be_bytes(rest.get(8..16)?.try_into().ok()?), 16),
            n => (u64::from(n), 8),
        };
        if size < header as u64 {
            return None;
        }
        let body_len =
            usize::try_from(size - header as u64).unwrap_or(usize::MAX).min(rest.len() - header.min(rest.len()));
        let body = rest.get(header..header + body_len)?;
        let found = Bmff { kind, start: at as u64, size, header, body };
        // Past the end when the box runs beyond the data: the walk stops after it.
        at = usize::try_from(size).ok().and_then(|s| at.checked_add(s)).unwrap_or(usize::MAX);
        Some(found)
    })
}

/// The first box of type `kind` among `data`'s boxes.
pub fn find<'a>(data: &'a [u8], kind: &[u8; 4]) -> Option<Bmff<'a>> {
    boxes(data).find(|b| &b.kind == kind)
}

/// The bodies of every box of type `kind` among `data`'s boxes.
pub fn bodies<'a>(data: &'a [u8], kind: &'static [u8; 4]) -> impl Iterator<Item = &'a [u8]> {
    boxes(data).filter(move |b| &b.kind == kind).map(|b| b.body)
}

/// A full box's version, and its body after the version and flags.
pub fn full(body: &[u8]) -> Option<(u8, &[u8])> {
    Some((*body.first()?, body.get(4..)?))
}

/// A box of `kind` around `body`, for the box readers' tests.
#[cfg(test)]
pub(crate) fn bx(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut b = ((body.len() + 8) as u32).to_be_bytes().to_vec();
    b.extend_from_slice(kind);
    b.extend_from_slice(body);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_one_level_and_cuts_what_runs_past_the_end() {
        let mut data = bx(b"ftyp", b"isom\0\0\0\0");
        data.extend(bx(b"free", b""));
        // An mdat claiming 2^64 - 1 bytes (largesize), of which 3 are here.
        data.extend_from_slice(b"\0\0\0\x01mdat\xff\xff\xff\xff\xff\xff\xff\xffabc");
        let found: Vec<_> = boxes(&data).collect();
        assert_eq!(found.iter().map(|b| &b.kind).collect::<Vec<_>>(), [b"ftyp", b"free", b"mdat"]);
        let mdat = found[2];
        assert_eq!((mdat.start, mdat.size, mdat.body), (24, u64::MAX, &b"abc"[..]));
        assert!(!mdat.is_whole());
        assert!(found[0].is_whole());
    }

    #[test]
    fn malformed_sizes_stop_the_walk() {
        assert_eq!(boxes(b"\0\0\0\x04free").count(), 0, "size below the header");
        assert_eq!(boxes(b"\0\0\0").count(), 0);
        let many: Vec<u8> = (0..10_000).flat_map(|_| bx(b"free", b"")).collect();
        assert_eq!(boxes(&many).count(), MAX_BOXES);
    }
}
