//! JPEG at 1/8 scale from the DC coefficients alone: the fast path for large photos.
//!
//! At 1/8 scale an 8x8 block is one pixel, its DC coefficient, so the AC coefficients only
//! need to be stepped over: one table look-up per coefficient gives its code and value
//! length together, and nothing is dequantised, stored or transformed. Progressive files
//! are cheaper still: their DC scans are decoded and their AC scans skipped as bytes, so no
//! coefficient buffer is kept. Baseline, extended and progressive Huffman JPEGs of 8 bits
//! with one (grey) or three (YCbCr) components take this path; anything else, or anything
//! this reader does not like (a truncated or malformed scan), gets `None`, and the caller
//! decodes with jpeg-decoder as before.

use crate::background;
use crate::blurhash::Layout;

/// Pixels at 1/8 scale: `ceil(width / 8)` x `ceil(height / 8)` of `layout` (Luma or Rgb).
pub struct DcImage {
    pub width: u32,
    pub height: u32,
    pub layout: Layout,
    pub pixels: Vec<u8>,
}

/// Bits looked up at once; longer codes (or code + value) take the canonical slow path.
const FAST: u32 = 11;
/// Bits looked up at once for runs of whole AC coefficients (32 KiB a table).
const MULTI: u32 = 14;

struct Huffman {
    /// DC tables: `symbol | code length << 8`; AC tables: `code + value length | advance << 8`
    /// (advance: coefficients covered, 0 for end of block). 0: not resolved in FAST bits.
    fast: [u16; 1 << FAST],
    /// Canonical decoding, by code length: the largest code, and where its symbols start.
    max_code: [i32; 17],
    offset: [i32; 17],
    symbols: Vec<u8>,
    /// AC tables only: the whole coefficients in the next MULTI bits, as `bits used | coefficients
    /// covered << 4 | 0x800 if the last is the end of block`. 0: fewer than one.
    multi: Vec<u16>,
}

impl Huffman {
    fn new(counts: &[u8; 16], symbols: &[u8], ac: bool) -> Option<Huffman> {
        let mut t = Huffman {
            fast: [0; 1 << FAST],
            max_code: [-1; 17],
            offset: [0; 17],
            symbols: symbols.to_vec(),
            multi: Vec::new(),
        };
        let (mut code, mut k) = (0i32, 0usize);
        for len in 1..=16u32 {
            let n = counts[len as usize - 1] as usize;
            t.offset[len as usize] = k as i32 - code;
            for &sym in symbols.get(k..k + n)? {
                if code >= 1 << len {
                    return None; // more codes than the length allows
                }
                let entry = if ac {
                    let (run, size) = (sym as u32 >> 4, sym as u32 & 15);
                    let advance = match (run, size) {
                        (0, 0) => 0,   // end of block
                        (15, 0) => 16, // sixteen zeros
                        (_, 0) => 0,   // not defined for baseline: treat as slow (below)
                        _ => run + 1,
                    };
                    let total = len + size;
                    if total <= FAST && !(size == 0 && run != 0 && run != 15) {
                        Some((total | advance << 8) as u16)
                    } else {
                        None
                    }
                } else if len <= FAST {
                    Some((sym as u32 | len << 8) as u16)
                } else {
                    None
                };
                if let Some(e) = entry {
                    let shift = FAST - len;
                    let first = (code as usize) << shift;
                    t.fast[first..first + (1 << shift)].fill(e);
                }
                code += 1;
            }
            k += n;
            t.max_code[len as usize] = if n == 0 { -1 } else { code - 1 };
            code <<= 1;
        }
        if ac {
            t.multi = (0..1u32 << MULTI).map(|i| t.chain(i)).collect();
        }
        Some(t)
    }

    /// The `multi` entry for the MULTI bits `i`: coefficients decoded one after the other while
    /// each lies wholly within those bits.
    fn chain(&self, i: u32) -> u16 {
        let (mut used, mut covered) = (0u32, 0u32);
        loop {
            let next = ((i << used) & ((1 << MULTI) - 1)) >> (MULTI - FAST);
            let e = self.fast[next as usize] as u32;
            let len = e & 0xff;
            if e == 0 || used + len > MULTI {
                break;
            }
            used += len;
            match e >> 8 {
                0 => return (used | covered << 4 | 0x800) as u16,
                advance => covered += advance,
            }
            if covered >= 64 {
                break;
            }
        }
        if covered > 127 {
            0
        } else {
            (used | covered << 4) as u16
        }
    }

