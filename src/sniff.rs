//! What a body is: its [`Format`] from its first bytes, or else a validated Content-Type.
//!
//! The format picks the prober ([`Family`]): everything below dispatches on it, never on a
//! MIME string.

/// A format we know by its signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Jpeg,
    Png,
    Gif,
    WebP,
    Avif,
    Heic,
    Heif,
    Jxl,
    Svg,
    Bmp,
    Ico,
    Tiff,
    Mp4,
    M4a,
    QuickTime,
    ThreeGp,
    WebM,
    Matroska,
    OggAudio,
    OggVideo,
    Ogg,
    Flac,
    Mp3,
    Wav,
    Pdf,
}

/// Which prober reads a format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Pictures decoded to pixels (dimensions, BlurHash, thumbnails): [`crate::decode`].
    Decoded,
    /// Pictures measured from their headers, never decoded: [`crate::measure`].
    Measured,
    /// Audio and video containers (duration, displayed size): [`crate::media`].
    Media,
    /// Only the type is told.
    Other,
}

impl Format {
    /// The media type clients are told.
    pub fn mime(self) -> &'static str {
        match self {
            Format::Jpeg => "image/jpeg",
            Format::Png => "image/png",
            Format::Gif => "image/gif",
            Format::WebP => "image/webp",
            Format::Avif => "image/avif",
            Format::Heic => "image/heic",
            Format::Heif => "image/heif",
            Format::Jxl => "image/jxl",
            Format::Svg => "image/svg+xml",
            Format::Bmp => "image/bmp",
            Format::Ico => "image/vnd.microsoft.icon",
            Format::Tiff => "image/tiff",
            Format::Mp4 => "video/mp4",
            Format::M4a => "audio/mp4",
            Format::QuickTime => "video/quicktime",
            Format::ThreeGp => "video/3gpp",
            Format::WebM => "video/webm",
            Format::Matroska => "video/x-matroska",
            Format::OggAudio => "audio/ogg",
            Format::OggVideo => "video/ogg",
            Format::Ogg => "application/ogg",
            Format::Flac => "audio/flac",
            Format::Mp3 => "audio/mpeg",
            Format::Wav => "audio/wav",
            Format::Pdf => "application/pdf",
        }
    }

    /// The prober that reads it.
    pub fn family(self) -> Family {
        match self {
            Format::Jpeg | Format::Png | Format::Gif | Format::WebP => Family::Decoded,
            Format::Avif | Format::Heic | Format::Heif | Format::Jxl | Format::Svg | Format::Bmp | Format::Ico => {
                Family::Measured
            }
            Format::Mp4
            | Format::M4a
            | Format::QuickTime
            | Format::ThreeGp
            | Format::WebM
            | Format::Matroska
            | Format::OggAudio
            | Format::OggVideo
            | Format::Ogg
            | Format::Flac
            | Format::Mp3
            | Format::Wav => Family::Media,
            Format::Tiff | Format::Pdf => Family::Other,
        }
    }

    /// Whether it is decoded to pixels (and so gets a BlurHash).
    pub fn is_decoded(self) -> bool {
        self.family() == Family::Decoded
    }
}

/// Bytes that `sniff` needs to see; fewer only when the body is shorter.
pub const SNIFF_LEN: usize = 64;

/// Bytes of an SVG's start (BOM, XML declaration, comments, DOCTYPE) looked through for `<svg`.
const SVG_SNIFF_LEN: usize = 4096;

