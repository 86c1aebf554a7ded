//! Image files made by hand: bombs, lies and variants that the encoders will not write.
//!
//! Each maker builds the bytes of the format directly (PNG chunks and zlib, JPEG markers and
//! Huffman-coded DC values, GIF LZW, WebP VP8L prefix codes), so a test can declare any size,
//! colour model or metadata cheaply, and the file is exactly what a hostile server could send.

// ---------------------------------------------------------------------------------------
// Bits, checksums

/// Packs bits least-significant first, as deflate, GIF LZW and WebP VP8L do.
#[derive(Default)]
pub struct LsbBits {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl LsbBits {
    /// Appends the `count` low bits of `value`, lowest first.
    pub fn put(&mut self, value: u32, count: u32) {
        debug_assert!(count <= 32);
        self.acc |= (value as u64 & ((1u64 << count) - 1)) << self.n;
        self.n += count;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }

    /// Appends a Huffman code of `len` bits, most significant bit first (deflate's order).
    pub fn code(&mut self, code: u32, len: u32) {
        let reversed = code.reverse_bits() >> (32 - len);
        self.put(reversed, len);
    }

    /// The bytes, the last one padded with zero bits.
    pub fn finish(mut self) -> Vec<u8> {
        if self.n > 0 {
            self.out.push(self.acc as u8);
        }
        self.out
    }
}

pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

pub fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for chunk in data.chunks(4096) {
        for &x in chunk {
            a += x as u32;
            b += a;
        }
        a %= 65521;
        b %= 65521;
    }
    (b << 16) | a
}

// ---------------------------------------------------------------------------------------
// zlib

/// `raw` as stored (uncompressed) deflate blocks.
pub fn deflate_stored(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 65535 * 5 + 5);
    let mut blocks = raw.chunks(65535).peekable();
    if blocks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(block) = blocks.next() {
        out.push(blocks.peek().is_none() as u8);
        out.extend_from_slice(&(block.len() as u16).to_le_bytes());
        out.extend_from_slice(&(!(block.len() as u16)).to_le_bytes());
        out.extend_from_slice(block);
    }
    out
}

/// `raw` in a zlib stream of stored blocks: fast to make at any size.
pub fn zlib_stored(raw: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    out.extend(deflate_stored(raw));
    out.extend_from_slice(&adler32(raw).to_be_bytes());
    out
}

/// `raw` as a gzip member (RFC 1952) of stored blocks: what `Content-Encoding: gzip` carries.
pub fn gzip_stored(raw: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    out.extend(deflate_stored(raw));
    out.extend_from_slice(&crc32(raw).to_le_bytes());
    out.extend_from_slice(&(raw.len() as u32).to_le_bytes());
    out
}

/// `n` zero bytes as one fixed-Huffman deflate block of 258-byte back-references: 13 bits
/// per 258 bytes, the deflate bomb (a 1000:1 ratio).
pub fn zlib_zeros(n: u64) -> Vec<u8> {
    let mut w = LsbBits::default();
    w.put(1, 1); // BFINAL
    w.put(1, 2); // BTYPE = fixed Huffman
    let literal_zero = |w: &mut LsbBits| w.code(0x30, 8);
    let mut left = n;
    if left > 0 {
        literal_zero(&mut w);
        left -= 1;
    }
    while left >= 258 {
        w.code(0xc5, 8); // length symbol 285: 258 bytes
        w.code(0, 5); // distance symbol 0: 1 byte back
        left -= 258;
    }
    for _ in 0..left {
        literal_zero(&mut w);
    }
    w.code(0, 7); // end of block (256)
    let mut out = vec![0x78, 0x01];
    out.extend(w.finish());
    // Adler-32 of n zeros: a stays 1, b adds 1 per byte.
    out.extend_from_slice(&((((n % 65521) as u32) << 16) | 1).to_be_bytes());
    out
}

// ---------------------------------------------------------------------------------------
// PNG

pub const PNG_GREY: u8 = 0;
pub const PNG_RGB: u8 = 2;
pub const PNG_PALETTE: u8 = 3;
pub const PNG_GREY_ALPHA: u8 = 4;
pub const PNG_RGBA: u8 = 6;

pub fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc32(&out[4..]).to_be_bytes());
    out
}

pub fn png_ihdr(w: u32, h: u32, bit_depth: u8, color: u8, interlace: bool) -> Vec<u8> {
    let mut d = w.to_be_bytes().to_vec();
    d.extend_from_slice(&h.to_be_bytes());
    d.extend_from_slice(&[bit_depth, color, 0, 0, interlace as u8]);
    png_chunk(b"IHDR", &d)
}

/// A PNG of the given chunks after IHDR (PLTE, eXIf, ... then IDAT) and IEND.
pub fn png_file(ihdr: Vec<u8>, chunks: &[Vec<u8>]) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend(ihdr);
    for c in chunks {
        out.extend_from_slice(c);
    }
    out.extend(png_chunk(b"IEND", b""));
    out
}

