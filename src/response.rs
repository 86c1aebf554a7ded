//! A response as the fetch reads it: its [`Head`] and a reader of its body.
//!
//! ureq 2 parses the first head on the connection and takes it for the final one, so an
//! interim response (`100 Continue`, `103 Early Hints`, any 1xx) came back as the answer, and
//! the real one as its body. ureq frames such a head's body by the connection's close, so
//! that body is the rest of the stream: [`after_interim`] reads the heads from there, skips
//! every further interim one, and frames the final response's body as RFC 9112 6.3 says
//! (chunked, Content-Length, or up to the close). All the heads it reads share one bound.
//!
//! The final head also gives the file's name ([`content_disposition_filename`]) and date
//! ([`http_date_to_xep0082`]).

use std::collections::HashSet;
use std::io::{self, BufRead, BufReader, Read};

/// A body as it is read: unchunked and cut at its length where the head says so.
pub type BodyReader = Box<dyn Read + Send + Sync>;

/// Bytes of all the heads read after an interim response, together.
pub const MAX_HEADS_BYTES: usize = 64 * 1024;

/// Bytes of a chunk-size line (with its extensions).
const MAX_CHUNK_LINE: usize = 1024;

/// The longest ETag or Last-Modified kept (a real one is under 100 bytes).
pub const MAX_VALIDATOR: usize = 256;

/// A response's ETag and Last-Modified, as sent: a later GET with If-None-Match and
/// If-Modified-Since learns whether the file changed without reading it again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

impl Validators {
    pub fn is_empty(&self) -> bool {
        self.etag.is_none() && self.last_modified.is_none()
    }
}

/// The status line and header fields of a response.
#[derive(Debug, Clone, Default)]
pub struct Head {
    pub status: u16,
    /// As sent: `HTTP/1.1`.
    pub version: String,
    /// Names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The head ureq parsed (its header values that are not text are left out, as ureq does).
    pub fn of(r: &ureq::Response) -> Head {
        let mut headers = Vec::new();
        let mut seen = HashSet::new();
        for name in r.headers_names() {
            if seen.insert(name.clone()) {
                headers.extend(r.all(&name).into_iter().map(|v| (name.clone(), v.to_owned())));
            }
        }
        Head { status: r.status(), version: r.http_version().to_owned(), headers }
    }

    /// Every value of the header `name`, in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }

    /// The first value of the header `name`.
    pub fn first(&self, name: &str) -> Option<&str> {
        self.all(name).first().copied()
    }

    /// The bytes of the header lines (name, ": ", value, CRLF).
    pub fn size(&self) -> usize {
        self.headers.iter().map(|(n, v)| n.len() + v.len() + 4).sum()
    }

    /// The file name the server gives in Content-Disposition, made safe ([`crate::name::safe`]).
    pub fn filename(&self) -> Option<String> {
        self.first("Content-Disposition").and_then(content_disposition_filename).and_then(|n| crate::name::safe(&n))
    }

    /// Last-Modified as XEP-0082 (`YYYY-MM-DDThh:mm:ssZ`).
    pub fn last_modified(&self) -> Option<String> {
        self.first("Last-Modified").and_then(http_date_to_xep0082)
    }

    /// What a later request can send to be told the file has not changed (RFC 9110 8.8).
    pub fn validators(&self) -> Validators {
        let usable = |v: &str| {
            let v = v.trim();
            // Sent back as a header value later: visible ASCII, short, as the RFC's grammar.
            (!v.is_empty() && v.len() <= MAX_VALIDATOR && v.bytes().all(|b| b == b' ' || b.is_ascii_graphic()))
                .then(|| v.to_owned())
        };
        Validators {
            etag: self.first("ETag").and_then(usable),
            last_modified: self.first("Last-Modified").filter(|v| http_date_to_xep0082(v).is_some()).and_then(usable),
        }
    }

    /// An interim response: more heads follow on the connection.
    pub fn is_interim(&self) -> bool {
        (100..200).contains(&self.status)
    }
}

