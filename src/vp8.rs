//! A lossy WebP picture (a VP8 key frame, RFC 6386) decoded a macroblock row at a time, straight
//! into the shrink.
//!
//! image-webp decodes the whole frame into Y, U and V planes and then an RGB buffer (37 MB for a
//! 4K photo) and takes twice libvips' time. Here the decoder holds one row of macroblocks (24
//! bytes a pixel column) and the edge pixels of the row above, which is all VP8's intra
//! prediction reads. The loop filter is not run: it smooths the edges between blocks, which
//! the shrink averages over anyway (dwebp spends 8 of its 124 ms on it for the benchmark's 4K
//! photo). Without it the reconstruction is libwebp's to the bit (`tests/vp8.rs` against
//! `dwebp -nofilter -yuv`), and the blocks are averaged into the shrink in YUV, converted to
//! RGB per block.
//!
//! Every loop is bounded by the frame's macroblock count, which the caller has checked against
//! `max_pixels`; a stream that ends early reads as zeros and is refused at the end of the
//! macroblock (as libwebp does), and hostile coefficients wrap as libwebp's 16-bit ones do.

use crate::blurhash::{Layout, Shrinker, Shrunk, SHRINK_TO};
use crate::vp8_tables::{AC_QUANT, BMODE_PROBS, COEFF_PROBS, COEFF_UPDATE_PROBS, DC_QUANT};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The frame's stored size, from the VP8 chunk's payload (`None` unless it is a key frame).
pub fn frame_size(chunk: &[u8]) -> Option<(u32, u32)> {
    let size = |at: usize| Some(u16::from_le_bytes([*chunk.get(at)?, *chunk.get(at + 1)?]) as u32 & 0x3fff);
    (chunk.first()? & 1 == 0 && chunk.get(3..6)? == [0x9d, 0x01, 0x2a]).then_some(())?;
    Some((size(6)?, size(8)?))
}

/// One decoded row of macroblocks: 16 rows of Y (`rows` of them in the picture) and 8 of U
/// and V, `mb_w * 16` and `mb_w * 8` bytes a row.
pub struct MbRow<'a> {
    /// Which macroblock row this is, from 0.
    pub index: u32,
    pub rows: u32,
    pub y: &'a [u8],
    pub u: &'a [u8],
    pub v: &'a [u8],
}

/// Where the rows go as they are decoded; an error stops the decode (the time budget's).
pub trait Rows {
    fn row(&mut self, row: &MbRow) -> std::result::Result<(), crate::error::Error>;
}

/// Decodes the key frame in `chunk` (a VP8 chunk's payload) into `out`, top to bottom.
pub fn decode(chunk: &[u8], out: &mut impl Rows) -> Result<()> {
    let (width, height) = frame_size(chunk).ok_or("not a VP8 key frame")?;
    if width == 0 || height == 0 {
        return Err(format!("a {width}x{height} VP8 frame has no pixels").into());
    }
    let tag = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], 0]);
    if (tag >> 1) & 7 > 3 || (tag >> 4) & 1 == 0 {
        return Err("a VP8 frame of an unknown profile, or not for display".into());
    }
    let first_len = (tag >> 5) as usize;
    let rest = &chunk[10..];
    let first = rest.get(..first_len).ok_or("the VP8 frame header is cut short")?;
    let mut modes = BoolDecoder::new(first);
    let header = FrameHeader::read(&mut modes)?;
    let mut parts = partitions(&rest[first_len..], header.partitions)?;
    let mut frame = Frame::new(width, height);
    for mb_y in 0..frame.mb_h {
        frame.left = Context::default();
        let tokens = &mut parts[mb_y as usize & (header.partitions - 1)];
        for mb_x in 0..frame.mb_w {
            let (top, left) = (&mut frame.top[mb_x as usize], &mut frame.left);
            let mb = modes.in_registers(|br| read_modes(br, &header, top, left));
            let mut coeffs = [0i16; 24 * 16];
            let with_ac = if mb.skip {
                top.clear(mb.i4);
                left.clear(mb.i4);
                0
            } else {
                tokens.in_registers(|br| read_residuals(br, &header, &mb, top, left, &mut coeffs))
            };
            if tokens.eof {
                return Err("the VP8 picture data ends early".into());
            }
            frame.reconstruct(mb_x, mb_y, &mb, &coeffs, with_ac);
        }
        if modes.eof {
            return Err("the VP8 frame header is cut short".into());
        }
        let rows = (height - mb_y * 16).min(16);
        out.row(&MbRow { index: mb_y, rows, y: &frame.row_y, u: &frame.row_u, v: &frame.row_v })?;
    }
    Ok(())
}

/// The shrunk picture of the key frame in `chunk`, shown with EXIF `orientation`.
///
/// Pictures of 512 pixels and more on the long side go to the shrink as the means of 2x2 or
/// 4x4 blocks (as JPEG's go as 8x8 DC means), at least four times the shrink's size.
pub fn shrink(chunk: &[u8], orientation: u8) -> Result<Shrunk> {
    let (width, height) = frame_size(chunk).ok_or("not a VP8 key frame")?;
    let long = width.max(height);
    let block = [4, 2].into_iter().find(|b| long / b >= 4 * SHRINK_TO).unwrap_or(1);
    let (w, h) = (width.div_ceil(block), height.div_ceil(block));
    let mut sink = ShrinkRows {
        shrinker: Shrinker::new(w, h, Layout::Rgb, orientation)?,
        block: block as usize,
        width: width as usize,
        sums: [vec![0; width as usize], vec![0; width.div_ceil(2) as usize], vec![0; width.div_ceil(2) as usize]],
        rgb: vec![0; w as usize * 3],
    };
    decode(chunk, &mut sink)?;
    Ok(sink.shrinker.finish())
}

