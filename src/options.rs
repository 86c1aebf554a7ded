//! Limits and policy for one analysis, the settings of a worker pool, and the one place where
//! every option's range is checked: [`OPTIONS`] names each option (the config option without
//! its `media_metadata_` prefix), says what it takes in words an admin can act on, and holds
//! its default (read from [`PoolOptions::default`]). The plugin passes the raw config values
//! to [`check`] and logs what it refuses; [`check_strict`] is the same check for callers that
//! must not pass bad values (a refusal is then an error).

use std::fmt;
use std::time::Duration;

use crate::error::{Error, Result};

/// Everything one analysis may do: where it may connect, how long, how much.
#[derive(Debug, Clone)]
pub struct Options {
    /// Time to resolve the host name and establish the TCP connection (ureq counts the lookup
    /// in it; `resolve` stops waiting for a lookup there).
    pub connect_timeout: Duration,
    /// Time for the whole fetch (redirects, TLS, headers and body), and the time budget of the
    /// whole analysis, decoding included, counted from its start.
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
    /// What the plugin builds; the library reads to the end and makes thumbnails for "sfs" and
    /// "sims" only.
    pub formats: Formats,
}

/// The elements the plugin adds for a URL (`media_metadata_formats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Formats {
    /// The contract `<metadata>` element.
    pub metadata: bool,
    /// An XEP-0447 file share.
    pub sfs: bool,
    /// A SIMS (XEP-0385) reference.
    pub sims: bool,
}

impl Default for Formats {
    fn default() -> Self {
        Formats { metadata: true, sfs: true, sims: true }
    }
}

impl Formats {
    /// The names, in this order.
    pub const NAMES: [&'static str; 3] = ["metadata", "sfs", "sims"];

    /// Whether a SHA-256 of the body and the thumbnails are wanted (file shares and SIMS carry
    /// them): the body is then read to its end.
    pub fn files(&self) -> bool {
        self.sfs || self.sims
    }

    fn get(&self, name: &str) -> bool {
        match name {
            "metadata" => self.metadata,
            "sfs" => self.sfs,
            "sims" => self.sims,
            _ => false,
        }
    }

    fn set(&mut self, name: &str) {
        match name {
            "metadata" => self.metadata = true,
            "sfs" => self.sfs = true,
            "sims" => self.sims = true,
            _ => {}
        }
    }
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
            formats: Formats::default(),
        }
    }
}

/// A failed analysis is remembered at most this long, so a URL that timed out is tried again
/// soon but a flood of the same bad URL is not fetched again and again.
pub const FAILURE_TTL: Duration = Duration::from_secs(60);

/// A worker pool: its threads, its queue and its result cache, and the options of its jobs.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    pub threads: usize,
    pub queue_length: usize,
    /// How long the plugin holds a message for its analyses (the plugin's, checked here).
    pub deadline: Duration,
    /// URLs analysed per message (the plugin's, checked here).
    pub max_urls: usize,
    /// Results kept by URL; 0 turns the cache off.
    pub cache_size: usize,
    pub cache_ttl: Duration,
    /// How long a failure is kept at most (`FAILURE_TTL`; not an admin option, for tests).
    pub failure_ttl: Duration,
    pub analysis: Options,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            threads: 2,
            queue_length: 64,
            deadline: Duration::from_secs(5),
            max_urls: 4,
            cache_size: 256,
            cache_ttl: Duration::from_secs(3600),
            failure_ttl: FAILURE_TTL,
            analysis: Options::default(),
        }
    }
}

/// A configuration value as given (by Lua, from Prosody's config), before it is checked.
#[derive(Debug, Clone, PartialEq)]
pub enum Raw {
    Bool(bool),
    Int(i64),
    Number(f64),
    Text(String),
    /// An array (a Lua sequence), its entries in order.
    List(Vec<Raw>),
    /// Anything else (a table with other keys, a function, ...), by its type name.
    Other(&'static str),
}

impl fmt::Display for Raw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Raw::Bool(b) => write!(f, "{b}"),
            Raw::Int(i) => write!(f, "{i}"),
            Raw::Number(n) => write!(f, "{n}"),
            Raw::Text(s) => write!(f, "{s:?}"),
            Raw::List(items) if items.is_empty() => write!(f, "{{}}"),
            Raw::List(items) => {
                write!(f, "{{ ")?;
                for (i, item) in items.iter().enumerate() {
                    write!(f, "{}{item}", if i == 0 { "" } else { ", " })?;
                }
                write!(f, " }}")
            }
            Raw::Other(kind) => write!(f, "a {kind}"),
        }
    }
}

