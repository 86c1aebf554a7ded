//! Pixels from image bytes, under limits, straight into the BlurHash shrink, and from that
//! one shrunk picture the BlurHash and, when wanted, the thumbnails ([`crate::thumbnail`]).
//!
//! JPEG is decoded at the smallest DCT scale (1/8, 1/4, 1/2) that still gives the shrink enough
//! pixels: at 1/8 (a long side of 2048 px and more: photos of 3 MP and more) from the DC
//! coefficients alone by [`jpeg_dc`], as the file arrives ([`jpeg_stream`]) or from memory, else (or if that reader declines the file) by jpeg-decoder's scaled IDCT. PNG
//! goes through the png crate a row at a time ([`png_rows`]), a still opaque lossy WebP a row of
//! macroblocks at a time ([`vp8`]), GIF (first frame) and other WebP through the image crate.
//!
//! Before any decoder allocates, what the file's headers will make it allocate (frame and
//! canvas sizes, coefficients, sub-images and prefix codes, copied metadata) is worked out
//! and checked against [`decoder_memory`] (`over_memory`); what no chat client sends
//! ([`jpeg_markers`]) is measured, not decoded. Either way the header is reported, with a note.

use std::io::{BufRead, Cursor, Read, Seek};

use image::{metadata::Orientation, DynamicImage, ImageDecoder, ImageFormat};

use crate::background::{self, Yielding};
use crate::blurhash::{self, Layout, Shrunk, SHRINK_TO};
use crate::error::{Error, Result};
use crate::jpeg_dc::{self, AtFrame, Streamed};
use crate::jpeg_markers;
use crate::options::Options;
use crate::png_rows::{self, Failure, Forward};
use crate::sniff::Format;
use crate::thumbnail::{self, Thumbnails};
use crate::vp8;
use crate::vp8l::Verdict;
use crate::webp;

/// What an image's header says: its stored size and its EXIF orientation (1 to 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub width: u32,
    pub height: u32,
    pub orientation: u8,
}

impl Header {
    /// Width and height as displayed, after the EXIF orientation.
    pub fn upright(&self) -> (u32, u32) {
        if self.orientation >= 5 {
            (self.height, self.width)
        } else {
            (self.width, self.height)
        }
    }

    fn pixels(&self) -> u64 {
        self.width as u64 * self.height as u64
    }
}

/// What decoding found: the header, and the hash unless the image was over a limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub header: Header,
    pub blurhash: Option<String>,
    /// ThumbHash and tiny PNG, from the same shrunk picture, when `Formats::files` wants them.
    pub thumbnails: Option<Thumbnails>,
    /// Why there is no hash, for the admin (never sent to clients).
    pub note: Option<String>,
}

impl Decoded {
    /// The header alone: no pixels were decoded, for the reason in `note`.
    fn header_only(header: Header, note: Option<String>) -> Decoded {
        Decoded { header, blurhash: None, thumbnails: None, note }
    }
}

/// Reads the header of `bytes` (of the decoded format `format`) and, when `hash` is set and the
/// image is within `opts.max_pixels`, decodes it and computes its BlurHash.
///
/// Under a time budget (`background::Budget`) a decode past it fails with the budget's error
/// (`OverBudget`, `Cancelled`), not as undecodable, whichever way the decoder passed it up.
pub fn decode(bytes: &[u8], format: Format, hash: bool, opts: &Options) -> Result<Decoded> {
    let fail = |e| decode_error(format, e);
    match format {
        Format::Jpeg => jpeg(bytes, hash, opts).map_err(fail),
        Format::Png => png(bytes, hash, opts).map_err(fail),
        Format::Gif => with_image(bytes, ImageFormat::Gif, hash, opts).map_err(fail),
        Format::WebP => match webp::opaque_vp8(bytes) {
            Some(frame) => webp_lossy(bytes, frame, hash, opts).map_err(fail),
            None => with_image(bytes, ImageFormat::WebP, hash, opts).map_err(fail),
        },
        _ => Err(fail("not a format we decode".into())),
    }
}

type DecodeResult = std::result::Result<Decoded, Box<dyn std::error::Error>>;

/// A decoder's error, or the budget's when that is what stopped it (whichever way the
/// decoder passed it up).
fn decode_error(format: Format, e: Box<dyn std::error::Error>) -> Error {
    match background::check() {
        Err(stopped) => stopped,
        Ok(()) => Error::Decode { format: format.mime(), why: e.to_string() },
    }
}