/// The file name in a Content-Disposition value (RFC 6266), as sent (not yet made safe):
/// `filename*` (RFC 8187: UTF-8 or ISO-8859-1, percent-encoded) when it decodes, else
/// `filename` (a token or a quoted string). The first of each parameter counts.
pub fn content_disposition_filename(value: &str) -> Option<String> {
    let (mut plain, mut extended) = (None, None);
    let mut rest = value.split_once(';')?.1; // past the disposition type
    while !rest.is_empty() {
        let (name, after) = rest.split_once('=').unwrap_or((rest, ""));
        if name.contains(';') {
            // A parameter without a value: skip to the next one.
            rest = rest.split_once(';').map_or("", |(_, r)| r);
            continue;
        }
        let (param, tail) = param_value(after.trim_start());
        rest = tail;
        match name.trim().to_ascii_lowercase().as_str() {
            "filename" if plain.is_none() => plain = Some(param),
            "filename*" if extended.is_none() => extended = Some(param),
            _ => {}
        }
    }
    extended.and_then(|v| ext_value(&v)).or(plain)
}

/// A parameter's value (quoted string unescaped, or a token up to `;`) and what follows it.
fn param_value(s: &str) -> (String, &str) {
    let Some(quoted) = s.strip_prefix('"') else {
        let (v, rest) = s.split_once(';').unwrap_or((s, ""));
        return (v.trim().to_owned(), rest);
    };
    let mut out = String::new();
    let mut chars = quoted.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => out.extend(chars.next().map(|(_, c)| c)),
            '"' => {
                let after = &quoted[i + 1..];
                return (out, after.split_once(';').map_or("", |(_, r)| r));
            }
            c => out.push(c),
        }
    }
    (out, "") // unterminated: what there is
}

/// An RFC 8187 `charset'language'value`, decoded; other charsets are not read.
fn ext_value(v: &str) -> Option<String> {
    let mut parts = v.splitn(3, '\'');
    let (charset, _language, encoded) = (parts.next()?, parts.next()?, parts.next()?);
    let bytes = crate::name::percent_decode(encoded);
    if charset.eq_ignore_ascii_case("utf-8") {
        String::from_utf8(bytes).ok()
    } else if charset.eq_ignore_ascii_case("iso-8859-1") {
        Some(bytes.iter().map(|&b| b as char).collect())
    } else {
        None
    }
}

