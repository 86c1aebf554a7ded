//! JPEG at 1/8 scale from the DC coefficients alone: the fast path for large photos.
//!
//! At 1/8 scale an 8x8 block is one pixel, its DC coefficient, so the AC coefficients only
//! need to be stepped over: one table look-up per coefficient gives its code and value
//! length together, and nothing is dequantised, stored or transformed. Progressive files
//! are cheaper still: their DC scans are decoded and their AC scans skipped as bytes, so no
//! coefficient buffer is kept. Baseline, extended and progressive Huffman JPEGs of 8 bits
//! with one (grey) or three (YCbCr) components take this path.
//!
//! The file is read through a window that holds a segment, or 32 KiB of a scan,
//! at a time: from memory ([`decode`]: anything this reader does not like, a truncated or
//! malformed scan, gets `None`, and the caller decodes with jpeg-decoder), or as it arrives
//! ([`stream`]: until the frame header every byte is kept, so that a file this reader leaves
//! to jpeg-decoder comes back whole as far as read; past it nothing is, and a file that fails
//! says why).

use std::borrow::Cow;
use std::io::{self, Read};

use crate::background;
use crate::blurhash::Layout;
use crate::jpeg_markers::Markers;

/// Pixels at 1/8 scale: `ceil(width / 8)` x `ceil(height / 8)` of `layout` (Luma or Rgb).
#[derive(Debug, PartialEq, Eq)]
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

/// Bytes asked of the input at a time.
const READ_STEP: usize = 32 * 1024;

/// The file from where the reader is: a file in memory, whole; or the bytes read from
/// `input` and not yet passed, a segment (at most 64 KiB) and a read's worth beyond, unless
/// `keep` is set: then every byte from the first stays, for a caller that may want the whole
/// file after all.
struct Window<'a> {
    /// Borrowed: the file in memory (`ended`). Owned: read into up to `end`, with zeroed room
    /// for the next read beyond (zeroed once, not on every read: a slow socket hands out a
    /// few hundred bytes a read).
    buf: Cow<'a, [u8]>,
    pos: usize,
    end: usize,
    input: Option<&'a mut dyn Read>,
    /// The input has nothing more (its end, a failed read, or the time budget).
    ended: bool,
    keep: bool,
}