/// Block means in YUV, each converted to RGB (BT.601, as libwebp does) into the shrink.
struct ShrinkRows {
    shrinker: Shrinker,
    block: usize,
    width: usize,
    /// The sums down each pixel column of the rows of blocks being averaged: Y, U, V.
    sums: [Vec<u16>; 3],
    rgb: Vec<u8>,
}

impl Rows for ShrinkRows {
    fn row(&mut self, row: &MbRow) -> std::result::Result<(), crate::error::Error> {
        let (b, width) = (self.block, self.width);
        let (ys, cs) = (width.div_ceil(16) * 16, width.div_ceil(16) * 8);
        for r in 0..(row.rows as usize).div_ceil(b) {
            let (y0, y1) = (r * b, ((r + 1) * b).min(row.rows as usize));
            let (c0, c1) = (y0 / 2, y1.div_ceil(2));
            let [sum_y, sum_u, sum_v] = &mut self.sums;
            add_lines(sum_y, row.y, ys, y0..y1);
            add_lines(sum_u, row.u, cs, c0..c1);
            add_lines(sum_v, row.v, cs, c0..c1);
            let mean = |sums: &[u16], (a, z): (usize, usize), lines: usize| {
                sums[a..z].iter().map(|&v| v as u32).sum::<u32>() as f32 / ((z - a) * lines) as f32
            };
            for (o, px) in self.rgb.chunks_exact_mut(3).enumerate() {
                let (x0, x1) = (o * b, ((o + 1) * b).min(width));
                let chroma = (x0 / 2, x1.div_ceil(2));
                let y = mean(sum_y, (x0, x1), y1 - y0);
                let (u, v) = (mean(sum_u, chroma, c1 - c0) - 128.0, mean(sum_v, chroma, c1 - c0) - 128.0);
                let l = 1.164_383 * (y - 16.0);
                let byte = |c: f32| (c + 0.5).clamp(0.0, 255.0) as u8;
                px.copy_from_slice(&[
                    byte(l + 1.596_027 * v),
                    byte(l - 0.391_762 * u - 0.812_968 * v),
                    byte(l + 2.017_232 * u),
                ]);
            }
            self.sums.iter_mut().for_each(|s| s.fill(0));
            let out_y = row.index * (16 / b as u32) + r as u32;
            self.shrinker.add_row(out_y, &self.rgb)?;
        }
        Ok(())
    }
}

/// Adds `lines` of `plane` (rows `stride` bytes apart) into the column sums.
fn add_lines(sums: &mut [u16], plane: &[u8], stride: usize, lines: std::ops::Range<usize>) {
    for line in lines {
        for (s, &p) in sums.iter_mut().zip(&plane[line * stride..]) {
            *s += p as u16;
        }
    }
}

/// The boolean entropy decoder (RFC 6386, section 7), reading 56 bits at a time as libwebp
/// does. Past the end it reads zeros and sets `eof`.
#[derive(Clone)]
struct BoolDecoder<'a> {
    data: &'a [u8],
    pos: usize,
    value: u64,
    /// The range minus one, 127..=254 between reads.
    range: u32,
    /// How many bits of `value` are below the 8 being decoded; negative: load more.
    bits: i32,
    eof: bool,
}

