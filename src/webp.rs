//! What a WebP file's chunks say, and what decoding its first picture with image-webp (through
//! the image crate) will allocate, worked out before it does.
//!
//! image-webp 0.2.4 takes its buffers at the sizes the file declares and checks none against a
//! limit (its memory limit covers metadata chunks only). So the rule here follows its code: the
//! image crate's output buffer, and beside it
//! - still lossless (VP8L): an RGBA buffer when the image has no alpha, and the bitstream's
//!   own sub-images and prefix codes ([`vp8l::cost`], which also refuses impossible streams);
//! - still lossy (VP8): the frame's Y, U and V planes at the size its own header declares, up
//!   to three copies of the chunk's data (partitions) and the partition sizes it declares, and
//!   for alpha the ALPH plane (and its RGBA decode when it is compressed losslessly);
//! - animated: the first frame decoded as above (RGBA or RGB), and the RGBA canvas beside it
//!   (issue 18: a 7071x7071 animation held output, frame and canvas at once, 572 MiB).

use crate::error::Result;
use crate::vp8l::{self, Verdict};

/// The chunks of a RIFF/WEBP file as image-webp reads them: (fourcc, payload) in order, each
/// payload cut at the end of the file.
fn chunks(data: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut rest = data;
    std::iter::from_fn(move || {
        if rest.len() < 8 {
            return None;
        }
        let (fourcc, size) = (&rest[..4], u32::from_le_bytes(rest[4..8].try_into().ok()?) as usize);
        let body = &rest[8..];
        let payload = &body[..size.min(body.len())];
        rest = body.get(size.saturating_add(size & 1)..).unwrap_or_default(); // padded to even sizes
        Some((fourcc, payload))
    })
}

/// The chunks after "RIFF", size, "WEBP".
fn top_level(bytes: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    chunks(bytes.get(12..).unwrap_or_default())
}

/// The VP8 chunk of a still, opaque lossy WebP, which [`crate::vp8`] decodes: the simple
/// format, or the extended one without animation and ALPH chunk whose canvas is the frame's
/// size. Anything else goes to image-webp.
pub fn opaque_vp8(bytes: &[u8]) -> Option<&[u8]> {
    let (fourcc, payload) = top_level(bytes).next()?;
    match fourcc {
        b"VP8 " => Some(payload),
        b"VP8X" if payload.first()? & 0x02 == 0 && !top_level(bytes).any(|(f, _)| f == b"ALPH") => {
            let canvas = (le24(payload, 4)? + 1, le24(payload, 7)? + 1);
            let (_, frame) = top_level(bytes).find(|(f, _)| matches!(*f, b"VP8 " | b"VP8L"))?;
            (crate::vp8::frame_size(frame)? == canvas).then_some(frame)
        }
        _ => None,
    }
}

/// The EXIF chunk of a WebP file, cut at the end of the file. image-webp would allocate the
/// size the chunk declares (up to 4 GiB) before reading it: image does not pass `max_alloc`
/// on, and an allocation failure aborts the whole server.
pub fn exif(bytes: &[u8]) -> Option<&[u8]> {
    top_level(bytes).find(|(fourcc, _)| *fourcc == b"EXIF").map(|(_, payload)| payload)
}

fn le24(d: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes([*d.get(at)?, *d.get(at + 1)?, *d.get(at + 2)?, 0]))
}

/// The memory image-webp takes for a VP8 (lossy) chunk: its planes at the size its own frame
/// header declares (checked against the container only after decoding), its macroblock
/// records, the partitions copied out of the chunk, and a buffer of the size a partition
/// declares, taken before it is read: the first partition's (up to 512 KiB) and the largest
/// in the table of the others' sizes that follows it (up to 16 MiB; the sniff_decode fuzz
/// target found 13 MB declared in a 242-byte file, tests/fixtures/webp-partition-13mb.webp).
fn vp8_cost(payload: &[u8]) -> u64 {
    let size = |at: usize| Some(u16::from_le_bytes([*payload.get(at)?, *payload.get(at + 1)?]) as u64 & 0x3fff);
    let (Some(w), Some(h)) = (size(6), size(8)) else { return 0 };
    let macroblocks = w.div_ceil(16) * h.div_ceil(16);
    let le24 = |s: &[u8]| u64::from(u32::from_le_bytes([s[0], s[1], s[2], 0]));
    // The frame tag's top 19 bits; the header (tag, start code, sizes) is 10 bytes. How many
    // partitions there are is in the compressed header: take the 7 entries a table may have.
    let first = payload.get(..3).map_or(0, le24) >> 5;
    let table = payload.get(10usize.saturating_add(first as usize)..).unwrap_or_default();
    let declared = table.chunks_exact(3).take(7).map(le24).max().unwrap_or(0);
    macroblocks * (256 + 2 * 64) + 2 * 32 * macroblocks + 3 * payload.len() as u64 + first + declared
}

