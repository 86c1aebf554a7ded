//! The one error type. Every message is meant for a server admin reading a log line; every
//! error also has a short stable [`Error::kind`] for a metric.

use std::net::IpAddr;
use std::time::Duration;

/// Why an analysis, a fetch or a call from Lua failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("invalid URL {url:?}: {why}")]
    BadUrl { url: String, why: String },
    #[error("refused: scheme {0:?} is not http or https")]
    Scheme(String),
    #[error("refused: {addr} is {why}")]
    Address { addr: IpAddr, why: &'static str },
    #[error("refused: {0} is in media_metadata_deny_hosts")]
    HostDenied(String),
    #[error("cannot resolve {host}: {why}")]
    Resolve { host: String, why: String },
    #[error("{phase} timed out (limit {}s)", limit.as_secs_f64())]
    Timeout { phase: &'static str, limit: Duration },
    #[error("HTTP {status} from {url}")]
    Status { status: u16, url: String },
    #[error("more than {0} redirects")]
    TooManyRedirects(u32),
    #[error("redirect {status} without a usable Location")]
    BadRedirect { status: u16 },
    /// The connection failed or broke: refused, reset, TLS, a malformed response.
    #[error("fetching {url} failed: {why}")]
    Fetch { url: String, why: String },
    /// A response we will not read: headers over our limit (or ureq's own).
    #[error("fetching {url} failed: {why}")]
    TooLarge { url: String, why: String },
    /// A response we will not read: a compressed body though identity was asked for.
    #[error("fetching {url} failed: {why}")]
    BadResponse { url: String, why: String },
    /// A local upload's file could not be read (missing, a symlink, not a regular file).
    #[error("cannot read {path}: {why}")]
    File { path: String, why: String },
    #[error("cannot decode {format}: {why}")]
    Decode { format: &'static str, why: String },
    /// The analysis ran past `Options::timeout`, counted from its start, decoding included.
    #[error("analysis stopped: over its time budget of {}s", limit.as_secs_f64())]
    OverBudget { limit: Duration },
    /// The job was cancelled (`Pool::cancel`, or the pool closed) before it finished.
    #[error("analysis cancelled")]
    Cancelled,
    #[error("invalid option {name}: {why}")]
    Option { name: String, why: String },
    #[error("invalid BlurHash: {0}")]
    BlurHash(String),
    /// Pixels the ThumbHash or PNG encoder cannot take (never seen from a decoded image).
    #[error("cannot make a thumbnail: {0}")]
    Thumbnail(String),
    #[error("queue full")]
    QueueFull,
    #[error("the pool is closed")]
    Closed,
    #[error("analysis panicked: {0}")]
    Panic(String),
}

impl Error {
    /// An `Error::Option` for the option `name`.
    pub fn option(name: &str, why: impl Into<String>) -> Self {
        Error::Option { name: name.to_owned(), why: why.into() }
    }

    /// The text of a caught panic's payload.
    pub fn from_panic(payload: Box<dyn std::any::Any + Send>) -> Self {
        let text = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        Error::Panic(text)
    }

    /// A short, stable label for what went wrong, for a metric (Lua gets it beside the message).
    /// The whole set:
    ///
    /// - `bad_url`: the URL does not parse, or has no host;
    /// - `refused`: the policy refused it: a scheme other than http(s), a host in
    ///   `deny_hosts`, or an address that is not public (loopback, private, link-local, ...);
    /// - `dns`: the host name does not resolve;
    /// - `timeout`: connecting, waiting for the response or reading the body took too long;
    /// - `http_status`: the server answered with an error status (4xx, 5xx);
    /// - `redirect`: more redirects than `max_redirects`, or one without a usable Location;
    /// - `network`: the connection failed or broke (refused, reset, TLS, malformed response);
    /// - `too_large`: the response headers are over our limit;
    /// - `bad_response`: the body is compressed though identity was asked for;
    /// - `undecodable`: the image is broken or in a variant the decoders do not read;
    /// - `over_budget`: the analysis ran past its time budget (the fetch timeout, counted from
    ///   its start, decoding included) and was stopped;
    /// - `cancelled`: the job was cancelled (`pool:cancel`, or the pool was closed);
    /// - `panic`: a bug: the analysis panicked (caught; only this URL failed);
    /// - `queue_full`: the pool's queue is full (from `submit`);
    /// - `closed`: the pool is closed (from `submit`);
    /// - `bad_option`: an option was refused (raised, not returned);
    /// - `bad_blurhash`: a BlurHash string or its parameters are invalid (`blurhash_*`);
    /// - `bad_thumbnail`: the ThumbHash or PNG encoder refused its pixels (a note, not an error
    ///   of the analysis).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::BadUrl { .. } => "bad_url",
            Error::Scheme(_) | Error::Address { .. } | Error::HostDenied(_) => "refused",
            Error::Resolve { .. } => "dns",
            Error::Timeout { .. } => "timeout",
            Error::Status { .. } => "http_status",
            Error::TooManyRedirects(_) | Error::BadRedirect { .. } => "redirect",
            Error::Fetch { .. } => "network",
            Error::TooLarge { .. } => "too_large",
            Error::BadResponse { .. } => "bad_response",
            Error::File { .. } => "file",
            Error::Decode { .. } => "undecodable",
            Error::OverBudget { .. } => "over_budget",
            Error::Cancelled => "cancelled",
            Error::Panic(_) => "panic",
            Error::QueueFull => "queue_full",
            Error::Closed => "closed",
            Error::Option { .. } => "bad_option",
            Error::BlurHash(_) => "bad_blurhash",
            Error::Thumbnail(_) => "bad_thumbnail",
        }
    }

    /// Every label [`Error::kind`] gives.
    pub const KINDS: &'static [&'static str] = &[
        "bad_url",
        "refused",
        "dns",
        "timeout",
        "http_status",
        "redirect",
        "network",
        "too_large",
        "bad_response",
        "file",
        "undecodable",
        "over_budget",
        "cancelled",
        "panic",
        "queue_full",
        "closed",
        "bad_option",
        "bad_blurhash",
        "bad_thumbnail",
    ];
}