    /// The next symbol, by the canonical codes (the bit reader holds at least 16 bits).
    fn slow(&self, bits: &mut Bits) -> Option<u8> {
        let peek = bits.peek(16) as i32;
        for len in 1..=16usize {
            let code = peek >> (16 - len);
            if code <= self.max_code[len] {
                bits.consume(len as u32);
                return self.symbols.get((code + self.offset[len]) as usize).copied();
            }
        }
        None
    }

    fn decode(&self, bits: &mut Bits) -> Option<u8> {
        let e = self.fast[bits.peek(FAST) as usize];
        if e != 0 {
            bits.consume(e as u32 >> 8);
            Some(e as u8)
        } else {
            self.slow(bits)
        }
    }
}

/// A Huffman table as DHT defined it, and its look-up tables once a scan has used it. A file
/// may define tables by the hundred thousand (issue 13: 4 MB of DHT segments took 4 s when
/// each was built on sight); only the ones a scan uses are built, once per definition, so
/// the work for a DHT segment is reading it.
#[derive(Default)]
struct Slot {
    defined: Option<([u8; 16], Vec<u8>)>,
    built: Option<Huffman>,
}

impl Slot {
    /// Takes a new definition (after checking its code lengths); what was built is dropped.
    fn define(&mut self, counts: [u8; 16], symbols: &[u8]) -> Option<()> {
        codes_fit(&counts)?;
        self.defined = Some((counts, symbols.to_vec()));
        self.built = None;
        Some(())
    }

    /// Builds the look-up tables of the current definition unless they are built already.
    fn build(&mut self, ac: bool) -> Option<()> {
        if self.built.is_none() {
            let (counts, symbols) = self.defined.as_ref()?;
            self.built = Some(Huffman::new(counts, symbols, ac)?);
        }
        Some(())
    }
}

/// Whether the canonical codes of `counts` fit their lengths (as `Huffman::new` checks).
fn codes_fit(counts: &[u8; 16]) -> Option<()> {
    let mut code = 0u32;
    for (len, &n) in (1..=16u32).zip(counts) {
        code += n as u32;
        if code > 1 << len {
            return None;
        }
        code <<= 1;
    }
    Some(())
}

/// MSB-first bits of an entropy-coded segment, with byte stuffing undone. At a marker or the
/// end of the data it feeds zeros and counts them, so a scan that reads into them is known
/// to be truncated or corrupt.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
    acc: u64,
    n: u32,
    stopped: bool,
    padding: u32,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8], pos: usize) -> Bits<'a> {
        Bits { data, pos, acc: 0, n: 0, stopped: false, padding: 0 }
    }

    /// Tops the accumulator up to at least 57 bits.
    #[inline]
    fn refill(&mut self) {
        if self.n > 56 {
            return;
        }
        if !self.stopped {
            if let Some(word) = self.data.get(self.pos..self.pos + 8) {
                let word = u64::from_be_bytes(word.try_into().unwrap_or([0; 8]));
                let x = !word; // a zero byte here is a 0xFF in the data
                if x.wrapping_sub(0x0101_0101_0101_0101) & !x & 0x8080_8080_8080_8080 == 0 {
                    let take = (64 - self.n) / 8;
                    let bits = if take == 8 { word } else { word >> (64 - 8 * take) };
                    self.n += 8 * take;
                    self.acc |= bits << (64 - self.n);
                    self.pos += take as usize;
                    return;
                }
            }
        }
        while self.n <= 56 {
            let byte = if self.stopped {
                None
            } else {
                match (self.data.get(self.pos), self.data.get(self.pos + 1)) {
                    (Some(0xff), Some(0)) => {
                        self.pos += 2;
                        Some(0xff)
                    }
                    (Some(0xff), _) | (None, _) => None,
                    (Some(&b), _) => {
                        self.pos += 1;
                        Some(b)
                    }
                }
            };
            let b = byte.unwrap_or_else(|| {
                self.stopped = true;
                self.padding += 8;
                0
            });
            self.acc |= (b as u64) << (56 - self.n);
            self.n += 8;
        }
    }

    #[inline]
    fn peek(&self, k: u32) -> u64 {
        self.acc >> (64 - k)
    }

    #[inline]
    fn consume(&mut self, k: u32) {
        self.acc <<= k;
        self.n -= k;
    }

    /// `k` (0 to 16) bits as a signed JPEG value (the reader holds at least `k` bits).
    #[inline]
    fn value(&mut self, k: u32) -> i32 {
        if k == 0 {
            return 0;
        }
        let v = self.peek(k) as i32;
        self.consume(k);
        if v < 1 << (k - 1) {
            v - (1 << k) + 1
        } else {
            v
        }
    }

    /// Whether the scan so far read only real data (not the zeros fed past its end).
    fn intact(&self) -> bool {
        self.padding <= self.n
    }

    /// Drops what is buffered (fill bits before a marker) and steps over an RST marker.
    fn restart(&mut self) -> Option<()> {
        let at = next_marker(self.data, self.pos)?;
        if !(0xd0..=0xd7).contains(&self.data[at + 1]) || !self.intact() {
            return None;
        }
        *self = Bits::new(self.data, at + 2);
        Some(())
    }
}