/// What an option takes.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// A whole number from `min` to `max` (a float with a whole value counts).
    Integer {
        min: i64,
        max: i64,
    },
    /// A number of seconds above 0, at most `max`.
    Seconds {
        max: u64,
    },
    Bool,
    /// An array of host names; a bad entry is dropped alone.
    Hosts,
    /// `{ long side, short side }`, each 1 to 9.
    Components,
    /// A non-empty string of printable ASCII (it goes into an HTTP header).
    Ascii,
    /// A non-empty array of [`Formats::NAMES`]; an unknown entry is dropped alone.
    Formats,
}

/// One option: its name without the `media_metadata_` prefix and what it takes.
#[derive(Debug, Clone, Copy)]
pub struct OptionSpec {
    pub name: &'static str,
    kind: Kind,
}

const fn int(name: &'static str, min: i64, max: i64) -> OptionSpec {
    OptionSpec { name, kind: Kind::Integer { min, max } }
}

const fn seconds(name: &'static str, max: u64) -> OptionSpec {
    OptionSpec { name, kind: Kind::Seconds { max } }
}

const DAY: u64 = 86_400;

/// Every option, in the order of the README's table.
pub const OPTIONS: &[OptionSpec] = &[
    int("threads", 1, 64),
    int("queue_length", 1, 65_536),
    seconds("deadline", 60),
    seconds("connect_timeout", 60),
    seconds("timeout", 600),
    int("max_bytes", 1, i64::MAX),
    int("max_pixels", 1, i64::MAX),
    int("max_redirects", 0, 20),
    int("max_urls", 1, 32),
    OptionSpec { name: "blurhash_components", kind: Kind::Components },
    OptionSpec { name: "allow_private", kind: Kind::Bool },
    OptionSpec { name: "allow_hosts", kind: Kind::Hosts },
    OptionSpec { name: "deny_hosts", kind: Kind::Hosts },
    int("cache_size", 0, 1_048_576),
    seconds("cache_ttl", 30 * DAY),
    OptionSpec { name: "user_agent", kind: Kind::Ascii },
    OptionSpec { name: "formats", kind: Kind::Formats },
];

/// What an unknown option is told it should have been.
pub const KNOWN_OPTION: &str = "a known option";

/// What a bad entry of a host list is told it should have been.
pub const HOST_NAME: &str = "a host name";

/// What a bad entry of `formats` is told it should have been.
pub const FORMAT_NAME: &str = "one of \"metadata\", \"sfs\", \"sims\"";

/// The spec of the option `name`, if there is one.
pub fn spec(name: &str) -> Option<&'static OptionSpec> {
    OPTIONS.iter().find(|s| s.name == name)
}

/// Every option name, sorted.
pub fn names() -> Vec<&'static str> {
    let mut names: Vec<_> = OPTIONS.iter().map(|s| s.name).collect();
    names.sort_unstable();
    names
}

impl OptionSpec {
    /// What the option takes, as a phrase for an admin ("an integer from 1 to 64").
    pub fn expected(&self) -> String {
        match self.kind {
            Kind::Integer { min, max: i64::MAX } => format!("an integer of at least {min}"),
            Kind::Integer { min, max } => format!("an integer from {min} to {max}"),
            Kind::Seconds { max } => format!("a number of seconds above 0, at most {max}"),
            Kind::Bool => "true or false".into(),
            Kind::Hosts => "an array of host names".into(),
            Kind::Components => "two integers from 1 to 9 ({ long side, short side })".into(),
            Kind::Ascii => "a non-empty string of printable ASCII".into(),
            Kind::Formats => "a non-empty array of \"metadata\", \"sfs\", \"sims\"".into(),
        }
    }

    /// The default, as a value the check accepts.
    pub fn default_value(&self) -> Raw {
        current(self.name, &PoolOptions::default())
    }

