//! HTTP GET under the fetch policy: every address connected to is checked by the resolver in
//! [`crate::resolve`] (so a DNS answer cannot change between check and connect, and a lookup
//! ends within the fetch's time), every redirect is checked again, interim 1xx responses are
//! skipped ([`crate::response`]), time is bounded per connect and in total, and the body is read
//! only as far as it is useful: all of a picture we decode, the first bytes of anything else,
//! or, when hashes are wanted (`Formats::files`), on to its end through the SHA-256 without
//! being kept. The name (Content-Disposition, else the shared URL) and date come from here too.

use std::io::{self, Read};
use std::time::Instant;

use url::Url;

use crate::background;
use crate::error::{Error, Result};
use crate::incoming::{Incoming, HEAD_LEN};
use crate::name;
use crate::options::Options;
use crate::policy;
use crate::resolve::{PolicyResolver, Within};
use crate::response::{self, BodyReader, Head, HeadError};
use crate::sniff::{self, Family};

pub use crate::resolve::{system_lookup, Lookup};
pub use crate::response::Validators;

/// Response header bytes accepted (names, values and separators, all lines together).
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// What a GET (or an upload's file) brought back, as far as it has been read.
#[derive(Debug, Default)]
pub struct Body {
    /// The first bytes of the body, or all of it when `complete`.
    pub data: Vec<u8>,
    pub complete: bool,
    pub content_length: Option<u64>,
    pub content_type: Option<String>,
    /// The body's length when it was read to its end (kept in `data` or only hashed; not yet
    /// known while the rest is still to be read).
    pub length: Option<u64>,
    /// SHA-256 of the whole body, when hashes were wanted and it was read to its end within
    /// `max_bytes`.
    pub sha256: Option<[u8; 32]>,
    /// A safe file name: Content-Disposition's, else the shared URL's last path segment.
    pub name: Option<String>,
    /// Last-Modified, as XEP-0082.
    pub date: Option<String>,
    /// The ETag and Last-Modified, as sent, for asking later whether the file changed.
    pub validators: Validators,
    /// The server answered a conditional GET with 304 Not Modified: there is no body, and
    /// the result kept from when the validators were given still holds.
    pub not_modified: bool,
}

impl Body {
    /// Whether the body is within `max_bytes` as far as the server says (a body without a
    /// Content-Length is, until it is read past it).
    pub fn fits(&self, opts: &Options) -> bool {
        self.content_length.is_none_or(|n| n <= opts.max_bytes)
    }

    /// Reads the rest of the body as far as describing it from memory needs: all of a
    /// picture or container within `max_bytes` (their headers, and an MP4's moov, may be
    /// anywhere), and, when hashes are wanted, the rest of anything else through the SHA-256
    /// without keeping it; past `max_bytes` (as the server says it is), only the head.
    pub fn read_on(mut self, mut rest: Incoming, opts: &Options) -> Result<Body> {
        let probed = sniff::sniff(&self.data).is_some_and(|f| f.family() != Family::Other);
        let fits = self.fits(opts);
        let mut ended = self.complete;
        if !self.complete && fits && probed {
            // The size the server gave, at once: growing by doubling would hold up to twice it.
            let declared = self.content_length.map_or(0, |n| usize::try_from(n.min(opts.max_bytes)).unwrap_or(0));
            self.data.reserve_exact(declared.saturating_sub(self.data.len()) + 1);
            self.complete = rest.read_rest(&mut self.data)?;
            ended = self.complete;
        } else if !self.complete && fits && opts.formats.files() {
            ended = rest.drain()?;
        }
        (self.length, self.sha256) = rest.finish(ended);
        Ok(self)
    }
}

/// What a tail read brought back: bytes from `start` on, of a file of `total` bytes if the
/// server said.
#[derive(Debug)]
pub struct Tail {
    pub data: Vec<u8>,
    pub start: u64,
    pub total: Option<u64>,
    /// Whether the body ended within the limit.
    pub complete: bool,
}

/// `bytes N-M/T` (or `/*`) to N and T.
fn content_range(value: &str) -> Option<(u64, Option<u64>)> {
    let (range, total) = value.trim().strip_prefix("bytes ")?.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(first) || !digits(last) || !(digits(total) || total == "*") {
        return None;
    }
    let (first, last): (u64, u64) = (first.parse().ok()?, last.parse().ok()?);
    let total = if total == "*" { None } else { Some(total.parse().ok()?) };
    // COMPAT Prosody 0.12's mod_http_file_share names the file's size as its last byte
    // (`bytes N-SIZE/SIZE`): only the first byte and the framing matter here.
    (first <= last && total.is_none_or(|t| last <= t)).then_some((first, total))
}

