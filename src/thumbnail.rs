//! The two thumbnails made from the shrunk picture the BlurHash comes from
//! ([`crate::blurhash::Shrunk`], upright, at most 64 px a side): a ThumbHash, and a tiny PNG
//! of [`PNG_LONG_SIDE`] pixels on its long side, which is what Dino paints (XEP-0264).
//!
//! The ThumbHash encoder is our own, written from Evan Wallace's reference algorithm in 64-bit
//! floats as the JavaScript original computes, so that its bytes equal the reference's on the
//! same pixels (tests/thumbhash_reference.rs runs it with node); the `thumbhash` crate works in
//! 32-bit floats and asserts on sizes over 100 px. Every input gives a hash or an error.

use std::f64::consts::PI;

use base64::Engine;

use crate::blurhash::Shrunk;
use crate::error::{Error, Result};

/// The largest side the ThumbHash encoder takes, as the reference's limit.
pub const THUMBHASH_MAX_SIDE: usize = 100;

/// The long side of the tiny PNG, in pixels (a smaller picture keeps its own size).
pub const PNG_LONG_SIDE: usize = 8;

/// Both thumbnails of one picture, as base64 (standard alphabet, padded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thumbnails {
    pub thumbhash: String,
    /// A PNG, RGB or (when some pixel is not opaque) RGBA, 8 bits a channel.
    pub png: String,
    pub png_width: u32,
    pub png_height: u32,
}

/// The ThumbHash and the tiny PNG of `shrunk`.
pub fn thumbnails(shrunk: &Shrunk) -> Result<Thumbnails> {
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let hash = thumbhash(shrunk.width, shrunk.height, &shrunk.rgba8())?;
    let (w, h, rgba) = box_filter(shrunk, PNG_LONG_SIDE);
    let png = png(w, h, &rgba)?;
    Ok(Thumbnails { thumbhash: b64(&hash), png: b64(&png), png_width: w as u32, png_height: h as u32 })
}

/// The ThumbHash of `w` x `h` straight-alpha RGBA pixels (each side 1 to 100).
pub fn thumbhash(w: usize, h: usize, rgba: &[u8]) -> Result<Vec<u8>> {
    if !(1..=THUMBHASH_MAX_SIDE).contains(&w) || !(1..=THUMBHASH_MAX_SIDE).contains(&h) {
        return Err(Error::Thumbnail(format!("{w}x{h} is outside 1 to {THUMBHASH_MAX_SIDE} per side")));
    }
    if rgba.len() != w * h * 4 {
        return Err(Error::Thumbnail(format!("{} bytes are not {w}x{h} RGBA pixels", rgba.len())));
    }
    let n = (w * h) as f64;
    // The mean colour, weighted by alpha; transparent pixels are composited onto it.
    let (mut avg, mut avg_a) = ([0f64; 3], 0f64);
    for px in rgba.chunks_exact(4) {
        let alpha = px[3] as f64 / 255.0;
        for (a, &c) in avg.iter_mut().zip(px) {
            *a += alpha / 255.0 * c as f64;
        }
        avg_a += alpha;
    }
    if avg_a > 0.0 {
        avg.iter_mut().for_each(|a| *a /= avg_a);
    }
    let has_alpha = avg_a < n;
    let l_limit = if has_alpha { 5 } else { 7 }; // fewer luminance terms when alpha needs room
    let long = w.max(h) as f64;
    let lx = ((l_limit * w) as f64 / long).round().max(1.0) as usize;
    let ly = ((l_limit * h) as f64 / long).round().max(1.0) as usize;

    // Luminance, yellow-blue, red-green and alpha channels.
    let mut lpqa: [Vec<f64>; 4] = std::array::from_fn(|_| Vec::with_capacity(w * h));
    for px in rgba.chunks_exact(4) {
        let alpha = px[3] as f64 / 255.0;
        let [r, g, b]: [f64; 3] = std::array::from_fn(|i| avg[i] * (1.0 - alpha) + alpha / 255.0 * px[i] as f64);
        lpqa[0].push((r + g + b) / 3.0);
        lpqa[1].push((r + g) / 2.0 - b);
        lpqa[2].push(r - g);
        lpqa[3].push(alpha);
    }
    let l = dct(&lpqa[0], w, h, lx.max(3), ly.max(3));
    let p = dct(&lpqa[1], w, h, 3, 3);
    let q = dct(&lpqa[2], w, h, 3, 3);
    let a = has_alpha.then(|| dct(&lpqa[3], w, h, 5, 5));

    let round = |v: f64| v.round() as u32; // every value rounded here is >= 0
    let landscape = w > h;
    let header24 = round(63.0 * l.dc)
        | (round(31.5 + 31.5 * p.dc) << 6)
        | (round(31.5 + 31.5 * q.dc) << 12)
        | (round(31.0 * l.scale) << 18)
        | (u32::from(has_alpha) << 23);
    let header16 = (if landscape { ly } else { lx }) as u32
        | (round(63.0 * p.scale) << 3)
        | (round(63.0 * q.scale) << 9)
        | (u32::from(landscape) << 15);
    let mut hash =
        vec![header24 as u8, (header24 >> 8) as u8, (header24 >> 16) as u8, header16 as u8, (header16 >> 8) as u8];
    if let Some(a) = &a {
        hash.push((round(15.0 * a.dc) | (round(15.0 * a.scale) << 4)) as u8);
    }
    // Four bits a factor, two factors a byte, low nibble first.
    let factors = [Some(&l), Some(&p), Some(&q), a.as_ref()].into_iter().flatten().flat_map(|c| &c.ac);
    for (i, f) in factors.enumerate() {
        let nibble = (round(15.0 * f) & 15) as u8;
        if i % 2 == 0 {
            hash.push(nibble);
        } else if let Some(last) = hash.last_mut() {
            *last |= nibble << 4;
        }
    }
    Ok(hash)
}

