//! What a lossless WebP (VP8L) bitstream makes image-webp allocate, read before it does.
//!
//! image-webp 0.2.4 (the newest release) builds every prefix-code group the entropy image
//! names, up to 65,536 groups of five codes, each code up to a 4 KiB look-up table and a tree
//! of 32 bytes a long symbol, and checks none of it against a limit: issue 18's 1x1 file
//! naming group 0xFFFF cost 1.3 GiB. So the bitstream is read here first, as far as the
//! groups: the transforms and their sub-images, the colour cache, the entropy image (decoded,
//! for the group numbers) and every code's lengths. That gives the memory image-webp will
//! take for this stream beside its output buffer, and a stream is refused outright when it
//! names more groups than its entropy image has pixels (libwebp numbers the groups it writes
//! densely, from 0, so this never holds for a file an encoder wrote).
//!
//! Where the stream is damaged or ends, image-webp stops at the same point (this reader makes
//! the same checks), so what was counted up to there is still a bound on what it allocates.

use crate::background;
use crate::error::Error;

/// Codes in a group: green (with length prefixes and the colour cache), red, blue, alpha,
/// distance.
const ALPHABET: [u16; 5] = [256 + 24, 256, 256, 256, 40];
const CODE_LENGTH_ORDER: [usize; 19] = [17, 18, 0, 1, 2, 3, 4, 5, 16, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
/// image-webp's look-up tables take at most this many bits; longer codes go to a tree.
const TABLE_BITS: u32 = 10;
/// `size_of` image-webp's tree node and its `[HuffmanTree; 5]` group, on 64-bit targets.
const TREE_NODE: u64 = 16;
const GROUP: u64 = 5 * 56;

/// The spec's distance map: (x, y) offsets of the 120 short distance codes.
#[rustfmt::skip]
const DISTANCE_MAP: [(i8, i8); 120] = [
    (0, 1), (1, 0), (1, 1), (-1, 1), (0, 2), (2, 0), (1, 2), (-1, 2), (2, 1), (-2, 1), (2, 2), (-2, 2),
    (0, 3), (3, 0), (1, 3), (-1, 3), (3, 1), (-3, 1), (2, 3), (-2, 3), (3, 2), (-3, 2), (0, 4), (4, 0),
    (1, 4), (-1, 4), (4, 1), (-4, 1), (3, 3), (-3, 3), (2, 4), (-2, 4), (4, 2), (-4, 2), (0, 5), (3, 4),
    (-3, 4), (4, 3), (-4, 3), (5, 0), (1, 5), (-1, 5), (5, 1), (-5, 1), (2, 5), (-2, 5), (5, 2), (-5, 2),
    (4, 4), (-4, 4), (3, 5), (-3, 5), (5, 3), (-5, 3), (0, 6), (6, 0), (1, 6), (-1, 6), (6, 1), (-6, 1),
    (2, 6), (-2, 6), (6, 2), (-6, 2), (4, 5), (-4, 5), (5, 4), (-5, 4), (3, 6), (-3, 6), (6, 3), (-6, 3),
    (0, 7), (7, 0), (1, 7), (-1, 7), (5, 5), (-5, 5), (7, 1), (-7, 1), (4, 6), (-4, 6), (6, 4), (-6, 4),
    (2, 7), (-2, 7), (7, 2), (-7, 2), (3, 7), (-3, 7), (7, 3), (-7, 3), (5, 6), (-5, 6), (6, 5), (-6, 5),
    (8, 0), (4, 7), (-4, 7), (7, 4), (-7, 4), (8, 1), (8, 2), (6, 6), (-6, 6), (8, 3), (5, 7), (-5, 7),
    (7, 5), (-7, 5), (8, 4), (6, 7), (-6, 7), (7, 6), (-7, 6), (8, 5), (7, 7), (-7, 7), (8, 6), (8, 7),
];

/// What reading a bitstream found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// image-webp may have it: it will allocate at most this many bytes for the stream, beside
    /// its output (the stream may still be damaged: image-webp then stops where this did).
    Costs(u64),
    /// Not to be handed over: why.
    Refused(String),
}