fn png_channels(color: u8) -> u64 {
    match color {
        PNG_GREY | PNG_PALETTE => 1,
        PNG_GREY_ALPHA => 2,
        PNG_RGB => 3,
        _ => 4,
    }
}

/// Bytes of filtered scanlines (filter byte included) for an image, Adam7 passes included.
pub fn png_raw_len(w: u32, h: u32, bit_depth: u8, color: u8, interlace: bool) -> u64 {
    let bits = png_channels(color) * bit_depth as u64;
    let row = |pw: u64| 1 + (pw * bits).div_ceil(8);
    if !interlace {
        return h as u64 * row(w as u64);
    }
    // (x start, y start, x step, y step) of the seven passes
    let passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)];
    passes
        .iter()
        .map(|&(x0, y0, dx, dy)| {
            let pw = (w as u64).saturating_sub(x0).div_ceil(dx);
            let ph = (h as u64).saturating_sub(y0).div_ceil(dy);
            if pw == 0 {
                0
            } else {
                ph * row(pw)
            }
        })
        .sum()
}

/// A PNG declaring `w` x `h` whose pixels are all zero, in a deflate bomb: the file is about
/// 1/1000 of the decoded size. (Palette images get a one-entry black palette.)
pub fn png_bomb(w: u32, h: u32, bit_depth: u8, color: u8, interlace: bool) -> Vec<u8> {
    let mut chunks = Vec::new();
    if color == PNG_PALETTE {
        chunks.push(png_chunk(b"PLTE", &[0, 0, 0]));
    }
    chunks.push(png_chunk(b"IDAT", &zlib_zeros(png_raw_len(w, h, bit_depth, color, interlace))));
    png_file(png_ihdr(w, h, bit_depth, color, interlace), &chunks)
}

/// A non-interlaced PNG from unfiltered rows (`rows` is `h` rows of packed samples), stored
/// without compression: any size, made at memcpy speed.
pub fn png_stored(w: u32, h: u32, bit_depth: u8, color: u8, rows: &[u8]) -> Vec<u8> {
    let row_len = (w as u64 * png_channels(color) * bit_depth as u64).div_ceil(8) as usize;
    assert_eq!(rows.len(), row_len * h as usize, "rows do not match {w}x{h}");
    let mut raw = Vec::with_capacity(rows.len() + h as usize);
    for row in rows.chunks(row_len) {
        raw.push(0);
        raw.extend_from_slice(row);
    }
    png_file(png_ihdr(w, h, bit_depth, color, false), &[png_chunk(b"IDAT", &zlib_stored(&raw))])
}

/// `png` with `chunk` inserted right after IHDR.
pub fn png_insert_after_ihdr(png: &[u8], chunk: &[u8]) -> Vec<u8> {
    let at = 8 + 25;
    assert_eq!(&png[12..16], b"IHDR");
    let mut out = png[..at].to_vec();
    out.extend_from_slice(chunk);
    out.extend_from_slice(&png[at..]);
    out
}

// ---------------------------------------------------------------------------------------
// EXIF (TIFF) blocks

/// A TIFF block with one IFD holding Orientation = `orientation`, as PNG eXIf and WebP EXIF
/// carry it (JPEG's APP1 adds "Exif\0\0" in front).
pub fn exif_tiff(orientation: u16, big_endian: bool) -> Vec<u8> {
    let u16b = |v: u16| if big_endian { v.to_be_bytes() } else { v.to_le_bytes() };
    let u32b = |v: u32| if big_endian { v.to_be_bytes() } else { v.to_le_bytes() };
    let mut t = if big_endian { b"MM\0*".to_vec() } else { b"II*\0".to_vec() };
    t.extend_from_slice(&u32b(8)); // IFD offset
    t.extend_from_slice(&u16b(1)); // one entry
    t.extend_from_slice(&u16b(0x0112)); // Orientation
    t.extend_from_slice(&u16b(3)); // SHORT
    t.extend_from_slice(&u32b(1)); // count
    t.extend_from_slice(&u16b(orientation));
    t.extend_from_slice(&[0, 0]);
    t.extend_from_slice(&u32b(0)); // no next IFD
    t
}

/// A JPEG APP1 segment (marker, length, "Exif\0\0", `tiff`), its length field set to
/// `declared` instead of the true one when given: an EXIF block that lies about its length.
pub fn jpeg_app1(tiff: &[u8], declared: Option<u16>) -> Vec<u8> {
    let mut payload = b"Exif\0\0".to_vec();
    payload.extend_from_slice(tiff);
    let mut out = vec![0xff, 0xe1];
    out.extend_from_slice(&declared.unwrap_or((payload.len() + 2) as u16).to_be_bytes());
    out.extend(payload);
    out
}

/// `jpeg` with `segment` inserted right after SOI.
pub fn jpeg_insert_after_soi(jpeg: &[u8], segment: &[u8]) -> Vec<u8> {
    assert_eq!(&jpeg[..2], b"\xff\xd8");
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(segment);
    out.extend_from_slice(&jpeg[2..]);
    out
}