impl<'a> BoolDecoder<'a> {
    fn new(data: &'a [u8]) -> BoolDecoder<'a> {
        BoolDecoder { data, pos: 0, value: 0, range: 254, bits: -8, eof: false }
    }

    /// Runs `read` on a copy of the decoder, then keeps the copy's state: in a local, the
    /// state stays in registers (through the `&mut`, LLVM keeps it in memory, a store and a
    /// load on every bit; 146 against 130 ms for the 4K benchmark photo).
    #[inline(always)]
    fn in_registers<T>(&mut self, read: impl FnOnce(&mut BoolDecoder<'a>) -> T) -> T {
        let mut copy = self.clone();
        let out = read(&mut copy);
        *self = copy;
        out
    }

    /// Tops `value` up: 56 bits at once, or what is left of the data a byte at a time.
    /// Inlined so that the decoder's state stays in registers in the token loops (a call
    /// taking `&mut self` would send it through memory on every bit); the rare tail is a
    /// call that takes and returns it by value.
    #[inline(always)]
    fn load(&mut self) {
        if let Some(&next) = self.data.get(self.pos..).and_then(|d| d.first_chunk::<8>()) {
            self.value = (self.value << 56) | (u64::from_be_bytes(next) >> 8);
            self.pos += 7;
            self.bits += 56;
        } else {
            (self.value, self.bits, self.pos, self.eof) =
                load_tail(self.data, self.value, self.bits, self.pos, self.eof);
        }
    }

    /// One bit that is 0 with probability `prob` / 256.
    #[inline(always)]
    fn bit(&mut self, prob: u8) -> bool {
        if self.bits < 0 {
            self.load();
        }
        let pos = self.bits as u32;
        let split = (self.range * prob as u32) >> 8;
        // Two paths, not a select: most bits are well predicted, and a branch lets the CPU
        // run ahead where a conditional move would wait for every comparison.
        if (self.value >> pos) as u32 > split {
            self.value -= ((split + 1) as u64) << pos;
            self.normalize(self.range - split);
            true
        } else {
            self.normalize(split + 1);
            false
        }
    }

    /// Takes the new range (1..=255) back to 128..=255, consuming as many bits: two table
    /// look-ups side by side, shorter on the path from one bit to the next than computing it.
    #[inline(always)]
    fn normalize(&mut self, range: u32) {
        let range = range as u8 as usize;
        self.bits -= NORM_SHIFT[range] as i32;
        self.range = NORM_RANGE[range] as u32;
    }

    /// `bit(128)`, for the sign of every coefficient, with its shorter arithmetic: at even
    /// odds the range halves, so it shifts by exactly one bit but for a range of 255 that
    /// keeps its lower half (128 is already normal).
    #[inline(always)]
    fn sign(&mut self) -> bool {
        if self.bits < 0 {
            self.load();
        }
        let pos = self.bits as u32;
        let split = self.range >> 1;
        // A sign is a coin toss: selects, not branches, which would be mispredicted half the
        // time.
        let negative = (self.value >> pos) as u32 > split;
        let stays = !negative && self.range == 254;
        self.value -= std::hint::select_unpredictable(negative, ((split + 1) as u64) << pos, 0);
        let kept = std::hint::select_unpredictable(stays, 127, self.range | 1);
        self.range = std::hint::select_unpredictable(negative, (self.range - 1) | 1, kept);
        self.bits -= !stays as i32;
        negative
    }

    fn literal(&mut self, bits: u32) -> u32 {
        (0..bits).fold(0, |v, _| (v << 1) | self.bit(128) as u32)
    }

    /// A flag, and when it is set a signed `bits`-bit value (magnitude, then sign); else 0.
    fn optional_signed(&mut self, bits: u32) -> i32 {
        if !self.bit(128) {
            return 0;
        }
        let v = self.literal(bits) as i32;
        if self.bit(128) {
            -v
        } else {
            v
        }
    }
}

/// `load` within the last 8 bytes: a byte, or past the end a zero byte (once, then nothing).
#[inline(never)]
fn load_tail(data: &[u8], value: u64, bits: i32, pos: usize, eof: bool) -> (u64, i32, usize, bool) {
    match data.get(pos) {
        Some(&byte) => ((value << 8) | byte as u64, bits + 8, pos + 1, eof),
        None if !eof => (value << 8, bits + 8, pos, true),
        None => (value, 0, pos, true), // keeps the shifts in range; the caller refuses the stream
    }
}

/// For a range r (1..=255): how far it shifts to reach 128..=255, and the shifted range - 1.
/// Two tables, not one of pairs: two independent loads measured faster (4K WebP 134 against
/// 143 ms).
const NORM_SHIFT: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut r = 1;
    while r < 256 {
        t[r] = 7 - r.ilog2() as u8;
        r += 1;
    }
    t
};
const NORM_RANGE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut r = 1;
    while r < 256 {
        t[r] = ((r << (7 - r.ilog2())) - 1) as u8;
        r += 1;
    }
    t
};

/// Dequantization factors (DC, AC) of one segment.
#[derive(Clone, Copy, Default)]
struct Quant {
    y1: [i32; 2],
    y2: [i32; 2],
    uv: [i32; 2],
}

/// A block type's token probabilities: [position][context][tree node].
type ByPosition = [[[u8; 11]; 3]; 16];

/// What the first partition's header says that decoding needs.
struct FrameHeader {
    segment_probs: Option<[u8; 3]>,
    quant: [Quant; 4],
    partitions: usize,
    /// Token probabilities by block type and coefficient position (the file gives them by band).
    tokens: [ByPosition; 4],
    skip_prob: Option<u8>,
}

impl FrameHeader {
    /// Reads the header, in the order of RFC 6386 section 19.2.
    fn read(br: &mut BoolDecoder) -> Result<FrameHeader> {
        br.literal(2); // colour space, clamping: one meaning for key frames in WebP
        let (mut segment_probs, mut segment_q, mut absolute) = (None, [0i32; 4], false);
        let segmented = br.bit(128);
        if segmented {
            let update_map = br.bit(128);
            if br.bit(128) {
                absolute = br.bit(128);
                segment_q = std::array::from_fn(|_| br.optional_signed(7));
                for _ in 0..4 {
                    br.optional_signed(6); // loop filter levels
                }
            }
            if update_map {
                segment_probs = Some(std::array::from_fn(|_| if br.bit(128) { br.literal(8) as u8 } else { 255 }));
            }
        }
        br.literal(1 + 6 + 3); // loop filter type, level, sharpness: the filter is not run
        if br.bit(128) && br.bit(128) {
            for _ in 0..8 {
                br.optional_signed(6); // loop filter deltas
            }
        }
        let partitions = 1 << br.literal(2);
        let base = br.literal(7) as i32;
        let [y1_dc, y2_dc, y2_ac, uv_dc, uv_ac] = std::array::from_fn(|_| br.optional_signed(4));
        let quant = std::array::from_fn(|s| {
            let q = match (segmented, absolute) {
                (false, _) => base,
                (true, true) => segment_q[s],
                (true, false) => base + segment_q[s],
            };
            let dc = |d: i32, max: i32| DC_QUANT[(q + d).clamp(0, max) as usize];
            let ac = |d: i32| AC_QUANT[(q + d).clamp(0, 127) as usize];
            Quant {
                y1: [dc(y1_dc, 127), ac(0)],
                y2: [dc(y2_dc, 127) * 2, ((ac(y2_ac) * 101_581) >> 16).max(8)], // AC x 155 / 100
                uv: [dc(uv_dc, 117), ac(uv_ac)],
            }
        });
        br.bit(128); // refresh_entropy_probs: there is one frame
        let mut tokens = COEFF_PROBS;
        for (probs, update) in tokens.iter_mut().flatten().flatten().zip(COEFF_UPDATE_PROBS.iter().flatten().flatten())
        {
            for (p, &u) in probs.iter_mut().zip(update) {
                if br.bit(u) {
                    *p = br.literal(8) as u8;
                }
            }
        }
        let skip_prob = br.bit(128).then(|| br.literal(8) as u8);
        if br.eof {
            return Err("the VP8 frame header is cut short".into());
        }
        let tokens = std::array::from_fn(|t| std::array::from_fn(|n| tokens[t][BANDS[n]]));
        Ok(FrameHeader { segment_probs, quant, partitions, tokens, skip_prob })
    }
}