/// The position of the next marker (0xFF then neither 0 nor 0xFF) at or after `from`.
fn next_marker(data: &[u8], mut from: usize) -> Option<usize> {
    loop {
        let at = from + data.get(from..)?.iter().position(|&b| b == 0xff)?;
        match data.get(at + 1) {
            Some(0) | Some(0xff) => from = at + 1,
            Some(_) => return Some(at),
            None => return None,
        }
    }
}

/// The next marker that is not a restart marker: the end of an entropy-coded segment.
fn segment_end(data: &[u8], mut from: usize) -> Option<usize> {
    loop {
        let at = next_marker(data, from)?;
        if (0xd0..=0xd7).contains(&data[at + 1]) {
            from = at + 2;
        } else {
            return Some(at);
        }
    }
}

struct Component {
    id: u8,
    h: usize,
    v: usize,
    quant: usize,
    /// DC quantiser, taken when the component's first DC scan starts.
    q0: i32,
    /// DC values (quantised), one per block, `blocks_w` x `blocks_h` (padded to whole MCUs).
    dc: Vec<i32>,
    blocks_w: usize,
    /// The blocks that hold image pixels (a non-interleaved scan covers only these).
    used_w: usize,
    used_h: usize,
    scanned: bool,
}

struct Frame {
    width: usize,
    height: usize,
    progressive: bool,
    comps: Vec<Component>,
    mcus_x: usize,
    mcus_y: usize,
}

fn be16(d: &[u8], at: usize) -> Option<usize> {
    Some(u16::from_be_bytes([*d.get(at)?, *d.get(at + 1)?]) as usize)
}

