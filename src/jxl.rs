//! JPEG XL dimensions and orientation from the codestream's `SizeHeader` and the start of its
//! `ImageMetadata` (ISO/IEC 18181-1 A.2 to A.6), in a bare codestream or in the container's
//! first `jxlc`/`jxlp` box. Forty-odd bits, read by hand: `jxl-oxide` would read them too,
//! but brings its whole decoder for it, and no BlurHash is made from JPEG XL here.

use crate::isobmff;

/// Width, height and EXIF-style orientation (1 to 8) as stored.
pub fn header(data: &[u8]) -> Result<(u32, u32, u8), String> {
    let stream = codestream(data).ok_or("no JPEG XL codestream")?;
    let body = stream.strip_prefix(b"\xff\x0a").ok_or("no codestream signature")?;
    let mut bits = Bits { data: body, at: 0 };
    read(&mut bits).ok_or_else(|| "a truncated JPEG XL header".to_owned())
}

fn codestream(data: &[u8]) -> Option<&[u8]> {
    if data.starts_with(b"\xff\x0a") {
        return Some(data);
    }
    isobmff::boxes(data).find_map(|b| match &b.kind {
        b"jxlc" => Some(b.body),
        b"jxlp" => b.body.get(4..), // after its sequence number
        _ => None,
    })
}

fn read(bits: &mut Bits) -> Option<(u32, u32, u8)> {
    let dim = |bits: &mut Bits| {
        let n = [9, 13, 18, 30][bits.take(2)? as usize];
        Some(1 + bits.take(n)?)
    };
    let small = bits.take(1)? == 1;
    let height = if small { (bits.take(5)? + 1) * 8 } else { dim(bits)? };
    let ratio = bits.take(3)?;
    let width = match ratio {
        0 if small => (bits.take(5)? + 1) * 8,
        0 => dim(bits)?,
        r => {
            let (num, den) = [(1, 1), (12, 10), (4, 3), (3, 2), (16, 9), (5, 4), (2, 1)][r as usize - 1];
            u32::try_from(u64::from(height) * num / den).ok()?
        }
    };
    // ImageMetadata: all_default, then extra_fields, whose first field is the orientation.
    let all_default = bits.take(1)? == 1;
    let orientation = if !all_default && bits.take(1)? == 1 { 1 + bits.take(3)? as u8 } else { 1 };
    Some((width, height, orientation))
}

/// Bits least significant first, as JPEG XL packs them.
struct Bits<'a> {
    data: &'a [u8],
    at: usize,
}

impl Bits<'_> {
    fn take(&mut self, n: usize) -> Option<u32> {
        let mut v = 0u32;
        for i in 0..n {
            let byte = *self.data.get(self.at / 8)?;
            v |= u32::from((byte >> (self.at % 8)) & 1) << i;
            self.at += 1;
        }
        Some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Packs (value, bits) pairs least significant first.
    fn pack(fields: &[(u32, usize)]) -> Vec<u8> {
        let mut out = vec![0xff, 0x0a];
        let mut at = 0;
        for &(v, n) in fields {
            for i in 0..n {
                if at % 8 == 0 {
                    out.push(0);
                }
                *out.last_mut().unwrap() |= (((v >> i) & 1) as u8) << (at % 8);
                at += 1;
            }
        }
        out
    }

    #[test]
    fn size_headers() {
        // small: 64 x (8 * 4:3 ratio), all_default metadata.
        assert_eq!(header(&pack(&[(1, 1), (7, 5), (3, 3), (1, 1)])), Ok((85, 64, 1)));
        // large: height 1 + 3023 in 13 bits, width 1 + 4031 in 13 bits, orientation 6.
        let big = pack(&[(0, 1), (1, 2), (3023, 13), (0, 3), (1, 2), (4031, 13), (0, 1), (1, 1), (5, 3)]);
        assert_eq!(header(&big), Ok((4032, 3024, 6)));
        assert!(header(&big[..4]).is_err());
        assert!(header(b"\xff\x0a").is_err());
    }
}
