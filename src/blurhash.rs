//! Where the BlurHash comes from: pixels are averaged down to a small picture in linear light
//! (EXIF orientation and alpha flattening applied on the way), and that picture is encoded.
//! For pictures with alpha the shrink also keeps their transparency (premultiplied sums
//! beside the flattened ones), which the ThumbHash and the tiny PNG of [`crate::thumbnail`]
//! are made from: [`Shrunk::rgba8`].
//!
//! The shrink visits every source pixel once and keeps no full-size copy; the encoder runs on
//! at most `SHRINK_TO` x `SHRINK_TO` cells with separable cosine sums. The basis functions are
//! evaluated at each cell's mean source position, so the hash matches the reference encoder
//! run on the full-size picture (see the tests and the benchmark's quality column).

use once_cell::sync::Lazy;

use crate::background;
use crate::error::{Error, Result};

/// The long side of the picture the encoder sees. 4x3 (even 9x9) components need far less.
pub const SHRINK_TO: u32 = 64;

/// Transparent pixels are flattened onto this grey (sRGB 128): neither dark nor light themes
/// get a black or white smear for a transparent logo.
const BACKGROUND: u8 = 128;

/// How the bytes of a pixel are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Luma,
    LumaAlpha,
    Rgb,
    Rgba,
    /// CMYK ink (0 = none), as jpeg-decoder hands it over (it undoes Adobe's inversion).
    Cmyk,
}

impl Layout {
    /// Bytes a pixel takes.
    pub fn channels(self) -> usize {
        match self {
            Layout::Luma => 1,
            Layout::LumaAlpha => 2,
            Layout::Rgb => 3,
            Layout::Rgba | Layout::Cmyk => 4,
        }
    }

    /// Whether the layout carries alpha (kept by the shrink for the thumbnails).
    pub fn has_alpha(self) -> bool {
        matches!(self, Layout::LumaAlpha | Layout::Rgba)
    }
}

static SRGB_TO_LINEAR: Lazy<[f32; 256]> = Lazy::new(|| {
    let mut t = [0f32; 256];
    for (i, v) in t.iter_mut().enumerate() {
        let c = i as f32 / 255.0;
        *v = if c <= 0.04045 { c / 12.92 } else { ((c + 0.055) / 1.055).powf(2.4) };
    }
    t
});

fn linear_to_srgb(v: f32) -> u32 {
    let v = v.clamp(0.0, 1.0);
    let s = if v <= 0.003_130_8 { v * 12.92 } else { 1.055 * v.powf(1.0 / 2.4) - 0.055 };
    (s * 255.0 + 0.5) as u32
}

/// A linear value (clamped to 0..1) as an 8-bit sRGB value.
pub fn srgb_byte(v: f32) -> u8 {
    linear_to_srgb(v).min(255) as u8
}

/// A small picture in linear RGB with, for each column and row, the position (0..1) in the
/// full-size picture that the cell stands for and its share of the source pixels (cells
/// differ by a pixel when the sizes do not divide, which matters for small pictures).
#[derive(Debug, Clone)]
pub struct Shrunk {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<[f32; 3]>,
    /// For layouts with alpha: each cell's mean alpha (0..1) and its mean colour in linear
    /// light weighted by alpha (straight, not premultiplied; black where alpha is 0).
    pub alpha: Option<Vec<[f32; 4]>>,
    col_pos: Vec<f32>,
    row_pos: Vec<f32>,
    col_weight: Vec<f32>,
    row_weight: Vec<f32>,
}

/// One axis of the shrink: `len` source indices averaged into `cells`, each cell a run of
/// consecutive indices (cells differ by one when the sizes do not divide). Nothing is kept per
/// source index: a picture of 50,000,000 x 1 costs what a picture of 64 x 1 does.
struct Axis {
    len: u64,
    cells: u64,
    /// Whether source index 0 is the far end of the upright axis.
    flipped: bool,
}

