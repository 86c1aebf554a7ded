//! HEIC, HEIF and AVIF dimensions from the item properties, no pixel decoded: the primary
//! item (`pitm`) and the properties `ipma` gives it in `ipco`: `ispe` (the coded size),
//! `irot` (anticlockwise quarter turns) and `imir` (a mirror, which keeps the size).
//!
//! A small bounded walker ([`crate::isobmff`]) rather than `mp4parse::read_avif`: that reads
//! AVIF only (HEIC's `hvc1` items are refused), and every HEIC iPhones send is a grid whose
//! displayed size is the grid item's own `ispe`, which this finds the same way for both.

use crate::isobmff::{self, full};

/// The displayed size, or why it cannot be read.
pub fn size(data: &[u8]) -> Result<(u32, u32), String> {
    let meta = isobmff::find(data, b"meta").ok_or("no meta box")?;
    let (_, meta) = full(meta.body).ok_or("a truncated meta box")?;
    let primary = isobmff::find(meta, b"pitm").and_then(|b| primary_item(b.body)).ok_or("no primary item (pitm)")?;
    let iprp = isobmff::find(meta, b"iprp").ok_or("no item properties (iprp)")?;
    let ipco = isobmff::find(iprp.body, b"ipco").ok_or("no property container (ipco)")?;
    let properties: Vec<_> = isobmff::boxes(ipco.body).collect();
    let mut indices = Vec::new();
    for ipma in isobmff::boxes(iprp.body).filter(|b| &b.kind == b"ipma") {
        associations(ipma.body, primary, &mut indices);
    }
    let mut size = None;
    let mut turns = 0;
    for property in indices.iter().filter_map(|&i| properties.get(i.checked_sub(1)?)) {
        match &property.kind {
            b"ispe" if size.is_none() => size = ispe(property.body),
            b"irot" => turns = property.body.first().map_or(0, |b| b & 3),
            _ => {}
        }
    }
    let (w, h) = size.ok_or_else(|| format!("no image size (ispe) for the primary item {primary}"))?;
    Ok(if turns % 2 == 1 { (h, w) } else { (w, h) })
}

fn primary_item(body: &[u8]) -> Option<u32> {
    let (version, rest) = full(body)?;
    Some(if version == 0 { u32::from(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?)) } else { be32(rest, 0)? })
}

fn ispe(body: &[u8]) -> Option<(u32, u32)> {
    let (_, rest) = full(body)?;
    Some((be32(rest, 0)?, be32(rest, 4)?)).filter(|&(w, h)| w > 0 && h > 0)
}

/// Appends to `out` the property indices (1-based) `ipma` associates with `item`. Each entry
/// is read only as far as the box goes: a declared count past its end is not trusted.
fn associations(body: &[u8], item: u32, out: &mut Vec<usize>) {
    let Some((version, rest)) = full(body) else { return };
    let flags = body.get(3).copied().unwrap_or(0);
    let (id_len, index_len) = (if version < 1 { 2 } else { 4 }, if flags & 1 == 1 { 2 } else { 1 });
    let Some(count) = be32(rest, 0) else { return };
    let mut at = 4;
    for _ in 0..count {
        let id = match id_len {
            2 => rest.get(at..at + 2).map(|b| u32::from(u16::from_be_bytes([b[0], b[1]]))),
            _ => be32(rest, at),
        };
        let (Some(id), Some(&n)) = (id, rest.get(at + id_len)) else { return };
        at += id_len + 1;
        let Some(list) = rest.get(at..at + n as usize * index_len) else { return };
        at += list.len();
        if id == item {
            out.extend(list.chunks_exact(index_len).map(|c| match c {
                [a, b] => usize::from(u16::from_be_bytes([*a, *b]) & 0x7fff),
                [a] => usize::from(a & 0x7f),
                _ => 0,
            }));
            return;
        }
    }
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isobmff::bx;

    fn heif(props: &[Vec<u8>], item: u16, assoc: &[u8]) -> Vec<u8> {
        let mut ipma = vec![0, 0, 0, 0, 0, 0, 0, 1];
        ipma.extend_from_slice(&item.to_be_bytes());
        ipma.push(assoc.len() as u8);
        ipma.extend_from_slice(assoc);
        let iprp = [bx(b"ipco", &props.concat()), bx(b"ipma", &ipma)].concat();
        let meta = [vec![0; 4], bx(b"pitm", &[0, 0, 0, 0, 0, 1]), bx(b"iprp", &iprp)].concat();
        [bx(b"ftyp", b"heic\0\0\0\0mif1"), bx(b"meta", &meta)].concat()
    }

    fn ispe_box(w: u32, h: u32) -> Vec<u8> {
        bx(b"ispe", &[&[0u8; 4][..], &w.to_be_bytes(), &h.to_be_bytes()].concat())
    }

    #[test]
    fn the_primary_items_size_turned() {
        let props = [ispe_box(512, 512), ispe_box(4032, 3024), bx(b"irot", &[1])];
        assert_eq!(size(&heif(&props, 1, &[0x82, 0x83])), Ok((3024, 4032)));
        assert_eq!(size(&heif(&props, 1, &[0x82])), Ok((4032, 3024)));
        assert!(size(&heif(&props, 2, &[0x82])).is_err(), "no properties for the primary item");
        // 100000 x 100000 is only a size: nothing is allocated for it.
        assert_eq!(size(&heif(&[ispe_box(100_000, 100_000)], 1, &[1])), Ok((100_000, 100_000)));
    }

    #[test]
    fn truncated_and_lying_boxes_are_errors() {
        let whole = heif(&[ispe_box(10, 20)], 1, &[1]);
        for cut in 0..whole.len() {
            let _ = size(&whole[..cut]);
        }
        let mut lying = whole.clone();
        let at = lying.windows(4).position(|w| w == b"ipma").unwrap() + 8;
        lying[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes()); // 2^32 - 1 entries
        assert_eq!(size(&lying), Ok((10, 20)), "read as far as the box goes");
    }
}