/// Stops before decoding pixels when they are not wanted or over the limit.
fn over_limit(header: Header, hash: bool, opts: &Options) -> Option<Decoded> {
    let note = if !hash {
        None
    } else if header.pixels() > opts.max_pixels {
        Some(format!("{}x{} is more than max_pixels ({}): no blurhash", header.width, header.height, opts.max_pixels))
    } else {
        return None;
    };
    Some(Decoded::header_only(header, note))
}

/// Stops before decoding when the decoder would allocate more than the limit: `need` bytes,
/// worked out from the file's headers by its format's rule, for `what`.
fn over_memory(header: Header, need: u64, what: &str, opts: &Options) -> Option<Decoded> {
    let room = decoder_memory(opts).saturating_sub(FIXED_OVERHEAD);
    (need > room).then(|| {
        let (need, room) = (need.div_ceil(1 << 20), room >> 20);
        let note = format!(
            "{what} of {}x{} need {need} MiB, over the decoder limit ({room} MiB): no blurhash",
            header.width, header.height
        );
        Decoded::header_only(header, Some(note))
    })
}

fn finish(header: Header, pixels: &[u8], width: u32, height: u32, layout: Layout, opts: &Options) -> DecodeResult {
    hash(header, blurhash::shrink(pixels, width, height, layout, header.orientation)?, opts)
}

fn hash(header: Header, shrunk: Shrunk, opts: &Options) -> DecodeResult {
    let (w, h) = header.upright();
    let (cx, cy) = blurhash::components(w, h, opts.components_long, opts.components_short);
    let blurhash = Some(blurhash::encode(&shrunk, cx, cy)?);
    // The thumbnails are extras: should they fail, the BlurHash still goes out, with a note.
    let (thumbnails, note) = match opts.formats.files().then(|| thumbnail::thumbnails(&shrunk)) {
        Some(Ok(t)) => (Some(t), None),
        Some(Err(e)) => (None, Some(format!("{e}: no thumbnails"))),
        None => (None, None),
    };
    Ok(Decoded { header, blurhash, thumbnails, note })
}

/// A scaled JPEG decode averages 8x8 blocks in gamma space, not in linear light as the shrink
/// does, and its small IDCTs ring at hard edges; decoding to four times the shrink's size
/// keeps both small (`bench/run`'s 640x480 photo: 4.3 levels from the full-size reference at
/// twice the shrink's size, 2.6 at four times, for 0.1 ms more). Photos of 2048 pixels and
/// more still take the DC-only path.
const JPEG_LONG_SIDE: u32 = 4 * SHRINK_TO;

fn jpeg(bytes: &[u8], want_hash: bool, opts: &Options) -> DecodeResult {
    let markers = jpeg_markers::read(bytes)?;
    if let (Some(why), Some(f)) = (markers.refusal(), markers.frame) {
        let header =
            Header { width: f.width as u32, height: f.height as u32, orientation: markers.orientation.unwrap_or(1) };
        // A picture over max_pixels says so first: that alone would stop it.
        let over = over_limit(header, want_hash, opts).filter(|d| d.note.is_some());
        return Ok(over.unwrap_or(Decoded::header_only(header, Some(why))));
    }
    let mut decoder = jpeg_decoder::Decoder::new(Yielding::new(bytes));
    decoder.set_max_decoding_buffer_size(usize::try_from(pixel_memory(opts)).unwrap_or(usize::MAX));
    decoder.read_info()?;
    let info = decoder.info().ok_or("no frame header")?;
    let orientation = markers.orientation.unwrap_or(1);
    let header = Header { width: info.width as u32, height: info.height as u32, orientation };
    if let Some(done) = over_limit(header, want_hash, opts) {
        return Ok(done);
    }
    // jpeg-decoder copies every ICC profile chunk it meets, as many as the file holds.
    if let Some(done) = over_memory(header, markers.icc_bytes, "JPEG ICC profile chunks", opts) {
        return Ok(done);
    }
    // At 1/8 scale only the DC coefficients count: read them alone (most photos), else fall
    // through to jpeg-decoder for whatever that path does not handle.
    if at_eighth(header) {
        if let Some(dc) = jpeg_dc::decode(bytes, opts.max_pixels) {
            if (dc.width, dc.height) == (header.width.div_ceil(8), header.height.div_ceil(8)) {
                return finish(header, &dc.pixels, dc.width, dc.height, dc.layout, opts);
            }
        }
        background::check()?; // declined because the budget is spent: not worth a second try
    }
    // jpeg-decoder keeps every coefficient of a progressive JPEG (2 bytes a sample, whatever
    // the scale), and its own buffer limit counts only the output: check that here.
    if info.coding_process == jpeg_decoder::CodingProcess::DctProgressive {
        let blocks = (header.width as u64).div_ceil(8) * (header.height as u64).div_ceil(8);
        let need = blocks * 64 * 2 * info.pixel_format.pixel_bytes() as u64 + markers.icc_bytes;
        if let Some(done) = over_memory(header, need, "progressive JPEG coefficients", opts) {
            return Ok(done);
        }
    }
    let (need_w, need_h) = jpeg_scale(header);
    let (w, h) = decoder.scale(need_w, need_h)?;
    let pixels = decoder.decode()?;
    let layout = match info.pixel_format {
        jpeg_decoder::PixelFormat::L8 => Layout::Luma,
        jpeg_decoder::PixelFormat::RGB24 => Layout::Rgb,
        jpeg_decoder::PixelFormat::CMYK32 => Layout::Cmyk,
        jpeg_decoder::PixelFormat::L16 => return Err("16-bit lossless JPEG is not supported".into()),
    };
    finish(header, &pixels, w as u32, h as u32, layout, opts)
}