// ---------------------------------------------------------------------------------------
// JPEG: DC-only pictures, baseline or progressive, 1, 3 or 4 components

/// Bits, most significant first, with JPEG's 0xFF byte stuffing.
#[derive(Default)]
struct MsbBits {
    out: Vec<u8>,
    acc: u32,
    n: u32,
}

impl MsbBits {
    fn put(&mut self, value: u32, count: u32) {
        for i in (0..count).rev() {
            self.acc = (self.acc << 1) | ((value >> i) & 1);
            self.n += 1;
            if self.n == 8 {
                self.out.push(self.acc as u8);
                if self.acc == 0xff {
                    self.out.push(0);
                }
                self.acc = 0;
                self.n = 0;
            }
        }
    }

    fn finish(mut self) -> Vec<u8> {
        if self.n > 0 {
            let pad = 8 - self.n;
            self.put((1 << pad) - 1, pad);
        }
        self.out
    }
}

/// Canonical Huffman codes (code, length) by symbol from JPEG's BITS/HUFFVAL lists.
fn huffman_codes(bits: &[u8; 16], vals: &[u8]) -> Vec<Option<(u32, u32)>> {
    let mut table = vec![None; 256];
    let (mut code, mut k) = (0u32, 0usize);
    for (len, &count) in bits.iter().enumerate() {
        for _ in 0..count {
            table[vals[k] as usize] = Some((code, len as u32 + 1));
            code += 1;
            k += 1;
        }
        code <<= 1;
    }
    table
}