/// The token partitions after the first: a table of 3-byte sizes but for the last, which takes
/// the rest. Sizes past the end are cut to it, as libwebp does; the last must have a byte.
fn partitions(data: &[u8], count: usize) -> Result<Vec<BoolDecoder<'_>>> {
    let table = 3 * (count - 1);
    let mut rest = data.get(table..).ok_or("the VP8 partition table is cut short")?;
    let mut parts = Vec::with_capacity(count);
    for size in data[..table].chunks_exact(3) {
        let size = (u32::from_le_bytes([size[0], size[1], size[2], 0]) as usize).min(rest.len());
        parts.push(BoolDecoder::new(&rest[..size]));
        rest = &rest[size..];
    }
    if rest.is_empty() {
        return Err("the VP8 picture data is missing".into());
    }
    parts.push(BoolDecoder::new(rest));
    Ok(parts)
}

// Intra modes, in the RFC's numbering: 16x16 and chroma, then 4x4 sub-blocks.
const DC_PRED: u8 = 0;
const V_PRED: u8 = 1;
const H_PRED: u8 = 2;
const TM_PRED: u8 = 3;
const B_DC_PRED: u8 = 0;
const B_TM_PRED: u8 = 1;
const B_VE_PRED: u8 = 2;
const B_HE_PRED: u8 = 3;
const B_LD_PRED: u8 = 4;
const B_RD_PRED: u8 = 5;
const B_VR_PRED: u8 = 6;
const B_VL_PRED: u8 = 7;
const B_HD_PRED: u8 = 8;
const B_HU_PRED: u8 = 9;

/// The neighbours' state a macroblock's parse depends on, kept for the macroblock above (per
/// column) and to the left: which blocks had coefficients, and the sub-block modes at the edge.
#[derive(Clone, Copy, Default)]
struct Context {
    y: [bool; 4],
    u: [bool; 2],
    v: [bool; 2],
    y2: bool,
    bmodes: [u8; 4],
}

impl Context {
    /// After a macroblock without coefficients; one predicted per 4x4 sub-block has no Y2
    /// block, and keeps the Y2 state it had.
    fn clear(&mut self, i4: bool) {
        (self.y, self.u, self.v) = Default::default();
        if !i4 {
            self.y2 = false;
        }
    }
}

struct Macroblock {
    segment: usize,
    skip: bool,
    /// Predicted per 4x4 sub-block (`bmodes`), else as a whole (`ymode`).
    i4: bool,
    ymode: u8,
    bmodes: [u8; 16],
    uvmode: u8,
}

/// A macroblock's header from the first partition (RFC 6386, 19.3).
fn read_modes(br: &mut BoolDecoder, header: &FrameHeader, top: &mut Context, left: &mut Context) -> Macroblock {
    let segment = match header.segment_probs {
        Some(p) if !br.bit(p[0]) => br.bit(p[1]) as usize,
        Some(p) => 2 + br.bit(p[2]) as usize,
        None => 0,
    };
    let skip = header.skip_prob.is_some_and(|p| br.bit(p));
    let mut mb =
        Macroblock { segment, skip, i4: !br.bit(145), ymode: DC_PRED, bmodes: [B_DC_PRED; 16], uvmode: DC_PRED };
    if mb.i4 {
        for y in 0..4 {
            for x in 0..4 {
                let mode = read_bmode(br, &BMODE_PROBS[top.bmodes[x] as usize][left.bmodes[y] as usize]);
                (mb.bmodes[y * 4 + x], top.bmodes[x], left.bmodes[y]) = (mode, mode, mode);
            }
        }
    } else {
        mb.ymode = if br.bit(156) {
            if br.bit(128) {
                TM_PRED
            } else {
                H_PRED
            }
        } else if br.bit(163) {
            V_PRED
        } else {
            DC_PRED
        };
        // A whole-macroblock mode stands for its sub-block twin in the neighbours' contexts.
        let twin = [B_DC_PRED, B_VE_PRED, B_HE_PRED, B_TM_PRED][mb.ymode as usize];
        (top.bmodes, left.bmodes) = ([twin; 4], [twin; 4]);
    }
    mb.uvmode = if !br.bit(142) {
        DC_PRED
    } else if !br.bit(114) {
        V_PRED
    } else if br.bit(183) {
        TM_PRED
    } else {
        H_PRED
    };
    mb
}

