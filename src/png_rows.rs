//! PNG a row at a time, straight into the shrink: no picture is ever held whole.
//!
//! The png crate is driven directly rather than through the image crate, which turns text
//! chunks on, inflates ICC profiles and allocates the whole picture (issue 18: a 1x1 PNG's
//! iCCP chunk inflating to 380 MiB cost 381 MiB; a 50,000,000 x 1 16-bit one 954 MiB). Here
//! iCCP, tEXt, zTXt and iTXt are stepped over unread (their CRC still checked), 16-bit samples
//! are cut to 8 bits as each row is unfiltered, and Adam7 passes go to the shrink pixel by
//! pixel. What the decoder holds is then a few rows (at most 65,535 pixels wide: wider is
//! refused before decoding) and the chunks it keeps (eXIf, PLTE, tRNS), under [`CHUNK_LIMIT`].

use std::io::{self, BufRead, Read, Seek, SeekFrom};

use png::{BitDepth, ColorType, Transformations};

use crate::blurhash::{Layout, Shrinker, Shrunk};

/// The widest PNG decoded, in pixels: as wide as JPEG and GIF can be at all (WebP stops at
/// 16,384). The png crate's row buffers, the only memory that grows with the picture here,
/// are then at most about 1.6 MB.
pub const MAX_WIDTH: u32 = 65_535;

/// What the png crate may allocate for the chunks it reads (eXIf, palette, ...), and the
/// output row.
pub const CHUNK_LIMIT: usize = 8 * 1024 * 1024;

/// Adam7's passes: (x0, dx, y0, dy), in the order the rows come.
const ADAM7: [(u32, u32, u32, u32); 7] =
    [(0, 8, 0, 8), (4, 8, 0, 8), (0, 4, 4, 8), (2, 4, 0, 4), (0, 2, 2, 4), (1, 2, 0, 2), (0, 1, 1, 2)];

/// A stream for the png crate, which asks for `Seek` (0.18's bound) and never seeks.
pub struct Forward<R>(pub R);

impl<R: Read> Read for Forward<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl<R: BufRead> BufRead for Forward<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.0.fill_buf()
    }

    fn consume(&mut self, n: usize) {
        self.0.consume(n)
    }
}

impl<R> Seek for Forward<R> {
    fn seek(&mut self, _: SeekFrom) -> io::Result<u64> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "a PNG is read as a stream"))
    }
}

/// Why a PNG did not decode.
#[derive(Debug)]
pub enum Failure {
    /// The chunks it keeps need more than `CHUNK_LIMIT`: the file is refused, not broken.
    Limit,
    /// Anything else: a damaged file, or the time budget (its error inside an I/O error).
    Error(Box<dyn std::error::Error>),
}

impl From<png::DecodingError> for Failure {
    fn from(e: png::DecodingError) -> Failure {
        match e {
            png::DecodingError::LimitsExceeded => Failure::Limit,
            e => Failure::Error(e.into()),
        }
    }
}

impl From<crate::error::Error> for Failure {
    fn from(e: crate::error::Error) -> Failure {
        Failure::Error(e.into())
    }
}

impl From<String> for Failure {
    fn from(e: String) -> Failure {
        Failure::Error(e.into())
    }
}

/// `(width, height)` from the IHDR chunk, if the file starts with one.
pub fn size(bytes: &[u8]) -> Option<(u32, u32)> {
    let be32 = |at: usize| Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
    (bytes.get(12..16)? == b"IHDR").then_some(())?;
    Some((be32(16)?, be32(20)?))
}

/// The eXIf chunk's contents if one comes before the image data (where the png crate reads
/// it), cut at the end of the file.
pub fn exif(bytes: &[u8]) -> Option<&[u8]> {
    let mut rest = bytes.get(8..)?;
    while rest.len() >= 8 {
        let len = u32::from_be_bytes(rest[..4].try_into().ok()?) as usize;
        let (kind, body) = (&rest[4..8], &rest[8..]);
        match kind {
            b"eXIf" => return Some(&body[..len.min(body.len())]),
            b"IDAT" => return None,
            _ => rest = body.get(len.saturating_add(4)..)?, // data, then the CRC
        }
    }
    None
}

/// Reads the chunks before the image data from `input`, the file from its first byte; the
/// picture is not decoded yet.
pub fn open<R: BufRead + Seek>(input: R) -> Result<png::Reader<R>, Failure> {
    let mut decoder = png::Decoder::new_with_limits(input, png::Limits { bytes: CHUNK_LIMIT });
    decoder.set_ignore_iccp_chunk(true);
    decoder.set_ignore_text_chunk(true);
    // Palettes and low bit depths to 8 bits, tRNS to alpha, 16 bits to their high byte.
    decoder.set_transformations(Transformations::EXPAND | Transformations::STRIP_16);
    Ok(decoder.read_info()?)
}

/// Decodes the picture row by row into a shrink for EXIF `orientation`.
pub fn shrink<R: BufRead + Seek>(mut reader: png::Reader<R>, orientation: u8) -> Result<Shrunk, Failure> {
    let (width, height) = reader.info().size();
    let layout = match reader.output_color_type() {
        (ColorType::Grayscale, BitDepth::Eight) => Layout::Luma,
        (ColorType::GrayscaleAlpha, BitDepth::Eight) => Layout::LumaAlpha,
        (ColorType::Rgb, BitDepth::Eight) => Layout::Rgb,
        (ColorType::Rgba, BitDepth::Eight) => Layout::Rgba,
        (color, depth) => return Err(format!("unexpected PNG output {color:?} {depth:?}").into()),
    };
    let mut shrinker = Shrinker::new(width, height, layout, orientation)?;
    let passes: &[_] = if reader.info().interlaced { &ADAM7 } else { &[(0, 1, 0, 1)] };
    for &(x0, dx, y0, dy) in passes {
        // As the png crate's own pass iterator: a pass without pixels has no rows.
        if width <= x0 || height <= y0 {
            continue;
        }
        for y in (y0..height).step_by(dy as usize) {
            let row = reader.next_row()?.ok_or_else(|| "PNG image data ended early".to_owned())?;
            shrinker.add_pixels(y, row.data(), x0, dx)?;
        }
    }
    Ok(shrinker.finish())
}