// The standard luminance DC table of ITU T.81 Annex K: categories 0 to 11.
const DC_BITS: [u8; 16] = [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0];
const DC_VALS: [u8; 12] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
// An AC table with one symbol, 0x00 (end of block): every block is its DC value alone.
const AC_BITS: [u8; 16] = [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
const AC_VALS: [u8; 1] = [0];

/// What `dc_jpeg` makes.
#[derive(Clone, Debug)]
pub struct JpegSpec {
    pub width: u16,
    pub height: u16,
    /// 1 (grey), 3 (YCbCr, or RGB with `adobe: Some(0)`), 4 (CMYK with Adobe transform 0).
    pub components: usize,
    /// Sampling factors of the first component (the others are 1x1): (2, 2) is 4:2:0.
    pub luma_sampling: (u8, u8),
    pub progressive: bool,
    /// An Adobe APP14 segment with this transform flag (0: none, 1: YCbCr, 2: YCCK).
    pub adobe: Option<u8>,
    /// Segments (marker included) placed right after SOI.
    pub segments: Vec<Vec<u8>>,
}

impl JpegSpec {
    pub fn new(width: u16, height: u16, components: usize) -> JpegSpec {
        JpegSpec {
            width,
            height,
            components,
            luma_sampling: (1, 1),
            progressive: false,
            adobe: None,
            segments: Vec::new(),
        }
    }
}

fn segment(marker: u8, data: &[u8]) -> Vec<u8> {
    let mut out = vec![0xff, marker];
    out.extend_from_slice(&((data.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(data);
    out
}

/// A JPEG whose every 8x8 block is flat: `level(component, x, y)` (0..255) sampled at the
/// block's centre (x, y in image pixels). Quantisation is 1, so levels are exact.
pub fn dc_jpeg(spec: &JpegSpec, level: impl Fn(usize, u32, u32) -> u8) -> Vec<u8> {
    let n = spec.components;
    let sampling: Vec<(u32, u32)> = (0..n)
        .map(|c| if c == 0 { (spec.luma_sampling.0 as u32, spec.luma_sampling.1 as u32) } else { (1, 1) })
        .collect();
    let (hmax, vmax) = (sampling[0].0, sampling[0].1);
    let (w, h) = (spec.width as u32, spec.height as u32);

    let mut out = vec![0xff, 0xd8];
    for s in &spec.segments {
        out.extend_from_slice(s);
    }
    if let Some(transform) = spec.adobe {
        out.extend(segment(0xee, &[b'A', b'd', b'o', b'b', b'e', 0, 100, 0, 0, 0, 0, transform]));
    }
    let mut dqt = vec![0u8];
    dqt.extend_from_slice(&[1; 64]);
    out.extend(segment(0xdb, &dqt));
    let mut sof = vec![8];
    sof.extend_from_slice(&spec.height.to_be_bytes());
    sof.extend_from_slice(&spec.width.to_be_bytes());
    sof.push(n as u8);
    for (c, &(hs, vs)) in sampling.iter().enumerate() {
        sof.extend_from_slice(&[c as u8 + 1, ((hs << 4) | vs) as u8, 0]);
    }
    out.extend(segment(if spec.progressive { 0xc2 } else { 0xc0 }, &sof));
    let mut dht = vec![0x00];
    dht.extend_from_slice(&DC_BITS);
    dht.extend_from_slice(&DC_VALS);
    dht.push(0x10);
    dht.extend_from_slice(&AC_BITS);
    dht.extend_from_slice(&AC_VALS);
    out.extend(segment(0xc4, &dht));

    let dc_codes = huffman_codes(&DC_BITS, &DC_VALS);
    let eob = huffman_codes(&AC_BITS, &AC_VALS)[0].unwrap();
    // The DC coefficient of a flat block of level v, quantised by 1: 8 * (v - 128).
    let dc_of = |c: usize, bx: u32, by: u32| {
        let (hs, vs) = sampling[c];
        let x = ((bx * 8 + 4) * hmax / hs).min(w.saturating_sub(1));
        let y = ((by * 8 + 4) * vmax / vs).min(h.saturating_sub(1));
        8 * (level(c, x, y) as i32 - 128)
    };
    let put_dc = |bits: &mut MsbBits, diff: i32| {
        let cat = 32 - diff.unsigned_abs().leading_zeros();
        let (code, len) = dc_codes[cat as usize].unwrap();
        bits.put(code, len);
        if cat > 0 {
            let extra = if diff > 0 { diff } else { diff + (1 << cat) - 1 };
            bits.put(extra as u32, cat);
        }
    };
    let sos = |comps: &[usize], ss: u8, se: u8| {
        let mut d = vec![comps.len() as u8];
        for &c in comps {
            d.extend_from_slice(&[c as u8 + 1, 0x00]);
        }
        d.extend_from_slice(&[ss, se, 0]);
        segment(0xda, &d)
    };

    // The first (or only) scan: every component interleaved in MCUs (one component: in blocks).
    let all: Vec<usize> = (0..n).collect();
    out.extend(sos(&all, 0, if spec.progressive { 0 } else { 63 }));
    let mut bits = MsbBits::default();
    let mut pred = vec![0i32; n];
    let mut block = |bits: &mut MsbBits, c: usize, bx: u32, by: u32| {
        let dc = dc_of(c, bx, by);
        put_dc(bits, dc - pred[c]);
        pred[c] = dc;
        if !spec.progressive {
            bits.put(eob.0, eob.1);
        }
    };
    if n == 1 {
        for by in 0..h.div_ceil(8) {
            for bx in 0..w.div_ceil(8) {
                block(&mut bits, 0, bx, by);
            }
        }
    } else {
        for my in 0..h.div_ceil(8 * vmax) {
            for mx in 0..w.div_ceil(8 * hmax) {
                for (c, &(hs, vs)) in sampling.iter().enumerate() {
                    for v in 0..vs {
                        for u in 0..hs {
                            block(&mut bits, c, mx * hs + u, my * vs + v);
                        }
                    }
                }
            }
        }
    }
    out.extend(bits.finish());

    // Progressive: one AC scan per component, every block an end-of-block.
    if spec.progressive {
        for (c, &(hs, vs)) in sampling.iter().enumerate() {
            out.extend(sos(&[c], 1, 63));
            let (cw, ch) = ((w * hs).div_ceil(hmax), (h * vs).div_ceil(vmax));
            let mut bits = MsbBits::default();
            for _ in 0..cw.div_ceil(8) * ch.div_ceil(8) {
                bits.put(eob.0, eob.1);
            }
            out.extend(bits.finish());
        }
    }
    out.extend_from_slice(&[0xff, 0xd9]);
    out
}

/// A flat JPEG of one colour: grey (1 component), YCbCr from `rgb` (3), or the Adobe-inverted
/// CMYK values `cmyk` as stored in the file (4).
pub fn flat_jpeg(w: u16, h: u16, components: usize, values: [u8; 4], progressive: bool) -> Vec<u8> {
    let mut spec = JpegSpec::new(w, h, components);
    spec.progressive = progressive;
    if components == 4 {
        spec.adobe = Some(0);
    }
    let stored = if components == 3 { ycbcr(values[0], values[1], values[2]) } else { values };
    dc_jpeg(&spec, |c, _, _| stored[c])
}

/// JFIF's RGB to YCbCr.
pub fn ycbcr(r: u8, g: u8, b: u8) -> [u8; 4] {
    let (r, g, b) = (r as f32, g as f32, b as f32);
    let y = 0.299 * r + 0.587 * g + 0.114 * b;
    let cb = 128.0 - 0.168_736 * r - 0.331_264 * g + 0.5 * b;
    let cr = 128.0 + 0.5 * r - 0.418_688 * g - 0.081_312 * b;
    [y.round() as u8, cb.round().clamp(0.0, 255.0) as u8, cr.round().clamp(0.0, 255.0) as u8, 0]
}

// ---------------------------------------------------------------------------------------
// GIF

/// GIF's variable-width LZW of `indices` with `min_code_size`, as data sub-blocks
/// (the minimum code size byte first, the zero-length terminator last).
pub fn gif_lzw(min_code_size: u8, indices: &[u8]) -> Vec<u8> {
    let clear = 1u32 << min_code_size;
    let end = clear + 1;
    let mut w = LsbBits::default();
    let mut size = min_code_size as u32 + 1;
    let mut next = end + 1;
    // child[code * 256 + k]: the code of string(code) + k, or 0 (no string has code 0 but the
    // literal 0, which is never a child).
    let mut child = vec![0u16; 4096 * 256];
    w.put(clear, size);
    if let Some((&first, rest)) = indices.split_first() {
        let mut prefix = first as u32;
        for &k in rest {
            let slot = prefix as usize * 256 + k as usize;
            if child[slot] != 0 {
                prefix = child[slot] as u32;
                continue;
            }
            w.put(prefix, size);
            if next < 4096 {
                child[slot] = next as u16;
                next += 1;
                if next > (1 << size) && size < 12 {
                    size += 1;
                }
            } else {
                w.put(clear, size);
                child.iter_mut().for_each(|c| *c = 0);
                next = end + 1;
                size = min_code_size as u32 + 1;
            }
            prefix = k as u32;
        }
        w.put(prefix, size);
    }
    w.put(end, size);
    gif_sub_blocks(min_code_size, &w.finish())
}

/// One GIF frame: a graphic control extension, an image descriptor and its LZW data.
pub fn gif_frame(left: u16, top: u16, w: u16, h: u16, lzw: &[u8]) -> Vec<u8> {
    let mut out = vec![0x21, 0xf9, 4, 0x00, 10, 0, 0, 0]; // 100 ms, no transparency
    out.push(0x2c);
    for v in [left, top, w, h] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.push(0); // no local colour table, not interlaced
    out.extend_from_slice(lzw);
    out
}

/// A GIF89a with a logical screen of `w` x `h`, a global palette and `frames` (from
/// `gif_frame`), looping forever.
pub fn gif_file(w: u16, h: u16, palette: &[[u8; 3]], frames: impl IntoIterator<Item = Vec<u8>>) -> Vec<u8> {
    let entries = palette.len().next_power_of_two().max(2);
    let size_bits = entries.trailing_zeros() as u8 - 1;
    let mut out = b"GIF89a".to_vec();
    out.extend_from_slice(&w.to_le_bytes());
    out.extend_from_slice(&h.to_le_bytes());
    out.extend_from_slice(&[0x80 | (size_bits << 4) | size_bits, 0, 0]);
    for i in 0..entries {
        out.extend_from_slice(palette.get(i).unwrap_or(&[0, 0, 0]));
    }
    out.extend_from_slice(b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00");
    for f in frames {
        out.extend(f);
    }
    out.push(0x3b);
    out
}

// ---------------------------------------------------------------------------------------
// WebP

/// A RIFF/WEBP file of `chunks` ((fourcc, payload) pairs, padded to even lengths).
pub fn webp_file(chunks: &[(&[u8; 4], Vec<u8>)]) -> Vec<u8> {
    let mut body = b"WEBP".to_vec();
    for (kind, data) in chunks {
        body.extend_from_slice(*kind);
        body.extend_from_slice(&(data.len() as u32).to_le_bytes());
        body.extend_from_slice(data);
        if data.len() % 2 == 1 {
            body.push(0);
        }
    }
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend(body);
    out
}

/// A lossless (VP8L) bitstream of `w` x `h` pixels all of one ARGB colour: five prefix codes
/// of a single symbol each, so the pixels take zero bits. Up to 16384 x 16384 in ~30 bytes.
pub fn vp8l_flat(w: u32, h: u32, argb: [u8; 4]) -> Vec<u8> {
    let mut b = LsbBits::default();
    b.put(0x2f, 8);
    b.put(w - 1, 14);
    b.put(h - 1, 14);
    b.put((argb[0] != 255) as u32, 1); // alpha used
    b.put(0, 3); // version
    b.put(0, 1); // no transform
    b.put(0, 1); // no colour cache
    b.put(0, 1); // no meta prefix codes
                 // green, red, blue, alpha, distance: a simple code with one 8-bit symbol each
    for symbol in [argb[2], argb[1], argb[3], argb[0], 0] {
        b.put(1, 1); // simple code
        b.put(0, 1); // one symbol
        b.put(1, 1); // 8-bit symbol
        b.put(symbol as u32, 8);
    }
    b.finish()
}

/// A VP8X extended-format header chunk payload for a `w` x `h` canvas with `flags`
/// (0x08: EXIF present, 0x10: alpha, 0x02: animation).
pub fn vp8x(w: u32, h: u32, flags: u8) -> Vec<u8> {
    let mut d = vec![flags, 0, 0, 0];
    d.extend_from_slice(&(w - 1).to_le_bytes()[..3]);
    d.extend_from_slice(&(h - 1).to_le_bytes()[..3]);
    d
}

/// The payload of the first chunk `kind` in a RIFF/WEBP file.
pub fn webp_chunk(file: &[u8], kind: &[u8; 4]) -> Option<Vec<u8>> {
    let mut at = 12;
    while at + 8 <= file.len() {
        let len = u32::from_le_bytes(file[at + 4..at + 8].try_into().unwrap()) as usize;
        if &file[at..at + 4] == kind {
            return file.get(at + 8..at + 8 + len).map(<[u8]>::to_vec);
        }
        at += 8 + len + len % 2;
    }
    None
}

/// `jpeg` with `count` tiny DHT segments right after SOI, so before the file's own tables and
/// its first SOS: one-code tables cycling through every class (DC, AC) and id (0 to 3). The
/// file's own tables, defined later, are the ones its scans use; it decodes as before.
/// Issue 13: a reader that builds its look-up tables for every DHT pays for each one.
pub fn jpeg_dht_flood(jpeg: &[u8], count: usize) -> Vec<u8> {
    let mut flood = Vec::with_capacity(count * 22);
    for i in 0..count {
        let mut dht = vec![(((i % 2) << 4) | ((i / 2) % 4)) as u8]; // class, id
        dht.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        dht.push(0); // DC: category 0; AC: end of block
        flood.extend(segment(0xc4, &dht));
    }
    jpeg_insert_after_soi(jpeg, &flood)
}

// ---------------------------------------------------------------------------------------
// Issue 18: files that cost far more to decode than they weigh

/// A lossless (SOF3) JPEG of `w` x `h` with `components`, one DC table, and `scans` scans
/// with no entropy-coded data at all. jpeg-decoder decodes the whole frame again at full
/// size, 2 bytes a sample, for each one (7000 x 7000 x 3 with 10 scans: 185 bytes).
pub fn jpeg_lossless_empty_scans(w: u16, h: u16, components: u8, scans: usize) -> Vec<u8> {
    let mut out = vec![0xff, 0xd8];
    let mut dht = vec![0x00, 1];
    dht.extend_from_slice(&[0; 15]);
    dht.push(0); // one code, category 0
    out.extend(segment(0xc4, &dht));
    let mut sof = vec![8];
    sof.extend_from_slice(&h.to_be_bytes());
    sof.extend_from_slice(&w.to_be_bytes());
    sof.push(components);
    for c in 1..=components {
        sof.extend_from_slice(&[c, 0x11, 0]);
    }
    out.extend(segment(0xc3, &sof));
    let mut sos = vec![components];
    for c in 1..=components {
        sos.extend_from_slice(&[c, 0x00]);
    }
    sos.extend_from_slice(&[1, 0, 0]); // predictor 1, point transform 0
    for _ in 0..scans {
        out.extend(segment(0xda, &sos));
    }
    out.extend_from_slice(&[0xff, 0xd9]);
    out
}

/// A grey JPEG of `w` x `h` (baseline, or progressive) whose frame is followed by `scans`
/// scans with no data: each a pass over the whole picture for a decoder that zero-fills
/// (progressive: one DC scan, then AC scans). 7000 x 7000 with 1,000 scans: 10 KB.
pub fn jpeg_empty_scans(w: u16, h: u16, progressive: bool, scans: usize) -> Vec<u8> {
    let mut spec = JpegSpec::new(8, 8, 1);
    spec.progressive = progressive;
    let small = dc_jpeg(&spec, |_, _, _| 128);
    let sos = small.windows(2).position(|m| m == [0xff, 0xda]).expect("no SOS");
    let mut out = small[..sos].to_vec();
    let sof = out.windows(2).position(|m| m == [0xff, 0xc0] || m == [0xff, 0xc2]).expect("no SOF");
    out[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
    out[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
    for i in 0..scans {
        let (ss, se) = match (progressive, i) {
            (false, _) => (0, 63),
            (true, 0) => (0, 0),
            (true, _) => (1, 63),
        };
        out.extend(segment(0xda, &[1, 1, 0x00, ss, se, 0]));
    }
    out.extend_from_slice(&[0xff, 0xd9]);
    out
}

/// The LZW data (as `gif_lzw` writes it) of `n` zero indices, made without the dictionary:
/// the runs of zeros the coder emits grow by one each code, so 100 M zeros take 70 KB.
pub fn gif_lzw_zeros(min_code_size: u8, n: u64) -> Vec<u8> {
    let clear = 1u32 << min_code_size;
    let end = clear + 1;
    let first_size = min_code_size as u32 + 1;
    let (mut size, mut next) = (first_size, end + 1);
    let mut w = LsbBits::default();
    w.put(clear, size);
    // The dictionary holds the runs of 2..=longest zeros, run k as code end + k - 1.
    let code = |run: u64| if run == 1 { 0 } else { end + run as u32 - 1 };
    let (mut longest, mut run, mut left) = (1u64, 1u64, n.saturating_sub(1));
    while n > 0 && left > 0 {
        let take = (longest - run).min(left);
        run += take;
        left -= take;
        if left == 0 {
            break;
        }
        // The next zero has no child: emit the run, and add it plus one (or start again).
        w.put(code(run), size);
        if next < 4096 {
            next += 1;
            longest += 1;
            if next > (1 << size) && size < 12 {
                size += 1;
            }
        } else {
            w.put(clear, size);
            (size, next, longest) = (first_size, end + 1, 1);
        }
        run = 1;
        left -= 1;
    }
    if n > 0 {
        w.put(code(run), size);
    }
    w.put(end, size);
    gif_sub_blocks(min_code_size, &w.finish())
}

/// A VP8L normal prefix code for symbols 0 to 10 with code lengths 1, 2, ..., 9, 10, 10:
/// 93 bits that make image-webp build a 1024-entry (4 KiB) look-up table. Symbol 0 is "0".
fn vp8l_ten_bit_code(b: &mut LsbBits) {
    b.put(0, 1); // normal code
    b.put(14 - 4, 4); // 14 code length code lengths, in the order 17 18 0 1 2 3 4 5 16 6 7 8 9 10
    for len in [0, 0, 0, 3, 3, 3, 3, 3, 0, 3, 4, 4, 4, 4] {
        b.put(len, 3);
    }
    // Code lengths 1..6 take 3 bits (000 to 101), 7..10 take 4 (1100 to 1111).
    let length_code = |l: u32| if l <= 6 { (l - 1, 3) } else { (0b1100 + l - 7, 4) };
    b.put(1, 1); // max_symbol follows
    b.put(1, 3); // in 2 + 2 * 1 = 4 bits
    b.put(11 - 2, 4); // 11 code lengths
    for l in [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 10] {
        let (code, len) = length_code(l);
        b.code(code, len);
    }
}

/// A lossless WebP bitstream of `w` x `h` whose entropy image names prefix-code group
/// `group` for every pixel, followed by `groups` groups of five 10-bit codes each (all
/// `group + 1` for a complete file) and the pixels (symbol 0, black transparent).
/// image-webp 0.2.4 builds every group it is told exists: 1 x 1, group 0xFFFF and 65,536
/// groups is 3.8 MB of file and 65,536 x 5 look-up tables (1.3 GiB).
pub fn vp8l_huffman_groups(w: u32, h: u32, group: u16, groups: usize) -> Vec<u8> {
    let mut b = LsbBits::default();
    b.put(0x2f, 8);
    b.put(w - 1, 14);
    b.put(h - 1, 14);
    b.put(0, 1); // no alpha
    b.put(0, 3); // version
    b.put(0, 1); // no transform
    b.put(0, 1); // no colour cache
    b.put(1, 1); // meta prefix codes
    b.put(0, 3); // entropy image at 1/4 (2 + 0 bits)
                 // The entropy image: no colour cache, five single-symbol codes (0 bits a pixel) giving
                 // red = group >> 8 and green = group & 0xFF, the group index.
    b.put(0, 1);
    for symbol in [group & 0xff, group >> 8, 0, 0, 0] {
        b.put(1, 1); // simple code
        b.put(0, 1); // one symbol
        b.put(1, 1); // of 8 bits
        b.put(symbol as u32, 8);
    }
    for _ in 0..groups * 5 {
        vp8l_ten_bit_code(&mut b);
    }
    if groups > group as usize {
        for _ in 0..w as u64 * h as u64 * 4 {
            b.put(0, 1); // green, red, blue, alpha: symbol 0
        }
    }
    b.finish()
}

/// An animated WebP (VP8X, ANIM, one ANMF per frame) on a `w` x `h` canvas; each frame is
/// (x, y, width, height, VP8L bitstream) with even offsets.
pub fn webp_animated(w: u32, h: u32, frames: &[(u32, u32, u32, u32, Vec<u8>)]) -> Vec<u8> {
    let mut chunks: Vec<(&[u8; 4], Vec<u8>)> = vec![(b"VP8X", vp8x(w, h, 0x02 | 0x10)), (b"ANIM", vec![0; 6])];
    for (x, y, fw, fh, vp8l) in frames {
        let mut anmf = Vec::new();
        for v in [x / 2, y / 2, fw - 1, fh - 1, 100] {
            anmf.extend_from_slice(&v.to_le_bytes()[..3]);
        }
        anmf.push(0); // blend, no dispose
        anmf.extend_from_slice(b"VP8L");
        anmf.extend_from_slice(&(vp8l.len() as u32).to_le_bytes());
        anmf.extend_from_slice(vp8l);
        if vp8l.len() % 2 == 1 {
            anmf.push(0);
        }
        chunks.push((b"ANMF", anmf));
    }
    webp_file(&chunks)
}

/// A PNG iCCP chunk whose profile (named "icc") inflates to `n` zero bytes.
pub fn png_iccp_zeros(n: u64) -> Vec<u8> {
    let mut data = b"icc\0\0".to_vec();
    data.extend(zlib_zeros(n));
    png_chunk(b"iCCP", &data)
}

/// The findings of issue 18, each as the file that showed it (release build, default
/// options, before the fix): name, bytes.
///
/// | file | was |
/// |---|---|
/// | lossless JPEG 7000x7000x3, 10 empty scans (185 bytes) | 13.6 s, +1.1 GiB |
/// | lossless JPEG 7000x7000x4, 2 empty scans (80 bytes) | 3.6 s, +1.5 GiB |
/// | baseline JPEG 7000x7000, 1,000 empty scans (10 KB) | 8.3 s |
/// | VP8L 1x1 naming prefix-code group 0xFFFF | +1.3 GiB |
/// | PNG 50,000,000 x 1, 16-bit RGBA | +954 MiB |
/// | PNG 1x1 with an iCCP chunk inflating to 380 MiB | +381 MiB |
/// | GIF with a 10000x10000 first frame on a 1x1 screen | +382 MiB |
/// | animated WebP 7071x7071 | +572 MiB |
pub fn issue_18_files() -> Vec<(&'static str, Vec<u8>)> {
    let one_black_pixel = png_chunk(b"IDAT", &zlib_stored(&[0, 0, 0, 0]));
    vec![
        ("lossless JPEG 7000x7000x3, 10 empty scans", jpeg_lossless_empty_scans(7000, 7000, 3, 10)),
        ("lossless JPEG 7000x7000x4, 2 empty scans", jpeg_lossless_empty_scans(7000, 7000, 4, 2)),
        ("baseline JPEG 7000x7000, 1000 empty scans", jpeg_empty_scans(7000, 7000, false, 1000)),
        ("VP8L 1x1 naming prefix-code group 0xFFFF", webp_file(&[(b"VP8L", vp8l_huffman_groups(1, 1, 0xffff, 65536))])),
        ("PNG 50000000x1 16-bit RGBA", png_bomb(50_000_000, 1, 16, PNG_RGBA, false)),
        (
            "PNG 1x1 with a 380 MiB iCCP profile",
            png_file(png_ihdr(1, 1, 8, PNG_RGB, false), &[png_iccp_zeros(380 << 20), one_black_pixel]),
        ),
        (
            "GIF 10000x10000 first frame on a 1x1 screen",
            gif_file(1, 1, &[[0, 0, 0]], [gif_frame(0, 0, 10000, 10000, &gif_lzw_zeros(2, 100_000_000))]),
        ),
        (
            "animated WebP 7071x7071",
            webp_animated(7071, 7071, &[(0, 0, 7071, 7071, vp8l_flat(7071, 7071, [255, 0, 0, 0]))]),
        ),
    ]
}

/// Small versions of `issue_18_files` for the fuzzer's seed corpus (fuzz/corpus/sniff_decode,
/// checked against these by tests/hostile_images.rs). The fuzz target decodes under
/// `max_pixels = 1 << 20` and a 24 MiB bound, so the seeds are sized for that: the lossless
/// JPEGs at 1000x1000 still ask for more than the bound on the code before the fix (the
/// target failed on both), the GIF's first frame is just over `max_pixels` (and within what
/// the image crate's own limit let through), the animation just within the bound. The others
/// reach the same check in a few hundred bytes, cut short where the full file would be large.
pub fn issue_18_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut vp8l_groups = vp8l_huffman_groups(1, 1, 0xffff, 2);
    vp8l_groups.truncate(64);
    vec![
        ("regression-issue18-lossless-3.jpg", jpeg_lossless_empty_scans(1000, 1000, 3, 10)),
        ("regression-issue18-lossless-4.jpg", jpeg_lossless_empty_scans(1000, 1000, 4, 2)),
        ("regression-issue18-baseline-scans.jpg", jpeg_empty_scans(1000, 1000, false, 20)),
        ("regression-issue18-progressive-scans.jpg", jpeg_empty_scans(1000, 1000, true, 101)),
        ("regression-issue18-vp8l-group-ffff.webp", webp_file(&[(b"VP8L", vp8l_groups)])),
        (
            "regression-issue18-png-50000000x1.png",
            png_file(png_ihdr(50_000_000, 1, 16, PNG_RGBA, false), &[png_chunk(b"IDAT", &zlib_stored(&[0; 64]))]),
        ),
        (
            "regression-issue18-png-iccp.png",
            png_file(
                png_ihdr(1, 1, 8, PNG_RGB, false),
                &[png_iccp_zeros(1 << 16), png_chunk(b"IDAT", &zlib_stored(&[0; 4]))],
            ),
        ),
        (
            "regression-issue18-gif-frame-over-screen.gif",
            gif_file(1, 1, &[[0, 0, 0]], [gif_frame(0, 0, 1400, 1400, &gif_lzw_zeros(2, 1000))]),
        ),
        (
            "regression-issue18-webp-animated.webp",
            webp_animated(1000, 1000, &[(0, 0, 1000, 1000, vp8l_flat(1000, 1000, [255, 0, 0, 0]))]),
        ),
    ]
}

/// GIF image data as it is stored: the LZW minimum code size, then the codes in sub-blocks
/// of at most 255 bytes, then an empty block.
fn gif_sub_blocks(min_code_size: u8, data: &[u8]) -> Vec<u8> {
    let mut out = vec![min_code_size];
    for block in data.chunks(255) {
        out.push(block.len() as u8);
        out.extend_from_slice(block);
    }
    out.push(0);
    out
}
