//! The one error type. Every message is meant for a server admin reading a log line.

use std::net::IpAddr;
use std::time::Duration;

/// Why an analysis, a fetch or a call from Lua failed.
#[derive(Debug, thiserror::Error)]
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
    #[error("fetching {url} failed: {why}")]
    Fetch { url: String, why: String },
    #[error("cannot decode {format}: {why}")]
    Decode { format: &'static str, why: String },
    #[error("invalid option {name}: {why}")]
    Option { name: String, why: String },
    #[error("invalid BlurHash: {0}")]
    BlurHash(String),
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
}

impl From<Error> for mlua::Error {
    fn from(e: Error) -> Self {
        mlua::Error::external(e)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
