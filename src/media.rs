//! Audio and video containers: duration and, for video, the displayed size. MP4 and its
//! kin through [`crate::mp4`], WebM and Matroska through [`crate::matroska`], Ogg through [`crate::ogg`], WAV, FLAC and MP3 through
//! [`crate::audio`]. Where what matters is at the end of the file (an MP4's `moov` after its
//! media data, an Ogg's last page) and the body was not all read, [`probe`] asks for a tail.

use crate::analyze::Probed;
use crate::audio;
use crate::matroska;
use crate::mp4::{self, Moov};
use crate::ogg;
use crate::sniff::Format;

/// Bytes at the end of an Ogg file read for its last page (a page is at most 65,307 bytes).
pub const OGG_TAIL: u64 = 65_536 + 27 + 255;

/// What a container's first bytes tell.
#[derive(Debug)]
pub enum Probe {
    Done(Probed),
    /// The rest is in the file from this offset on; [`with_tail`] reads it.
    Tail {
        from: u64,
    },
}

/// Reads `data`, the start of a file (all of it when `complete`) of `total` bytes if known;
/// a tail it asks for will be at most `tail_limit` bytes.
pub fn probe(
    data: &[u8],
    complete: bool,
    format: Format,
    total: Option<u64>,
    tail_limit: u64,
) -> Result<Probe, String> {
    let length = |ms: u64| Probe::Done(Probed { length: Some(ms), ..Probed::default() });
    match format {
        Format::Mp4 | Format::M4a | Format::QuickTime | Format::ThreeGp => match mp4::locate(data) {
            Moov::Here(moov) => mp4::probe(moov).map(Probe::Done),
            Moov::After(from) | Moov::Cut(from) if !complete => Ok(Probe::Tail { from }),
            _ => Err("no moov box".to_owned()),
        },
        Format::OggAudio | Format::OggVideo | Format::Ogg => {
            let stream = ogg::first_page(data)?;
            match (complete, total) {
                (true, _) => ogg::length(stream, data).map(length).ok_or_else(no_last_page),
                (false, Some(total)) => Ok(Probe::Tail { from: total.saturating_sub(OGG_TAIL.min(tail_limit)) }),
                (false, None) => Err("the end of the Ogg stream was not read and its size is unknown".to_owned()),
            }
        }
        Format::WebM | Format::Matroska => matroska::probe(data).map(Probe::Done),
        Format::Wav => audio::wav(data).map(length),
        Format::Flac => audio::flac(data).map(length),
        Format::Mp3 => audio::mp3(data, total.or(complete.then_some(data.len() as u64))).map(length),
        _ => Err("not an audio or video container".to_owned()),
    }
}

/// Finishes a [`Probe::Tail`] with `tail`, the file's bytes from the offset it asked for
/// (up to its end when `complete`).
pub fn with_tail(head: &[u8], tail: &[u8], complete: bool, format: Format) -> Result<Probed, String> {
    match format {
        Format::OggAudio | Format::OggVideo | Format::Ogg => {
            if !complete {
                return Err("the end of the Ogg stream is past what the tail read may take".to_owned());
            }
            let stream = ogg::first_page(head)?;
            let ms = ogg::length(stream, tail).ok_or_else(no_last_page)?;
            Ok(Probed { length: Some(ms), ..Probed::default() })
        }
        _ => match mp4::locate(tail) {
            Moov::Here(moov) => mp4::probe(moov),
            Moov::Cut(_) => Err(format!("the moov box is larger than the {} bytes read of the tail", tail.len())),
            _ => Err("no moov box at the end of the file".to_owned()),
        },
    }
}

fn no_last_page() -> String {
    "no last Ogg page with a granule position: no duration".to_owned()
}