    /// What a dropped entry of a list should have been.
    fn entry_expected(&self) -> &'static str {
        match self.kind {
            Kind::Formats => FORMAT_NAME,
            _ => HOST_NAME,
        }
    }

    /// Checks `raw`: the accepted value in its clean form, and the entries dropped from a
    /// list (1-based index, value); `Err(())` when the whole value is refused.
    fn check(&self, raw: &Raw) -> std::result::Result<(Raw, Vec<(usize, Raw)>), ()> {
        let whole = |r: Raw| Ok((r, Vec::new()));
        match (self.kind, raw) {
            (Kind::Integer { min, max }, r) => match integer(r) {
                Some(n) if (min..=max).contains(&n) => whole(Raw::Int(n)),
                _ => Err(()),
            },
            (Kind::Seconds { max }, r) => match duration(r, max) {
                Some(_) => whole(r.clone()),
                None => Err(()),
            },
            (Kind::Bool, Raw::Bool(b)) => whole(Raw::Bool(*b)),
            (Kind::Hosts, Raw::List(items)) => {
                let (mut kept, mut dropped) = (Vec::new(), Vec::new());
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Raw::Text(h) if host_name(h) => kept.push(item.clone()),
                        _ => dropped.push((i + 1, item.clone())),
                    }
                }
                Ok((Raw::List(kept), dropped))
            }
            (Kind::Formats, Raw::List(items)) => {
                let mut formats = Formats { metadata: false, sfs: false, sims: false };
                let mut dropped = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Raw::Text(f) if Formats::NAMES.contains(&f.as_str()) => formats.set(f),
                        _ => dropped.push((i + 1, item.clone())),
                    }
                }
                // Nothing left (an empty list, or only unknown entries): the default, whole.
                let kept = formats_raw(&formats);
                match kept {
                    Raw::List(ref l) if l.is_empty() => Err(()),
                    _ => Ok((kept, dropped)),
                }
            }
            (Kind::Components, Raw::List(items)) => match items.iter().map(integer).collect::<Vec<_>>()[..] {
                [Some(long), Some(short)] if (1..=9).contains(&long) && (1..=9).contains(&short) => {
                    whole(Raw::List(vec![Raw::Int(long), Raw::Int(short)]))
                }
                _ => Err(()),
            },
            (Kind::Ascii, Raw::Text(s)) if !s.is_empty() && s.bytes().all(|b| (0x20..=0x7e).contains(&b)) => {
                whole(raw.clone())
            }
            _ => Err(()),
        }
    }
}

/// 2^63 as a float: the first whole float past `i64::MAX`.
const TWO_TO_63: f64 = 9_223_372_036_854_775_808.0;

/// A whole number, also from a float with a whole value (Lua may hand over 1048576.0).
fn integer(raw: &Raw) -> Option<i64> {
    match *raw {
        Raw::Int(i) => Some(i),
        // -2^63 <= n < 2^63: exactly the floats that convert to an i64 without saturating.
        Raw::Number(n) if n.fract() == 0.0 && (-TWO_TO_63..TWO_TO_63).contains(&n) => Some(n as i64),
        _ => None,
    }
}

/// A number of seconds above 0 (and not below a nanosecond) and at most `max`.
fn duration(raw: &Raw, max: u64) -> Option<Duration> {
    let d = match *raw {
        Raw::Int(i) if i > 0 && i as u64 <= max => Duration::from_secs(i as u64),
        Raw::Number(n) if n > 0.0 && n <= max as f64 => Duration::from_secs_f64(n),
        _ => return None,
    };
    (!d.is_zero()).then_some(d)
}

/// A host name or address as the host lists take them: letters, digits, `.`, `-`, `_`, `:`,
/// `[` and `]`, with `*` only as a leading `*.` (a domain and its subdomains).
fn host_name(h: &str) -> bool {
    let rest = h.strip_prefix("*.").unwrap_or(h);
    !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-:[]".contains(&b))
}

/// `formats` as the list check_options returns: the names in [`Formats::NAMES`] order, once each.
fn formats_raw(f: &Formats) -> Raw {
    Raw::List(Formats::NAMES.iter().filter(|n| f.get(n)).map(|n| Raw::Text((*n).to_owned())).collect())
}