/// The size to decode a JPEG at: the smallest DCT scale's that leaves at least
/// `JPEG_LONG_SIDE` pixels on the long side.
fn jpeg_scale(header: Header) -> (u16, u16) {
    let long = header.width.max(header.height).max(1);
    let need = |side: u32| (side as u64 * JPEG_LONG_SIDE as u64).div_ceil(long as u64).max(1) as u16;
    (need(header.width), need(header.height))
}

/// Whether that scale is 1/8, where a block's DC coefficient is its pixel.
fn at_eighth(header: Header) -> bool {
    let (w, h) = jpeg_scale(header);
    u32::from(w) <= header.width.div_ceil(8) && u32::from(h) <= header.height.div_ceil(8)
}

/// What reading a JPEG as it arrives gave ([`jpeg_stream`]).
pub enum JpegStream {
    Decoded(Result<Decoded>),
    /// It is decoded from memory after all ([`decode`]): every byte read so far, from the
    /// first; the rest is still to be read.
    Whole(Vec<u8>),
}

/// Decodes a JPEG as it is read from `input` (the file from its first byte), when its frame
/// header says [`decode`] would take it at 1/8 scale from the DC coefficients (a long side of
/// 2048 px and more): the file then goes through [`jpeg_dc::stream`] a segment at a time and is
/// never held. Anything else (a small picture, a layout or coding that reader leaves to
/// jpeg-decoder) comes back whole as far as read, for the caller to read on and decode from
/// memory. A file the reader takes but cannot finish (cut, damaged, too many scans) fails with
/// the reason; there is no second decoder to try, as the bytes are gone.
pub fn jpeg_stream(input: &mut dyn Read, opts: &Options) -> JpegStream {
    let (mut header, mut stopped) = (None, None);
    let streamed = jpeg_dc::stream(input, opts.max_pixels, |width, height, orientation| {
        let h = Header { width, height, orientation };
        if let Some(done) = over_limit(h, true, opts) {
            stopped = Some(done);
            return AtFrame::Stop;
        }
        if !at_eighth(h) {
            return AtFrame::Whole;
        }
        header = Some(h);
        AtFrame::Decode
    });
    let fail = |e| decode_error(Format::Jpeg, e);
    JpegStream::Decoded(match (streamed, header) {
        (Streamed::Whole(bytes), _) => return JpegStream::Whole(bytes),
        (Streamed::Stopped, _) => stopped.ok_or_else(|| fail("stopped at the frame header".into())),
        (Streamed::Read(dc), Some(h)) => finish(h, &dc.pixels, dc.width, dc.height, dc.layout, opts).map_err(fail),
        (Streamed::Failed(why), _) => Err(fail(why.into())),
        (Streamed::Read(_), None) => Err(fail("read without a frame header".into())),
    })
}