/// The format the first bytes of a body declare, for the formats we know by signature.
pub fn sniff(head: &[u8]) -> Option<Format> {
    let at = |offset: usize, sig: &[u8]| head.get(offset..offset + sig.len()) == Some(sig);
    Some(if at(0, b"\xff\xd8\xff") {
        Format::Jpeg
    } else if at(0, b"\x89PNG\r\n\x1a\n") {
        Format::Png
    } else if at(0, b"GIF87a") || at(0, b"GIF89a") {
        Format::Gif
    } else if at(0, b"RIFF") && at(8, b"WEBP") {
        Format::WebP
    } else if at(0, b"RIFF") && at(8, b"WAVE") {
        Format::Wav
    } else if at(4, b"ftyp") {
        return iso_bmff(head);
    } else if at(0, b"\xff\x0a") || at(0, b"\0\0\0\x0cJXL \r\n\x87\n") {
        Format::Jxl
    } else if at(0, b"II*\0") || at(0, b"MM\0*") {
        Format::Tiff
    } else if at(0, b"BM") && matches!(head.get(14), Some(12 | 40 | 52 | 56 | 108 | 124)) {
        Format::Bmp
    } else if at(0, b"\0\0\x01\0") && is_ico(head) {
        Format::Ico
    } else if at(0, b"\x1a\x45\xdf\xa3") {
        if find(head, b"webm") {
            Format::WebM
        } else {
            Format::Matroska
        }
    } else if at(0, b"OggS") {
        if find(head, b"theora") {
            Format::OggVideo
        } else if find(head, b"OpusHead") || find(head, b"\x01vorbis") || find(head, b"FLAC") {
            Format::OggAudio
        } else {
            Format::Ogg
        }
    } else if at(0, b"fLaC") {
        Format::Flac
    } else if at(0, b"ID3") || is_mpeg_audio_frame(head) {
        Format::Mp3
    } else if at(0, b"%PDF-") {
        Format::Pdf
    } else if is_svg(head) {
        Format::Svg
    } else {
        return None;
    })
}