/// One channel's DCT: its constant term, its varying terms scaled into 0..1, and their scale.
struct Channel {
    dc: f64,
    ac: Vec<f64>,
    scale: f64,
}

/// The terms `cx, cy` with `cx * ny < nx * (ny - cy)` (a triangle), in the reference's order
/// and arithmetic.
fn dct(channel: &[f64], w: usize, h: usize, nx: usize, ny: usize) -> Channel {
    let (mut dc, mut ac, mut scale) = (0.0, Vec::with_capacity(nx * ny / 2), 0f64);
    let mut fx = vec![0f64; w];
    for cy in 0..ny {
        let mut cx = 0;
        while cx * ny < nx * (ny - cy) {
            for (x, f) in fx.iter_mut().enumerate() {
                *f = (PI / w as f64 * cx as f64 * (x as f64 + 0.5)).cos();
            }
            let mut f = 0.0;
            for (y, row) in channel.chunks_exact(w).enumerate() {
                let fy = (PI / h as f64 * cy as f64 * (y as f64 + 0.5)).cos();
                for (v, fx) in row.iter().zip(&fx) {
                    f += v * fx * fy;
                }
            }
            f /= (w * h) as f64;
            if cx > 0 || cy > 0 {
                ac.push(f);
                scale = scale.max(f.abs());
            } else {
                dc = f;
            }
            cx += 1;
        }
    }
    if scale > 0.0 {
        ac.iter_mut().for_each(|v| *v = 0.5 + 0.5 / scale * *v);
    }
    Channel { dc, ac, scale }
}

/// `shrunk` averaged down to `long` pixels on its long side (at least 1 on the short one,
/// aspect kept; a smaller picture keeps its size), as straight-alpha sRGB RGBA. Each cell counts
/// by its share of the source pixels and its alpha, in linear light, as the shrink averages.
fn box_filter(shrunk: &Shrunk, long: usize) -> (usize, usize, Vec<u8>) {
    let (sw, sh) = (shrunk.width.max(1), shrunk.height.max(1));
    let scale = |v: usize| ((v * long) as f64 / sw.max(sh) as f64).round().clamp(1.0, v as f64) as usize;
    let (tw, th) = (scale(sw), scale(sh));
    let (col_w, row_w) = shrunk.weights();
    // Per target pixel: alpha-weighted linear R, G, B, weighted alpha, and weight.
    let mut acc = vec![[0f64; 5]; tw * th];
    for (i, p) in shrunk.pixels.iter().enumerate() {
        let (x, y) = (i % sw, i / sw);
        let weight = f64::from(col_w.get(x).copied().unwrap_or(0.0)) * f64::from(row_w.get(y).copied().unwrap_or(0.0));
        let (alpha, colour) = match &shrunk.alpha {
            Some(kept) => kept.get(i).map_or((1.0, *p), |k| (k[3], [k[0], k[1], k[2]])),
            None => (1.0, *p),
        };
        let wa = weight * f64::from(alpha);
        let t = &mut acc[(y * th / sh) * tw + x * tw / sw];
        for (t, c) in t.iter_mut().zip(colour) {
            *t += wa * f64::from(c);
        }
        t[3] += wa;
        t[4] += weight;
    }
    let byte = |v: f64| crate::blurhash::srgb_byte(v as f32);
    let rgba = acc
        .iter()
        .flat_map(|t| {
            let a = if t[4] > 0.0 { t[3] / t[4] } else { 0.0 };
            let c = |i: usize| if t[3] > 0.0 { byte(t[i] / t[3]) } else { 0 };
            [c(0), c(1), c(2), (a.clamp(0.0, 1.0) * 255.0).round() as u8]
        })
        .collect();
    (tw, th, rgba)
}

