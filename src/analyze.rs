//! One URL in, metadata out: fetch, tell the type, decode, hash, make thumbnails.

use std::panic::{catch_unwind, AssertUnwindSafe};

use base64::Engine;

use crate::background::{self, Budget, Cancel};
use crate::decode;
use crate::error::{Error, Result};
use crate::fetch::{Body, Fetcher};
use crate::options::Options;
use crate::sniff;

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
    /// Why a field the admin might expect is missing (for logs and tools, never for clients).
    pub note: Option<String>,
    /// The kind of error (`Error::kind`) that kept the picture from being decoded, when only
    /// what came before it is known (size, type, perhaps dimensions); its message is `note`.
    pub error_kind: Option<&'static str>,
}

impl Metadata {
    /// Whether anything is known at all (if not, no element is added).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_none() && self.mime.is_none() && self.width.is_none() && self.blurhash.is_none()
    }
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
    let _budget = Budget::start(fetcher.options().timeout, cancel);
    background::check()?;
    catch_unwind(AssertUnwindSafe(|| describe(&fetcher.get(url)?, fetcher.options()))).map_err(Error::from_panic)?
}

/// Describes a body: its size, its type (sniffed, else the server's word), and for the images
/// we decode, their upright dimensions and BlurHash.
pub fn describe(body: &Body, opts: &Options) -> Result<Metadata> {
    let sniffed = sniff::sniff(&body.data);
    let mut meta = Metadata {
        bytes: body.content_length.or(body.length).or(body.complete.then_some(body.data.len() as u64)),
        mime: sniffed.map(str::to_owned).or_else(|| body.content_type.as_deref().and_then(sniff::content_type_essence)),
        name: body.name.clone(),
        date: body.date.clone(),
        sha256: body.sha256.map(|h| base64::engine::general_purpose::STANDARD.encode(h)),
        ..Metadata::default()
    };
    let Some(image) = sniffed.filter(|m| sniff::is_decodable(m)) else {
        if opts.formats.files() && meta.sha256.is_none() {
            meta.note = Some(format!("body is larger than max_bytes ({}): no sha256", opts.max_bytes));
        }
        return Ok(meta);
    };
    let decoded = if body.complete {
        match decode::decode(&body.data, image, true, opts) {
            Ok(decoded) => decoded,
            Err(Error::Cancelled) => return Err(Error::Cancelled), // nobody waits for it
            Err(e) => return Ok(undecoded(meta, &body.data, image, e, opts)),
        }
    } else {
        // Past max_bytes: the header may still be within what was read.
        let mut header_only = decode::decode(&body.data, image, false, opts).ok();
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
    meta.note = decoded.note;
    Ok(meta)
}

/// A decode error keeps what was already known: the size, the type, and the dimensions if
/// the header could still be read; the error's message and kind go to the admin.
fn undecoded(mut meta: Metadata, data: &[u8], image: &'static str, e: Error, opts: &Options) -> Metadata {
    if let Ok(header_only) = decode::decode(data, image, false, opts) {
        let (w, h) = header_only.header.upright();
        meta.width = Some(w);
        meta.height = Some(h);
    }
    meta.note = Some(format!("{e}: no blurhash"));
    meta.error_kind = Some(e.kind());
    meta
}