/// AVIF, HEIC, QuickTime and MP4 share the ISO base media file format: the brands tell them apart.
fn iso_bmff(head: &[u8]) -> Option<Format> {
    let box_len = u32::from_be_bytes(head.get(0..4)?.try_into().ok()?) as usize;
    let brands: Vec<&[u8]> = head
        .get(8..box_len.clamp(12, head.len().max(12)).min(head.len()))?
        .chunks_exact(4)
        .enumerate()
        .filter(|(i, _)| *i != 1) // the minor version, not a brand
        .map(|(_, b)| b)
        .collect();
    if brands.is_empty() {
        return None;
    }
    let has = |names: &[&[u8]]| brands.iter().any(|b| names.contains(b));
    Some(if has(&[b"avif", b"avis"]) {
        Format::Avif
    } else if has(&[b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx"]) {
        Format::Heic
    } else if has(&[b"mif1", b"msf1"]) {
        Format::Heif
    } else if brands.first() == Some(&&b"qt  "[..]) {
        Format::QuickTime
    } else if has(&[b"M4A ", b"M4B "]) {
        Format::M4a
    } else if brands.first().is_some_and(|b| b.starts_with(b"3g")) {
        Format::ThreeGp
    } else {
        Format::Mp4
    })
}

/// An ICO directory: reserved 0, type 1, at least one entry whose reserved byte is 0.
fn is_ico(head: &[u8]) -> bool {
    let count = head.get(4..6).map_or(0, |c| u16::from_le_bytes([c[0], c[1]]));
    count > 0 && head.get(6 + 3) == Some(&0)
}

/// Text that opens with an `<svg` element, after an optional BOM, XML declaration, comments
/// and DOCTYPE (skipped by looking for `<svg` among the first tags, not parsed).
fn is_svg(head: &[u8]) -> bool {
    let head = &head[..head.len().min(SVG_SNIFF_LEN)];
    let text = head.strip_prefix(b"\xef\xbb\xbf").unwrap_or(head);
    let start = text.iter().position(|b| !b.is_ascii_whitespace()).map_or(&[][..], |i| &text[i..]);
    (start.starts_with(b"<?xml") || start.starts_with(b"<!") || start.starts_with(b"<svg"))
        && text.windows(4).position(|w| w == b"<svg").is_some_and(|i| {
            // Followed by whitespace, `>` or `/`: not `<svgfoo`, and no other root before it.
            text.get(i + 4).is_some_and(|b| b.is_ascii_whitespace() || *b == b'>' || *b == b'/')
        })
}

fn is_mpeg_audio_frame(head: &[u8]) -> bool {
    // Frame sync (11 bits), a version other than "reserved", a layer other than "reserved",
    // and a bitrate index other than "bad".
    matches!(head, [0xff, b, c, ..] if b & 0xe0 == 0xe0 && b & 0x18 != 0x08 && b & 0x06 != 0 && c & 0xf0 != 0xf0)
}

fn find(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The essence of a Content-Type header ("image/png" of "Image/PNG; q=1"), if it is a valid
/// MIME type: two RFC 9110 tokens around one slash.
pub fn content_type_essence(header: &str) -> Option<String> {
    let essence = header.split(';').next()?.trim().to_ascii_lowercase();
    let (kind, sub) = essence.split_once('/')?;
    let token = |s: &str| {
        !s.is_empty()
            && s.len() <= 127
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    (token(kind) && token(sub)).then_some(essence)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ftyp(major: &[u8; 4], compat: &[&[u8; 4]]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&((16 + 4 * compat.len()) as u32).to_be_bytes());
        b.extend_from_slice(b"ftyp");
        b.extend_from_slice(major);
        b.extend_from_slice(b"\0\0\0\0");
        for c in compat {
            b.extend_from_slice(*c);
        }
        b.extend_from_slice(b"\0\0\0\x08free");
        b
    }

    #[test]
    fn signatures() {
        let cases: &[(&[u8], &str)] = &[
            (b"\xff\xd8\xff\xe0\0\x10JFIF", "image/jpeg"),
            (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "image/png"),
            (b"GIF89a\x01\0", "image/gif"),
            (b"RIFF\0\0\0\0WEBPVP8 ", "image/webp"),
            (b"RIFF\0\0\0\0WAVEfmt ", "audio/wav"),
            (b"II*\0\x08\0\0\0", "image/tiff"),
            (b"MM\0*\0\0\0\x08", "image/tiff"),
            (b"BM\0\0\0\0\0\0\0\0\x36\0\0\0\x28\0\0\0", "image/bmp"),
            (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm", "video/webm"),
            (b"\x1a\x45\xdf\xa3\x9f\x42\x82\x88matroska", "video/x-matroska"),
            (b"OggS\0\x02\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01\x13OpusHead", "audio/ogg"),
            (b"OggS\0\x02\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01\x2a\x80theora", "video/ogg"),
            (b"ID3\x04\0\0\0\0\0\0", "audio/mpeg"),
            (b"\xff\xfb\x90\x64\0\0", "audio/mpeg"),
            (b"%PDF-1.7\n", "application/pdf"),
            (b"fLaC\0\0\0\x22", "audio/flac"),
            (b"\0\0\x01\0\x01\0\x10\x10\0\0\x01\0", "image/vnd.microsoft.icon"),
            (b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>", "image/svg+xml"),
            (b"\xef\xbb\xbf<?xml version=\"1.0\"?>\n<!-- x -->\n<svg width=\"1\">", "image/svg+xml"),
        ];
        for (bytes, want) in cases {
            assert_eq!(sniff(bytes).map(Format::mime), Some(*want), "{bytes:?}");
        }
        assert_eq!(sniff(&ftyp(b"avif", &[b"mif1", b"miaf"])), Some(Format::Avif));
        assert_eq!(sniff(&ftyp(b"mif1", &[b"avif"])), Some(Format::Avif));
        assert_eq!(sniff(&ftyp(b"heic", &[b"mif1"])), Some(Format::Heic));
        assert_eq!(sniff(&ftyp(b"isom", &[b"isom", b"avc1"])), Some(Format::Mp4));
        assert_eq!(sniff(&ftyp(b"3gp4", &[b"isom", b"3gp4"])), Some(Format::ThreeGp));
        assert_eq!(sniff(&ftyp(b"qt  ", &[b"qt  "])), Some(Format::QuickTime));
        assert_eq!(sniff(&ftyp(b"M4A ", &[b"M4A "])), Some(Format::M4a));
    }

    #[test]
    fn unknown_and_short_input() {
        for bytes in
            [&b""[..], b"\xff", b"\xff\xd8", b"<html>", b"<svgx>", b"<p><svg>", b"RIFF", b"BMx", b"\0\0\0\x20ftyp"]
        {
            assert_eq!(sniff(bytes), None, "{bytes:?}");
        }
        assert_eq!(sniff(b"\xff\xff\xff\xff"), None, "bad MPEG frame header");
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type_essence("Image/PNG; charset=x").as_deref(), Some("image/png"));
        assert_eq!(content_type_essence(" text/html ").as_deref(), Some("text/html"));
        assert_eq!(content_type_essence("application/vnd.api+json").as_deref(), Some("application/vnd.api+json"));
        for bad in ["", "image", "image/", "/png", "im age/png", "image/png/x", "<script>/x", "a/b\"c"] {
            assert_eq!(content_type_essence(bad), None, "{bad:?}");
        }
    }
}