/// `rgba` (`w` x `h`) as a PNG: RGB when every pixel is opaque, else RGBA.
fn png(w: usize, h: usize, rgba: &[u8]) -> Result<Vec<u8>> {
    let opaque = rgba.chunks_exact(4).all(|p| p[3] == 255);
    let (color, data) = if opaque {
        (png::ColorType::Rgb, rgba.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect())
    } else {
        (png::ColorType::Rgba, rgba.to_vec())
    };
    let fail = |e: png::EncodingError| Error::Thumbnail(format!("PNG encoding: {e}"));
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, w as u32, h as u32);
    encoder.set_color(color);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::High);
    let mut writer = encoder.write_header().map_err(fail)?;
    writer.write_image_data(&data).map_err(fail)?;
    writer.finish().map_err(fail)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blurhash::{self, Layout};

    /// A photo-like picture: smooth gradients with a hard-edged block.
    fn photo(w: u32, h: u32) -> Vec<u8> {
        (0..h)
            .flat_map(|y| {
                (0..w).flat_map(move |x| {
                    let block = x > w / 3 && x < w / 2 && y > h / 4 && y < h / 2;
                    if block {
                        [250, 240, 30]
                    } else {
                        [(x * 255 / w) as u8, (y * 200 / h) as u8 + 30, ((x + y) * 90 / (w + h)) as u8 + 60]
                    }
                })
            })
            .collect()
    }

    fn decode_png(b64: &str) -> (png::OutputInfo, Vec<u8>) {
        let bytes = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
        let mut reader = png::Decoder::new(std::io::Cursor::new(bytes)).read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        buf.truncate(info.buffer_size());
        (info, buf)
    }

    fn made(px: &[u8], w: u32, h: u32, layout: Layout, orientation: u8) -> (String, Thumbnails) {
        let shrunk = blurhash::shrink(px, w, h, layout, orientation).unwrap();
        let (uw, uh) = if orientation >= 5 { (h, w) } else { (w, h) };
        let (cx, cy) = blurhash::components(uw, uh, 4, 3);
        (blurhash::encode(&shrunk, cx, cy).unwrap(), thumbnails(&shrunk).unwrap())
    }

    #[test]
    fn an_opaque_photo_gets_an_rgb_png_of_8_px_and_all_three_fit_in_1_kib() {
        let (hash, t) = made(&photo(640, 427), 640, 427, Layout::Rgb, 1);
        let (info, px) = decode_png(&t.png);
        assert_eq!((info.width, info.height, t.png_width, t.png_height), (8, 5, 8, 5));
        assert_eq!(info.color_type, png::ColorType::Rgb);
        // The block's yellow shows where it is (x 3, y 2 of 8x5), the gradient runs left to right.
        let at = |x: usize, y: usize| &px[(y * 8 + x) * 3..][..3];
        assert!(at(3, 2)[0] > 180 && at(3, 2)[2] < 120, "{:?}", at(3, 2));
        assert!(at(7, 4)[0] > at(0, 4)[0] + 150, "{:?} vs {:?}", at(7, 4), at(0, 4));
        let total = hash.len() + t.thumbhash.len() + t.png.len();
        println!(
            "640x427 photo: blurhash {} + thumbhash {} + png {} = {total} bytes",
            hash.len(),
            t.thumbhash.len(),
            t.png.len()
        );
        assert!(total < 1024, "{total}");
        // A portrait (EXIF 6) is upright in both.
        let (_, t) = made(&photo(640, 427), 640, 427, Layout::Rgb, 6);
        assert_eq!((t.png_width, t.png_height), (5, 8));
        let raw = base64::engine::general_purpose::STANDARD.decode(&t.thumbhash).unwrap();
        assert_eq!(raw[4] >> 7, 0, "a portrait ThumbHash is not flagged landscape");
    }

    #[test]
    fn a_transparent_picture_gets_an_rgba_png_that_keeps_its_alpha() {
        // Left half fully transparent, right half opaque red.
        let (w, h) = (200u32, 100u32);
        let px: Vec<u8> = (0..h)
            .flat_map(|_| (0..w).flat_map(move |x| if x < w / 2 { [0, 0, 0, 0] } else { [255, 0, 0, 255] }))
            .collect();
        let (hash, t) = made(&px, w, h, Layout::Rgba, 1);
        let (info, out) = decode_png(&t.png);
        assert_eq!((info.width, info.height, info.color_type), (8, 4, png::ColorType::Rgba));
        for y in 0..4 {
            assert_eq!(out[(y * 8) * 4 + 3], 0, "left is transparent");
            assert_eq!(&out[(y * 8 + 7) * 4..][..4], &[255, 0, 0, 255], "right is opaque red");
        }
        let raw = base64::engine::general_purpose::STANDARD.decode(&t.thumbhash).unwrap();
        assert_eq!(raw[2] >> 7, 1, "the ThumbHash says it has alpha");
        println!(
            "200x100 transparent: blurhash {} + thumbhash {} + png {}",
            hash.len(),
            t.thumbhash.len(),
            t.png.len()
        );
        assert!(hash.len() + t.thumbhash.len() + t.png.len() < 1024);
        // Alpha 255 throughout: RGB, as for any opaque picture.
        let opaque: Vec<u8> = photo(50, 40).chunks(3).flat_map(|p| [p[0], p[1], p[2], 255]).collect();
        let (_, t) = made(&opaque, 50, 40, Layout::Rgba, 1);
        assert_eq!(decode_png(&t.png).0.color_type, png::ColorType::Rgb);
        // Grey with alpha too.
        let la: Vec<u8> = (0..64 * 64).flat_map(|i| [200, if i % 64 < 32 { 0 } else { 255 }]).collect();
        let (_, t) = made(&la, 64, 64, Layout::LumaAlpha, 1);
        let (info, out) = decode_png(&t.png);
        assert_eq!((info.width, info.height, info.color_type), (8, 8, png::ColorType::Rgba));
        assert_eq!((out[3], &out[7 * 4..8 * 4]), (0, &[200, 200, 200, 255][..]));
    }

    #[test]
    fn extreme_and_tiny_pictures_keep_their_aspect() {
        for (w, h, pw, ph) in
            [(1, 100, 1, 8), (100, 1, 8, 1), (1, 50_000, 1, 8), (3, 2, 3, 2), (1, 1, 1, 1), (9, 64, 1, 8)]
        {
            let px = vec![90u8; (w * h * 3) as usize];
            let (_, t) = made(&px, w, h, Layout::Rgb, 1);
            let (info, out) = decode_png(&t.png);
            assert_eq!((info.width, info.height), (pw, ph), "{w}x{h}");
            assert_eq!((t.png_width, t.png_height), (pw, ph), "{w}x{h}");
            assert!(out.iter().all(|&v| v == 90), "{w}x{h}: a flat grey stays flat: {out:?}");
            let raw = base64::engine::general_purpose::STANDARD.decode(&t.thumbhash).unwrap();
            assert!(raw.len() >= 5, "{w}x{h}");
        }
    }

    #[test]
    fn the_thumbhash_encoder_refuses_what_it_cannot_take() {
        assert!(thumbhash(0, 0, &[]).is_err());
        assert!(thumbhash(0, 5, &[]).is_err());
        assert!(thumbhash(101, 1, &[0; 404]).is_err());
        assert!(thumbhash(1, 101, &[0; 404]).is_err());
        assert!(thumbhash(2, 2, &[0; 15]).is_err());
        assert!(thumbhash(2, 2, &[0; 17]).is_err());
        assert!(thumbhash(100, 100, &[7; 40_000]).is_ok());
        assert!(thumbhash(1, 1, &[0; 4]).is_ok(), "fully transparent");
    }
}
