//! Where the bytes come from: a policy-checked HTTP GET ([`crate::fetch`]) for a URL anyone
//! shared, or this server's own upload store on disk ([`LocalFile`]) for a URL of its own
//! mod_http_file_share. Both hand the same [`Body`] head and [`Incoming`] rest to
//! [`crate::analyze::describe_incoming`], which does not know which it was; both are read under
//! the same limits (`max_bytes`, the time budget, the yield points).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use crate::analyze::{describe_incoming, tail_limit, Metadata};
use crate::background::{self, Budget, Cancel};
use crate::error::{Error, Result};
use crate::fetch::{Body, Fetcher, Tail, Validators};
use crate::incoming::Incoming;
use crate::name;

/// Something an analysis can read a body from.
pub trait Source: Send {
    /// The body's head, and the rest to read, under the fetcher's options' limits within the
    /// calling thread's budget.
    fn open(&self, fetcher: &Fetcher) -> Result<(Body, Incoming)>;
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
    fn open(&self, fetcher: &Fetcher) -> Result<(Body, Incoming)> {
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

impl LocalFile {
    fn error(&self, why: String) -> Error {
        Error::File { path: self.path.display().to_string(), why }
    }

    /// Names a failed read of the file (the budget's stop is passed on as it is).
    fn read_error(&self) -> impl Fn(io::Error) -> Error + Send + 'static {
        let path = self.path.display().to_string();
        move |e| match background::from_io(&e) {
            Some(stopped) => stopped,
            None => Error::File { path: path.clone(), why: format!("reading: {e}") },
        }
    }

    /// The file and its size. O_NOFOLLOW: a symlink in the store is refused, never followed
    /// out of it; O_NONBLOCK: a FIFO put there cannot hang the worker at open.
    fn open_file(&self) -> Result<(File, u64)> {
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
        let (mut file, size) = self.open_file()?;
        file.seek(SeekFrom::Start(from)).map_err(self.read_error())?;
        let mut data = Vec::new();
        let read = file.take(limit as u64).read_to_end(&mut data).map_err(self.read_error())?;
        Ok(Tail { data, start: from, total: Some(size), complete: from.saturating_add(read as u64) >= size })
    }

    fn open(&self, fetcher: &Fetcher) -> Result<(Body, Incoming)> {
        let (file, size) = self.open_file()?;
        let opts = fetcher.options();
        let mut rest = Incoming::new(Box::new(file), opts.formats.files(), opts.max_bytes, Box::new(self.read_error()));
        let (data, complete) = rest.head()?;
        let body = Body {
            data,
            complete,
            content_length: Some(size),
            content_type: self.content_type.clone(),
            name: self.name.as_deref().and_then(name::safe),
            date: self.date.clone(),
            ..Body::default()
        };
        Ok((body, rest))
    }
}

fn open_error(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ELOOP) => "a symlink, not followed".to_owned(),
        Some(libc::ENOENT) => "no such file (not uploaded yet, or removed)".to_owned(),
        _ => e.to_string(),
    }
}

/// Reads `source` and describes it within `fetcher`'s time budget from now, stopped at the
/// next yield point once `cancel` is set; a panic below becomes this job's error.
pub fn analyze(source: &dyn Source, fetcher: &Fetcher, cancel: Option<Cancel>) -> Result<Metadata> {
    let _budget = Budget::start(fetcher.options().timeout, cancel);
    background::check()?;
    catch_unwind(AssertUnwindSafe(|| {
        let (body, rest) = source.open(fetcher)?;
        if body.not_modified {
            return Ok(Metadata { unchanged: true, ..Metadata::default() });
        }
        let limit = tail_limit(fetcher.options()) as usize;
        describe_incoming(body, rest, fetcher.options(), &|from| source.tail(fetcher, from, limit))
    }))
    .map_err(Error::from_panic)?
}
