//! Where the bytes come from: a policy-checked HTTP GET ([`crate::fetch`]) for a URL anyone
//! shared, or this server's own upload store on disk ([`LocalFile`]) for a URL of its own
//! mod_http_file_share. Both hand the same [`Body`] to [`crate::analyze::describe`], which
//! does not know which it was; both are read under the same limits (`max_bytes`, the time
//! budget, the yield points).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use crate::analyze::{describe_with_tail, tail_limit, Metadata};
use crate::background::{self, Budget, Cancel};
use crate::error::{Error, Result};
use crate::fetch::{Body, Fetcher, Tail, Validators};
use crate::name;
use crate::options::Options;
use crate::sniff::{self, Family};

/// Bytes read before deciding whether the rest is worth reading, as the HTTP source does.
const HEAD_LEN: usize = 64 * 1024;

/// Something an analysis can read a body from.
pub trait Source: Send {
    /// The body, read under the fetcher's options' limits within the calling thread's budget.
    fn body(&self, fetcher: &Fetcher) -> Result<Body>;
    /// At most `limit` bytes from offset `from` on, for a container whose index is at its end.
    fn tail(&self, fetcher: &Fetcher, from: u64, limit: usize) -> Result<Tail>;
}

/// A URL, fetched over HTTP under the fetch policy; a conditional GET when `since` holds
/// the validators of a result kept from an earlier fetch.
pub struct Remote {
    pub url: String,
    pub since: Validators,
}

impl Source for Remote {
    fn body(&self, fetcher: &Fetcher) -> Result<Body> {
        fetcher.get_if_changed(&self.url, &self.since)
    }

    fn tail(&self, fetcher: &Fetcher, from: u64, limit: usize) -> Result<Tail> {
        fetcher.tail(&self.url, from, limit)
    }
}

/// An upload of this server's mod_http_file_share: its file, and what the upload record
/// says of it (the plugin reads the record; the file's name and type are the uploader's).
#[derive(Debug, Clone)]
pub struct LocalFile {
    /// The slot's file in the store. The plugin builds it from a slot id it has checked
    /// (letters, digits, `-`, `_`), so no part of a URL is ever a path here; the last
    /// component must be a regular file, not a symlink.
    pub path: PathBuf,
    pub name: Option<String>,
    /// XEP-0082, from the upload's time.
    pub date: Option<String>,
    pub content_type: Option<String>,
}

/// Bytes read at a time between two checks of the budget.
const CHUNK: usize = 64 * 1024;

impl LocalFile {
    fn error(&self, why: String) -> Error {
        Error::File { path: self.path.display().to_string(), why }
    }

    fn read_error(&self, e: io::Error) -> Error {
        match background::from_io(&e) {
            Some(stopped) => stopped,
            None => self.error(format!("reading: {e}")),
        }
    }

    /// The file and its size. O_NOFOLLOW: a symlink in the store is refused, never followed
    /// out of it; O_NONBLOCK: a FIFO put there cannot hang the worker at open.
    fn open(&self) -> Result<(File, u64)> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&self.path)
            .map_err(|e| self.error(open_error(&e)))?;
        let meta = file.metadata().map_err(|e| self.error(e.to_string()))?;
        if !meta.is_file() {
            return Err(self.error("not a regular file".to_owned()));
        }
        Ok((file, meta.len()))
    }
}

impl Source for LocalFile {
    fn tail(&self, _: &Fetcher, from: u64, limit: usize) -> Result<Tail> {
        let (mut file, size) = self.open()?;
        file.seek(SeekFrom::Start(from)).map_err(|e| self.read_error(e))?;
        let mut data = Vec::new();
        let read = file.take(limit as u64).read_to_end(&mut data).map_err(|e| self.read_error(e))?;
        Ok(Tail { data, start: from, total: Some(size), complete: from.saturating_add(read as u64) >= size })
    }

    fn body(&self, fetcher: &Fetcher) -> Result<Body> {
        let (file, size) = self.open()?;
        let mut body = read_limited(file, size, fetcher.options()).map_err(|e| self.read_error(e))?;
        body.content_type = self.content_type.clone();
        body.name = self.name.as_deref().and_then(name::safe);
        body.date = self.date.clone();
        Ok(body)
    }
}

fn open_error(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ELOOP) => "a symlink, not followed".to_owned(),
        Some(libc::ENOENT) => "no such file (not uploaded yet, or removed)".to_owned(),
        _ => e.to_string(),
    }
}

/// As the HTTP source reads a body: all of a picture or container within `max_bytes`, and, when
/// hashes are wanted, the rest of anything else through the SHA-256 without keeping it;
/// past `max_bytes`, only the head.
fn read_limited(file: File, size: u64, opts: &Options) -> io::Result<Body> {
    let mut body = Body { content_length: Some(size), ..Body::default() };
    let mut reader = file.take(opts.max_bytes.saturating_add(1));
    let head_len = (HEAD_LEN as u64).min(size).min(opts.max_bytes) as usize;
    body.data.resize(head_len, 0);
    reader.read_exact(&mut body.data)?;
    let fits = size <= opts.max_bytes;
    let probed = sniff::sniff(&body.data).is_some_and(|f| f.family() != Family::Other);
    let hashes = opts.formats.files();
    if !fits || !(probed || hashes) {
        body.complete = head_len as u64 == size;
        body.length = body.complete.then_some(size);
        return Ok(body);
    }
    let mut hasher = hashes.then(|| Sha256::new_with_prefix(&body.data));
    let mut chunk = vec![0u8; CHUNK];
    let mut read = head_len as u64;
    loop {
        background::yield_point().map_err(io::Error::other)?;
        let n = reader.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        read += n as u64;
        if read > opts.max_bytes {
            // It grew past the limit while we read it: what was read is all that is known.
            body.data.truncate(head_len);
            return Ok(body);
        }
        if let Some(h) = hasher.as_mut() {
            h.update(&chunk[..n]);
        }
        if probed {
            body.data.extend_from_slice(&chunk[..n]);
        }
    }
    body.complete = probed || read == head_len as u64;
    body.length = Some(read);
    body.sha256 = hasher.map(|h| h.finalize().into());
    Ok(body)
}

/// Reads `source` and describes it within `fetcher`'s time budget from now, stopped at the
/// next yield point once `cancel` is set; a panic below becomes this job's error.
pub fn analyze(source: &dyn Source, fetcher: &Fetcher, cancel: Option<Cancel>) -> Result<Metadata> {
    let _budget = Budget::start(fetcher.options().timeout, cancel);
    background::check()?;
    catch_unwind(AssertUnwindSafe(|| {
        let body = source.body(fetcher)?;
        if body.not_modified {
            return Ok(Metadata { unchanged: true, ..Metadata::default() });
        }
        let limit = tail_limit(fetcher.options()) as usize;
        describe_with_tail(&body, fetcher.options(), &|from| source.tail(fetcher, from, limit))
    }))
    .map_err(Error::from_panic)?
}