/// Why reading stopped early.
enum Stop {
    /// The stream ends or is damaged here; image-webp stops here too.
    End,
    /// The analysis's time budget is spent.
    Budget(Error),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Stop {
        Stop::Budget(e)
    }
}

type Step<T> = std::result::Result<T, Stop>;

/// Bits, least significant first.
struct Bits<'a> {
    data: &'a [u8],
    pos: u64,
}

impl Bits<'_> {
    fn peek(&self, n: u32) -> u32 {
        let (byte, shift) = ((self.pos / 8) as usize, (self.pos % 8) as u32);
        let mut word = [0u8; 8];
        let avail = self.data.get(byte..).unwrap_or_default();
        let take = avail.len().min(8);
        word[..take].copy_from_slice(&avail[..take]);
        ((u64::from_le_bytes(word) >> shift) & ((1u64 << n) - 1)) as u32
    }

    fn consume(&mut self, n: u32) -> Step<()> {
        if self.pos + n as u64 > self.data.len() as u64 * 8 {
            return Err(Stop::End);
        }
        self.pos += n as u64;
        Ok(())
    }

    fn read(&mut self, n: u32) -> Step<u32> {
        let v = self.peek(n);
        self.consume(n)?;
        Ok(v)
    }
}

/// A prefix code: one symbol (no bits), two symbols (one bit each, even if they are the same:
/// image-webp's two-node tree), or a table indexed by the next `bits` bits giving
/// `length << 16 | symbol`.
enum Code {
    Single(u16),
    Two(u16, u16),
    Table { bits: u32, table: Vec<u32> },
}

impl Code {
    /// The canonical code of `lengths` (one per symbol, 0: unused), as image-webp builds it:
    /// a single symbol, or a complete code; anything else stops it. Also its memory there.
    fn new(lengths: &[u16]) -> Step<(Code, u64)> {
        let used = lengths.iter().filter(|&&l| l != 0).count();
        if used == 0 {
            return Err(Stop::End);
        }
        if used == 1 {
            let symbol = lengths.iter().position(|&l| l != 0).unwrap_or(0) as u16;
            return Ok((Code::Single(symbol), 0));
        }
        let max = *lengths.iter().max().unwrap_or(&0) as u32;
        let mut count = [0u32; 16];
        lengths.iter().for_each(|&l| count[l as usize] += 1);
        let kraft: u64 = (1..=max).map(|l| (count[l as usize] as u64) << (max - l)).sum();
        if kraft != 1 << max {
            return Err(Stop::End); // image-webp accepts only complete codes
        }
        let table_bits = max.min(TABLE_BITS);
        let long: u32 = (table_bits + 1..=max).map(|l| count[l as usize]).sum();
        let cost = (4u64 << table_bits) + 2 * long as u64 * TREE_NODE;
        let mut next = [0u32; 16];
        let mut code = 0;
        for l in 1..=max as usize {
            next[l] = code;
            code = (code + count[l]) << 1;
        }
        let mut table = vec![0u32; 1 << max];
        for (symbol, &l) in lengths.iter().enumerate().filter(|(_, &l)| l != 0) {
            let l = l as u32;
            let reversed = next[l as usize].reverse_bits() >> (32 - l);
            next[l as usize] += 1;
            for fill in (reversed as usize..table.len()).step_by(1 << l) {
                table[fill] = l << 16 | symbol as u32;
            }
        }
        Ok((Code::Table { bits: max, table }, cost))
    }

    fn symbol(&self, bits: &mut Bits) -> Step<u16> {
        match self {
            Code::Single(s) => Ok(*s),
            Code::Two(zero, one) => Ok(if bits.read(1)? == 0 { *zero } else { *one }),
            Code::Table { bits: n, table } => {
                let e = table[bits.peek(*n) as usize];
                bits.consume(e >> 16)?;
                Ok(e as u16)
            }
        }
    }

