//! Pictures measured from their headers, never decoded: HEIC/HEIF/AVIF ([`crate::heif`]),
//! JPEG XL ([`crate::jxl`]), SVG ([`crate::svg`]), BMP and ICO here; and whether a GIF, PNG
//! or WebP (which [`crate::decode`] decodes) is animated.

use crate::analyze::Probed;
use crate::error::{Error, Result};
use crate::sniff::Format;
use crate::{heif, jxl, svg};

/// The displayed size of a picture of a measured `format`.
pub fn measure(data: &[u8], format: Format) -> Result<Probed> {
    let upright = |(w, h, orientation): (u32, u32, u8)| if orientation >= 5 { (h, w) } else { (w, h) };
    let size = match format {
        Format::Avif | Format::Heic | Format::Heif => heif::size(data),
        Format::Jxl => jxl::header(data).map(upright),
        Format::Svg => svg::size(data),
        Format::Bmp => bmp(data).ok_or_else(|| "a truncated BMP header".to_owned()),
        Format::Ico => ico(data).ok_or_else(|| "a truncated ICO directory".to_owned()),
        _ => Err("not a format measured from its header".to_owned()),
    };
    let (w, h) = size.map_err(|why| Error::Decode { format: format.mime(), why })?;
    Ok(Probed { width: Some(w), height: Some(h), ..Probed::default() })
}

/// BITMAPINFOHEADER and later: signed 32-bit sizes (a negative height is a top-down
/// picture); BITMAPCOREHEADER (12 bytes): unsigned 16-bit.
fn bmp(data: &[u8]) -> Option<(u32, u32)> {
    let (w, h) = if data.get(14) == Some(&12) {
        (u32::from(le16(data, 18)?), u32::from(le16(data, 20)?))
    } else {
        let w = i32::from_le_bytes(data.get(18..22)?.try_into().ok()?);
        let h = i32::from_le_bytes(data.get(22..26)?.try_into().ok()?);
        (w.unsigned_abs(), h.unsigned_abs())
    };
    Some((w, h)).filter(|&(w, h)| w > 0 && h > 0)
}

/// The largest picture in the directory (a size byte of 0 means 256).
fn ico(data: &[u8]) -> Option<(u32, u32)> {
    let count = usize::from(le16(data, 4)?);
    let side = |b: u8| if b == 0 { 256 } else { u32::from(b) };
    (0..count)
        .map_while(|i| data.get(6 + 16 * i..8 + 16 * i))
        .map(|e| (side(e[0]), side(e[1])))
        .max_by_key(|&(w, h)| w * h)
}

/// Whether a GIF has more than one frame, a PNG is an APNG of more than one frame, or a
/// WebP has its animation flag; `None` for other formats or what cannot be told.
pub fn animated(data: &[u8], format: Format) -> Option<bool> {
    match format {
        Format::Gif => gif_frames(data).map(|n| n > 1),
        Format::Png => Some(apng_frames(data).is_some_and(|n| n > 1)),
        Format::WebP => {
            let vp8x = data.get(12..16) == Some(b"VP8X");
            Some(vp8x && data.get(20).is_some_and(|flags| flags & 0x02 != 0))
        }
        _ => None,
    }
}

/// GIF image descriptors counted up to two; `None` if the blocks break off before the first.
fn gif_frames(data: &[u8]) -> Option<u32> {
    let flags = *data.get(10)?;
    let mut at = 13 + if flags & 0x80 != 0 { 3 << ((flags & 7) + 1) } else { 0 };
    let mut frames = 0;
    let skip_sub_blocks = |mut at: usize| {
        while let Some(&len) = data.get(at) {
            at += 1 + len as usize;
            if len == 0 {
                return Some(at);
            }
        }
        None
    };
    while frames < 2 {
        match data.get(at) {
            Some(0x21) => at = skip_sub_blocks(at + 2)?,
            Some(0x2c) => {
                frames += 1;
                let local = *data.get(at + 9)?;
                at += 10 + if local & 0x80 != 0 { 3 << ((local & 7) + 1) } else { 0 };
                match skip_sub_blocks(at + 1) {
                    Some(next) => at = next,
                    None => break,
                }
            }
            _ => break, // the trailer, the end of what was read, or not a block
        }
    }
    (frames > 0).then_some(frames)
}

/// The frame count of an APNG's `acTL`, if one comes before the first `IDAT`.
fn apng_frames(data: &[u8]) -> Option<u32> {
    let mut at = 8;
    for _ in 0..1024 {
        let len = usize::try_from(u32::from_be_bytes(data.get(at..at + 4)?.try_into().ok()?)).ok()?;
        match data.get(at + 4..at + 8)? {
            b"acTL" => return Some(u32::from_be_bytes(data.get(at + 8..at + 12)?.try_into().ok()?)),
            b"IDAT" => return None,
            _ => at = at.checked_add(12)?.checked_add(len)?,
        }
    }
    None
}

fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bmp_and_ico_headers() {
        let mut bmp_bytes = b"BM\0\0\0\0\0\0\0\0\x36\0\0\0\x28\0\0\0".to_vec();
        bmp_bytes.extend_from_slice(&640i32.to_le_bytes());
        bmp_bytes.extend_from_slice(&(-480i32).to_le_bytes());
        assert_eq!(bmp(&bmp_bytes), Some((640, 480)));
        assert_eq!(bmp(&bmp_bytes[..20]), None);
        let mut ico_bytes = b"\0\0\x01\0\x02\0".to_vec();
        ico_bytes.extend_from_slice(&[16, 16, 0, 0, 1, 0, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        ico_bytes.extend_from_slice(&[0, 0, 0, 0, 1, 0, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(ico(&ico_bytes), Some((256, 256)));
        assert_eq!(ico(&ico_bytes[..6]), None);
        // A count of 65535 with two entries present reads the two.
        ico_bytes[4..6].copy_from_slice(&u16::MAX.to_le_bytes());
        assert_eq!(ico(&ico_bytes), Some((256, 256)));
    }
}