/// A sub-block's mode: RFC 6386's bmode_tree (11.2) unrolled, so that no table look-up stands
/// between one bit and the next.
fn read_bmode(br: &mut BoolDecoder, p: &[u8; 9]) -> u8 {
    if !br.bit(p[0]) {
        B_DC_PRED
    } else if !br.bit(p[1]) {
        B_TM_PRED
    } else if !br.bit(p[2]) {
        B_VE_PRED
    } else if !br.bit(p[3]) {
        if !br.bit(p[4]) {
            B_HE_PRED
        } else if !br.bit(p[5]) {
            B_RD_PRED
        } else {
            B_VR_PRED
        }
    } else if !br.bit(p[6]) {
        B_LD_PRED
    } else if !br.bit(p[7]) {
        B_VL_PRED
    } else if !br.bit(p[8]) {
        B_HD_PRED
    } else {
        B_HU_PRED
    }
}

/// Which coefficient band each position is in, and the position of each in the block.
const BANDS: [usize; 16] = [0, 1, 2, 3, 6, 4, 5, 6, 6, 6, 6, 6, 6, 6, 6, 7];
const ZIGZAG: [usize; 16] = [0, 1, 4, 8, 5, 2, 3, 6, 9, 12, 13, 10, 7, 11, 14, 15];
/// The extra bits of the token categories 3 to 6 (RFC 6386, 13.2).
const CATEGORY_PROBS: [&[u8]; 4] = [
    &[173, 148, 140],
    &[176, 155, 140, 135],
    &[180, 157, 141, 134, 130],
    &[254, 254, 243, 230, 196, 177, 153, 140, 133, 130, 129],
];
// Token probability tables by block type.
const Y_AFTER_Y2: usize = 0;
const Y2: usize = 1;
const CHROMA: usize = 2;
const Y_WITH_DC: usize = 3;

/// A macroblock's coefficients from its token partition, dequantized into `coeffs` (16 per
/// block: Y in raster order, then U, then V; Y2 already spread into the Y blocks' DCs).
/// Returns which blocks have AC coefficients (bit n for block n): the others need no IDCT.
fn read_residuals(
    br: &mut BoolDecoder,
    header: &FrameHeader,
    mb: &Macroblock,
    top: &mut Context,
    left: &mut Context,
    coeffs: &mut [i16; 24 * 16],
) -> u32 {
    let (q, probs) = (&header.quant[mb.segment], &header.tokens);
    let (first, y_type) = if mb.i4 {
        (0, Y_WITH_DC)
    } else {
        let mut dc = [0i16; 16];
        let n = read_block(br, &probs[Y2], top.y2 as usize + left.y2 as usize, q.y2, 0, &mut dc);
        (top.y2, left.y2) = (n > 0, n > 0);
        inverse_wht(&dc, coeffs);
        (1, Y_AFTER_Y2)
    };
    let (blocks, mut with_ac) = (coeffs.as_chunks_mut::<16>().0, 0);
    let (luma, chroma) = blocks.split_at_mut(16);
    for (n, block) in luma.iter_mut().enumerate() {
        let (x, y) = (n % 4, n / 4);
        let end = read_block(br, &probs[y_type], top.y[x] as usize + left.y[y] as usize, q.y1, first, block);
        (top.y[x], left.y[y]) = (end > first, end > first);
        with_ac |= ((end > 1) as u32) << n;
    }
    let chroma_contexts = [(&mut top.u, &mut left.u), (&mut top.v, &mut left.v)];
    for (k, ((top, left), blocks)) in chroma_contexts.into_iter().zip(chroma.chunks_exact_mut(4)).enumerate() {
        for (n, block) in blocks.iter_mut().enumerate() {
            let (x, y) = (n % 2, n / 2);
            let end = read_block(br, &probs[CHROMA], top[x] as usize + left[y] as usize, q.uv, 0, block);
            (top[x], left[y]) = (end > 0, end > 0);
            with_ac |= ((end > 1) as u32) << (16 + 4 * k + n);
        }
    }
    with_ac
}

/// One block's tokens from position `first`, dequantized by `dq` (DC, AC) into `out` in raster
/// order. Returns the position after the last token read: `first` when the block is empty.
/// Products wrap to 16 bits, as libwebp stores them.
#[inline(always)]
fn read_block(
    br: &mut BoolDecoder,
    probs: &ByPosition,
    ctx: usize,
    dq: [i32; 2],
    first: usize,
    out: &mut [i16; 16],
) -> usize {
    let mut n = first;
    let mut p = &probs[n][ctx];
    while n < 16 {
        if !br.bit(p[0]) {
            return n; // end of block
        }
        while !br.bit(p[1]) {
            n += 1; // a zero; no end of block can follow one
            if n == 16 {
                return 16;
            }
            p = &probs[n][0];
        }
        let (v, ctx) = if !br.bit(p[2]) { (1, 1) } else { (large_value(br, p), 2) };
        let v = std::hint::select_unpredictable(br.sign(), -v, v);
        out[ZIGZAG[n]] = (v * dq[(n > 0) as usize]) as i16;
        n += 1;
        if n < 16 {
            p = &probs[n][ctx];
        }
    }
    16
}

/// A token's value of 2 and more (the tree below the "one" node, RFC 6386 13.2).
#[inline(always)]
fn large_value(br: &mut BoolDecoder, p: &[u8; 11]) -> i32 {
    if !br.bit(p[3]) {
        if !br.bit(p[4]) {
            2
        } else {
            3 + br.bit(p[5]) as i32
        }
    } else if !br.bit(p[6]) {
        if !br.bit(p[7]) {
            5 + br.bit(159) as i32
        } else {
            7 + 2 * br.bit(165) as i32 + br.bit(145) as i32
        }
    } else {
        let high = br.bit(p[8]) as usize;
        let category = 2 * high + br.bit(p[9 + high]) as usize;
        let extra = CATEGORY_PROBS[category].iter().fold(0, |v, &q| 2 * v + br.bit(q) as i32);
        extra + 3 + (8 << category)
    }
}