    fn is_single(&self) -> bool {
        matches!(self, Code::Single(_))
    }
}

/// Reads one prefix code of `alphabet` symbols: its lengths, and what image-webp allocates for
/// it. `Code` is built only when `build` (the groups are counted, never used here).
fn read_code(bits: &mut Bits, alphabet: u16, build: bool) -> Step<(Option<Code>, u64)> {
    if bits.read(1)? == 1 {
        let two = bits.read(1)? == 1;
        let first_bits = if bits.read(1)? == 1 { 8 } else { 1 };
        let first = bits.read(first_bits)? as u16;
        if first >= alphabet {
            return Err(Stop::End);
        }
        if !two {
            return Ok((Some(Code::Single(first)), 0));
        }
        let second = bits.read(8)? as u16;
        if second >= alphabet {
            return Err(Stop::End);
        }
        // image-webp's two-node tree: three nodes and a two-entry table.
        return Ok((Some(Code::Two(first, second)), 3 * TREE_NODE + 8));
    }
    let mut length_lengths = [0u16; 19];
    let n = 4 + bits.read(4)? as usize;
    for &i in &CODE_LENGTH_ORDER[..n] {
        length_lengths[i] = bits.read(3)? as u16;
    }
    let (length_code, _) = Code::new(&length_lengths)?;
    let mut left = if bits.read(1)? == 1 {
        let n = 2 + 2 * bits.read(3)?;
        let max = 2 + bits.read(n)?;
        if max > alphabet as u32 {
            return Err(Stop::End);
        }
        max
    } else {
        alphabet as u32
    };
    let mut lengths = vec![0u16; alphabet as usize];
    let (mut symbol, mut previous) = (0usize, 8u16);
    while symbol < lengths.len() && left > 0 {
        left -= 1;
        let l = length_code.symbol(bits)?;
        if l < 16 {
            lengths[symbol] = l;
            symbol += 1;
            if l != 0 {
                previous = l;
            }
            continue;
        }
        let (extra, base) = [(2, 3), (3, 3), (7, 11)][l as usize - 16];
        let repeat = bits.read(extra)? as usize + base;
        if symbol + repeat > lengths.len() {
            return Err(Stop::End);
        }
        let value = if l == 16 { previous } else { 0 };
        lengths[symbol..symbol + repeat].fill(value);
        symbol += repeat;
    }
    if build {
        let (code, cost) = Code::new(&lengths)?;
        Ok((Some(code), cost))
    } else {
        // Counted as image-webp builds it, without building it.
        let used = lengths.iter().filter(|&&l| l != 0).count();
        let max = *lengths.iter().max().unwrap_or(&0) as u32;
        if used <= 1 {
            return if used == 0 { Err(Stop::End) } else { Ok((None, 0)) };
        }
        let table_bits = max.min(TABLE_BITS);
        let long = lengths.iter().filter(|&&l| l as u32 > table_bits).count() as u64;
        Ok((None, (4u64 << table_bits) + 2 * long * TREE_NODE))
    }
}

/// The reader's state: the bits and what image-webp has allocated so far.
struct Reader<'a> {
    bits: Bits<'a>,
    cost: u64,
}

fn subsample(size: u32, bits: u32) -> u32 {
    (size + (1 << bits) - 1) >> bits
}

