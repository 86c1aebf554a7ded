//! One URL in, metadata out: fetch, tell the type, decode, hash, make thumbnails.

use std::io::{BufReader, Cursor, Read};

use base64::Engine;

use crate::background::Cancel;
use crate::decode::{self, JpegStream};
use crate::error::{Error, Result};
use crate::fetch::{Body, Fetcher, Tail, Validators};
use crate::incoming::Incoming;
use crate::measure;
use crate::media::{self, Probe};
use crate::options::Options;
use crate::sniff::{self, Family, Format};
use crate::source::{self, Remote};

/// Bytes of a file's end read for an MP4's `moov` or an Ogg's last page: at most this, and
/// never more than `max_bytes`.
pub const MAX_TAIL: u64 = 8 * 1024 * 1024;

/// What is known about a URL's media; a field that is not known is `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    pub bytes: Option<u64>,
    pub mime: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub blurhash: Option<String>,
    /// A safe file name (Content-Disposition, else the shared URL's last path segment).
    pub name: Option<String>,
    /// Last-Modified, XEP-0082 (`YYYY-MM-DDThh:mm:ssZ`).
    pub date: Option<String>,
    /// Base64 (standard, padded) SHA-256 of the whole body, only when all of it was read.
    pub sha256: Option<String>,
    /// Base64 ThumbHash of the upright picture.
    pub thumbhash: Option<String>,
    /// Base64 of a tiny PNG of the upright picture, `thumbnail_width` x `thumbnail_height`.
    pub thumbnail: Option<String>,
    pub thumbnail_width: Option<u32>,
    pub thumbnail_height: Option<u32>,
    /// Audio or video duration, whole milliseconds.
    pub length: Option<u64>,
    /// Whether a GIF, PNG or WebP has more than one frame (`None` for other formats).
    pub animated: Option<bool>,
    /// The ETag and Last-Modified the server sent, for asking it later whether the file
    /// changed (a kept result is reused only if it did not).
    pub validators: Validators,
    /// The server answered 304 to a conditional GET: nothing else is known here, the result
    /// kept with those validators still holds.
    pub unchanged: bool,
    /// Why a field the admin might expect is missing (for logs and tools, never for clients).
    pub note: Option<String>,
    /// The kind of error (`Error::kind`) that kept the picture from being decoded, when only
    /// what came before it is known (size, type, perhaps dimensions); its message is `note`.
    pub error_kind: Option<&'static str>,
}

impl Metadata {
    /// Whether anything is known at all (if not, no element is added).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_none()
            && self.mime.is_none()
            && self.width.is_none()
            && self.blurhash.is_none()
            && self.length.is_none()
    }
}

/// What a prober that does not decode pixels found ([`crate::measure`], [`crate::media`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Probed {
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub length: Option<u64>,
}

/// Fetches `url` with `fetcher` and describes what came back, within the time budget
/// `Options::timeout` from now (decoding included): past it the analysis stops at its next
/// yield point with `Error::OverBudget`. A panic anywhere below is caught and becomes this
/// URL's error.
pub fn analyze(fetcher: &Fetcher, url: &str) -> Result<Metadata> {
    analyze_cancellable(fetcher, url, None)
}

/// [`analyze`], also stopped (`Error::Cancelled`) at the next yield point once `cancel` is set.
pub fn analyze_cancellable(fetcher: &Fetcher, url: &str, cancel: Option<Cancel>) -> Result<Metadata> {
    source::analyze(&Remote { url: url.to_owned(), since: Validators::default() }, fetcher, cancel)
}

/// Bytes a tail read may take: [`MAX_TAIL`], or `max_bytes` if less.
pub fn tail_limit(opts: &Options) -> u64 {
    MAX_TAIL.min(opts.max_bytes)
}

/// How a describer gets the end of the file from an offset on, when the body was cut.
pub type TailReader<'a> = &'a dyn Fn(u64) -> Result<Tail>;