/// The inverse Walsh-Hadamard transform of the Y2 block into the 16 Y blocks' DCs.
fn inverse_wht(input: &[i16; 16], coeffs: &mut [i16; 24 * 16]) {
    let at = |i: usize| input[i] as i32;
    let mut tmp = [0i32; 16];
    for i in 0..4 {
        let (a0, a1) = (at(i) + at(12 + i), at(4 + i) + at(8 + i));
        let (a2, a3) = (at(4 + i) - at(8 + i), at(i) - at(12 + i));
        (tmp[i], tmp[8 + i], tmp[4 + i], tmp[12 + i]) = (a0 + a1, a0 - a1, a3 + a2, a3 - a2);
    }
    for i in 0..4 {
        let dc = tmp[i * 4] + 3;
        let (a0, a1) = (dc + tmp[3 + i * 4], tmp[1 + i * 4] + tmp[2 + i * 4]);
        let (a2, a3) = (tmp[1 + i * 4] - tmp[2 + i * 4], dc - tmp[3 + i * 4]);
        for (j, v) in [a0 + a1, a3 + a2, a0 - a1, a3 - a2].into_iter().enumerate() {
            coeffs[(4 * i + j) * 16] = (v >> 3) as i16;
        }
    }
}

/// The reconstruction's stride: a macroblock's workspace row holds the left neighbour's
/// column, 16 pixels and the 4 above-right ones that 4x4 prediction reads.
const BPS: usize = 32;
/// Where pixel (0, 0) of a workspace is: one row of above pixels, 8 bytes of margin.
const ORIGIN: usize = BPS + 8;

/// Where 4x4 block `n` of a plane `across` blocks wide starts in its workspace.
fn block_at(n: usize, across: usize) -> usize {
    ORIGIN + (n / across) * 4 * BPS + (n % across) * 4
}

/// The decoder's memory: the macroblock being reconstructed with its neighbours' edge
/// pixels, the row of macroblocks that goes out, and the bottom edge of the row above.
struct Frame {
    mb_w: u32,
    mb_h: u32,
    top: Vec<Context>,
    left: Context,
    ws_y: [u8; BPS * 17],
    ws_u: [u8; BPS * 9],
    ws_v: [u8; BPS * 9],
    top_y: Vec<u8>,
    top_u: Vec<u8>,
    top_v: Vec<u8>,
    row_y: Vec<u8>,
    row_u: Vec<u8>,
    row_v: Vec<u8>,
}

impl Frame {
    fn new(width: u32, height: u32) -> Frame {
        let (mb_w, mb_h) = (width.div_ceil(16), height.div_ceil(16));
        let w = mb_w as usize;
        Frame {
            mb_w,
            mb_h,
            top: vec![Context::default(); w],
            left: Context::default(),
            ws_y: [0; BPS * 17],
            ws_u: [0; BPS * 9],
            ws_v: [0; BPS * 9],
            top_y: vec![0; w * 16],
            top_u: vec![0; w * 8],
            top_v: vec![0; w * 8],
            row_y: vec![0; w * 16 * 16],
            row_u: vec![0; w * 8 * 8],
            row_v: vec![0; w * 8 * 8],
        }
    }

    /// Predicts macroblock (`mb_x`, `mb_y`), adds its residuals (`with_ac`: the blocks that
    /// have AC coefficients, as `read_residuals` says), and stores it in the row.
    fn reconstruct(&mut self, mb_x: u32, mb_y: u32, mb: &Macroblock, coeffs: &[i16; 24 * 16], with_ac: u32) {
        let blocks = coeffs.as_chunks::<16>().0;
        let ac = |n: usize| with_ac >> n & 1 != 0;
        let x = mb_x as usize;
        self.edges(mb_x, mb_y, mb.i4);
        if mb.i4 {
            for (n, block) in blocks[..16].iter().enumerate() {
                let at = block_at(n, 4);
                predict4(&mut self.ws_y, at, mb.bmodes[n]);
                add_residual(&mut self.ws_y, at, block, ac(n));
            }
        } else {
            predict(&mut self.ws_y, 16, mode_at_edge(mb.ymode, mb_x, mb_y));
            for (n, block) in blocks[..16].iter().enumerate() {
                add_residual(&mut self.ws_y, block_at(n, 4), block, ac(n));
            }
        }
        let uvmode = mode_at_edge(mb.uvmode, mb_x, mb_y);
        for (k, ws) in [&mut self.ws_u, &mut self.ws_v].into_iter().enumerate() {
            predict(ws, 8, uvmode);
            for (n, block) in blocks[16 + 4 * k..][..4].iter().enumerate() {
                add_residual(ws, block_at(n, 2), block, ac(16 + 4 * k + n));
            }
        }
        let (ys, cs) = (self.mb_w as usize * 16, self.mb_w as usize * 8);
        for r in 0..16 {
            self.row_y[r * ys + x * 16..][..16].copy_from_slice(&self.ws_y[ORIGIN + r * BPS..][..16]);
        }
        for r in 0..8 {
            self.row_u[r * cs + x * 8..][..8].copy_from_slice(&self.ws_u[ORIGIN + r * BPS..][..8]);
            self.row_v[r * cs + x * 8..][..8].copy_from_slice(&self.ws_v[ORIGIN + r * BPS..][..8]);
        }
        self.top_y[x * 16..][..16].copy_from_slice(&self.ws_y[ORIGIN + 15 * BPS..][..16]);
        self.top_u[x * 8..][..8].copy_from_slice(&self.ws_u[ORIGIN + 7 * BPS..][..8]);
        self.top_v[x * 8..][..8].copy_from_slice(&self.ws_v[ORIGIN + 7 * BPS..][..8]);
    }