/// A still, opaque lossy WebP (`frame` its VP8 chunk) a macroblock row at a time into the
/// shrink: it holds a row of macroblocks, not the picture.
fn webp_lossy(bytes: &[u8], frame: &[u8], want_hash: bool, opts: &Options) -> DecodeResult {
    let (width, height) = vp8::frame_size(frame).ok_or("not a VP8 key frame")?;
    let orientation = webp::exif(bytes).and_then(Orientation::from_exif_chunk).map_or(1, Orientation::to_exif);
    let header = Header { width, height, orientation };
    if let Some(done) = over_limit(header, want_hash, opts) {
        return Ok(done);
    }
    hash(header, vp8::shrink(frame, orientation)?, opts)
}

fn with_image(bytes: &[u8], format: ImageFormat, want_hash: bool, opts: &Options) -> DecodeResult {
    let mut reader = image::ImageReader::with_format(Yielding::new(Cursor::new(bytes)), format);
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(pixel_memory(opts));
    reader.limits(limits);
    let mut decoder = reader.into_decoder()?;
    let (width, height) = decoder.dimensions();
    let orientation = match format {
        ImageFormat::WebP => webp::exif(bytes).and_then(Orientation::from_exif_chunk),
        _ => decoder.orientation().ok(),
    }
    .map_or(1, Orientation::to_exif);
    let header = Header { width, height, orientation };
    if let Some(done) = over_limit(header, want_hash, opts) {
        return Ok(done);
    }
    let too_costly = match format {
        ImageFormat::Gif => gif_over_memory(header, gif_first_frame(bytes), opts),
        ImageFormat::WebP => match webp::decode_cost(bytes, width, height)? {
            Verdict::Refused(why) => Some(Decoded::header_only(header, Some(why))),
            Verdict::Costs(need) => over_memory(header, need, "WebP decode buffers", opts),
        },
        _ => None,
    };
    if let Some(done) = too_costly {
        return Ok(done);
    }
    let image = DynamicImage::from_decoder(decoder)?;
    let (w, h) = (image.width(), image.height());
    match &image {
        DynamicImage::ImageLuma8(b) => finish(header, b.as_raw(), w, h, Layout::Luma, opts),
        DynamicImage::ImageLumaA8(b) => finish(header, b.as_raw(), w, h, Layout::LumaAlpha, opts),
        DynamicImage::ImageRgb8(b) => finish(header, b.as_raw(), w, h, Layout::Rgb, opts),
        DynamicImage::ImageRgba8(b) => finish(header, b.as_raw(), w, h, Layout::Rgba, opts),
        // GIF and WebP decode to 8 bits a channel only.
        other => Err(format!("unexpected pixel format {:?}", other.color()).into()),
    }
}

/// Decodes a PNG as it is read from `input` (the file from its first byte), of which `head`
/// is the start (at least its header chunks, as [`crate::incoming::HEAD_LEN`] holds).
pub fn png_stream(head: &[u8], input: impl BufRead, opts: &Options) -> Result<Decoded> {
    png_from(head, Yielding::new(Forward(input)), true, opts).map_err(|e| decode_error(Format::Png, e))
}

fn png(bytes: &[u8], want_hash: bool, opts: &Options) -> DecodeResult {
    png_from(bytes, Yielding::new(Cursor::new(bytes)), want_hash, opts)
}

/// A PNG whose first bytes are `head` (the header is read from there: a header-only call
/// never touches `input`), its pixels read from `input`.
fn png_from<R: BufRead + Seek>(head: &[u8], input: R, want_hash: bool, opts: &Options) -> DecodeResult {
    let (width, height) = png_rows::size(head).filter(|&(w, h)| w > 0 && h > 0).ok_or("no valid IHDR chunk")?;
    let orientation = png_rows::exif(head).and_then(Orientation::from_exif_chunk).map_or(1, Orientation::to_exif);
    let header = Header { width, height, orientation };
    if let Some(done) = over_limit(header, want_hash, opts) {
        return Ok(done);
    }
    let refused = |why: String| Ok(Decoded::header_only(header, Some(why)));
    if width > png_rows::MAX_WIDTH {
        return refused(format!("PNG {width} pixels wide (over {}): no blurhash", png_rows::MAX_WIDTH));
    }
    let limit = |_| format!("PNG chunks over the decoder's {} MiB for them: no blurhash", png_rows::CHUNK_LIMIT >> 20);
    match png_rows::open(input).and_then(|reader| png_rows::shrink(reader, orientation)) {
        Ok(shrunk) => hash(header, shrunk, opts),
        Err(Failure::Limit) => refused(limit(())),
        Err(Failure::Error(e)) => Err(e),
    }
}