/// Describes a body as it is read: a PNG through the row decoder and a large JPEG through
/// the DC reader straight from `rest` (neither is held whole), anything else from memory once
/// [`Body::read_on`] has read as much of it as its format needs.
pub fn describe_incoming(mut body: Body, mut rest: Incoming, opts: &Options, tail: TailReader) -> Result<Metadata> {
    if !body.complete && body.fits(opts) {
        match sniff::sniff(&body.data) {
            Some(Format::Png) => {
                let decoding = {
                    let input = BufReader::with_capacity(STREAM_BUFFER, Cursor::new(&body.data[..]).chain(&mut rest));
                    decode::png_stream(&body.data, input, opts)
                };
                return streamed(body, rest, Format::Png, decoding, opts);
            }
            Some(Format::Jpeg) => {
                let read = decode::jpeg_stream(&mut Cursor::new(&body.data[..]).chain(&mut rest), opts);
                match read {
                    JpegStream::Decoded(decoding) => return streamed(body, rest, Format::Jpeg, decoding, opts),
                    // Not one for the DC reader: read on, and decode from memory. What it read
                    // is the file from its first byte: part of the head, or the head and more.
                    JpegStream::Whole(bytes) if bytes.len() > body.data.len() => body.data = bytes,
                    JpegStream::Whole(_) => {}
                }
                if let Some(e) = rest.take_error() {
                    return Err(e);
                }
            }
            _ => {}
        }
    }
    describe_with_tail(&body.read_on(rest, opts)?, opts, tail)
}

/// A picture decoded as it arrived (`decoding`, from the head on): whatever follows what its
/// decoder read goes through the hash alone.
fn streamed(
    mut body: Body,
    mut rest: Incoming,
    image: Format,
    decoding: Result<decode::Decoded>,
    opts: &Options,
) -> Result<Metadata> {
    // A failed read (a reset, the fetch's time) is the analysis's error, as for a body read
    // whole; the decoder only saw an I/O error.
    if let Some(e) = rest.take_error() {
        return Err(e);
    }
    let mut note = None;
    let ended = match rest.drain() {
        Ok(ended) => ended,
        Err(e @ Error::Cancelled) => return Err(e),
        Err(e) => {
            note = Some(format!("reading the rest of the body: {e}: no sha256"));
            false
        }
    };
    let past_limit = rest.past_limit();
    (body.length, body.sha256) = rest.finish(ended);
    let mut meta = known(&body, Some(image));
    meta.note = note;
    // Past max_bytes (a body without a Content-Length) it is what the head says, as for a
    // body read whole.
    with_pixels(meta, &body.data, image, (!past_limit).then_some(decoding), opts)
}

/// Bytes buffered between the stream and a streaming decoder.
const STREAM_BUFFER: usize = 32 * 1024;

/// Describes a body: its size, its type (sniffed, else the server's word), and what its
/// format's prober finds: for the images we decode their upright dimensions and BlurHash;
/// for pictures measured from their headers, their size; for audio and video, the duration
/// and displayed size. The end of the file is not asked for (see [`describe_with_tail`]).
pub fn describe(body: &Body, opts: &Options) -> Result<Metadata> {
    describe_with_tail(body, opts, &|_| Err(Error::Closed))
}

/// [`describe`], reading the end of the file with `tail` when a container needs it.
pub fn describe_with_tail(body: &Body, opts: &Options, tail: TailReader) -> Result<Metadata> {
    let sniffed = sniff::sniff(&body.data);
    let mut meta = known(body, sniffed);
    if opts.formats.files() && meta.sha256.is_none() && sniffed.is_none_or(|f| !f.is_decoded()) {
        meta.note = Some(format!("body is larger than max_bytes ({}): no sha256", opts.max_bytes));
    }
    let Some(format) = sniffed else { return Ok(meta) };
    match format.family() {
        Family::Decoded => decoded(meta, body, format, opts),
        Family::Measured => Ok(probed(meta, measure::measure(&body.data, format))),
        Family::Media => media_of(meta, body, format, tail_limit(opts), tail),
        Family::Other => Ok(meta),
    }
}

/// What is known of a body before its format's reader runs: its size, type (sniffed, else the
/// server's word), name, date, validators and hash.
fn known(body: &Body, sniffed: Option<Format>) -> Metadata {
    Metadata {
        bytes: body.content_length.or(body.length).or(body.complete.then_some(body.data.len() as u64)),
        mime: sniffed
            .map(|f| f.mime().to_owned())
            .or_else(|| body.content_type.as_deref().and_then(sniff::content_type_essence)),
        name: body.name.clone(),
        date: body.date.clone(),
        validators: body.validators.clone(),
        sha256: body.sha256.map(|h| base64::engine::general_purpose::STANDARD.encode(h)),
        ..Metadata::default()
    }
}