/// The value of option `name` in `o`, as a `Raw` the check accepts.
fn current(name: &str, o: &PoolOptions) -> Raw {
    let a = &o.analysis;
    let secs = |d: Duration| match d.subsec_nanos() {
        0 => Raw::Int(d.as_secs() as i64),
        _ => Raw::Number(d.as_secs_f64()),
    };
    let int = |n: u64| Raw::Int(i64::try_from(n).unwrap_or(i64::MAX));
    let hosts = |l: &[String]| Raw::List(l.iter().cloned().map(Raw::Text).collect());
    match name {
        "threads" => int(o.threads as u64),
        "queue_length" => int(o.queue_length as u64),
        "deadline" => secs(o.deadline),
        "connect_timeout" => secs(a.connect_timeout),
        "timeout" => secs(a.timeout),
        "max_bytes" => int(a.max_bytes),
        "max_pixels" => int(a.max_pixels),
        "max_redirects" => int(a.max_redirects as u64),
        "max_urls" => int(o.max_urls as u64),
        "blurhash_components" => Raw::List(vec![int(a.components_long as u64), int(a.components_short as u64)]),
        "allow_private" => Raw::Bool(a.allow_private),
        "allow_hosts" => hosts(&a.allow_hosts),
        "deny_hosts" => hosts(&a.deny_hosts),
        "cache_size" => int(o.cache_size as u64),
        "cache_ttl" => secs(o.cache_ttl),
        "user_agent" => Raw::Text(a.user_agent.clone()),
        "formats" => formats_raw(&a.formats),
        _ => Raw::Other("unknown option"),
    }
}

/// Sets option `name` in `o` to `clean`, a value its check accepted (anything else is ignored).
fn apply(name: &str, clean: &Raw, o: &mut PoolOptions) {
    let a = &mut o.analysis;
    let (n, d) = (integer(clean).unwrap_or(0), duration(clean, u64::MAX).unwrap_or_default());
    let hosts = || match clean {
        Raw::List(l) => l.iter().filter_map(|h| if let Raw::Text(h) = h { Some(h.clone()) } else { None }).collect(),
        _ => Vec::new(),
    };
    match (name, clean) {
        ("threads", _) => o.threads = n as usize,
        ("queue_length", _) => o.queue_length = n as usize,
        ("deadline", _) => o.deadline = d,
        ("connect_timeout", _) => a.connect_timeout = d,
        ("timeout", _) => a.timeout = d,
        ("max_bytes", _) => a.max_bytes = n as u64,
        ("max_pixels", _) => a.max_pixels = n as u64,
        ("max_redirects", _) => a.max_redirects = n as u32,
        ("max_urls", _) => o.max_urls = n as usize,
        ("blurhash_components", Raw::List(pair)) => {
            if let [long, short] = &pair[..] {
                a.components_long = integer(long).unwrap_or(4) as u32;
                a.components_short = integer(short).unwrap_or(3) as u32;
            }
        }
        ("allow_private", Raw::Bool(b)) => a.allow_private = *b,
        ("allow_hosts", _) => a.allow_hosts = hosts(),
        ("deny_hosts", _) => a.deny_hosts = hosts(),
        ("cache_size", _) => o.cache_size = n as usize,
        ("cache_ttl", _) => o.cache_ttl = d,
        ("user_agent", Raw::Text(s)) => a.user_agent = s.clone(),
        ("formats", Raw::List(l)) => {
            a.formats = Formats { metadata: false, sfs: false, sims: false };
            l.iter().for_each(|f| {
                if let Raw::Text(f) = f {
                    a.formats.set(f)
                }
            });
        }
        _ => {}
    }
}

/// A value [`check`] did not take: the whole option (then its default is used), or one entry
/// of a host list or of `formats` (then only that entry is dropped).
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub name: String,
    /// The 1-based index of the refused entry of a host list; `None`: the whole value.
    pub entry: Option<usize>,
    /// What was refused: the whole value, or the entry.
    pub value: Raw,
    /// What the option (or the entry) takes.
    pub expected: String,
    /// What is used instead: the option's default; `None` for an unknown option or an entry.
    pub default: Option<Raw>,
}

impl Refusal {
    /// The error [`check_strict`] raises for this refusal.
    pub fn to_error(&self) -> Error {
        match (self.expected.as_str(), self.entry) {
            (KNOWN_OPTION, _) => Error::option(&self.name, "unknown option"),
            (expected, Some(i)) => {
                Error::option(&self.name, format!("entry {i}: expected {expected}, got {}", self.value))
            }
            (expected, None) => Error::option(&self.name, format!("expected {expected}, got {}", self.value)),
        }
    }
}