/// Decodes `bytes` to 1/8 scale from the DC coefficients, or `None` if this reader does not
/// handle the file (the caller then uses jpeg-decoder), its frame has more than `max_pixels`
/// pixels, or the analysis's time budget is spent (`background::check` tells). The memory here is four bytes per block and component, plus the output.
pub fn decode(bytes: &[u8], max_pixels: u64) -> Option<DcImage> {
    if bytes.get(..2)? != [0xff, 0xd8] {
        return None;
    }
    let mut pos = 2;
    let mut quant = [None::<i32>; 4];
    let mut dc_tables: [Slot; 4] = Default::default();
    let mut ac_tables: [Slot; 4] = Default::default();
    let mut restart_interval = 0usize;
    let mut adobe_transform = None;
    let mut frame: Option<Frame> = None;
    loop {
        pos = next_marker(bytes, pos)?;
        let marker = bytes[pos + 1];
        pos += 2;
        if marker == 0xd9 {
            break; // EOI
        }
        if (0xd0..=0xd7).contains(&marker) || marker == 0x01 {
            continue; // no length
        }
        let len = be16(bytes, pos)?;
        let seg = bytes.get(pos + 2..pos + len.max(2))?;
        pos += len;
        match marker {
            0xdb => {
                let mut s = seg;
                while let Some(&pq_tq) = s.first() {
                    let (sixteen, id) = (pq_tq >> 4 != 0, (pq_tq & 15) as usize);
                    let size = if sixteen { 128 } else { 64 };
                    let table = s.get(1..1 + size)?;
                    let q0 = if sixteen { be16(table, 0)? as i32 } else { table[0] as i32 };
                    *quant.get_mut(id)? = Some(q0);
                    s = &s[1 + size..];
                }
            }
            0xc4 => {
                let mut s = seg;
                while let Some(&tc_th) = s.first() {
                    let counts: [u8; 16] = s.get(1..17)?.try_into().ok()?;
                    let total: usize = counts.iter().map(|&c| c as usize).sum();
                    let symbols = s.get(17..17 + total)?;
                    let (class, id) = (tc_th >> 4, (tc_th & 15) as usize);
                    match class {
                        0 => dc_tables.get_mut(id)?.define(counts, symbols)?,
                        1 => ac_tables.get_mut(id)?.define(counts, symbols)?,
                        _ => return None,
                    }
                    s = &s[17 + total..];
                }
            }
            0xdd => restart_interval = be16(seg, 0)?,
            0xee if seg.starts_with(b"Adobe") => adobe_transform = seg.get(11).copied(),
            0xc0..=0xc2 => {
                if frame.is_some() || *seg.first()? != 8 {
                    return None;
                }
                let (height, width, n) = (be16(seg, 1)?, be16(seg, 3)?, *seg.get(5)? as usize);
                if width == 0 || height == 0 || !(n == 1 || n == 3) || (width * height) as u64 > max_pixels {
                    return None;
                }
                let mut comps = Vec::with_capacity(n);
                for c in seg.get(6..6 + 3 * n)?.chunks_exact(3) {
                    let (h, v) = ((c[1] >> 4) as usize, (c[1] & 15) as usize);
                    if !(1..=4).contains(&h) || !(1..=4).contains(&v) || c[2] > 3 {
                        return None;
                    }
                    comps.push(Component {
                        id: c[0],
                        h,
                        v,
                        quant: c[2] as usize,
                        q0: 0,
                        dc: Vec::new(),
                        blocks_w: 0,
                        used_w: 0,
                        used_h: 0,
                        scanned: false,
                    });
                }
                if n == 3 && (adobe_transform == Some(0) || comps.iter().map(|c| c.id).eq(*b"RGB")) {
                    return None; // stored as RGB, not YCbCr
                }
                let hmax = comps.iter().map(|c| c.h).max()?;
                let vmax = comps.iter().map(|c| c.v).max()?;
                let (mcus_x, mcus_y) = (width.div_ceil(8 * hmax), height.div_ceil(8 * vmax));
                for c in &mut comps {
                    c.blocks_w = if n == 1 { width.div_ceil(8) } else { mcus_x * c.h };
                    let blocks_h = if n == 1 { height.div_ceil(8) } else { mcus_y * c.v };
                    c.dc = vec![0; c.blocks_w * blocks_h];
                    c.used_w = (width * c.h).div_ceil(hmax).div_ceil(8);
                    c.used_h = (height * c.v).div_ceil(vmax).div_ceil(8);
                }
                let (mcus_x, mcus_y) = if n == 1 { (width.div_ceil(8), height.div_ceil(8)) } else { (mcus_x, mcus_y) };
                frame = Some(Frame { width, height, progressive: marker == 0xc2, comps, mcus_x, mcus_y });
            }
            0xc3 | 0xc5..=0xc7 | 0xc9..=0xcb | 0xcd..=0xcf => return None, // lossless, hierarchical, arithmetic
            0xda => {
                let f = frame.as_mut()?;
                let ns = *seg.first()? as usize;
                let sel = seg.get(1..1 + 2 * ns)?;
                let &[ss, se, ahal] = seg.get(1 + 2 * ns..4 + 2 * ns)? else { return None };
                let (ah, al) = (ahal >> 4, (ahal & 15) as u32);
                if f.progressive && ss != 0 {
                    pos = segment_end(bytes, pos)?; // an AC scan: nothing in it matters at 1/8 scale
                    continue;
                }
                if (f.progressive && se != 0) || (!f.progressive && (ss != 0 || se != 63 || ahal != 0)) || ns == 0 {
                    return None;
                }
                // The tables this scan uses: built now (and only now), then borrowed.
                for s in sel.chunks_exact(2) {
                    if ah == 0 {
                        dc_tables.get_mut((s[1] >> 4) as usize)?.build(false)?;
                    }
                    if !f.progressive {
                        ac_tables.get_mut((s[1] & 15) as usize)?.build(true)?;
                    }
                }
                let mut scan = Vec::with_capacity(ns);
                for s in sel.chunks_exact(2) {
                    let ci = f.comps.iter().position(|c| c.id == s[0])?;
                    if scan.iter().any(|&(i, _, _)| i == ci) {
                        return None;
                    }
                    let dc = if ah == 0 { Some(dc_tables.get((s[1] >> 4) as usize)?.built.as_ref()?) } else { None };
                    let ac =
                        if f.progressive { None } else { Some(ac_tables.get((s[1] & 15) as usize)?.built.as_ref()?) };
                    scan.push((ci, dc, ac));
                }
                if ah == 0 {
                    for &(ci, _, _) in &scan {
                        let c = &mut f.comps[ci];
                        if c.scanned {
                            // T.81 allows one first pass per component (one scan in a
                            // sequential frame); more would each cost a pass over the picture.
                            return None;
                        }
                        c.q0 = quant[c.quant]?;
                        c.scanned = true;
                    }
                } else if scan.iter().any(|&(ci, _, _)| !f.comps[ci].scanned) {
                    return None; // a refinement before the first pass
                }
                // Where the decoder stopped is at most the fill bits before the next marker.
                pos = segment_end(bytes, decode_scan(bytes, pos, f, &scan, restart_interval, al)?)?;
            }
            _ => {}
        }
    }
    let f = frame?;
    if f.comps.iter().any(|c| !c.scanned) {
        return None;
    }
    Some(pixels(&f))
}