impl Axis {
    fn new(len: u32, cells: u32, flipped: bool) -> Axis {
        Axis { len: len as u64, cells: cells as u64, flipped }
    }

    /// The cell that source index `i` falls into.
    fn cell_of(&self, i: u32) -> u32 {
        let o = if self.flipped { self.len - 1 - i as u64 } else { i as u64 }; // index in the upright picture
        (o * self.cells / self.len) as u32
    }

    /// The upright indices of cell `c`, `[start, end)`: those `o` with `o * cells / len == c`.
    fn upright(&self, c: u64) -> (u64, u64) {
        ((c * self.len).div_ceil(self.cells), ((c + 1) * self.len).div_ceil(self.cells))
    }

    /// The source indices of cell `c`, `[start, end)`.
    fn source(&self, c: u64) -> (u64, u64) {
        let (a, b) = self.upright(c);
        if self.flipped {
            (self.len - b, self.len - a)
        } else {
            (a, b)
        }
    }

    fn count(&self, c: usize) -> u32 {
        let (a, b) = self.upright(c as u64);
        (b - a) as u32
    }

    /// Each cell's mean upright position, 0..1.
    fn positions(&self) -> Vec<f32> {
        (0..self.cells)
            .map(|c| {
                let (a, b) = self.upright(c);
                let (n, sum) = (b - a, (b - a) * (a + b - 1) / 2);
                sum as f32 / n.max(1) as f32 / self.len as f32
            })
            .collect()
    }

    /// Each cell's share of the source indices.
    fn weights(&self) -> Vec<f32> {
        (0..self.cells as usize).map(|c| self.count(c) as f32 / self.len as f32).collect()
    }
}

/// Averages rows of pixels, as they are decoded, into a `Shrunk` picture of at most
/// `SHRINK_TO` on the long side of the upright picture. Its memory is the cells alone.
pub struct Shrinker {
    layout: Layout,
    width: u32,
    transposed: bool,
    cells_w: u32,
    cells_h: u32,
    cols: Axis,
    rows: Axis,
    row_stride: u32,
    col_stride: u32,
    sums: Vec<[f32; 3]>,
    /// For layouts with alpha: per cell, the sums of alpha times linear R, G, B, and of alpha.
    alpha_sums: Option<Vec<[f32; 4]>>,
}

impl Shrinker {
    /// A shrinker for `width` x `height` stored pixels of `layout` with EXIF `orientation`.
    pub fn new(width: u32, height: u32, layout: Layout, orientation: u8) -> Result<Shrinker> {
        if width == 0 || height == 0 {
            return Err(Error::BlurHash(format!("{width}x{height} has no pixels")));
        }
        let transposed = matches!(orientation, 5..=8);
        let (up_w, up_h) = if transposed { (height, width) } else { (width, height) };
        let scale = |v: u32| ((v as u64 * SHRINK_TO as u64).div_ceil(up_w.max(up_h) as u64) as u32).clamp(1, v);
        let (cells_w, cells_h) = (scale(up_w), scale(up_h));
        // Whether the source's x and y axes run backwards in the upright picture.
        let (flip_x, flip_y) = match orientation {
            2 => (true, false),
            3 => (true, true),
            4 => (false, true),
            6 => (false, true),
            7 => (true, true),
            8 => (true, false),
            _ => (false, false),
        };
        let (cols, rows) = if transposed {
            // Source x runs along the upright y axis and source y along the upright x axis.
            (Axis::new(width, cells_h, flip_x), Axis::new(height, cells_w, flip_y))
        } else {
            (Axis::new(width, cells_w, flip_x), Axis::new(height, cells_h, flip_y))
        };
        let (col_stride, row_stride) = if transposed { (cells_w, 1) } else { (1, cells_w) };
        Ok(Shrinker {
            layout,
            width,
            transposed,
            cells_w,
            cells_h,
            cols,
            rows,
            row_stride,
            col_stride,
            sums: vec![[0f32; 3]; (cells_w * cells_h) as usize],
            alpha_sums: layout.has_alpha().then(|| vec![[0f32; 4]; (cells_w * cells_h) as usize]),
        })
    }

