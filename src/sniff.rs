//! What a body is: its media type from its first bytes, or else from a validated Content-Type.

/// The media types we decode to pixels (and so can hash).
pub fn is_decodable(mime: &str) -> bool {
    matches!(mime, "image/jpeg" | "image/png" | "image/gif" | "image/webp")
}

/// Bytes that `sniff` needs to see; fewer only when the body is shorter.
pub const SNIFF_LEN: usize = 64;

/// The media type the first bytes of a body declare, for the formats we know by signature.
pub fn sniff(head: &[u8]) -> Option<&'static str> {
    let at = |offset: usize, sig: &[u8]| head.get(offset..offset + sig.len()) == Some(sig);
    Some(if at(0, b"\xff\xd8\xff") {
        "image/jpeg"
    } else if at(0, b"\x89PNG\r\n\x1a\n") {
        "image/png"
    } else if at(0, b"GIF87a") || at(0, b"GIF89a") {
        "image/gif"
    } else if at(0, b"RIFF") && at(8, b"WEBP") {
        "image/webp"
    } else if at(0, b"RIFF") && at(8, b"WAVE") {
        "audio/wav"
    } else if at(4, b"ftyp") {
        return iso_bmff(head);
    } else if at(0, b"\xff\x0a") || at(0, b"\0\0\0\x0cJXL \r\n\x87\n") {
        "image/jxl"
    } else if at(0, b"II*\0") || at(0, b"MM\0*") {
        "image/tiff"
    } else if at(0, b"BM") && matches!(head.get(14), Some(12 | 40 | 52 | 56 | 108 | 124)) {
        "image/bmp"
    } else if at(0, b"\x1a\x45\xdf\xa3") {
        if find(head, b"webm") {
            "video/webm"
        } else {
            "video/x-matroska"
        }
    } else if at(0, b"OggS") {
        if find(head, b"theora") {
            "video/ogg"
        } else if find(head, b"OpusHead") || find(head, b"\x01vorbis") || find(head, b"FLAC") {
            "audio/ogg"
        } else {
            "application/ogg"
        }
    } else if at(0, b"fLaC") {
        "audio/flac"
    } else if at(0, b"ID3") || is_mpeg_audio_frame(head) {
        "audio/mpeg"
    } else if at(0, b"%PDF-") {
        "application/pdf"
    } else {
        return None;
    })
}

/// AVIF, HEIC, QuickTime and MP4 share the ISO base media file format: the brands tell them apart.
fn iso_bmff(head: &[u8]) -> Option<&'static str> {
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
        "image/avif"
    } else if has(&[b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx"]) {
        "image/heic"
    } else if has(&[b"mif1", b"msf1"]) {
        "image/heif"
    } else if brands.first() == Some(&&b"qt  "[..]) {
        "video/quicktime"
    } else if has(&[b"M4A ", b"M4B "]) {
        "audio/mp4"
    } else {
        "video/mp4"
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
        ];
        for (bytes, want) in cases {
            assert_eq!(sniff(bytes), Some(*want), "{bytes:?}");
        }
        assert_eq!(sniff(&ftyp(b"avif", &[b"mif1", b"miaf"])), Some("image/avif"));
        assert_eq!(sniff(&ftyp(b"mif1", &[b"avif"])), Some("image/avif"));
        assert_eq!(sniff(&ftyp(b"heic", &[b"mif1"])), Some("image/heic"));
        assert_eq!(sniff(&ftyp(b"isom", &[b"isom", b"avc1"])), Some("video/mp4"));
        assert_eq!(sniff(&ftyp(b"qt  ", &[b"qt  "])), Some("video/quicktime"));
        assert_eq!(sniff(&ftyp(b"M4A ", &[b"M4A "])), Some("audio/mp4"));
    }

    #[test]
    fn unknown_and_short_input() {
        for bytes in [&b""[..], b"\xff", b"\xff\xd8", b"<html>", b"RIFF", b"BMx", b"\0\0\0\x20ftyp"] {
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