/// What a GET asks for besides the URL.
#[derive(Clone, Copy)]
enum Ask<'a> {
    /// The body from this byte on (`Range: bytes=N-`).
    From(u64),
    /// The body, unless it is unchanged since these validators (none: the body).
    IfChanged(&'a Validators),
}

/// A reusable HTTP client bound to one set of `Options`.
pub struct Fetcher {
    agent: ureq::Agent,
    opts: Options,
}

impl Fetcher {
    /// A client for `opts`: no redirects followed by ureq itself (we check each one), no
    /// compression, and no proxy: without its `proxy-from-env` feature ureq never reads
    /// HTTP_PROXY, which would otherwise connect for us to an address we never checked.
    pub fn new(opts: Options) -> Fetcher {
        Fetcher::with_lookup(opts, system_lookup())
    }

    /// A client for `opts` that resolves names with `lookup`; the policy checks its answers
    /// as it checks the system's.
    pub fn with_lookup(opts: Options, lookup: Lookup) -> Fetcher {
        let resolver = PolicyResolver::new(lookup, &opts);
        let agent = ureq::AgentBuilder::new()
            .resolver(resolver)
            .redirects(0)
            .timeout_connect(opts.connect_timeout)
            .timeout(opts.timeout)
            .user_agent(&opts.user_agent)
            .max_idle_connections(16)
            .max_idle_connections_per_host(2)
            .build();
        Fetcher { agent, opts }
    }

    /// The options this client was made with.
    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// GETs `raw`, following at most `max_redirects` checked redirects, and reads the body as
    /// far as describing it needs ([`Body::read_on`]).
    pub fn get(&self, raw: &str) -> Result<Body> {
        let (body, rest) = self.get_if_changed(raw, &Validators::default())?;
        body.read_on(rest, &self.opts)
    }

    /// Sends the GET, with `since`'s ETag as If-None-Match and its Last-Modified as
    /// If-Modified-Since when given, and reads the body's head; the rest is left to read. A
    /// 304 comes back as a `Body` with `not_modified` set, nothing read.
    pub fn get_if_changed(&self, raw: &str, since: &Validators) -> Result<(Body, Incoming)> {
        let (head, reader, url, shared) = self.open(raw, Ask::IfChanged(since))?;
        if head.status == 304 {
            if since.is_empty() {
                let why = "a 304 Not Modified to a GET that was not conditional".to_owned();
                return Err(Error::BadResponse { url: url.to_string(), why });
            }
            return Ok((Body { not_modified: true, ..Body::default() }, Incoming::empty()));
        }
        let (mut body, rest) = self.start_body(&head, reader, &url)?;
        body.name = head.filename().or_else(|| name::from_url(&shared));
        body.date = head.last_modified();
        body.validators = head.validators();
        Ok((body, rest))
    }

    /// The end of `raw` from byte `from` on, at most `limit` bytes, on a new request through
    /// the same policy: `Range: bytes=N-`, the one form Prosody's mod_http_file_share honours
    /// (13 answers 416 to the others, 0.12 ignores every Range and sends it all). Only a 206
    /// whose Content-Range starts at `from` is read; a server that ignores the Range (200),
    /// or answers for other bytes, costs no body read at all, and one that sends more than
    /// asked is cut at `limit`.
    pub fn tail(&self, raw: &str, from: u64, limit: usize) -> Result<Tail> {
        if from == 0 {
            // Prosody 13 answers 416 to bytes=0-, and it would be the whole file anyway.
            return Err(Error::BadUrl { url: raw.to_owned(), why: "a tail read from byte 0".to_owned() });
        }
        let (head, reader, url, _) = self.open(raw, Ask::From(from))?;
        let refused = |why: String| Error::BadResponse { url: url.to_string(), why };
        if head.status != 206 {
            return Err(refused(format!("HTTP {} to Range: bytes={from}- (Range not honoured)", head.status)));
        }
        let range = head.first("Content-Range").unwrap_or_default();
        let Some((start, total)) = content_range(range) else {
            return Err(refused(format!("a 206 with Content-Range {range:?}, not bytes N-M/T")));
        };
        if start != from {
            return Err(refused(format!("asked for bytes {from}- and got Content-Range {range:?}")));
        }
        let mut data = Vec::with_capacity(limit.min(HEAD_LEN));
        let mut reader = Checked(reader);
        let ended = read_up_to(&mut reader, &mut data, limit.saturating_add(1))
            .map_err(|e| Error::Fetch { url: url.to_string(), why: format!("reading the tail: {e}") })?;
        data.truncate(limit);
        Ok(Tail { data, start, total, complete: ended })
    }