    /// Adds stored row `y` (`width` pixels of the layout; extra bytes are ignored). Fails
    /// only when the analysis's time budget is spent (a yield point).
    pub fn add_row(&mut self, y: u32, row: &[u8]) -> Result<()> {
        self.add_pixels(y, row, 0, 1)
    }

    /// Adds pixels of stored row `y` at columns `x0`, `x0 + dx`, `x0 + 2 dx`, ... (an
    /// interlaced pass's row; extra bytes are ignored). Fails only when the analysis's time
    /// budget is spent (a yield point).
    pub fn add_pixels(&mut self, y: u32, row: &[u8], x0: u32, dx: u32) -> Result<()> {
        background::yield_point()?;
        let lin = &*SRGB_TO_LINEAR;
        let ch = self.layout.channels();
        let (x0, dx) = (x0 as u64, dx.max(1) as u64);
        let present = (self.width as u64).saturating_sub(x0).div_ceil(dx).min((row.len() / ch) as u64);
        // The pixels k with start <= x0 + k dx < end, for a source range [start, end).
        let first = |x: u64| x.saturating_sub(x0).div_ceil(dx).min(present) as usize;
        let base = (self.rows.cell_of(y) * self.row_stride) as usize;
        // One loop per layout, its pixel size known at compile time: the sums stay a tight loop.
        let l = |c: u8| lin[c as usize];
        match self.layout {
            Layout::Luma => self.add_opaque::<1>(base, row, first, |&[v]| [l(v); 3]),
            Layout::Rgb => self.add_opaque::<3>(base, row, first, |&[r, g, b]| [l(r), l(g), l(b)]),
            Layout::Cmyk => self.add_opaque::<4>(base, row, first, |px| cmyk_linear(px, lin)),
            Layout::LumaAlpha => self.add_translucent::<2>(base, row, first, |&[v, a]| (a, [v; 3])),
            Layout::Rgba => self.add_translucent::<4>(base, row, first, |&[r, g, b, a]| (a, [r, g, b])),
        }
        Ok(())
    }

    /// Sums `linear(pixel)` of the pixels of `row` into their cells, for opaque layouts of `CH`
    /// bytes a pixel. `first(x)` is the index of the first pixel of `row` at or after source
    /// column `x`; `base` is the row of cells.
    #[inline(always)]
    fn add_opaque<const CH: usize>(
        &mut self,
        base: usize,
        row: &[u8],
        first: impl Fn(u64) -> usize,
        linear: impl Fn(&[u8; CH]) -> [f32; 3],
    ) {
        let pixels = row.as_chunks::<CH>().0;
        for c in 0..self.cols.cells {
            let (start, end) = self.cols.source(c);
            let (k0, k1) = (first(start), first(end));
            if k0 >= k1 {
                continue;
            }
            let mut acc = [0f32; 3];
            for px in &pixels[k0..k1] {
                let [r, g, b] = linear(px);
                acc[0] += r;
                acc[1] += g;
                acc[2] += b;
            }
            let s = &mut self.sums[base + c as usize * self.col_stride as usize];
            s[0] += acc[0];
            s[1] += acc[1];
            s[2] += acc[2];
        }
    }