/// What [`check`] made of a set of raw options.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The options to run with: the accepted values, the defaults for the rest.
    pub options: PoolOptions,
    /// Every known option, sorted by name: the accepted value in its clean form (whole numbers
    /// as integers, a host list without its refused entries), or the default.
    pub clean: Vec<(&'static str, Raw)>,
    /// One per refused option or host list entry, sorted by name (and entry).
    pub refused: Vec<Refusal>,
}

/// Checks every `(name, value)` against [`OPTIONS`]; never fails: what is refused is listed and
/// replaced by its default (a bad host list entry is dropped, the rest kept).
pub fn check(raw: impl IntoIterator<Item = (String, Raw)>) -> Checked {
    let mut options = PoolOptions::default();
    let mut refused = Vec::new();
    for (name, value) in raw {
        let Some(spec) = spec(&name) else {
            refused.push(Refusal { name, entry: None, value, expected: KNOWN_OPTION.into(), default: None });
            continue;
        };
        match spec.check(&value) {
            Ok((clean, dropped)) => {
                apply(spec.name, &clean, &mut options);
                refused.extend(dropped.into_iter().map(|(i, entry)| Refusal {
                    name: name.clone(),
                    entry: Some(i),
                    value: entry,
                    expected: spec.entry_expected().into(),
                    default: None,
                }));
            }
            Err(()) => refused.push(Refusal {
                name: name.clone(),
                entry: None,
                value,
                expected: spec.expected(),
                default: Some(spec.default_value()),
            }),
        }
    }
    refused.sort_by(|a, b| (&a.name, a.entry).cmp(&(&b.name, b.entry)));
    let clean = names().into_iter().map(|name| (name, current(name, &options))).collect();
    Checked { options, clean, refused }
}