/// An HTTP date (IMF-fixdate, and the obsolete RFC 850 and asctime forms) as XEP-0082
/// `YYYY-MM-DDThh:mm:ssZ`.
pub fn http_date_to_xep0082(value: &str) -> Option<String> {
    let t = httpdate::parse_http_date(value.trim()).ok()?;
    let secs = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    let (days, s) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    Some(format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", s / 3600, s / 60 % 60, s % 60))
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (H. Hinnant's `civil_from_days`, for days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// Why no final response could be read after an interim one.
#[derive(Debug)]
pub enum HeadError {
    /// The stream failed or closed.
    Io(io::Error),
    /// What came is not an HTTP/1 response head, or has framing that cannot be trusted.
    Malformed(String),
    /// The heads together are over [`MAX_HEADS_BYTES`].
    TooLarge(String),
}

/// The final response after the interim one `first`, whose body (as ureq framed it) is `rest`.
pub fn after_interim(first: Head, rest: BodyReader) -> Result<(Head, BodyReader), HeadError> {
    // No 1xx has a body (RFC 9110 15.2), but ureq framed this one by these headers: the rest of
    // the stream is then not where the next head starts.
    if let Some((name, _)) = first.headers.iter().find(|(n, _)| n == "content-length" || n == "transfer-encoding") {
        let why = format!("an interim {} response with a {name} header: its framing cannot be trusted", first.status);
        return Err(HeadError::Malformed(why));
    }
    let mut rest = BufReader::new(rest);
    let mut budget = MAX_HEADS_BYTES;
    let mut head = first;
    while head.is_interim() {
        if head.status == 101 {
            return Err(HeadError::Malformed("101 Switching Protocols, though no upgrade was asked for".to_owned()));
        }
        head = read_head(&mut rest, &mut budget)?;
    }
    let body = framed(&head, rest)?;
    Ok((head, body))
}

/// The body of a response whose head is `head` and whose bytes follow in `rest`.
fn framed(head: &Head, rest: BufReader<BodyReader>) -> Result<BodyReader, HeadError> {
    if head.status == 204 || head.status == 304 {
        return Ok(Box::new(io::empty()));
    }
    if head.all("transfer-encoding").iter().any(|v| !v.trim().is_empty()) {
        return Ok(Box::new(Chunked { inner: rest, left: 0, done: false }));
    }
    let lengths = head.all("content-length");
    let Some(first) = lengths.first() else {
        return Ok(Box::new(rest));
    };
    match first.parse::<u64>() {
        Ok(n) if first.bytes().all(|b| b.is_ascii_digit()) && lengths.iter().all(|l| l == first) => {
            Ok(Box::new(rest.take(n)))
        }
        _ => Err(HeadError::Malformed(format!("Content-Length {:?} is not one length", lengths.join(", ")))),
    }
}

/// One response head: the status line and header lines up to the empty line.
fn read_head(r: &mut impl BufRead, budget: &mut usize) -> Result<Head, HeadError> {
    let too_large = || HeadError::TooLarge(format!("the response heads exceed {MAX_HEADS_BYTES} bytes"));
    let line = read_line(r, budget).map_err(HeadError::Io)?.ok_or_else(too_large)?;
    let (version, status) = status_line(&line).ok_or_else(|| {
        HeadError::Malformed(format!("{:?} is not a status line", String::from_utf8_lossy(&line[..line.len().min(80)])))
    })?;
    let mut head = Head { status, version, headers: Vec::new() };
    loop {
        let line = read_line(r, budget).map_err(HeadError::Io)?.ok_or_else(too_large)?;
        if line.is_empty() {
            return Ok(head);
        }
        let field = header_line(&line).ok_or_else(|| {
            let shown = String::from_utf8_lossy(&line[..line.len().min(80)]).into_owned();
            HeadError::Malformed(format!("{shown:?} is not a header line"))
        })?;
        head.headers.push(field);
    }
}

/// `HTTP/1.x NNN[ reason]` to its version and status (the reason may be missing, as ureq allows).
fn status_line(line: &[u8]) -> Option<(String, u16)> {
    let (version, rest) = (line.get(..8)?, &line[8..]);
    let code = rest.get(1..4)?;
    let ok = version.starts_with(b"HTTP/1.")
        && version[7].is_ascii_digit()
        && rest[0] == b' '
        && code.iter().all(u8::is_ascii_digit)
        && code[0] != b'0'
        && matches!(rest.get(4), None | Some(b' '));
    let status = || code.iter().fold(0, |n, d| n * 10 + u16::from(d - b'0'));
    ok.then(|| (String::from_utf8_lossy(version).into_owned(), status()))
}

/// `name: value` to the lower-case name and the trimmed value. A name must be a token: no
/// space before the colon, no line folded onto the previous one (RFC 9112 5).
fn header_line(line: &[u8]) -> Option<(String, String)> {
    let colon = line.iter().position(|&b| b == b':')?;
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    let tchar = |b: &u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b);
    if name.is_empty() || !name.iter().all(tchar) {
        return None;
    }
    let value = String::from_utf8_lossy(value).trim_matches([' ', '\t']).to_owned();
    Some((String::from_utf8_lossy(name).to_ascii_lowercase(), value))
}

/// A line without its CRLF (or bare LF), or `None` when it is longer than `budget`, which is
/// reduced by what was read. The stream ending first is an error.
fn read_line(r: &mut impl BufRead, budget: &mut usize) -> io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    let n = r.take(*budget as u64 + 1).read_until(b'\n', &mut line)?;
    if n > *budget {
        return Ok(None);
    }
    *budget -= n;
    if line.pop() != Some(b'\n') {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the connection closed before the end of a line"));
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(Some(line))
}

/// A chunked body (RFC 9112 7.1), unchunked; its trailers are read and dropped.
struct Chunked<R> {
    inner: R,
    /// Bytes of the current chunk not yet read.
    left: u64,
    done: bool,
}

impl<R: BufRead> Chunked<R> {
    /// The next chunk's size, from `HEX[;extensions]`.
    fn size(&mut self) -> io::Result<u64> {
        let mut budget = MAX_CHUNK_LINE;
        let line = self.line(&mut budget)?;
        let hex = line.split(|&b| b == b';').next().unwrap_or_default().trim_ascii_end();
        match std::str::from_utf8(hex).map(|h| u64::from_str_radix(h, 16)) {
            Ok(Ok(n)) if hex.iter().all(u8::is_ascii_hexdigit) => Ok(n),
            _ => Err(malformed("no size")),
        }
    }

    /// A line of the chunk framing, within `budget`.
    fn line(&mut self, budget: &mut usize) -> io::Result<Vec<u8>> {
        read_line(&mut self.inner, budget)?.ok_or_else(|| malformed("a line too long"))
    }
}

fn malformed(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("a malformed chunk: {why}"))
}

impl<R: BufRead> Read for Chunked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            self.left = self.size()?;
            if self.left == 0 {
                let mut trailers = MAX_HEADS_BYTES;
                while !self.line(&mut trailers)?.is_empty() {}
                self.done = true;
                return Ok(0);
            }
        }
        let want = buf.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the connection closed inside a chunk"));
        }
        self.left -= n as u64;
        if self.left == 0 && !read_line(&mut self.inner, &mut 2)?.is_some_and(|l| l.is_empty()) {
            return Err(malformed("no CRLF after its data"));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_are_http_1_with_three_digits() {
        assert_eq!(status_line(b"HTTP/1.1 200 OK"), Some(("HTTP/1.1".to_owned(), 200)));
        assert_eq!(status_line(b"HTTP/1.0 404"), Some(("HTTP/1.0".to_owned(), 404)));
        assert_eq!(status_line(b"HTTP/1.1 103 Early \xffHints"), Some(("HTTP/1.1".to_owned(), 103)));
        for bad in
            ["HTTP/1.1 2000 OK", "HTTP/1.1 20 OK", "HTTP/2 200 OK", "HTTP/1.1  200", "HTTP/1.1 099 x", "ICY 200 OK"]
        {
            assert_eq!(status_line(bad.as_bytes()), None, "{bad}");
        }
        assert_eq!(status_line(b""), None);
    }

    #[test]
    fn header_lines_have_a_token_name() {
        let field = |l: &str| header_line(l.as_bytes());
        assert_eq!(field("Link: </a>; rel=preload"), Some(("link".to_owned(), "</a>; rel=preload".to_owned())));
        assert_eq!(field("X-A:\t v \t"), Some(("x-a".to_owned(), "v".to_owned())));
        assert_eq!(field("X-Empty:"), Some(("x-empty".to_owned(), String::new())));
        for bad in [" folded: x", "Name : v", ": v", "Na me: v", "no colon", "Näme: v"] {
            assert_eq!(field(bad), None, "{bad}");
        }
    }

    #[test]
    fn content_disposition_gives_filename_star_then_filename() {
        let name = content_disposition_filename;
        assert_eq!(name("attachment; filename=\"a b.jpg\"").as_deref(), Some("a b.jpg"));
        assert_eq!(name("inline; filename=plain.png").as_deref(), Some("plain.png"));
        assert_eq!(name("attachment;filename=plain.png;size=3").as_deref(), Some("plain.png"));
        assert_eq!(
            name("attachment; filename=\"euro.jpg\"; filename*=UTF-8''%E2%82%AC%20rates.jpg").as_deref(),
            Some("\u{20ac} rates.jpg")
        );
        assert_eq!(name("attachment; filename*=utf-8'en'caf%C3%A9.pdf; filename=x").as_deref(), Some("café.pdf"));
        assert_eq!(name("attachment; filename*=iso-8859-1''caf%E9.pdf").as_deref(), Some("café.pdf"));
        // Quoted strings: escapes undone, a ';' inside is part of the name.
        assert_eq!(name(r#"attachment; filename="q\"uo;te\\d.txt"; x=1"#).as_deref(), Some(r#"q"uo;te\d.txt"#));
        assert_eq!(name("attachment; foo; filename=a.txt").as_deref(), Some("a.txt"));
        // An undecodable filename* falls back to filename.
        assert_eq!(name("attachment; filename*=UTF-8''%FF.jpg; filename=ok.jpg").as_deref(), Some("ok.jpg"));
        assert_eq!(name("attachment; filename*=koi8-r''x.jpg; filename=ok.jpg").as_deref(), Some("ok.jpg"));
        assert_eq!(name("attachment; filename=first.jpg; filename=second.jpg").as_deref(), Some("first.jpg"));
        for none in ["attachment", "inline;", "attachment; name=x.jpg", "", "attachment; filename*=UTF-8''%FF"] {
            assert_eq!(name(none), None, "{none}");
        }
    }

    #[test]
    fn hostile_content_disposition_names_are_made_safe() {
        let head = |cd: &str| Head { headers: vec![("content-disposition".into(), cd.into())], ..Head::default() };
        assert_eq!(head("attachment; filename=\"../../x\"").filename().as_deref(), Some("x"));
        assert_eq!(head("attachment; filename*=UTF-8''a%00b.jpg").filename().as_deref(), Some("ab.jpg"));
        assert_eq!(head("attachment; filename*=UTF-8''%E2%80%AEgpj.exe").filename().as_deref(), Some("gpj.exe"));
        assert_eq!(head("attachment; filename=\"..\"").filename(), None);
        let long = format!("attachment; filename=\"{}.png\"", "x".repeat(10_000));
        assert_eq!(head(&long).filename().map(|n| n.len()), Some(crate::name::MAX_NAME_BYTES));
    }

    #[test]
    fn http_dates_become_xep_0082() {
        let d = http_date_to_xep0082;
        assert_eq!(d("Wed, 21 Oct 2015 07:28:00 GMT").as_deref(), Some("2015-10-21T07:28:00Z"));
        assert_eq!(d("Thu, 01 Jan 1970 00:00:00 GMT").as_deref(), Some("1970-01-01T00:00:00Z"));
        assert_eq!(d("Tue, 29 Feb 2000 23:59:59 GMT").as_deref(), Some("2000-02-29T23:59:59Z"));
        assert_eq!(d("Fri, 31 Dec 9999 23:59:59 GMT").as_deref(), Some("9999-12-31T23:59:59Z"));
        assert_eq!(d("Sunday, 06-Nov-94 08:49:37 GMT").as_deref(), Some("1994-11-06T08:49:37Z"));
        assert_eq!(d("Sun Nov  6 08:49:37 1994").as_deref(), Some("1994-11-06T08:49:37Z"));
        for bad in
            ["", "yesterday", "Wed, 32 Oct 2015 07:28:00 GMT", "2015-10-21T07:28:00Z", "Wed, 21 Oct 2015 25:28:00 GMT"]
        {
            assert_eq!(d(bad), None, "{bad}");
        }
    }

    #[test]
    fn chunks_are_unchunked_and_the_trailers_read_past() {
        let framed = b"5;ext=1\r\nhello\r\n1\r\n \r\n6\r\nworld!\r\n0\r\nTrailer: x\r\n\r\nNEXT".to_vec();
        let mut rest = io::Cursor::new(framed);
        let mut out = Vec::new();
        Chunked { inner: &mut rest, left: 0, done: false }.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"hello world!");
        assert_eq!(&rest.get_ref()[rest.position() as usize..], b"NEXT", "read past the end of the body");
    }
}