    /// `add_opaque` for layouts with alpha, whose pixels `split` into (alpha, sRGB colour):
    /// the colour flattened on grey for the BlurHash, and the alpha-weighted linear colour and
    /// the alpha for the thumbnails.
    #[inline(always)]
    fn add_translucent<const CH: usize>(
        &mut self,
        base: usize,
        row: &[u8],
        first: impl Fn(u64) -> usize,
        split: impl Fn(&[u8; CH]) -> (u8, [u8; 3]),
    ) {
        let lin = &*SRGB_TO_LINEAR;
        let pixels = row.as_chunks::<CH>().0;
        let Some(alpha_sums) = self.alpha_sums.as_mut() else { return };
        for c in 0..self.cols.cells {
            let (start, end) = self.cols.source(c);
            let (k0, k1) = (first(start), first(end));
            if k0 >= k1 {
                continue;
            }
            let (mut acc, mut kept) = ([0f32; 3], [0f32; 4]);
            for px in &pixels[k0..k1] {
                let (a, rgb) = split(px);
                let (alpha, flat) = (a as f32 / 255.0, |c: u8| lin[over(c, a) as usize]);
                acc[0] += flat(rgb[0]);
                acc[1] += flat(rgb[1]);
                acc[2] += flat(rgb[2]);
                kept[0] += alpha * lin[rgb[0] as usize];
                kept[1] += alpha * lin[rgb[1] as usize];
                kept[2] += alpha * lin[rgb[2] as usize];
                kept[3] += alpha;
            }
            let at = base + c as usize * self.col_stride as usize;
            let s = &mut self.sums[at];
            s[0] += acc[0];
            s[1] += acc[1];
            s[2] += acc[2];
            let k = &mut alpha_sums[at];
            k.iter_mut().zip(kept).for_each(|(k, v)| *k += v);
        }
    }

    /// The averaged picture.
    pub fn finish(mut self) -> Shrunk {
        let (x_axis, y_axis) = if self.transposed { (&self.rows, &self.cols) } else { (&self.cols, &self.rows) };
        let cells_w = self.cells_w as usize;
        let count = |i: usize| (x_axis.count(i % cells_w) * y_axis.count(i / cells_w)) as f32;
        for (i, s) in self.sums.iter_mut().enumerate() {
            let n = count(i);
            for c in s.iter_mut() {
                *c /= n;
            }
        }
        if let Some(kept) = self.alpha_sums.as_mut() {
            for (i, k) in kept.iter_mut().enumerate() {
                let (n, a) = (count(i), k[3]);
                for c in &mut k[..3] {
                    *c = if a > 0.0 { *c / a } else { 0.0 };
                }
                k[3] = a / n;
            }
        }
        Shrunk {
            width: cells_w,
            height: self.cells_h as usize,
            col_pos: x_axis.positions(),
            row_pos: y_axis.positions(),
            col_weight: x_axis.weights(),
            row_weight: y_axis.weights(),
            pixels: self.sums,
            alpha: self.alpha_sums,
        }
    }
}

impl Shrunk {
    /// The picture as 8-bit sRGB RGBA (straight alpha; 255 for layouts without alpha).
    pub fn rgba8(&self) -> Vec<u8> {
        let byte = srgb_byte;
        match &self.alpha {
            Some(kept) => kept
                .iter()
                .flat_map(|k| [byte(k[0]), byte(k[1]), byte(k[2]), (k[3].clamp(0.0, 1.0) * 255.0 + 0.5) as u8])
                .collect(),
            None => self.pixels.iter().flat_map(|p| [byte(p[0]), byte(p[1]), byte(p[2]), 255]).collect(),
        }
    }

    /// Each column's and each row's share of the source pixels (x, then y).
    pub fn weights(&self) -> (&[f32], &[f32]) {
        (&self.col_weight, &self.row_weight)
    }
}

/// Averages `pixels` (`width` x `height`, 8 bits a channel, `layout`) down to at most
/// `SHRINK_TO` on the long side of the upright picture, applying EXIF `orientation` (1 to 8).
pub fn shrink(pixels: &[u8], width: u32, height: u32, layout: Layout, orientation: u8) -> Result<Shrunk> {
    let stride = width as usize * layout.channels();
    if width == 0 || height == 0 || pixels.len() < stride * height as usize {
        return Err(Error::BlurHash(format!(
            "{} bytes cannot hold {width}x{height} pixels of {} bytes",
            pixels.len(),
            layout.channels()
        )));
    }
    let mut shrinker = Shrinker::new(width, height, layout, orientation)?;
    for (y, row) in pixels.chunks_exact(stride).take(height as usize).enumerate() {
        shrinker.add_row(y as u32, row)?;
    }
    Ok(shrinker.finish())
}