type ScanComponent<'t> = (usize, Option<&'t Huffman>, Option<&'t Huffman>);

/// Decodes one scan's DC values into the frame; returns where its data stopped.
fn decode_scan(
    bytes: &[u8],
    pos: usize,
    f: &mut Frame,
    scan: &[ScanComponent],
    restart_interval: usize,
    al: u32,
) -> Option<usize> {
    let mut bits = Bits::new(bytes, pos);
    let mut pred = [0i32; 4];
    let single = scan.len() == 1;
    let (mcus_x, mcus_y) = if single {
        let c = &f.comps[scan[0].0];
        (c.used_w, c.used_h)
    } else {
        (f.mcus_x, f.mcus_y)
    };
    let mut left = restart_interval;
    for my in 0..mcus_y {
        background::yield_point().ok()?; // the budget is spent: the caller finds out why
        if bits.padding > 64 {
            return None; // past the data by more than the reader holds: it cannot end intact
        }
        for mx in 0..mcus_x {
            if restart_interval != 0 {
                if left == 0 {
                    bits.restart()?;
                    pred = [0; 4];
                    left = restart_interval;
                }
                left -= 1;
            }
            for (si, &(ci, dc, ac)) in scan.iter().enumerate() {
                let c = &mut f.comps[ci];
                let (bh, bv) = if single { (1, 1) } else { (c.h, c.v) };
                for v in 0..bv {
                    for h in 0..bh {
                        bits.refill();
                        let at = (my * bv + v) * c.blocks_w + mx * bh + h;
                        let slot = c.dc.get_mut(at)?;
                        match dc {
                            Some(table) => {
                                let size = table.decode(&mut bits)? as u32;
                                if size > 15 {
                                    return None;
                                }
                                pred[si] = pred[si].wrapping_add(bits.value(size));
                                *slot = pred[si].wrapping_shl(al);
                            }
                            None => {
                                if bits.peek(1) == 1 {
                                    *slot |= 1 << al;
                                }
                                bits.consume(1);
                            }
                        }
                        if let Some(table) = ac {
                            skip_ac(table, &mut bits)?;
                        }
                    }
                }
            }
        }
    }
    bits.intact().then_some(bits.pos)
}

/// Steps over the 63 AC coefficients of a block.
#[inline]
fn skip_ac(table: &Huffman, bits: &mut Bits) -> Option<()> {
    let mut k = 1u32;
    while k < 64 {
        if bits.n < 32 {
            bits.refill();
        }
        // Several coefficients at once, unless they would run past this block.
        let m = table.multi.get(bits.peek(MULTI) as usize).copied().unwrap_or(0) as u32;
        let (used, covered, end) = (m & 15, (m >> 4) & 127, m & 0x800 != 0);
        if used != 0 && k + covered <= if end { 63 } else { 64 } {
            bits.consume(used);
            if end {
                return Some(());
            }
            k += covered;
            continue;
        }
        let e = table.fast[bits.peek(FAST) as usize];
        if e != 0 {
            bits.consume(e as u32 & 0xff);
            match e as u32 >> 8 {
                0 => return Some(()),
                advance => k += advance,
            }
        } else {
            let rs = table.slow(bits)? as u32;
            let (run, size) = (rs >> 4, rs & 15);
            if size == 0 {
                if run != 15 {
                    return Some(()); // end of block (or an undefined code treated as one)
                }
                k += 16;
            } else {
                bits.consume(size);
                k += run + 1;
            }
        }
    }
    (k == 64).then_some(())
}