impl From<Error> for mlua::Error {
    fn from(e: Error) -> Self {
        mlua::Error::external(e)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_has_a_listed_kind() {
        let d = Duration::from_secs(1);
        let s = || String::from("x");
        let all = [
            Error::BadUrl { url: s(), why: s() },
            Error::Scheme(s()),
            Error::Address { addr: "127.0.0.1".parse().unwrap(), why: "loopback" },
            Error::HostDenied(s()),
            Error::Resolve { host: s(), why: s() },
            Error::Timeout { phase: "connecting", limit: d },
            Error::Status { status: 404, url: s() },
            Error::TooManyRedirects(3),
            Error::BadRedirect { status: 302 },
            Error::Fetch { url: s(), why: s() },
            Error::TooLarge { url: s(), why: s() },
            Error::BadResponse { url: s(), why: s() },
            Error::File { path: s(), why: s() },
            Error::Decode { format: "image/png", why: s() },
            Error::OverBudget { limit: d },
            Error::Cancelled,
            Error::Option { name: s(), why: s() },
            Error::BlurHash(s()),
            Error::Thumbnail(s()),
            Error::QueueFull,
            Error::Closed,
            Error::Panic(s()),
        ];
        let mut seen: Vec<_> = all.iter().map(Error::kind).collect();
        assert!(seen.iter().all(|k| Error::KINDS.contains(k)), "{seen:?}");
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), Error::KINDS.len(), "every listed kind is used");
        assert_eq!(
            Error::OverBudget { limit: Duration::from_secs(10) }.to_string(),
            "analysis stopped: over its time budget of 10s"
        );
    }
}