/// sRGB value `c` of alpha `a` composited onto the grey background. Blended in sRGB, as
/// browsers and chat clients composite, so the hash looks like what a user sees on grey.
#[inline]
fn over(c: u8, a: u8) -> u8 {
    let (c, a) = (c as u32, a as u32);
    ((c * a + BACKGROUND as u32 * (255 - a) + 127) / 255) as u8
}

/// CMYK ink (0 = none) printed on white paper, in linear light.
#[inline]
fn cmyk_linear(&[c, m, y, k]: &[u8; 4], lin: &[f32; 256]) -> [f32; 3] {
    let paper = 255 - k as u32;
    let on_paper = |ink: u8| lin[(((255 - ink as u32) * paper + 127) / 255) as usize];
    [on_paper(c), on_paper(m), on_paper(y)]
}

/// BlurHash components along x and y for an upright picture: `long` on its long side.
pub fn components(width: u32, height: u32, long: u32, short: u32) -> (u32, u32) {
    if width >= height {
        (long, short)
    } else {
        (short, long)
    }
}

/// Encodes `img` with `cx` x `cy` components (each 1 to 9).
pub fn encode(img: &Shrunk, cx: u32, cy: u32) -> Result<String> {
    if !(1..=9).contains(&cx) || !(1..=9).contains(&cy) {
        return Err(Error::BlurHash(format!("components must be 1 to 9, not {cx}x{cy}")));
    }
    let (cx, cy) = (cx as usize, cy as usize);
    // Each cell's basis value times its share of the source pixels: the sums below are then
    // the reference encoder's means over all source pixels.
    let basis = |pos: &[f32], weight: &[f32], n: usize| -> Vec<Vec<f32>> {
        (0..n)
            .map(|i| pos.iter().zip(weight).map(|(p, w)| (std::f32::consts::PI * i as f32 * p).cos() * w).collect())
            .collect()
    };
    let (bx, by) = (basis(&img.col_pos, &img.col_weight, cx), basis(&img.row_pos, &img.row_weight, cy));
    // Separable sums: first along each row for every x component, then down the rows.
    let mut factors = vec![[0f32; 3]; cx * cy];
    let mut row_sums = vec![[0f32; 3]; cx];
    for (y, row) in img.pixels.chunks_exact(img.width).enumerate() {
        for (i, acc) in row_sums.iter_mut().enumerate() {
            *acc = [0.0; 3];
            for (p, w) in row.iter().zip(&bx[i]) {
                acc[0] += p[0] * w;
                acc[1] += p[1] * w;
                acc[2] += p[2] * w;
            }
        }
        for (j, bj) in by.iter().enumerate() {
            for (i, acc) in row_sums.iter().enumerate() {
                let f = &mut factors[j * cx + i];
                f[0] += acc[0] * bj[y];
                f[1] += acc[1] * bj[y];
                f[2] += acc[2] * bj[y];
            }
        }
    }
    for f in &mut factors[1..] {
        f.iter_mut().for_each(|c| *c *= 2.0);
    }

    let mut out = String::with_capacity(4 + 2 * cx * cy);
    base83(((cx - 1) + (cy - 1) * 9) as u32, 1, &mut out);
    let max_ac = factors[1..].iter().flatten().fold(0f32, |m, v| m.max(v.abs()));
    let max_value = if factors.len() > 1 {
        let q = ((max_ac * 166.0 - 0.5).floor() as i32).clamp(0, 82) as u32;
        base83(q, 1, &mut out);
        (q as f32 + 1.0) / 166.0
    } else {
        base83(0, 1, &mut out);
        1.0
    };
    let dc = factors[0];
    base83((linear_to_srgb(dc[0]) << 16) | (linear_to_srgb(dc[1]) << 8) | linear_to_srgb(dc[2]), 4, &mut out);
    for f in &factors[1..] {
        let q = |v: f32| {
            let v = v / max_value;
            ((v.signum() * v.abs().sqrt() * 9.0 + 9.5).floor() as i32).clamp(0, 18) as u32
        };
        base83(q(f[0]) * 19 * 19 + q(f[1]) * 19 + q(f[2]), 2, &mut out);
    }
    Ok(out)
}