/// What the decoder meets up to a GIF's first frame.
struct GifFirstFrame {
    /// Left, top, width, height, from its image descriptor (if the file gets that far).
    place: Option<[u16; 4]>,
    /// Bytes of the extensions before it that the gif crate copies (XMP, ICC profile).
    kept: u64,
}

fn gif_first_frame(bytes: &[u8]) -> GifFirstFrame {
    let u16_at = |at: usize| Some(u16::from_le_bytes([*bytes.get(at)?, *bytes.get(at + 1)?]));
    let flags = bytes.get(10).copied().unwrap_or(0);
    let mut at = 13 + if flags & 0x80 != 0 { 3 << ((flags & 7) + 1) } else { 0 };
    let mut kept = 0;
    let place = loop {
        match bytes.get(at) {
            Some(0x21) => {
                // Extension introducer and label, then sub-blocks up to an empty one.
                let application = bytes.get(at + 1) == Some(&0xff);
                let name = bytes.get(at + 3..at + 14).unwrap_or_default();
                let copied = application && (name == b"XMP DataXMP" || name == b"ICCRGBG1012");
                at += 2;
                while let Some(&len) = bytes.get(at) {
                    at += 1 + len as usize;
                    kept += if copied { 1 + len as u64 } else { 0 };
                    if len == 0 {
                        break;
                    }
                }
            }
            Some(0x2c) => break (|| Some([u16_at(at + 1)?, u16_at(at + 3)?, u16_at(at + 5)?, u16_at(at + 7)?]))(),
            _ => break None, // the end, the trailer, or not a GIF block: the decoder will say
        }
    };
    GifFirstFrame { place, kept }
}

/// The first frame of a GIF may be larger than its logical screen, which is what
/// `max_pixels` was checked against. The image crate decodes it to one index a pixel, and,
/// unless it fills whole rows of the screen, to RGBA beside the screen's RGBA (issue 18: a
/// 10000x10000 frame on a 1x1 screen took 382 MiB).
fn gif_over_memory(header: Header, frame: GifFirstFrame, opts: &Options) -> Option<Decoded> {
    let Some([left, top, w, h]) = frame.place.map(|p| p.map(u32::from)) else {
        return over_memory(header, frame.kept, "GIF metadata extensions", opts);
    };
    let frame_pixels = w as u64 * h as u64;
    if frame_pixels > opts.max_pixels {
        let note = format!("first frame of {w}x{h} is more than max_pixels ({}): no blurhash", opts.max_pixels);
        return Some(Decoded::header_only(header, Some(note)));
    }
    let in_place = left == 0 && w == header.width && top + h <= header.height;
    let need = 4 * header.pixels() + frame_pixels + if in_place { 0 } else { 4 * frame_pixels } + frame.kept;
    over_memory(header, need, "GIF screen and first frame", opts)
}

/// Bytes of pixels a decoder may allocate: the largest allowed picture at 16-bit RGBA.
fn pixel_memory(opts: &Options) -> u64 {
    opts.max_pixels.saturating_mul(8)
}

/// Room for the decoders' own tables, the body's head and the shrink beside the pixels, and
/// for what the file makes them allocate beyond its pixels (prefix codes, copied metadata).
const DECODE_OVERHEAD: u64 = 16 * 1024 * 1024;

/// What of `DECODE_OVERHEAD` no header can steer: the decoders' look-up tables, the shrink,
/// row buffers of at most 65,535 pixels. The rest is for the costs that `over_memory` checks.
const FIXED_OVERHEAD: u64 = 4 * 1024 * 1024;

/// The memory one decode may take in all, whatever the file says: `max_pixels * 8 + 16 MiB`
/// (the body it decodes from is the caller's). What a file can make a decoder allocate is
/// worked out from its headers and checked against this before the decoder runs; a file over
/// it is measured, not decoded (tests/memory.rs holds each decoder to it, and the fuzz target
/// sniff_decode fails any input that asks for more).
pub fn decoder_memory(opts: &Options) -> u64 {
    pixel_memory(opts).saturating_add(DECODE_OVERHEAD)
}
