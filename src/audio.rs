//! Durations of WAV, FLAC and MP3 from their headers (a few fixed fields each: no crate
//! needed, and none of them allocates).

/// WAV: the `data` chunk's size over the `fmt ` chunk's byte rate.
pub fn wav(data: &[u8]) -> Result<u64, String> {
    let (mut byte_rate, mut data_len) = (None, None);
    let mut at = 12;
    for _ in 0..64 {
        let (Some(id), Some(len)) = (data.get(at..at + 4), le32(data, at + 4)) else { break };
        match id {
            b"fmt " => byte_rate = le32(data, at + 16),
            b"data" => data_len = Some(len),
            _ => {}
        }
        if data_len.is_some() {
            break; // the samples follow: nothing after them is needed
        }
        at += 8 + len as usize + (len as usize & 1);
    }
    match (byte_rate, data_len) {
        (Some(rate), Some(len)) if rate > 0 => Ok(u64::from(len) * 1000 / u64::from(rate)),
        (None, _) | (Some(0), _) => Err("no usable fmt chunk".to_owned()),
        _ => Err("no data chunk".to_owned()),
    }
}

/// FLAC: total samples over the sample rate, from STREAMINFO (the first metadata block).
pub fn flac(data: &[u8]) -> Result<u64, String> {
    streaminfo(data.get(4..).ok_or("no STREAMINFO")?).ok_or_else(|| "no usable STREAMINFO".to_owned())
}

/// A STREAMINFO block with its 4-byte block header: `total samples * 1000 / rate`, if the
/// stream says how many samples it has.
pub fn streaminfo(block: &[u8]) -> Option<u64> {
    if block.first()? & 0x7f != 0 {
        return None;
    }
    let info = block.get(4..22)?;
    let rate = (u32::from(info[10]) << 12) | (u32::from(info[11]) << 4) | (u32::from(info[12]) >> 4);
    let total = (u64::from(info[13] & 0x0f) << 32) | u64::from(u32::from_be_bytes(info[14..18].try_into().ok()?));
    (rate > 0 && total > 0).then(|| total * 1000 / u64::from(rate))
}

/// MP3: frames over frame rate from a Xing/Info or VBRI header, else (constant bit rate)
/// the bytes after the tag over the first frame's bit rate. `total` is the file's size.
pub fn mp3(data: &[u8], total: Option<u64>) -> Result<u64, String> {
    let start = id3_len(data);
    let frame = data.get(start..).and_then(FrameHeader::read).ok_or("no MPEG audio frame after the ID3 tag")?;
    let body = &data[start..];
    let side = match (frame.mpeg1, frame.mono) {
        (true, false) => 32,
        (true, true) | (false, false) => 17,
        (false, true) => 9,
    };
    let xing = body.get(4 + side..4 + side + 4);
    let frames = if xing == Some(b"Xing") || xing == Some(b"Info") {
        let flags = be32(body, 8 + side).unwrap_or(0);
        (flags & 1 == 1).then(|| be32(body, 12 + side)).flatten()
    } else if body.get(36..40) == Some(b"VBRI") {
        be32(body, 36 + 14)
    } else {
        None
    };
    if let Some(n) = frames {
        return Ok(u64::from(n) * u64::from(frame.samples) * 1000 / u64::from(frame.rate));
    }
    let audio = total.ok_or("no Xing or VBRI header and no size: no duration")?.saturating_sub(start as u64);
    Ok(audio * 8 / u64::from(frame.kbps))
}

/// An ID3v2 tag's length (header, body and footer), or 0.
fn id3_len(data: &[u8]) -> usize {
    match data {
        [b'I', b'D', b'3', _, _, flags, s @ ..] if s.len() >= 4 && s[..4].iter().all(|b| b & 0x80 == 0) => {
            let size = s[..4].iter().fold(0usize, |n, &b| (n << 7) | b as usize);
            10 + size + if flags & 0x10 != 0 { 10 } else { 0 }
        }
        _ => 0,
    }
}

struct FrameHeader {
    mpeg1: bool,
    mono: bool,
    kbps: u32,
    rate: u32,
    samples: u32,
}

impl FrameHeader {
    fn read(b: &[u8]) -> Option<FrameHeader> {
        let [0xff, b1, b2, b3, ..] = *b else { return None };
        if b1 & 0xe0 != 0xe0 {
            return None;
        }
        let (version, layer) = ((b1 >> 3) & 3, (b1 >> 1) & 3); // version 3 = MPEG-1; layer 1 = III
        let mpeg1 = version == 3;
        if version == 1 || layer == 0 {
            return None;
        }
        const V1: [[u32; 15]; 3] = [
            [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320],
            [0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384],
            [0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448],
        ];
        const V2: [[u32; 15]; 2] = [
            [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
            [0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256],
        ];
        let index = usize::from(b2 >> 4);
        let row = usize::from(layer) - 1; // 0: layer III, 1: II, 2: I
        let kbps = *if mpeg1 { V1[row].get(index)? } else { V2[usize::from(row == 2)].get(index)? };
        let rate = *[[11025, 12000, 8000], [0, 0, 0], [22050, 24000, 16000], [44100, 48000, 32000]]
            [usize::from(version)]
        .get(usize::from((b2 >> 2) & 3))?;
        let samples = match (layer, mpeg1) {
            (3, _) => 384,
            (2, _) | (1, true) => 1152,
            _ => 576,
        };
        (kbps > 0 && rate > 0).then_some(FrameHeader { mpeg1, mono: b3 >> 6 == 3, kbps, rate, samples })
    }
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?))
}