impl<'a> Window<'a> {
    fn new(input: &'a mut dyn Read, keep: bool) -> Window<'a> {
        Window { buf: Cow::Owned(Vec::new()), pos: 0, end: 0, input: Some(input), ended: false, keep }
    }

    fn over(bytes: &'a [u8]) -> Window<'a> {
        Window { buf: Cow::Borrowed(bytes), pos: 0, end: bytes.len(), input: None, ended: true, keep: false }
    }

    fn rest(&self) -> &[u8] {
        &self.buf[self.pos..self.end]
    }

    /// Every byte read, from the first (all of them when `keep` was set throughout).
    fn into_read(self) -> Vec<u8> {
        let mut read = self.buf.into_owned();
        read.truncate(self.end);
        read
    }

    /// Whether `n` bytes are there from `pos` on, reading on for them if need be.
    #[inline]
    fn has(&mut self, n: usize) -> bool {
        self.end - self.pos >= n || self.read_on(n)
    }

    #[cold]
    fn read_on(&mut self, n: usize) -> bool {
        let Some(input) = self.input.as_mut().filter(|_| !self.ended) else {
            return false;
        };
        let buf = self.buf.to_mut();
        if !self.keep && self.pos > 0 {
            buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        }
        while self.end - self.pos < n && !self.ended {
            let room = (self.pos + n).max(self.end + READ_STEP);
            if buf.len() < room {
                buf.resize(room, 0);
            }
            let read = match background::yield_point() {
                Ok(()) => input.read(&mut buf[self.end..]),
                Err(_) => Ok(0), // the budget is spent: the caller finds out why
            };
            match read {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // A failed read ends the data; whoever reads through the input knows why.
                Ok(0) | Err(_) => self.ended = true,
                Ok(got) => self.end += got,
            }
        }
        self.end - self.pos >= n
    }

    /// Moves to the next marker (0xFF, then neither 0 nor 0xFF; past restart markers too
    /// when `past_restarts`), leaving `pos` at its 0xFF, and gives its code; `None` at the
    /// end of the data.
    fn find_marker(&mut self, past_restarts: bool) -> Option<u8> {
        loop {
            match self.rest().iter().position(|&b| b == 0xff) {
                Some(i) => self.pos += i,
                None => {
                    self.pos = self.end;
                    if !self.has(1) {
                        return None;
                    }
                    continue;
                }
            }
            if !self.has(2) {
                return None;
            }
            match self.buf[self.pos + 1] {
                0 | 0xff => self.pos += 1,
                0xd0..=0xd7 if past_restarts => self.pos += 2,
                code => return Some(code),
            }
        }
    }

    /// The segment at `pos` (after its marker): what follows its length, and `pos` past it.
    fn segment(&mut self) -> Option<&[u8]> {
        if !self.has(2) {
            return None;
        }
        let len = be16(self.rest(), 0)?.max(2);
        if !self.has(len) {
            return None;
        }
        let at = self.pos;
        self.pos += len;
        Some(&self.buf[at + 2..at + len])
    }
}

/// MSB-first bits of an entropy-coded segment, with byte stuffing undone. At a marker or the
/// end of the data it feeds zeros and counts them, so a scan that reads into them is known
/// to be truncated or corrupt.
struct Bits<'w, 'a> {
    /// The window's bytes, taken for the scan so that the hot path reads fields of its own
    /// (through the window it measured 3-7 % slower), and given back to the window whenever
    /// it reads on, and at the end ([`Drop`]).
    buf: Cow<'a, [u8]>,
    pos: usize,
    end: usize,
    w: &'w mut Window<'a>,
    acc: u64,
    n: u32,
    stopped: bool,
    padding: u32,
}

impl Drop for Bits<'_, '_> {
    fn drop(&mut self) {
        self.w.buf = std::mem::take(&mut self.buf);
        self.w.pos = self.pos;
    }
}

impl<'w, 'a> Bits<'w, 'a> {
    fn new(w: &'w mut Window<'a>) -> Bits<'w, 'a> {
        let (buf, pos, end) = (std::mem::take(&mut w.buf), w.pos, w.end);
        Bits { buf, pos, end, w, acc: 0, n: 0, stopped: false, padding: 0 }
    }

    /// `f` on the window, its bytes given back for the while.
    fn on_window<T>(&mut self, f: impl FnOnce(&mut Window) -> T) -> T {
        (self.w.buf, self.w.pos) = (std::mem::take(&mut self.buf), self.pos);
        let out = f(self.w);
        (self.buf, self.pos, self.end) = (std::mem::take(&mut self.w.buf), self.w.pos, self.w.end);
        out
    }

    /// Tops the accumulator up to at least 57 bits: eight bytes at once when none is 0xFF.
    /// (Inlined into the scan loops; the rest is out of line, so that it stays small.)
    #[inline(always)]
    fn refill(&mut self) {
        if self.n > 56 {
            return;
        }
        if !self.stopped && self.end - self.pos >= 8 {
            let word = u64::from_be_bytes(self.buf[self.pos..self.pos + 8].try_into().unwrap_or([0; 8]));
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
        self.refill_bytewise();
    }

    /// A byte at a time: near a 0xFF (stuffed, or a marker), at the window's end (reading on),
    /// and past the data.
    #[cold]
    #[inline(never)]
    fn refill_bytewise(&mut self) {
        while self.n <= 56 {
            let byte = if self.stopped {
                None
            } else {
                // Two bytes, to tell a stuffed 0xFF from a marker (at the end, one will do).
                if self.end - self.pos < 2 {
                    self.on_window(|w| w.has(2));
                }
                match self.buf[self.pos..self.end] {
                    [0xff, 0, ..] => {
                        self.pos += 2;
                        Some(0xff)
                    }
                    [0xff, ..] | [] => None,
                    [b, ..] => {
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
        let code = self.on_window(|w| w.find_marker(false))?;
        if !(0xd0..=0xd7).contains(&code) || !self.intact() {
            return None;
        }
        self.pos += 2;
        (self.acc, self.n, self.stopped, self.padding) = (0, 0, false, 0);
        Some(())
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

/// What the caller of [`stream`] says once the frame header is read, before any scan is.
pub enum AtFrame {
    /// Read the picture at 1/8 scale.
    Decode,
    /// Nothing more is wanted from the pixels (the caller has its answer).
    Stop,
    /// The caller decodes this file another way: give it back whole.
    Whole,
}

/// How reading a JPEG as it arrives ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Streamed {
    Read(DcImage),
    /// `at_frame` said [`AtFrame::Stop`].
    Stopped,
    /// Not a file this reader takes, or the caller wants it whole: every byte read so far from
    /// the first; the rest of the file is still to be read.
    Whole(Vec<u8>),
    /// The picture was being read when the file turned out cut, damaged or over a limit: why.
    Failed(String),
}

/// Decodes `bytes` to 1/8 scale from the DC coefficients, or `None` if this reader does not
/// handle the file (the caller then uses jpeg-decoder), its frame has more than `max_pixels`
/// pixels, or the analysis's time budget is spent (`background::check` tells).
pub fn decode(bytes: &[u8], max_pixels: u64) -> Option<DcImage> {
    match read(Window::over(bytes), max_pixels, |_, _, _| AtFrame::Decode) {
        Streamed::Read(image) => Some(image),
        _ => None,
    }
}

/// Decodes a JPEG to 1/8 scale as it is read from `input` (from its first byte), holding a
/// segment's worth of it at a time. At the frame header `at_frame` gets the picture's width,
/// height and EXIF orientation and says what to do; until then every byte is kept, so that a
/// file this reader does not take (or one the caller wants whole) comes back whole so far.
/// Past the frame header, the scans' count and passes are held to [`crate::jpeg_markers`]' limits
/// as they come.
pub fn stream(input: &mut dyn Read, max_pixels: u64, at_frame: impl FnOnce(u32, u32, u8) -> AtFrame) -> Streamed {
    read(Window::new(input, true), max_pixels, at_frame)
}

/// Where reading stands, for telling why it stopped.
#[derive(Default)]
struct Progress {
    /// The caller said to decode (every byte read before is then let go).
    accepted: bool,
    stopped: bool,
    /// Why the file is refused, when a rule says so (not just a read that failed).
    refusal: Option<String>,
}

fn read(mut w: Window, max_pixels: u64, at_frame: impl FnOnce(u32, u32, u8) -> AtFrame) -> Streamed {
    let mut progress = Progress::default();
    let image = read_file(&mut w, max_pixels, &mut Some(at_frame), &mut progress);
    match (image, progress) {
        (Some(image), _) => Streamed::Read(image),
        (None, Progress { stopped: true, .. }) => Streamed::Stopped,
        (None, Progress { accepted: false, .. }) => Streamed::Whole(w.into_read()),
        (None, Progress { refusal: Some(why), .. }) => Streamed::Failed(why),
        (None, _) if w.ended && w.rest().len() < 2 => Streamed::Failed("the file ends inside its scans".into()),
        (None, _) => Streamed::Failed("its scans are damaged".into()),
    }
}

/// Huffman and quantisation tables, and the other state that segments set for the scans.
#[derive(Default)]
struct Tables {
    quant: [Option<i32>; 4],
    dc: [Slot; 4],
    ac: [Slot; 4],
    restart_interval: usize,
    adobe_transform: Option<u8>,
}

/// Reads the file's markers, frame header and scans from `w`: `None` if it declines the file
/// (`progress` says at what point) or the budget is spent.
fn read_file<F: FnOnce(u32, u32, u8) -> AtFrame>(
    w: &mut Window,
    max_pixels: u64,
    at_frame: &mut Option<F>,
    progress: &mut Progress,
) -> Option<DcImage> {
    if !w.has(2) || w.rest()[..2] != [0xff, 0xd8] {
        return None;
    }
    w.pos += 2;
    let mut markers = Markers::default();
    let mut t = Tables::default();
    let mut frame: Option<Frame> = None;
    loop {
        let marker = w.find_marker(false)?;
        w.pos += 2;
        if marker == 0xd9 {
            break; // EOI
        }
        if (0xd0..=0xd7).contains(&marker) || marker == 0x01 {
            continue; // no length
        }
        let seg = w.segment()?;
        markers.add(marker, seg);
        match marker {
            0xc0..=0xc2 => {
                if frame.is_some() {
                    progress.refusal = markers.refusal_so_far(); // a second frame: hierarchical
                    return None;
                }
                let f = frame.insert(frame_header(marker, seg, &t)?);
                if markers.refusal_so_far().is_some() {
                    return None; // the caller's other way says why
                }
                let orientation = markers.orientation.unwrap_or(1);
                match at_frame.take()?(f.width as u32, f.height as u32, orientation) {
                    AtFrame::Decode => progress.accepted = true,
                    AtFrame::Stop => {
                        progress.stopped = true;
                        return None;
                    }
                    AtFrame::Whole => return None,
                }
                w.keep = false;
                if f.allocate(max_pixels).is_none() {
                    progress.refusal = Some(format!("more than max_pixels ({max_pixels})"));
                    return None;
                }
            }
            0xc3 | 0xc5..=0xc7 | 0xc9..=0xcb | 0xcd..=0xcf => return None, // lossless, hierarchical, arithmetic
            0xda => {
                let f = frame.as_mut()?;
                if let Some(why) = markers.refusal_so_far() {
                    progress.refusal = Some(why);
                    return None;
                }
                let header = seg.to_vec();
                read_scan(w, &header, f, &mut t)?;
            }
            _ => t.define(marker, seg)?,
        }
    }
    let f = frame?;
    if f.comps.iter().any(|c| !c.scanned) {
        return None;
    }
    Some(pixels(&f))
}

impl Tables {
    /// Takes in a segment that defines tables or a setting for the scans (others pass).
    fn define(&mut self, marker: u8, seg: &[u8]) -> Option<()> {
        match marker {
            0xdb => {
                let mut s = seg;
                while let Some(&pq_tq) = s.first() {
                    let (sixteen, id) = (pq_tq >> 4 != 0, (pq_tq & 15) as usize);
                    let size = if sixteen { 128 } else { 64 };
                    let table = s.get(1..1 + size)?;
                    let q0 = if sixteen { be16(table, 0)? as i32 } else { table[0] as i32 };
                    *self.quant.get_mut(id)? = Some(q0);
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
                        0 => self.dc.get_mut(id)?.define(counts, symbols)?,
                        1 => self.ac.get_mut(id)?.define(counts, symbols)?,
                        _ => return None,
                    }
                    s = &s[17 + total..];
                }
            }
            0xdd => self.restart_interval = be16(seg, 0)?,
            0xee if seg.starts_with(b"Adobe") => self.adobe_transform = seg.get(11).copied(),
            _ => {}
        }
        Some(())
    }
}

/// The frame of a baseline, extended or progressive (`marker` SOF0 to SOF2) frame header,
/// its DC planes not yet allocated; `None` for what this reader does not take (not 8 bits, not
/// 1 or 3 components, stored as RGB).
fn frame_header(marker: u8, seg: &[u8], t: &Tables) -> Option<Frame> {
    if *seg.first()? != 8 {
        return None;
    }
    let (height, width, n) = (be16(seg, 1)?, be16(seg, 3)?, *seg.get(5)? as usize);
    if width == 0 || height == 0 || !(n == 1 || n == 3) {
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
    if n == 3 && (t.adobe_transform == Some(0) || comps.iter().map(|c| c.id).eq(*b"RGB")) {
        return None; // stored as RGB, not YCbCr
    }
    let hmax = comps.iter().map(|c| c.h).max()?;
    let vmax = comps.iter().map(|c| c.v).max()?;
    let (mcus_x, mcus_y) = (width.div_ceil(8 * hmax), height.div_ceil(8 * vmax));
    for c in &mut comps {
        c.blocks_w = if n == 1 { width.div_ceil(8) } else { mcus_x * c.h };
        c.used_w = (width * c.h).div_ceil(hmax).div_ceil(8);
        c.used_h = (height * c.v).div_ceil(vmax).div_ceil(8);
    }
    let (mcus_x, mcus_y) = if n == 1 { (width.div_ceil(8), height.div_ceil(8)) } else { (mcus_x, mcus_y) };
    Some(Frame { width, height, progressive: marker == 0xc2, comps, mcus_x, mcus_y })
}

impl Frame {
    /// Makes each component's DC plane (whole MCUs of blocks), unless the frame has more than
    /// `max_pixels` pixels.
    fn allocate(&mut self, max_pixels: u64) -> Option<()> {
        if (self.width * self.height) as u64 > max_pixels {
            return None;
        }
        let single = self.comps.len() == 1;
        for c in &mut self.comps {
            let blocks_h = if single { self.height.div_ceil(8) } else { self.mcus_y * c.v };
            c.dc = vec![0; c.blocks_w * blocks_h];
        }
        Some(())
    }
}
type ScanComponent<'t> = (usize, Option<&'t Huffman>, Option<&'t Huffman>);

/// Reads one scan (`header`, its SOS segment): its DC values into the frame, or, for a
/// progressive AC scan, nothing (at 1/8 scale it does not matter); `w` is left at the marker
/// after its data.
fn read_scan(w: &mut Window, header: &[u8], f: &mut Frame, t: &mut Tables) -> Option<()> {
    let ns = *header.first()? as usize;
    let sel = header.get(1..1 + 2 * ns)?;
    let &[ss, se, ahal] = header.get(1 + 2 * ns..4 + 2 * ns)? else { return None };
    let (ah, al) = (ahal >> 4, (ahal & 15) as u32);
    if f.progressive && ss != 0 {
        return w.find_marker(true).map(|_| ()); // stepped over as bytes
    }
    if (f.progressive && se != 0) || (!f.progressive && (ss != 0 || se != 63 || ahal != 0)) || ns == 0 {
        return None;
    }
    // The tables this scan uses: built now (and only now), then borrowed.
    for s in sel.chunks_exact(2) {
        if ah == 0 {
            t.dc.get_mut((s[1] >> 4) as usize)?.build(false)?;
        }
        if !f.progressive {
            t.ac.get_mut((s[1] & 15) as usize)?.build(true)?;
        }
    }
    let mut scan = Vec::with_capacity(ns);
    for s in sel.chunks_exact(2) {
        let ci = f.comps.iter().position(|c| c.id == s[0])?;
        if scan.iter().any(|&(i, _, _)| i == ci) {
            return None;
        }
        let dc = if ah == 0 { Some(t.dc.get((s[1] >> 4) as usize)?.built.as_ref()?) } else { None };
        let ac = if f.progressive { None } else { Some(t.ac.get((s[1] & 15) as usize)?.built.as_ref()?) };
        scan.push((ci, dc, ac));
    }
    if ah == 0 {
        for &(ci, _, _) in &scan {
            let c = &mut f.comps[ci];
            if c.scanned {
                // T.81 allows one first pass per component (one scan in a sequential frame);
                // more would each cost a pass over the picture.
                return None;
            }
            c.q0 = t.quant[c.quant]?;
            c.scanned = true;
        }
    } else if scan.iter().any(|&(ci, _, _)| !f.comps[ci].scanned) {
        return None; // a refinement before the first pass
    }
    decode_scan(w, f, &scan, t.restart_interval, al)?;
    // Where the decoder stopped is at most the fill bits before the next marker.
    w.find_marker(true).map(|_| ())
}

/// Decodes one scan's DC values into the frame, from the start of its data in `w`.
fn decode_scan(w: &mut Window, f: &mut Frame, scan: &[ScanComponent], restart_interval: usize, al: u32) -> Option<()> {
    let mut bits = Bits::new(w);
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
    bits.intact().then_some(())
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