impl Reader<'_> {
    /// A colour cache size in bits (0: none), as image-webp allocates it.
    fn color_cache(&mut self) -> Step<u32> {
        if self.bits.read(1)? == 0 {
            return Ok(0);
        }
        let n = self.bits.read(4)?;
        if !(1..=11).contains(&n) {
            return Err(Stop::End);
        }
        self.cost += 4 << n;
        Ok(n)
    }

    /// The five codes of one group, counted (and built when `build`).
    fn group(&mut self, cache_bits: u32, build: bool) -> Step<Vec<Code>> {
        let mut codes = Vec::with_capacity(5);
        for (i, &alphabet) in ALPHABET.iter().enumerate() {
            let alphabet = if i == 0 && cache_bits > 0 { alphabet + (1 << cache_bits) } else { alphabet };
            let (code, cost) = read_code(&mut self.bits, alphabet, build)?;
            self.cost += cost;
            codes.extend(code);
        }
        Ok(codes)
    }

    /// A sub-image of `w` x `h` (a transform's data or the entropy image: one group, no meta
    /// codes). Its pixels (ARGB) are returned when `keep`, else only stepped over.
    fn sub_image(&mut self, w: u32, h: u32, keep: bool) -> Step<Vec<u32>> {
        let cache_bits = self.color_cache()?;
        let codes = self.group(cache_bits, true)?;
        let [green, red, blue, alpha, distance] = &codes[..] else { return Err(Stop::End) };
        let n = w as usize * h as usize;
        let mut px: Vec<u32> = Vec::with_capacity(if keep { n } else { 0 });
        let mut cache = vec![0u32; if cache_bits > 0 { 1 << cache_bits } else { 0 }];
        let insert = |cache: &mut Vec<u32>, argb: u32| {
            if cache_bits > 0 {
                cache[(0x1e35_a7bd_u32.wrapping_mul(argb) >> (32 - cache_bits)) as usize] = argb;
            }
        };
        let (mut index, mut steps) = (0usize, 0u32);
        while index < n {
            steps = steps.wrapping_add(1);
            if steps % 4096 == 0 {
                background::yield_point()?;
            }
            let g = green.symbol(&mut self.bits)?;
            if g < 256 {
                let (r, b) = (red.symbol(&mut self.bits)?, blue.symbol(&mut self.bits)?);
                let a = alpha.symbol(&mut self.bits)?;
                let argb = (a as u32) << 24 | (r as u32) << 16 | (g as u32) << 8 | b as u32;
                insert(&mut cache, argb);
                if index == 0 && [green, red, blue, alpha].iter().all(|c| c.is_single()) {
                    // Every pixel the same, in no bits (image-webp fills them at once).
                    if keep {
                        px.resize(n, argb);
                    }
                    break;
                }
                if keep {
                    px.push(argb);
                }
                index += 1;
            } else if g < 256 + 24 {
                let length = copy_distance(&mut self.bits, g - 256)?;
                let prefix = distance.symbol(&mut self.bits)?;
                let code = copy_distance(&mut self.bits, prefix)?;
                let dist = plane_distance(w, code);
                if index < dist || n - index < length {
                    return Err(Stop::End);
                }
                if keep {
                    for _ in 0..length {
                        let argb = px[px.len() - dist];
                        px.push(argb);
                        insert(&mut cache, argb);
                    }
                }
                index += length;
            } else {
                let at = (g - 280) as usize;
                if cache_bits == 0 || at >= cache.len() {
                    return Err(Stop::End);
                }
                if keep {
                    px.push(cache[at]);
                }
                index += 1;
            }
        }
        Ok(px)
    }

    /// The transforms (their sub-images stepped over, their data counted); returns the width
    /// of the image that follows them (colour indexing packs pixels).
    fn transforms(&mut self, width: u32, height: u32) -> Step<u32> {
        let mut seen = [false; 4];
        let mut xsize = width;
        while self.bits.read(1)? == 1 {
            let kind = self.bits.read(2)? as usize;
            if std::mem::replace(&mut seen[kind], true) {
                return Err(Stop::End);
            }
            match kind {
                0 | 1 => {
                    let b = self.bits.read(3)? + 2;
                    let (bw, bh) = (subsample(xsize, b), subsample(height, b));
                    self.cost += 4 * bw as u64 * bh as u64;
                    self.sub_image(bw, bh, false)?;
                }
                3 => {
                    let size = self.bits.read(8)? + 1;
                    self.cost += 4 * size as u64;
                    self.sub_image(size, 1, false)?;
                    // Small palettes pack 8, 4 or 2 pixels into one.
                    xsize = subsample(
                        xsize,
                        match size {
                            0..=2 => 3,
                            3..=4 => 2,
                            5..=16 => 1,
                            _ => 0,
                        },
                    );
                }
                _ => {} // subtract green: no data
            }
        }
        Ok(xsize)
    }

    /// The main image's codes: colour cache, entropy image and every group.
    fn main_codes(&mut self, xsize: u32, height: u32) -> Step<Option<String>> {
        let cache_bits = self.color_cache()?;
        if self.bits.read(1)? == 0 {
            self.cost += 4 * GROUP; // a vector's first allocation holds four
            self.group(cache_bits, false)?;
            return Ok(None);
        }
        let b = self.bits.read(3)? + 2;
        let (ew, eh) = (subsample(xsize, b), subsample(height, b));
        let pixels = ew as u64 * eh as u64;
        self.cost += 6 * pixels; // its ARGB bytes, then the u16 group numbers
        let entropy = self.sub_image(ew, eh, true)?;
        let groups = entropy.iter().map(|argb| (argb >> 8) & 0xffff).max().unwrap_or(0) as u64 + 1;
        if groups > pixels {
            let (group, s) = (groups - 1, if pixels == 1 { "" } else { "s" });
            return Ok(Some(format!(
                "lossless WebP names prefix-code group {group} but its entropy image has {pixels} pixel{s}: not decoded"
            )));
        }
        // The groups' vector grows by doubling: the old and new blocks both live for a moment.
        self.cost += (3 * groups + 4) * GROUP;
        for i in 0..groups {
            if i % 64 == 0 {
                background::yield_point()?;
            }
            self.group(cache_bits, false)?;
        }
        Ok(None)
    }
}