    /// The pixels prediction reads around the macroblock, as RFC 6386 (12.2) and libwebp set
    /// them: the left neighbour's right column (129 at the frame's left edge), the row above's
    /// bottom edge (127 above the frame), the above-left corner, and for 4x4 prediction the four
    /// pixels above and to the right (the above row's last pixel repeated at the right edge),
    /// which the right-hand sub-blocks below the first row read too.
    fn edges(&mut self, mb_x: u32, mb_y: u32, i4: bool) {
        let x = mb_x as usize;
        let left_edge = |ws: &mut [u8], size: usize| {
            for r in 0..size {
                ws[ORIGIN + r * BPS - 1] = if mb_x == 0 { 129 } else { ws[ORIGIN + r * BPS + size - 1] };
            }
            let corner = ORIGIN - BPS - 1;
            ws[corner] = match (mb_x, mb_y) {
                (0, 0) => 127,
                (0, _) => 129,
                _ => ws[corner + size],
            };
        };
        left_edge(&mut self.ws_y, 16);
        left_edge(&mut self.ws_u, 8);
        left_edge(&mut self.ws_v, 8);
        let above = ORIGIN - BPS;
        if mb_y == 0 {
            self.ws_y[above..above + 20].fill(127);
            self.ws_u[above..above + 8].fill(127);
            self.ws_v[above..above + 8].fill(127);
        } else {
            self.ws_y[above..above + 16].copy_from_slice(&self.top_y[x * 16..][..16]);
            self.ws_u[above..above + 8].copy_from_slice(&self.top_u[x * 8..][..8]);
            self.ws_v[above..above + 8].copy_from_slice(&self.top_v[x * 8..][..8]);
            let right = match self.top_y.get((x + 1) * 16..(x + 1) * 16 + 4) {
                Some(next) => [next[0], next[1], next[2], next[3]],
                None => [self.top_y[x * 16 + 15]; 4],
            };
            self.ws_y[above + 16..above + 20].copy_from_slice(&right);
        }
        if i4 {
            let right = [self.ws_y[above + 16], self.ws_y[above + 17], self.ws_y[above + 18], self.ws_y[above + 19]];
            for r in [3, 7, 11] {
                self.ws_y[ORIGIN + r * BPS + 16..][..4].copy_from_slice(&right);
            }
        }
    }
}

// Whole-block DC prediction without the pixels outside the frame (libwebp's CheckMode).
const DC_NO_TOP: u8 = 4;
const DC_NO_LEFT: u8 = 5;
const DC_NO_EDGES: u8 = 6;

fn mode_at_edge(mode: u8, mb_x: u32, mb_y: u32) -> u8 {
    match (mode, mb_x, mb_y) {
        (DC_PRED, 0, 0) => DC_NO_EDGES,
        (DC_PRED, 0, _) => DC_NO_LEFT,
        (DC_PRED, _, 0) => DC_NO_TOP,
        _ => mode,
    }
}

/// Whole-block prediction of a `size` x `size` block (16 for Y, 8 for chroma) at the origin.
fn predict(ws: &mut [u8], size: usize, mode: u8) {
    let shift = size.trailing_zeros();
    let top = |ws: &[u8]| (0..size).map(|i| ws[ORIGIN - BPS + i] as u32).sum::<u32>();
    let left = |ws: &[u8]| (0..size).map(|r| ws[ORIGIN + r * BPS - 1] as u32).sum::<u32>();
    let fill = |ws: &mut [u8], v: u32| (0..size).for_each(|r| ws[ORIGIN + r * BPS..][..size].fill(v as u8));
    match mode {
        DC_PRED => fill(ws, (top(ws) + left(ws) + size as u32) >> (shift + 1)),
        DC_NO_TOP => fill(ws, (left(ws) + (size as u32 >> 1)) >> shift),
        DC_NO_LEFT => fill(ws, (top(ws) + (size as u32 >> 1)) >> shift),
        DC_NO_EDGES => fill(ws, 128),
        V_PRED => {
            for r in 0..size {
                ws.copy_within(ORIGIN - BPS..ORIGIN - BPS + size, ORIGIN + r * BPS);
            }
        }
        H_PRED => {
            for r in 0..size {
                let at = ORIGIN + r * BPS;
                let v = ws[at - 1];
                ws[at..at + size].fill(v);
            }
        }
        _ => true_motion(ws, ORIGIN, size),
    }
}

/// TM_PRED: left + above - above-left, clamped, for a `size` x `size` block at `at`.
fn true_motion(ws: &mut [u8], at: usize, size: usize) {
    let corner = ws[at - BPS - 1] as i32;
    for r in 0..size {
        let left = ws[at + r * BPS - 1] as i32 - corner;
        for c in 0..size {
            ws[at + r * BPS + c] = (ws[at - BPS + c] as i32 + left).clamp(0, 255) as u8;
        }
    }
}