/// The 1/8-scale picture: each block's DC as a level, YCbCr to RGB. Subsampled chroma is
/// interpolated between the nearest block centres (as libjpeg's "fancy" upsampling does):
/// replicated, its steps cost about 2 levels on the mean against the full-size picture.
fn pixels(f: &Frame) -> DcImage {
    let (w, h) = (f.width.div_ceil(8), f.height.div_ceil(8));
    let hmax = f.comps.iter().map(|c| c.h).max().unwrap_or(1);
    let vmax = f.comps.iter().map(|c| c.v).max().unwrap_or(1);
    // Each component interpolated across to the output width, one row per block row; each
    // block's level is computed once.
    let across: Vec<Vec<f32>> = f.comps.iter().map(|c| across(c, w, hmax)).collect();
    let downs: Vec<Vec<(usize, usize, f32)>> =
        f.comps.iter().map(|c| (0..h).map(|y| taps(y, c.v, vmax, c.used_h)).collect()).collect();
    let px = |v: f32| (v + 0.5).clamp(0.0, 255.0) as u8;
    let mut out = vec![0u8; w * h * f.comps.len()];
    // The components' rows at one output row: two block rows blended.
    let mut rows = vec![vec![0f32; w]; f.comps.len()];
    for (y, line) in out.chunks_exact_mut(w * f.comps.len()).enumerate() {
        for (ci, row) in rows.iter_mut().enumerate() {
            let (y0, y1, fy) = downs[ci][y];
            let (top, bottom) = (&across[ci][y0 * w..][..w], &across[ci][y1 * w..][..w]);
            for ((r, &t), &b) in row.iter_mut().zip(top).zip(bottom) {
                *r = t * (1.0 - fy) + b * fy;
            }
        }
        if let [luma] = &rows[..] {
            for (o, &yy) in line.iter_mut().zip(luma) {
                *o = px(yy);
            }
            continue;
        }
        for (((o, &yy), &cb), &cr) in line.chunks_exact_mut(3).zip(&rows[0]).zip(&rows[1]).zip(&rows[2]) {
            let (cb, cr) = (cb - 128.0, cr - 128.0);
            o.copy_from_slice(&[px(yy + 1.402 * cr), px(yy - 0.344_136 * cb - 0.714_136 * cr), px(yy + 1.772 * cb)]);
        }
    }
    let layout = if f.comps.len() == 1 { Layout::Luma } else { Layout::Rgb };
    DcImage { width: w as u32, height: h as u32, layout, pixels: out }
}

/// For output position `p`: the two blocks around it and the weight of the second. A
/// full-resolution component gives (p, p, 0): its own block.
fn taps(p: usize, samp: usize, max: usize, used: usize) -> (usize, usize, f32) {
    let t = ((p as f32 + 0.5) * samp as f32 / max as f32 - 0.5).max(0.0);
    let last = used.max(1) - 1;
    let i = (t as usize).min(last);
    (i, (i + 1).min(last), t - i as f32)
}

/// A component's block levels (DC x quantiser / 8, rounded, plus 128), each block row
/// interpolated across to `w` output columns: `used_h` rows of `w`.
fn across(c: &Component, w: usize, hmax: usize) -> Vec<f32> {
    let cols: Vec<_> = (0..w).map(|x| taps(x, c.h, hmax, c.used_w)).collect();
    let mut out = Vec::with_capacity(c.used_h.max(1) * w);
    let mut levels = Vec::with_capacity(c.used_w);
    for by in 0..c.used_h.max(1) {
        levels.clear();
        levels.extend((0..c.used_w.max(1)).map(|bx| {
            let dc = c.dc.get(by * c.blocks_w + bx).copied().unwrap_or(0);
            (((dc as i64 * c.q0 as i64 + 4) >> 3) + 128).clamp(0, 255) as f32
        }));
        out.extend(cols.iter().map(|&(x0, x1, fx)| levels[x0] * (1.0 - fx) + levels[x1] * fx));
    }
    out
}