/// [`check`] for a caller that must pass only good values: the first refusal is an error.
pub fn check_strict(raw: impl IntoIterator<Item = (String, Raw)>) -> Result<PoolOptions> {
    let checked = check(raw);
    match checked.refused.first() {
        Some(r) => Err(r.to_error()),
        None => Ok(checked.options),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(name: &str, value: Raw) -> Checked {
        check([(name.to_owned(), value)])
    }

    fn accepted(name: &str, value: Raw) -> bool {
        one(name, value).refused.is_empty()
    }

    fn clean_of(c: &Checked, name: &str) -> Raw {
        c.clean.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone()).unwrap()
    }

    /// For an integer option: min and max are taken (also as whole floats), one past each is not.
    #[track_caller]
    fn integer_range(name: &str, min: i64, max: i64) {
        for n in [min, max] {
            let c = one(name, Raw::Int(n));
            assert!(c.refused.is_empty(), "{name} = {n}: {:?}", c.refused);
            assert_eq!(clean_of(&c, name), Raw::Int(n), "{name} = {n}");
            assert_eq!(current(name, &c.options), Raw::Int(n), "{name} = {n} was not applied");
            if n.unsigned_abs() < 1 << 53 {
                let c = one(name, Raw::Number(n as f64));
                assert!(c.refused.is_empty(), "{name} = {n}.0");
                assert_eq!(clean_of(&c, name), Raw::Int(n), "{name} = {n}.0 becomes an integer");
            }
        }
        let mut past = vec![Raw::Int(min - 1)];
        if let Some(over) = max.checked_add(1) {
            past.push(Raw::Int(over));
        } else {
            past.push(Raw::Number(9.3e18)); // above i64::MAX
        }
        past.extend([Raw::Number(min as f64 + 0.5), Raw::Text(min.to_string()), Raw::Bool(true)]);
        for bad in past {
            let c = one(name, bad.clone());
            assert_eq!(c.refused.len(), 1, "{name} = {bad} should be refused");
            let r = &c.refused[0];
            assert_eq!((r.name.as_str(), &r.value, r.entry), (name, &bad, None));
            assert_eq!(r.default, Some(spec(name).unwrap().default_value()));
            assert_eq!(clean_of(&c, name), spec(name).unwrap().default_value(), "{name}: the default is used");
        }
    }

    /// For a seconds option: just above 0, the max (whole and fractional values) are taken,
    /// 0, negative, one past the max and non-numbers are not.
    #[track_caller]
    fn seconds_range(name: &str, max: u64) {
        for good in [Raw::Int(1), Raw::Number(0.001), Raw::Number(max as f64 - 0.5), Raw::Int(max as i64)] {
            let c = one(name, good.clone());
            assert!(c.refused.is_empty(), "{name} = {good}: {:?}", c.refused);
            assert_eq!(clean_of(&c, name), good);
            assert_eq!(current(name, &c.options), good, "{name} = {good} was not applied");
        }
        for bad in [
            Raw::Int(0),
            Raw::Number(0.0),
            Raw::Int(-1),
            Raw::Number(1e-12),
            Raw::Int(max as i64 + 1),
            Raw::Number(max as f64 + 0.001),
            Raw::Number(f64::NAN),
            Raw::Number(f64::INFINITY),
            Raw::Text("5".into()),
        ] {
            assert!(!accepted(name, bad.clone()), "{name} = {bad} should be refused");
        }
    }

    #[test]
    fn integer_options() {
        integer_range("threads", 1, 64);
        integer_range("queue_length", 1, 65_536);
        integer_range("max_bytes", 1, i64::MAX);
        integer_range("max_pixels", 1, i64::MAX);
        integer_range("max_redirects", 0, 20);
        integer_range("max_urls", 1, 32);
        integer_range("cache_size", 0, 1_048_576);
    }

    #[test]
    fn seconds_options() {
        seconds_range("deadline", 60);
        seconds_range("connect_timeout", 60);
        seconds_range("timeout", 600);
        seconds_range("cache_ttl", 30 * 86_400);
    }

    #[test]
    fn values_the_plugin_once_passed_and_the_library_refused() {
        // Issue 13: the plugin took these and new_pool raised.
        assert!(accepted("cache_ttl", Raw::Int(90_000)));
        assert!(accepted("cache_ttl", Raw::Number(1.5 * 86_400.0)));
        assert!(accepted("cache_size", Raw::Int(1_048_576)));
        assert!(accepted("cache_size", Raw::Number(1_048_576.0)));
        assert!(accepted("queue_length", Raw::Int(65_536)));
        let c = one("cache_ttl", Raw::Number(1.5 * 86_400.0));
        assert_eq!(c.options.cache_ttl, Duration::from_secs(129_600));
    }

    #[test]
    fn booleans() {
        for b in [true, false] {
            let c = one("allow_private", Raw::Bool(b));
            assert!(c.refused.is_empty());
            assert_eq!(c.options.analysis.allow_private, b);
        }
        for bad in [Raw::Int(1), Raw::Text("true".into()), Raw::List(vec![])] {
            let c = one("allow_private", bad);
            assert_eq!(c.refused[0].expected, "true or false");
            assert_eq!(c.refused[0].default, Some(Raw::Bool(false)));
        }
    }

    #[test]
    fn blurhash_components() {
        for (l, s) in [(1, 1), (9, 9), (1, 9), (9, 1), (4, 3)] {
            let c = one("blurhash_components", Raw::List(vec![Raw::Int(l), Raw::Number(s as f64)]));
            assert!(c.refused.is_empty(), "{l}, {s}");
            assert_eq!((c.options.analysis.components_long, c.options.analysis.components_short), (l as u32, s as u32));
            assert_eq!(clean_of(&c, "blurhash_components"), Raw::List(vec![Raw::Int(l), Raw::Int(s)]));
        }
        for bad in [
            Raw::List(vec![Raw::Int(0), Raw::Int(3)]),
            Raw::List(vec![Raw::Int(4), Raw::Int(0)]),
            Raw::List(vec![Raw::Int(10), Raw::Int(3)]),
            Raw::List(vec![Raw::Int(4), Raw::Int(10)]),
            Raw::List(vec![Raw::Int(4)]),
            Raw::List(vec![Raw::Int(4), Raw::Int(3), Raw::Int(2)]),
            Raw::List(vec![Raw::Number(4.5), Raw::Int(3)]),
            Raw::Int(4),
            Raw::Other("table"),
        ] {
            let c = one("blurhash_components", bad.clone());
            assert_eq!(c.refused.len(), 1, "{bad}");
            assert_eq!(c.refused[0].expected, "two integers from 1 to 9 ({ long side, short side })");
            assert_eq!(c.refused[0].default, Some(Raw::List(vec![Raw::Int(4), Raw::Int(3)])));
        }
    }

    #[test]
    fn host_lists_drop_a_bad_entry_and_keep_the_rest() {
        for name in ["allow_hosts", "deny_hosts"] {
            let text = |s: &str| Raw::Text(s.into());
            let list = Raw::List(vec![
                text("media.example"),
                text("bad host"),
                text("*.cdn.example"),
                Raw::Int(5),
                text(".example.org"),
                text("[::1]"),
                text("a*b.example"),
                text(""),
                text("*."),
            ]);
            let c = one(name, list);
            let kept = vec![text("media.example"), text("*.cdn.example"), text(".example.org"), text("[::1]")];
            assert_eq!(clean_of(&c, name), Raw::List(kept));
            let dropped: Vec<_> = c.refused.iter().map(|r| (r.entry, r.value.clone())).collect();
            assert_eq!(
                dropped,
                vec![
                    (Some(2), text("bad host")),
                    (Some(4), Raw::Int(5)),
                    (Some(7), text("a*b.example")),
                    (Some(8), text("")),
                    (Some(9), text("*.")),
                ]
            );
            assert!(c.refused.iter().all(|r| r.name == name && r.expected == HOST_NAME && r.default.is_none()));
            let applied =
                if name == "allow_hosts" { &c.options.analysis.allow_hosts } else { &c.options.analysis.deny_hosts };
            assert_eq!(applied, &["media.example", "*.cdn.example", ".example.org", "[::1]"]);
            assert!(accepted(name, Raw::List(vec![])));
            // Not an array at all: the whole option is refused.
            for bad in [text("media.example"), Raw::Other("table"), Raw::Bool(true)] {
                let c = one(name, bad);
                assert_eq!((c.refused.len(), c.refused[0].entry), (1, None));
                assert_eq!(c.refused[0].expected, "an array of host names");
                assert_eq!(c.refused[0].default, Some(Raw::List(vec![])));
            }
        }
    }

    #[test]
    fn user_agent() {
        let c = one("user_agent", Raw::Text("Example/1.0 (+https://example.org)".into()));
        assert!(c.refused.is_empty());
        assert_eq!(c.options.analysis.user_agent, "Example/1.0 (+https://example.org)");
        assert!(accepted("user_agent", Raw::Text(" ~".into())));
        for bad in ["", "tab\there", "line\r\nInjected: yes", "caf\u{e9}", "\u{7f}"] {
            let c = one("user_agent", Raw::Text(bad.into()));
            assert_eq!(c.refused.len(), 1, "{bad:?}");
            assert_eq!(c.refused[0].expected, "a non-empty string of printable ASCII");
            let default = format!("mod_muc_media_metadata/{} (Prosody XMPP server)", env!("CARGO_PKG_VERSION"));
            assert_eq!(c.refused[0].default, Some(Raw::Text(default)));
        }
        assert!(!accepted("user_agent", Raw::Int(1)));
    }

    #[test]
    fn formats_drop_unknown_entries_and_refuse_an_empty_list() {
        let text = |s: &str| Raw::Text(s.into());
        let names = |l: &[&str]| Raw::List(l.iter().map(|s| text(s)).collect());
        let all = names(&["metadata", "sfs", "sims"]);
        assert_eq!(spec("formats").unwrap().default_value(), all);
        assert_eq!(PoolOptions::default().analysis.formats, Formats { metadata: true, sfs: true, sims: true });
        // Kept in the canonical order, once each.
        let c = one("formats", names(&["sims", "metadata", "sims"]));
        assert!(c.refused.is_empty(), "{:?}", c.refused);
        assert_eq!(clean_of(&c, "formats"), names(&["metadata", "sims"]));
        assert_eq!(c.options.analysis.formats, Formats { metadata: true, sfs: false, sims: true });
        assert!(c.options.analysis.formats.files());
        let c = one("formats", names(&["metadata"]));
        assert!(!c.options.analysis.formats.files(), "no hashes or thumbnails for metadata alone");
        // An unknown entry is dropped alone, with its index.
        let c = one("formats", Raw::List(vec![text("sfs"), text("SIMS"), Raw::Int(3), text("metadata")]));
        assert_eq!(clean_of(&c, "formats"), names(&["metadata", "sfs"]));
        let dropped: Vec<_> = c.refused.iter().map(|r| (r.entry, r.value.clone(), r.expected.as_str())).collect();
        assert_eq!(dropped, vec![(Some(2), text("SIMS"), FORMAT_NAME), (Some(3), Raw::Int(3), FORMAT_NAME)]);
        assert!(c.refused.iter().all(|r| r.name == "formats" && r.default.is_none()));
        // Empty, nothing known left, or not a list: refused whole, the default used.
        for bad in [Raw::List(vec![]), names(&["bogus"]), text("sfs"), Raw::Other("table"), Raw::Bool(true)] {
            let c = one("formats", bad.clone());
            assert_eq!(c.refused.len(), 1, "{bad}");
            let r = &c.refused[0];
            assert_eq!((r.entry, &r.value, r.default.as_ref()), (None, &bad, Some(&all)), "{bad}");
            assert_eq!(r.expected, "a non-empty array of \"metadata\", \"sfs\", \"sims\"");
            assert_eq!(clean_of(&c, "formats"), all);
            assert_eq!(c.options.analysis.formats, Formats::default());
        }
        let e = check_strict([("formats".to_owned(), names(&["sfs", "xhtml"]))]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid option formats: entry 2: expected one of \"metadata\", \"sfs\", \"sims\", got \"xhtml\""
        );
    }

    #[test]
    fn unknown_options_are_refused_as_such() {
        let c = check([("alow_private".to_owned(), Raw::Bool(true)), ("threads".to_owned(), Raw::Int(3))]);
        assert_eq!(c.options.threads, 3, "the known option is still taken");
        assert_eq!(
            c.refused,
            vec![Refusal {
                name: "alow_private".into(),
                entry: None,
                value: Raw::Bool(true),
                expected: "a known option".into(),
                default: None
            }]
        );
        assert_eq!(
            check_strict([("alow_private".to_owned(), Raw::Bool(true))]).unwrap_err().to_string(),
            "invalid option alow_private: unknown option"
        );
    }

    #[test]
    fn strict_raises_the_first_refusal_in_words() {
        let e = check_strict([("threads".to_owned(), Raw::Int(0))]).unwrap_err();
        assert_eq!(e.to_string(), "invalid option threads: expected an integer from 1 to 64, got 0");
        let e = check_strict([("allow_hosts".to_owned(), Raw::List(vec![Raw::Text("a b".into())]))]).unwrap_err();
        assert_eq!(e.to_string(), "invalid option allow_hosts: entry 1: expected a host name, got \"a b\"");
        let e = check_strict([("cache_ttl".to_owned(), Raw::Int(2_592_001))]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid option cache_ttl: expected a number of seconds above 0, at most 2592000, got 2592001"
        );
        assert!(check_strict([("cache_ttl".to_owned(), Raw::Int(2_592_000))]).is_ok());
    }

    #[test]
    fn every_default_passes_its_own_check_and_clean_lists_every_option() {
        let c = check([]);
        assert!(c.refused.is_empty());
        assert_eq!(c.clean.iter().map(|(n, _)| *n).collect::<Vec<_>>(), names());
        for spec in OPTIONS {
            let d = spec.default_value();
            assert!(!matches!(d, Raw::Other(_)), "{}: no default", spec.name);
            let c = one(spec.name, d.clone());
            assert!(c.refused.is_empty(), "{}: its default {d} is refused", spec.name);
            assert_eq!(clean_of(&c, spec.name), d);
        }
        let d = PoolOptions::default();
        assert_eq!((d.threads, d.queue_length, d.max_urls, d.cache_size), (2, 64, 4, 256));
        assert_eq!((d.deadline, d.cache_ttl), (Duration::from_secs(5), Duration::from_secs(3600)));
        let a = d.analysis;
        assert_eq!((a.connect_timeout, a.timeout), (Duration::from_secs(3), Duration::from_secs(10)));
        assert_eq!((a.max_bytes, a.max_pixels, a.max_redirects), (32 << 20, 50_000_000, 3));
    }

    #[test]
    fn names_are_sorted_and_unique() {
        let n = names();
        assert_eq!(n.len(), OPTIONS.len());
        assert!(n.windows(2).all(|w| w[0] < w[1]), "{n:?}");
        assert_eq!(n.len(), 17);
    }
}