const BASE83: &[u8; 83] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~";

fn base83(value: u32, digits: u32, out: &mut String) {
    for i in (0..digits).rev() {
        out.push(BASE83[(value / 83u32.pow(i) % 83) as usize] as char);
    }
}

/// The largest picture `decode` paints, per side: a preview, not a poster.
pub const MAX_DECODE_SIDE: u32 = 1024;

/// Paints `hash` as `width` x `height` RGBA pixels; a malformed hash is an error, never a panic.
pub fn decode(hash: &str, width: u32, height: u32, punch: f32) -> Result<Vec<u8>> {
    let valid_len = |h: &str| {
        let size = BASE83.iter().position(|&c| Some(&c) == h.as_bytes().first())?;
        (h.len() == 4 + 2 * (size % 9 + 1) * (size / 9 + 1)).then_some(())
    };
    if !hash.bytes().all(|b| BASE83.contains(&b)) {
        return Err(Error::BlurHash(format!("{hash:?} has characters outside the base-83 alphabet")));
    }
    if hash.len() < 6 || valid_len(hash).is_none() {
        return Err(Error::BlurHash(format!("{hash:?} has the wrong length for its size flag")));
    }
    if !(1..=MAX_DECODE_SIDE).contains(&width) || !(1..=MAX_DECODE_SIDE).contains(&height) {
        return Err(Error::BlurHash(format!("{width}x{height} is outside 1 to {MAX_DECODE_SIDE} per side")));
    }
    if !punch.is_finite() || punch <= 0.0 {
        return Err(Error::BlurHash(format!("punch must be a positive number, not {punch}")));
    }
    std::panic::catch_unwind(|| blurhash::decode(hash, width, height, punch))
        .map_err(Error::from_panic)?
        .map_err(|e| Error::BlurHash(format!("{hash:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A picture with structure along both axes, so that any misplaced cell changes the hash.
    fn picture(w: u32, h: u32) -> Vec<u8> {
        (0..h)
            .flat_map(|y| (0..w).flat_map(move |x| [(x * 255 / w) as u8, (y * 255 / h) as u8, ((x + y) % 97) as u8]))
            .collect()
    }

    fn ours(px: &[u8], w: u32, h: u32, cx: u32, cy: u32) -> String {
        encode(&shrink(px, w, h, Layout::Rgb, 1).unwrap(), cx, cy).unwrap()
    }

    fn reference(px: &[u8], w: u32, h: u32, cx: u32, cy: u32) -> String {
        let rgba: Vec<u8> = px.chunks(3).flat_map(|p| [p[0], p[1], p[2], 255]).collect();
        blurhash::encode(cx, cy, w, h, &rgba).unwrap()
    }

    fn dc(hash: &str) -> [i32; 3] {
        let v = hash[2..6].bytes().fold(0i32, |v, c| v * 83 + BASE83.iter().position(|&b| b == c).unwrap() as i32);
        [v >> 16, (v >> 8) & 255, v & 255]
    }

    /// Equal to the blurhash crate but for the DC colour, which may differ by one step per
    /// channel: that crate rounds `x * 255 + 0.5` once more (a +0.5 bias), while the C and
    /// TypeScript reference encoders, and so blurhash-python, truncate it as we do.
    #[test]
    fn matches_the_reference_encoder_on_small_pictures() {
        for (w, h, cx, cy) in [(32, 24, 4, 3), (17, 40, 3, 4), (64, 64, 9, 9), (5, 3, 1, 1), (1, 1, 2, 2)] {
            let px = picture(w, h);
            let (a, b) = (ours(&px, w, h, cx, cy), reference(&px, w, h, cx, cy));
            assert_eq!((&a[..2], &a[6..]), (&b[..2], &b[6..]), "{w}x{h} {cx}x{cy}");
            let (da, db) = (dc(&a), dc(&b));
            assert!((0..3).all(|i| (0..=1).contains(&(db[i] - da[i]))), "{w}x{h}: DC {da:?} vs {db:?}");
        }
    }

    /// Mean absolute difference per channel (0..255) of two hashes painted at 32x32.
    fn distance(a: &str, b: &str) -> f64 {
        let (pa, pb) = (decode(a, 32, 32, 1.0).unwrap(), decode(b, 32, 32, 1.0).unwrap());
        let diff: u64 = pa.iter().zip(&pb).map(|(x, y)| (*x as i64 - *y as i64).unsigned_abs()).sum();
        diff as f64 / pa.len() as f64
    }

    #[test]
    fn shrunk_hash_stays_close_to_the_full_size_reference() {
        let (w, h) = (1024, 683);
        let px = picture(w, h);
        let d = distance(&ours(&px, w, h, 4, 3), &reference(&px, w, h, 4, 3));
        assert!(d < 2.0, "mean difference {d}");
    }

    #[test]
    fn unequal_cells_keep_the_mean_over_pixels() {
        // 120 columns into 64 cells gives cells of one and two pixels; a white block over a
        // sixth of a red picture must still count for a sixth of the DC colour.
        let (w, h) = (120u32, 80u32);
        let px: Vec<u8> = (0..h)
            .flat_map(|y| {
                (0..w).flat_map(
                    move |x| if (10..61).contains(&x) && (10..41).contains(&y) { [255; 3] } else { [255, 0, 0] },
                )
            })
            .collect();
        let (a, b) = (ours(&px, w, h, 4, 3), reference(&px, w, h, 4, 3));
        let (da, db) = (dc(&a), dc(&b));
        assert!((0..3).all(|i| (0..=1).contains(&(db[i] - da[i]))), "DC {da:?} vs {db:?}");
        assert!(distance(&a, &b) < 2.0, "{a} vs {b}");
    }

    #[test]
    fn orientation_moves_pixels_like_the_exif_transform() {
        // A 3x2 picture with one red pixel at the top left; after each orientation the red
        // pixel must sit where the EXIF transform puts it.
        let (w, h) = (3u32, 2u32);
        let mut px = vec![0u8; (w * h * 3) as usize];
        px[0] = 255;
        let cases =
            [(1, (0, 0)), (2, (2, 0)), (3, (2, 1)), (4, (0, 1)), (5, (0, 0)), (6, (1, 0)), (7, (1, 2)), (8, (0, 2))];
        for (o, (ex, ey)) in cases {
            let s = shrink(&px, w, h, Layout::Rgb, o).unwrap();
            let expect_dims = if o >= 5 { (2, 3) } else { (3, 2) };
            assert_eq!((s.width, s.height), expect_dims, "orientation {o}");
            let red: Vec<usize> = (0..s.pixels.len()).filter(|&i| s.pixels[i][0] > 0.5).collect();
            assert_eq!(red, vec![ey * s.width + ex], "orientation {o}");
        }
    }

    #[test]
    fn pixels_added_in_interlaced_passes_make_the_same_picture() {
        // Adam7's passes (x0, dx, y0, dy), each pixel once, in every orientation.
        let passes = [(0, 8, 0, 8), (4, 8, 0, 8), (0, 4, 4, 8), (2, 4, 0, 4), (0, 2, 2, 4), (1, 2, 0, 2), (0, 1, 1, 2)];
        let (w, h) = (77u32, 45u32);
        let px = picture(w, h);
        for o in 1..=8 {
            let whole = shrink(&px, w, h, Layout::Rgb, o).unwrap();
            let mut s = Shrinker::new(w, h, Layout::Rgb, o).unwrap();
            for (x0, dx, y0, dy) in passes {
                for y in (y0..h).step_by(dy) {
                    let row: Vec<u8> =
                        (x0..w).step_by(dx).flat_map(|x| px[((y * w + x) * 3) as usize..][..3].to_vec()).collect();
                    s.add_pixels(y, &row, x0, dx as u32).unwrap();
                }
            }
            let passed = s.finish();
            for (a, b) in whole.pixels.iter().zip(&passed.pixels) {
                assert!((0..3).all(|i| (a[i] - b[i]).abs() < 1e-5), "orientation {o}: {a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn a_long_thin_picture_costs_its_cells_only() {
        // 50,000,000 x 1 (a PNG may say so): the shrinker keeps 64 cells, nothing per column.
        let s = Shrinker::new(50_000_000, 1, Layout::Rgba, 6).unwrap();
        assert_eq!((s.sums.len(), s.cells_w, s.cells_h), (64, 1, 64));
        let mut s = Shrinker::new(50_000_000, 1, Layout::Luma, 1).unwrap();
        s.add_pixels(0, &[255; 1000], 49_999_000, 1).unwrap();
        let shrunk = s.finish();
        assert_eq!(shrunk.width, 64);
        assert!(shrunk.pixels[63][0] > 0.0 && shrunk.pixels[0][0] == 0.0);
    }

    #[test]
    fn transparent_pixels_do_not_turn_black() {
        // Fully transparent black, large enough that the reference algorithm's own bias on
        // odd components (the sum of cos(pi*i*x/w) is 1, not 0) stays below one step.
        let px = vec![0u8; 300 * 200 * 4];
        let s = shrink(&px, 300, 200, Layout::Rgba, 1).unwrap();
        let hash = encode(&s, 4, 3).unwrap();
        let painted = decode(&hash, 4, 4, 1.0).unwrap();
        assert!(painted.chunks(4).all(|p| (p[0] as i32 - 128).abs() <= 2), "{painted:?}");
    }

    #[test]
    fn malformed_hashes_are_errors() {
        for bad in [
            "",
            "L",
            "LEHV6n",
            "LEHV6nWB2yk8pyo0adR*.7kCMdn",
            "LEHV6nWB2yk8pyo0adR*.7kCMdnjj",
            "LEHV6nWB2yk8pyo0adR*.7kCMd\u{e9}",
            "\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}",
        ] {
            assert!(decode(bad, 8, 8, 1.0).is_err(), "{bad:?}");
        }
        assert!(decode("LEHV6nWB2yk8pyo0adR*.7kCMdnj", 8, 8, 1.0).is_ok());
        assert!(decode("LEHV6nWB2yk8pyo0adR*.7kCMdnj", 0, 8, 1.0).is_err());
        assert!(decode("LEHV6nWB2yk8pyo0adR*.7kCMdnj", 100_000, 100_000, 1.0).is_err());
        assert!(decode("LEHV6nWB2yk8pyo0adR*.7kCMdnj", 8, 8, f32::NAN).is_err());
    }

    #[test]
    fn bad_sizes_are_errors() {
        assert!(shrink(&[0; 11], 2, 2, Layout::Rgb, 1).is_err());
        assert!(shrink(&[], 0, 0, Layout::Rgb, 1).is_err());
        let s = shrink(&[0; 12], 2, 2, Layout::Rgb, 1).unwrap();
        assert!(encode(&s, 0, 3).is_err());
        assert!(encode(&s, 4, 10).is_err());
    }
}
