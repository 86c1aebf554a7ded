//! A body as it arrives, from the socket ([`crate::fetch`]) or from an upload's file
//! ([`crate::source::LocalFile`]): its first bytes in memory, the rest read on only as far as
//! its format needs ([`crate::analyze::describe_incoming`]): into memory for the formats whose
//! readers want the whole file, through a streaming decoder for PNG and large JPEGs, or
//! through the SHA-256 alone for everything else. Whatever way it is read, every byte goes
//! through the hash once, and no more than `max_bytes` (and one byte to tell a longer body) is
//! ever read.

use std::io::{self, Read};

use sha2::{Digest, Sha256};

use crate::background;
use crate::error::{Error, Result};

/// Bytes read before deciding whether the rest is worth reading: enough for every signature
/// and for the headers (and EXIF) of the images we decode.
pub const HEAD_LEN: usize = 64 * 1024;

/// Names a failed read the way its source does (a fetch's URL and timeout, a file's path).
pub type ReadError = Box<dyn Fn(io::Error) -> Error + Send>;

/// The body past what has been read so far.
pub struct Incoming {
    inner: Box<dyn Read + Send>,
    hasher: Option<Sha256>,
    /// Bytes taken from `inner` so far.
    read: u64,
    /// `max_bytes`: at most one byte past it is read.
    limit: u64,
    name_error: ReadError,
    /// The first failed read, named; a decoder reading through us saw only an I/O error.
    failed: Option<Error>,
}

/// What a read past `max_bytes` returns to whoever reads through an [`Incoming`].
#[derive(Debug, thiserror::Error)]
#[error("the body is larger than max_bytes")]
struct PastLimit;

impl Incoming {
    /// `inner` from its first byte; hashed when `hashes`.
    pub fn new(inner: Box<dyn Read + Send>, hashes: bool, max_bytes: u64, name_error: ReadError) -> Incoming {
        let hasher = hashes.then(Sha256::new);
        Incoming { inner, hasher, read: 0, limit: max_bytes, name_error, failed: None }
    }

    /// A body with nothing in it (a 304).
    pub fn empty() -> Incoming {
        Incoming::new(
            Box::new(io::empty()),
            false,
            0,
            Box::new(|e| Error::Fetch { url: String::new(), why: e.to_string() }),
        )
    }

    /// Whether a read went past `max_bytes`.
    pub fn past_limit(&self) -> bool {
        self.read > self.limit
    }

    /// The first `HEAD_LEN` bytes (fewer if `max_bytes` is less) and one more if the body goes
    /// on (it is read, so it is kept: the rest follows it), and whether the body ended there.
    pub fn head(&mut self) -> Result<(Vec<u8>, bool)> {
        let max = usize::try_from(self.limit).unwrap_or(usize::MAX);
        let len = HEAD_LEN.min(max);
        let mut head = Vec::with_capacity(len + 1);
        let ended = self.read_into(&mut head, len + 1, false)?;
        head.truncate(max); // only when max_bytes is below HEAD_LEN: past it nothing is read on
        Ok((head, ended))
    }

    /// Reads on into `data` up to `max_bytes` in all; whether the body ended within it (if
    /// not, `data` holds the first `max_bytes`).
    pub fn read_rest(&mut self, data: &mut Vec<u8>) -> Result<bool> {
        let max = usize::try_from(self.limit).unwrap_or(usize::MAX);
        self.read_into(data, max, true)
    }

    /// Reads on to the end without keeping anything (for the hash); whether it ended within
    /// `max_bytes`.
    pub fn drain(&mut self) -> Result<bool> {
        let copied = io::copy(self, &mut io::sink());
        match copied {
            Ok(_) => Ok(true),
            Err(e) => self.stopped(e).map(|()| false),
        }
    }

    /// The length and SHA-256 of the body if it `ended` within `max_bytes` (else neither).
    pub fn finish(self, ended: bool) -> (Option<u64>, Option<[u8; 32]>) {
        if !ended || self.past_limit() {
            return (None, None);
        }
        (Some(self.read), self.hasher.map(|h| h.finalize().into()))
    }