/// The memory image-webp takes for an ALPH chunk of a `w` x `h` picture (as it decodes it).
fn alpha_cost(payload: &[u8], w: u32, h: u32) -> Result<Verdict> {
    let pixels = w as u64 * h as u64;
    Ok(match payload.first().map(|b| b & 3) {
        Some(0) => Verdict::Costs(pixels),
        Some(1) => match vp8l::cost(&payload[1..], w, h, true)? {
            Verdict::Costs(c) => Verdict::Costs(c + 5 * pixels), // RGBA, then its green plane
            refused => refused,
        },
        _ => Verdict::Costs(0), // image-webp refuses the chunk
    })
}

fn plus(v: Verdict, more: u64) -> Verdict {
    match v {
        Verdict::Costs(c) => Verdict::Costs(c.saturating_add(more)),
        refused => refused,
    }
}

/// What decoding the first picture of the WebP `bytes` (of `width` x `height`, as image-webp
/// reports them) allocates, or why it is not to be decoded. Fails only when the time budget
/// is spent.
pub fn decode_cost(bytes: &[u8], width: u32, height: u32) -> Result<Verdict> {
    let canvas = width as u64 * height as u64;
    let Some((first, payload)) = top_level(bytes).next() else { return Ok(Verdict::Costs(0)) };
    Ok(match first {
        b"VP8 " => Verdict::Costs(3 * canvas + vp8_cost(payload)),
        b"VP8L" => {
            let alpha = payload.get(4).is_some_and(|b| b & 0x10 != 0);
            let output = if alpha { 4 * canvas } else { 3 * canvas + 4 * canvas };
            plus(vp8l::cost(payload, width, height, false)?, output)
        }
        b"VP8X" => {
            let flags = payload.first().copied().unwrap_or(0);
            let (alpha, animated) = (flags & 0x10 != 0, flags & 0x02 != 0);
            let output = if alpha { 4 * canvas } else { 3 * canvas };
            if animated {
                plus(first_frame_cost(bytes)?, output + 4 * canvas)
            } else {
                plus(still_cost(bytes, width, height, alpha)?, output)
            }
        }
        _ => Verdict::Costs(0), // image-webp refuses the file
    })
}

/// A VP8X file's still picture, beside the output: as image-webp picks its chunks (the first
/// of each kind anywhere in the file).
fn still_cost(bytes: &[u8], width: u32, height: u32, alpha: bool) -> Result<Verdict> {
    let find = |kind: &[u8]| top_level(bytes).find(|(fourcc, _)| *fourcc == kind).map(|(_, p)| p);
    if let Some(vp8l) = find(b"VP8L") {
        let rgba = if alpha { 0 } else { 4 * width as u64 * height as u64 };
        return Ok(plus(vp8l::cost(vp8l, width, height, false)?, rgba));
    }
    let vp8 = find(b"VP8 ").map_or(0, vp8_cost);
    match find(b"ALPH") {
        Some(alph) if alpha => Ok(plus(alpha_cost(alph, width, height)?, vp8)),
        _ => Ok(Verdict::Costs(vp8)),
    }
}

/// An animation's first frame as image-webp's `read_frame` decodes it (the canvas and output
/// are added by the caller).
fn first_frame_cost(bytes: &[u8]) -> Result<Verdict> {
    let Some((_, anmf)) = top_level(bytes).find(|(fourcc, _)| *fourcc == b"ANMF") else {
        return Ok(Verdict::Costs(0));
    };
    let (Some(w), Some(h)) = (le24(anmf, 6), le24(anmf, 9)) else { return Ok(Verdict::Costs(0)) };
    let (w, h) = (w + 1, h + 1);
    let frame = w as u64 * h as u64;
    let mut inner = chunks(anmf.get(16..).unwrap_or_default());
    Ok(match inner.next() {
        Some((b"VP8 ", vp8)) => Verdict::Costs(3 * frame + vp8_cost(vp8)),
        Some((b"VP8L", vp8l)) => plus(vp8l::cost(vp8l, w, h, false)?, 4 * frame),
        Some((b"ALPH", alph)) => {
            let vp8 = inner.next().filter(|(fourcc, _)| *fourcc == b"VP8 ").map_or(0, |(_, p)| vp8_cost(p));
            plus(alpha_cost(alph, w, h)?, 4 * frame + vp8)
        }
        _ => Verdict::Costs(0),
    })
}