/// 4x4 sub-block prediction at `at` (RFC 6386, 12.3).
fn predict4(ws: &mut [u8], at: usize, mode: u8) {
    let avg3 = |a: u8, b: u8, c: u8| ((a as u32 + 2 * b as u32 + c as u32 + 2) >> 2) as u8;
    let avg2 = |a: u8, b: u8| ((a as u32 + b as u32 + 1) >> 1) as u8;
    let smooth = |edge: [u8; 9]| -> [u8; 7] { std::array::from_fn(|n| avg3(edge[n], edge[n + 1], edge[n + 2])) };
    // Above: A..H (H the fourth above-right pixel), left: I..L, above-left: X.
    let t = |i: usize| ws[at - BPS + i];
    let (x, [a, b, c, d, e, f, g, h]) = (ws[at - BPS - 1], std::array::from_fn(t));
    let [i, j, k, l] = std::array::from_fn(|r| ws[at + r * BPS - 1]);
    let rows: [[u8; 4]; 4] = match mode {
        B_DC_PRED => {
            let dc = ((a as u32 + b as u32 + c as u32 + d as u32 + i as u32 + j as u32 + k as u32 + l as u32 + 4) >> 3)
                as u8;
            [[dc; 4]; 4]
        }
        B_TM_PRED => return true_motion(ws, at, 4),
        B_VE_PRED => [[avg3(x, a, b), avg3(a, b, c), avg3(b, c, d), avg3(c, d, e)]; 4],
        B_HE_PRED => [[avg3(x, i, j); 4], [avg3(i, j, k); 4], [avg3(j, k, l); 4], [avg3(k, l, l); 4]],
        // The two diagonals: each row is four of the seven smoothed pixels along the edge.
        B_LD_PRED => {
            let p = smooth([a, b, c, d, e, f, g, h, h]);
            std::array::from_fn(|r| [p[r], p[r + 1], p[r + 2], p[r + 3]])
        }
        B_RD_PRED => {
            let p = smooth([l, k, j, i, x, a, b, c, d]);
            std::array::from_fn(|r| [p[3 - r], p[4 - r], p[5 - r], p[6 - r]])
        }
        B_VR_PRED => [
            [avg2(x, a), avg2(a, b), avg2(b, c), avg2(c, d)],
            [avg3(i, x, a), avg3(x, a, b), avg3(a, b, c), avg3(b, c, d)],
            [avg3(j, i, x), avg2(x, a), avg2(a, b), avg2(b, c)],
            [avg3(k, j, i), avg3(i, x, a), avg3(x, a, b), avg3(a, b, c)],
        ],
        B_VL_PRED => [
            [avg2(a, b), avg2(b, c), avg2(c, d), avg2(d, e)],
            [avg3(a, b, c), avg3(b, c, d), avg3(c, d, e), avg3(d, e, f)],
            [avg2(b, c), avg2(c, d), avg2(d, e), avg3(e, f, g)],
            [avg3(b, c, d), avg3(c, d, e), avg3(d, e, f), avg3(f, g, h)],
        ],
        B_HD_PRED => [
            [avg2(i, x), avg3(i, x, a), avg3(x, a, b), avg3(a, b, c)],
            [avg2(j, i), avg3(j, i, x), avg2(i, x), avg3(i, x, a)],
            [avg2(k, j), avg3(k, j, i), avg2(j, i), avg3(j, i, x)],
            [avg2(l, k), avg3(l, k, j), avg2(k, j), avg3(k, j, i)],
        ],
        _ => [
            // B_HU_PRED
            [avg2(i, j), avg3(i, j, k), avg2(j, k), avg3(j, k, l)],
            [avg2(j, k), avg3(j, k, l), avg2(k, l), avg3(k, l, l)],
            [avg2(k, l), avg3(k, l, l), l, l],
            [l; 4],
        ],
    };
    for (r, row) in rows.iter().enumerate() {
        ws[at + r * BPS..][..4].copy_from_slice(row);
    }
}

/// Adds the inverse DCT of `block` (RFC 6386, 14.3, as libwebp computes it) to the 4x4
/// pixels at `at`; without AC coefficients that is the DC's share added to each pixel.
fn add_residual(ws: &mut [u8], at: usize, block: &[i16; 16], with_ac: bool) {
    let pixels = &mut ws[at..at + 3 * BPS + 4];
    if !with_ac {
        if block[0] != 0 {
            let dc = (block[0] as i32 + 4) >> 3;
            for r in 0..4 {
                for p in &mut pixels[r * BPS..r * BPS + 4] {
                    *p = (*p as i32 + dc).clamp(0, 255) as u8;
                }
            }
        }
        return;
    }
    // Hostile coefficients overflow these products; they wrap, as in libwebp's C.
    let mul1 = |a: i32| (a.wrapping_mul(20_091) >> 16).wrapping_add(a);
    let mul2 = |a: i32| a.wrapping_mul(35_468) >> 16;
    let mut tmp = [0i32; 16];
    for i in 0..4 {
        let at = |k: usize| block[i + 4 * k] as i32;
        let (a, b) = (at(0) + at(2), at(0) - at(2));
        let (c, d) = (mul2(at(1)) - mul1(at(3)), mul1(at(1)) + mul2(at(3)));
        tmp[4 * i..4 * i + 4].copy_from_slice(&[a + d, b + c, b - c, a - d]);
    }
    for r in 0..4 {
        let dc = tmp[r] + 4;
        let (a, b) = (dc + tmp[8 + r], dc - tmp[8 + r]);
        let (c, d) = (mul2(tmp[4 + r]) - mul1(tmp[12 + r]), mul1(tmp[4 + r]) + mul2(tmp[12 + r]));
        for (p, v) in pixels[r * BPS..r * BPS + 4].iter_mut().zip([a + d, b + c, b - c, a - d]) {
            *p = (*p as i32 + (v >> 3)).clamp(0, 255) as u8;
        }
    }
}