    /// The error of a read that failed while a decoder read through this, named by the
    /// source: the analysis fails with it (the decoder's own error would hide it).
    pub fn take_error(&mut self) -> Option<Error> {
        self.failed.take()
    }

    /// Reads until `buf` holds `limit` bytes or the body ends first (true). `past`: read one
    /// byte more to tell a body of exactly `limit` bytes from a longer one, and drop it.
    fn read_into(&mut self, buf: &mut Vec<u8>, limit: usize, past: bool) -> Result<bool> {
        let want = limit.saturating_sub(buf.len()) as u64 + u64::from(past);
        let read = (&mut *self).take(want).read_to_end(buf);
        let ended = match read {
            Ok(n) => (n as u64) < want,
            Err(e) => self.stopped(e).map(|()| false)?,
        };
        buf.truncate(limit);
        Ok(ended)
    }

    /// `Ok` when `e` is our own stop at `max_bytes`, else the named error.
    fn stopped(&mut self, e: io::Error) -> Result<()> {
        if e.get_ref().is_some_and(|inner| inner.is::<PastLimit>()) {
            return Ok(());
        }
        Err(self.failed.take().unwrap_or_else(|| (self.name_error)(e)))
    }
}

impl Read for Incoming {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let room = (self.limit + 1).saturating_sub(self.read);
        if room == 0 {
            return Err(io::Error::other(PastLimit));
        }
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let read = background::yield_point().map_err(io::Error::other).and_then(|()| self.inner.read(&mut buf[..want]));
        let n = match read {
            Ok(n) => n,
            Err(e) => {
                let named = (self.name_error)(e);
                self.failed.get_or_insert(named.clone());
                return Err(io::Error::other(named));
            }
        };
        if let Some(h) = self.hasher.as_mut() {
            h.update(&buf[..n]);
        }
        self.read += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn over(bytes: &'static [u8], max: u64) -> Incoming {
        Incoming::new(Box::new(bytes), true, max, Box::new(|e| Error::Fetch { url: "t".into(), why: e.to_string() }))
    }

    #[test]
    fn reads_at_most_one_byte_past_max_bytes_and_hashes_only_a_whole_body() {
        let mut whole = over(b"0123456789", 10);
        let (head, ended) = whole.head().unwrap();
        assert_eq!((head.as_slice(), ended), (&b"0123456789"[..], true));
        let (len, hash) = whole.finish(true);
        assert_eq!(len, Some(10));
        assert_eq!(hash, Some(Sha256::digest(b"0123456789").into()));

        let mut cut = over(b"0123456789A", 10);
        let mut data = Vec::new();
        assert!(!cut.read_rest(&mut data).unwrap());
        assert_eq!(data, b"0123456789");
        assert!(cut.past_limit());
        assert_eq!(cut.finish(true), (None, None));

        let mut drained = over(b"0123456789A", 10);
        assert!(!drained.drain().unwrap());
        let mut within = over(b"0123", 10);
        assert!(within.drain().unwrap());
        assert_eq!(within.finish(true).0, Some(4));
    }

    #[test]
    fn a_failed_read_is_named_by_the_source_and_kept_for_after_the_decoder() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::ConnectionReset, "reset"))
            }
        }
        let name = Box::new(|e: io::Error| Error::Fetch { url: "u".into(), why: format!("reading the body: {e}") });
        let mut broken = Incoming::new(Box::new(Broken), true, 100, name);
        let mut buf = [0u8; 8];
        assert!(broken.read(&mut buf).is_err(), "a decoder sees an I/O error");
        let e = broken.take_error().unwrap();
        assert_eq!(e.to_string(), Error::Fetch { url: "u".into(), why: "reading the body: reset".into() }.to_string());
        assert!(matches!(broken.drain(), Err(Error::Fetch { .. })));
    }
}
