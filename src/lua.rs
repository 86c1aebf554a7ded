//! The one place where Lua meets the pure modules: options from tables, metadata to tables,
//! `nil, err` for expected failures, a raised error for misuse.

use std::time::Duration;

use mlua::{Lua, Result as LuaResult, Table, UserData, UserDataMethods, Value};

use crate::analyze::{self, Metadata};
use crate::blurhash::{self, Layout};
use crate::error::Error;
use crate::fetch::Fetcher;
use crate::options::PoolOptions;
use crate::pool::Pool;

/// Expected failure: `nil, message`.
type Outcome<T> = (Option<T>, Option<String>);

fn outcome<T>(r: crate::error::Result<T>) -> Outcome<T> {
    match r {
        Ok(v) => (Some(v), None),
        Err(e) => (None, Some(e.to_string())),
    }
}

/// Reads an options table; an unknown key or a bad value raises an error naming it.
pub fn options(opts: Option<Table>) -> LuaResult<PoolOptions> {
    let mut o = PoolOptions::default();
    let Some(table) = opts else { return Ok(o) };
    for pair in table.pairs::<String, Value>() {
        let (key, value) = pair?;
        let a = &mut o.analysis;
        match key.as_str() {
            "threads" => o.threads = int(&key, &value, 1, 64)? as usize,
            "queue_length" => o.queue_length = int(&key, &value, 1, 100_000)? as usize,
            "cache_size" => o.cache_size = int(&key, &value, 0, 1_000_000)? as usize,
            "cache_ttl" => o.cache_ttl = seconds(&key, &value)?,
            "connect_timeout" => a.connect_timeout = seconds(&key, &value)?,
            "timeout" => a.timeout = seconds(&key, &value)?,
            "max_bytes" => a.max_bytes = int(&key, &value, 1, i64::MAX)? as u64,
            "max_pixels" => a.max_pixels = int(&key, &value, 1, i64::MAX)? as u64,
            "max_redirects" => a.max_redirects = int(&key, &value, 0, 20)? as u32,
            "components_long" => a.components_long = int(&key, &value, 1, 9)? as u32,
            "components_short" => a.components_short = int(&key, &value, 1, 9)? as u32,
            "allow_private" => {
                a.allow_private = match value {
                    Value::Boolean(b) => b,
                    _ => {
                        return Err(Error::option(&key, format!("expected a boolean, got {}", value.type_name())).into())
                    }
                }
            }
            "allow_hosts" => a.allow_hosts = strings(&key, value)?,
            "deny_hosts" => a.deny_hosts = strings(&key, value)?,
            "user_agent" => match value {
                Value::String(s) if !s.to_str()?.is_empty() => a.user_agent = s.to_str()?.to_owned(),
                _ => return Err(Error::option(&key, "expected a non-empty string").into()),
            },
            _ => return Err(Error::option(&key, "unknown option").into()),
        }
    }
    Ok(o)
}

fn int(key: &str, value: &Value, min: i64, max: i64) -> LuaResult<i64> {
    let n = match value {
        Value::Integer(i) => *i,
        Value::Number(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => *f as i64,
        _ => return Err(Error::option(key, format!("expected an integer, got {value:?}")).into()),
    };
    if n < min || n > max {
        return Err(Error::option(key, format!("{n} is outside {min} to {max}")).into());
    }
    Ok(n)
}

fn seconds(key: &str, value: &Value) -> LuaResult<Duration> {
    match value {
        Value::Integer(i) if *i > 0 => Ok(Duration::from_secs(*i as u64)),
        Value::Number(f) if f.is_finite() && *f > 0.0 && *f < 86_400.0 => Ok(Duration::from_secs_f64(*f)),
        _ => Err(Error::option(key, format!("expected a positive number of seconds, got {value:?}")).into()),
    }
}

fn strings(key: &str, value: Value) -> LuaResult<Vec<String>> {
    let Value::Table(t) = value else {
        return Err(Error::option(key, "expected an array of host names").into());
    };
    t.sequence_values::<String>()
        .collect::<LuaResult<Vec<_>>>()
        .map_err(|_| Error::option(key, "expected an array of host names").into())
}

/// Metadata as the table `analyze` returns: only the fields that are known.
fn metadata_table(lua: &Lua, m: &Metadata) -> LuaResult<Table> {
    let t = lua.create_table()?;
    t.set("bytes", m.bytes)?;
    t.set("type", m.mime.as_deref())?;
    t.set("width", m.width)?;
    t.set("height", m.height)?;
    t.set("blurhash", m.blurhash.as_deref())?;
    t.set("note", m.note.as_deref())?;
    Ok(t)
}

/// `analyze(url [, opts])`: blocking; a table, or `nil, err`.
pub fn analyze(lua: &Lua, (url, opts): (String, Option<Table>)) -> LuaResult<(Option<Table>, Option<String>)> {
    let opts = options(opts)?;
    let (meta, err) = outcome(analyze::analyze(&Fetcher::new(opts.analysis), &url));
    Ok((meta.map(|m| metadata_table(lua, &m)).transpose()?, err))
}

/// `blurhash_encode(pixels, w, h [, cx, cy])`: RGBA or RGB bytes (told apart by length).
pub fn blurhash_encode(
    _: &Lua,
    (pixels, w, h, cx, cy): (mlua::LuaString, u32, u32, Option<u32>, Option<u32>),
) -> LuaResult<Outcome<String>> {
    let px = pixels.as_bytes();
    let n = w as usize * h as usize;
    let layout = if px.len() == n * 4 { Layout::Rgba } else { Layout::Rgb };
    let (dx, dy) = blurhash::components(w, h, 4, 3);
    Ok(outcome(
        blurhash::shrink(&px, w, h, layout, 1).and_then(|s| blurhash::encode(&s, cx.unwrap_or(dx), cy.unwrap_or(dy))),
    ))
}

/// `blurhash_decode(hash, w, h [, punch])`: RGBA bytes, or `nil, err` for a malformed hash.
pub fn blurhash_decode(
    lua: &Lua,
    (hash, w, h, punch): (String, u32, u32, Option<f32>),
) -> LuaResult<Outcome<mlua::LuaString>> {
    let (px, err) = outcome(blurhash::decode(&hash, w, h, punch.unwrap_or(1.0)));
    Ok((px.map(|p| lua.create_string(&p)).transpose()?, err))
}

/// `new_pool(opts)`: a worker pool for Prosody.
pub fn new_pool(_: &Lua, opts: Option<Table>) -> LuaResult<LuaPool> {
    Ok(LuaPool(Pool::new(options(opts)?)?))
}

/// The pool as Lua userdata: `submit`, `getfd`, `drain`, `close`.
pub struct LuaPool(Pool);

/// How long `close` waits for running analyses; longer would stall Prosody's main loop.
const CLOSE_GRACE: Duration = Duration::from_millis(200);

impl UserData for LuaPool {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method_mut("submit", |_, this, url: String| Ok(outcome(this.0.submit(&url))));
        methods.add_method("getfd", |_, this, ()| Ok(this.0.fd()));
        methods.add_method_mut("drain", |lua, this, ()| {
            let list = lua.create_table()?;
            for c in this.0.drain() {
                let entry = lua.create_table()?;
                entry.set("id", c.id)?;
                match c.result {
                    Ok(m) => entry.set("result", metadata_table(lua, &m)?)?,
                    Err(e) => entry.set("err", e)?,
                }
                list.push(entry)?;
            }
            Ok(list)
        });
        methods.add_method_mut("close", |_, this, ()| Ok(this.0.close(CLOSE_GRACE)));
    }
}