/// Fills in what a prober found, or keeps what was known with its error as the note.
fn probed(mut meta: Metadata, found: Result<Probed>) -> Metadata {
    match found {
        Ok(p) => {
            meta.width = p.width;
            meta.height = p.height;
            meta.length = p.length;
        }
        Err(e) => {
            meta.note = Some(note_after(meta.note.take(), &e.to_string()));
            meta.error_kind = Some(e.kind());
        }
    }
    meta
}

fn note_after(before: Option<String>, more: &str) -> String {
    before.map_or_else(|| more.to_owned(), |b| format!("{b}; {more}"))
}

/// An audio or video container: its head, and its tail when the head points past it.
fn media_of(meta: Metadata, body: &Body, format: Format, limit: u64, tail: TailReader) -> Result<Metadata> {
    let undecodable = |why: String| Error::Decode { format: format.mime(), why };
    let found = match media::probe(&body.data, body.complete, format, meta.bytes, limit) {
        Ok(Probe::Done(p)) => Ok(p),
        Ok(Probe::Tail { from }) => match tail(from) {
            Ok(t) => media::with_tail(&body.data, &t.data, t.complete, format).map_err(undecodable),
            Err(e @ (Error::Cancelled | Error::OverBudget { .. })) => return Err(e),
            Err(e) => Err(Error::Decode { format: format.mime(), why: format!("reading the end of the file: {e}") }),
        },
        Err(why) => Err(undecodable(why)),
    };
    Ok(probed(meta, found))
}

/// A picture we decode: its header, and its pixels when it was all read.
fn decoded(meta: Metadata, body: &Body, image: Format, opts: &Options) -> Result<Metadata> {
    let decoding = body.complete.then(|| decode::decode(&body.data, image, true, opts));
    with_pixels(meta, &body.data, image, decoding, opts)
}

/// What decoding a picture gave (`None`: it was larger than max_bytes, and only what `data`,
/// its first bytes or all of it, says is known).
fn with_pixels(
    mut meta: Metadata,
    data: &[u8],
    image: Format,
    decoding: Option<Result<decode::Decoded>>,
    opts: &Options,
) -> Result<Metadata> {
    meta.animated = measure::animated(data, image);
    let decoded = match decoding {
        Some(Ok(decoded)) => decoded,
        Some(Err(Error::Cancelled)) => return Err(Error::Cancelled), // nobody waits for it
        Some(Err(e)) => return Ok(undecoded(meta, data, image, e, opts)),
        None => {
            // Past max_bytes: the header may still be within what was read.
            let mut header_only = decode::decode(data, image, false, opts).ok();
            let also = if opts.formats.files() { ", no sha256" } else { "" };
            let note = format!("body is larger than max_bytes ({}): no blurhash{also}", opts.max_bytes);
            match header_only.as_mut() {
                Some(d) => d.note = Some(note),
                None => meta.note = Some(note),
            }
            match header_only {
                Some(d) => d,
                None => return Ok(meta),
            }
        }
    };
    let (w, h) = decoded.header.upright();
    meta.width = Some(w);
    meta.height = Some(h);
    meta.blurhash = decoded.blurhash;
    if let Some(t) = decoded.thumbnails {
        meta.thumbhash = Some(t.thumbhash);
        meta.thumbnail = Some(t.png);
        meta.thumbnail_width = Some(t.png_width);
        meta.thumbnail_height = Some(t.png_height);
    }
    if let Some(note) = decoded.note {
        meta.note = Some(note_after(meta.note.take(), &note));
    }
    Ok(meta)
}

/// A decode error keeps what was already known: the size, the type, and the dimensions if
/// the header could still be read; the error's message and kind go to the admin.
fn undecoded(mut meta: Metadata, data: &[u8], image: Format, e: Error, opts: &Options) -> Metadata {
    if let Ok(header_only) = decode::decode(data, image, false, opts) {
        let (w, h) = header_only.header.upright();
        meta.width = Some(w);
        meta.height = Some(h);
    }
    meta.note = Some(format!("{e}: no blurhash"));
    meta.error_kind = Some(e.kind());
    meta
}
