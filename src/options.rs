//! Limits and policy for one analysis, and the settings of a worker pool, with their defaults.

use std::time::Duration;

/// Everything one analysis may do: where it may connect, how long, how much.
#[derive(Debug, Clone)]
pub struct Options {
    /// Time to establish the TCP connection (per address tried).
    pub connect_timeout: Duration,
    /// Time for the whole fetch: redirects, TLS, headers and body.
    pub timeout: Duration,
    /// Body bytes read at most; past it only what the first bytes tell is reported.
    pub max_bytes: u64,
    /// Pixels an image may declare and still be decoded.
    pub max_pixels: u64,
    /// Redirects followed, each checked again.
    pub max_redirects: u32,
    /// BlurHash components along the image's long side and its short side (1 to 9).
    pub components_long: u32,
    pub components_short: u32,
    /// Connect to loopback, private, link-local, ... addresses too (tests, intranets).
    pub allow_private: bool,
    /// Hosts whose addresses are not checked: a trusted intranet media host.
    pub allow_hosts: Vec<String>,
    /// Hosts never fetched.
    pub deny_hosts: Vec<String>,
    /// Sent as the User-Agent header.
    pub user_agent: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            connect_timeout: Duration::from_secs(3),
            timeout: Duration::from_secs(10),
            max_bytes: 32 * 1024 * 1024,
            max_pixels: 50_000_000,
            max_redirects: 3,
            components_long: 4,
            components_short: 3,
            allow_private: false,
            allow_hosts: Vec::new(),
            deny_hosts: Vec::new(),
            user_agent: format!("mod_muc_media_metadata/{} (Prosody XMPP server)", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// A worker pool: its threads, its queue and its result cache, and the options of its jobs.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    pub threads: usize,
    pub queue_length: usize,
    /// Results kept by URL; 0 turns the cache off.
    pub cache_size: usize,
    pub cache_ttl: Duration,
    pub analysis: Options,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            threads: 2,
            queue_length: 64,
            cache_size: 256,
            cache_ttl: Duration::from_secs(3600),
            analysis: Options::default(),
        }
    }
}