    /// Sends the GET `ask` says and follows checked redirects to a final response (a 304
    /// included): its head, its body reader, its URL and the URL as shared.
    fn open(&self, raw: &str, ask: Ask) -> Result<(Head, BodyReader, Url, Url)> {
        let deadline = Instant::now() + self.opts.timeout;
        let mut url = policy::check_url(raw, &self.opts)?;
        // The name a client would give the file is the one in the URL the occupant shared,
        // not that of a redirect's target (often a storage key).
        let shared = url.clone();
        let mut redirects = 0;
        loop {
            background::check()?;
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Timeout { phase: "the whole fetch", limit: self.opts.timeout });
            }
            let within = Within::deadline(deadline, self.opts.timeout);
            let mut request = self
                .agent
                .request_url("GET", &url)
                .timeout(left)
                .set("Accept-Encoding", "identity")
                .set("Accept", "image/*, */*;q=0.5");
            match ask {
                Ask::From(from) => request = request.set("Range", &format!("bytes={from}-")),
                Ask::IfChanged(since) => {
                    if let Some(etag) = &since.etag {
                        request = request.set("If-None-Match", etag);
                    }
                    if let Some(date) = &since.last_modified {
                        request = request.set("If-Modified-Since", date);
                    }
                }
            }
            let response = request.call();
            drop(within);
            let response = match response {
                Ok(r) => r,
                Err(ureq::Error::Status(status, _)) => return Err(Error::Status { status, url: url.to_string() }),
                Err(ureq::Error::Transport(t)) => return Err(self.transport_error(t, &url)),
            };
            let head = Head::of(&response);
            let body: BodyReader = Box::new(Checked(response.into_reader()));
            let (head, body) = if head.is_interim() {
                response::after_interim(head, body).map_err(|e| self.head_error(e, &url))?
            } else {
                (head, body)
            };
            if (300..400).contains(&head.status) && head.status != 304 {
                redirects += 1;
                if redirects > self.opts.max_redirects {
                    return Err(Error::TooManyRedirects(self.opts.max_redirects));
                }
                let location = head.first("Location").and_then(|l| url.join(l).ok());
                let mut next = location.ok_or(Error::BadRedirect { status: head.status })?;
                policy::check_parsed(&mut next, &self.opts)?;
                url = next;
                continue;
            }
            // ureq returns these as errors itself, but not when they follow an interim response.
            if head.status >= 400 {
                return Err(Error::Status { status: head.status, url: url.to_string() });
            }
            return Ok((head, body, url, shared));
        }
    }

    /// Checks the response's framing and reads the body's head: the rest is left in the
    /// returned [`Incoming`], hashed as it is read.
    fn start_body(&self, head: &Head, reader: BodyReader, url: &Url) -> Result<(Body, Incoming)> {
        // ureq 2 takes up to 100 header lines of 100 kB each; we want far less.
        let header_bytes = head.size();
        if header_bytes > MAX_HEADER_BYTES {
            let why = format!("response headers of {header_bytes} bytes exceed {MAX_HEADER_BYTES}");
            return Err(Error::TooLarge { url: url.to_string(), why });
        }
        // Compressed bytes would be described as what they decompress to: refuse them, in
        // every Content-Encoding header and every item of each.
        let encodings = head.all("Content-Encoding");
        if items(&encodings).iter().any(|e| !e.eq_ignore_ascii_case("identity")) {
            let enc = encodings.iter().map(|v| v.trim()).collect::<Vec<_>>().join(", ");
            let why = format!("the server sent a {enc}-encoded body though identity was asked for");
            return Err(Error::BadResponse { url: url.to_string(), why });
        }
        // RFC 9112 6.3: with Transfer-Encoding the codings frame the body (ureq 2 then reads it
        // chunked) and a Content-Length is not its length; the size is known once it is all read.
        let codings = items(&head.all("Transfer-Encoding"));
        if let Some(other) = codings.iter().find(|c| !c.eq_ignore_ascii_case("chunked")) {
            let why = format!("the server sent a body transfer-coded with {other}; only chunked is read");
            return Err(Error::BadResponse { url: url.to_string(), why });
        }
        if !codings.is_empty() && head.version.eq_ignore_ascii_case("HTTP/1.0") {
            // ureq 2 does not unchunk it then, and RFC 9112 6.1 calls the framing faulty.
            let why = "an HTTP/1.0 response with Transfer-Encoding has no framing to trust".to_owned();
            return Err(Error::BadResponse { url: url.to_string(), why });
        }
        let content_length = if codings.is_empty() {
            head.first("Content-Length").and_then(|v| v.trim().parse::<u64>().ok())
        } else {
            None
        };
        let content_type = head.first("Content-Type").map(str::to_owned);
        // The analysis's budget and the fetch's deadline are the same `timeout` from nearly the
        // same start: whichever notices first, a body still arriving then timed out reading it.
        let (url_text, limit) = (url.to_string(), self.opts.timeout);
        let name_error = Box::new(move |e: io::Error| match (background::from_io(&e), e.kind()) {
            (Some(Error::OverBudget { .. }), _) | (None, io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) => {
                Error::Timeout { phase: "reading the body", limit }
            }
            (Some(stopped), _) => stopped,
            (None, _) => Error::Fetch { url: url_text.clone(), why: format!("reading the body: {e}") },
        });
        let mut rest = Incoming::new(reader, self.opts.formats.files(), self.opts.max_bytes, name_error);
        let (data, complete) = rest.head()?;
        Ok((Body { data, complete, content_length, content_type, ..Body::default() }, rest))
    }

    fn head_error(&self, e: HeadError, url: &Url) -> Error {
        let url = url.to_string();
        match e {
            HeadError::Io(e) => match (background::from_io(&e), e.kind()) {
                (Some(stopped), _) => stopped,
                (None, io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) => {
                    Error::Timeout { phase: "waiting for the response", limit: self.opts.timeout }
                }
                (None, _) => Error::Fetch { url, why: format!("reading the response after an interim one: {e}") },
            },
            HeadError::Malformed(why) => Error::BadResponse { url, why },
            HeadError::TooLarge(why) => Error::TooLarge { url, why },
        }
    }

    fn transport_error(&self, t: ureq::Transport, url: &Url) -> Error {
        let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&t);
        while let Some(e) = source {
            if let Some(io) = e.downcast_ref::<io::Error>() {
                // Ours, carried through ureq: a refused address, a lookup out of time.
                if let Some(ours) = io.get_ref().and_then(|i| i.downcast_ref::<Error>()) {
                    return ours.clone();
                }
                if io.kind() == io::ErrorKind::TimedOut || io.kind() == io::ErrorKind::WouldBlock {
                    return match t.kind() {
                        ureq::ErrorKind::ConnectionFailed => {
                            Error::Timeout { phase: "connecting", limit: self.opts.connect_timeout }
                        }
                        _ => Error::Timeout { phase: "waiting for the response", limit: self.opts.timeout },
                    };
                }
            }
            source = e.source();
        }
        // ureq's own header limits (100 fields, 100 kB a line), by its messages (ureq 2.12).
        let text = t.to_string();
        if text.contains("header field longer than") || text.contains("header fields in response") {
            return Error::TooLarge { url: url.to_string(), why: text };
        }
        match t.kind() {
            ureq::ErrorKind::Dns => Error::Resolve {
                host: url.host_str().unwrap_or_default().to_owned(),
                why: t.message().map_or_else(|| t.to_string(), str::to_owned),
            },
            _ => Error::Fetch { url: url.to_string(), why: text },
        }
    }
}

/// The items of a list-valued header, over all its lines, empty ones left out.
fn items<'a>(lines: &[&'a str]) -> Vec<&'a str> {
    lines.iter().flat_map(|v| v.split(',')).map(str::trim).filter(|i| !i.is_empty()).collect()
}

/// A body reader that stops between reads once the analysis's budget is spent or cancelled.
struct Checked<R>(R);

impl<R: Read> Read for Checked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        background::check().map_err(io::Error::other)?;
        self.0.read(buf)
    }
}

/// Reads into `buf` until it holds `limit` bytes or the body ends; true when it ended first.
fn read_up_to(reader: &mut impl Read, buf: &mut Vec<u8>, limit: usize) -> io::Result<bool> {
    let want = limit.saturating_sub(buf.len()) as u64;
    Ok((reader.take(want).read_to_end(buf)? as u64) < want)
}