/// `prefix` of a length or distance, with its extra bits.
fn copy_distance(bits: &mut Bits, prefix: u16) -> Step<usize> {
    if prefix < 4 {
        return Ok(prefix as usize + 1);
    }
    let extra = (prefix as u32 - 2) >> 1;
    let offset = (2 + (prefix as usize & 1)) << extra;
    Ok(offset + bits.read(extra)? as usize + 1)
}

fn plane_distance(xsize: u32, code: usize) -> usize {
    if code > 120 {
        return code - 120;
    }
    let (dx, dy) = DISTANCE_MAP[code - 1];
    (dx as i64 + dy as i64 * xsize as i64).max(1) as usize
}

/// Reads the VP8L bitstream `data` of a `width` x `height` image, with its header (a VP8L
/// chunk) or without (`implicit`: the lossless alpha of an ALPH chunk), and tells what
/// image-webp would allocate for it beside its output. Fails only when the time budget is
/// spent.
pub fn cost(data: &[u8], width: u32, height: u32, implicit: bool) -> crate::error::Result<Verdict> {
    let mut r = Reader { bits: Bits { data, pos: 0 }, cost: 0 };
    let outcome = (|| -> Step<Option<String>> {
        if !implicit {
            let signature = r.bits.read(8)?;
            let (w, h) = (r.bits.read(14)? + 1, r.bits.read(14)? + 1);
            r.bits.read(1)?; // alpha used
            if signature != 0x2f || (w, h) != (width, height) || r.bits.read(3)? != 0 {
                return Err(Stop::End); // image-webp stops here, before any allocation
            }
        }
        let xsize = r.transforms(width, height)?;
        r.main_codes(xsize, height)
    })();
    match outcome {
        Ok(Some(why)) => Ok(Verdict::Refused(why)),
        Ok(None) | Err(Stop::End) => Ok(Verdict::Costs(r.cost)),
        Err(Stop::Budget(e)) => Err(e),
    }
}
