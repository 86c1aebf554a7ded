//! The one place where Lua meets the pure modules: options from tables, metadata to tables,
//! `nil, err, kind` for expected failures (see `Error::kind`), a raised error for misuse.

use std::time::Duration;

use mlua::{Lua, Result as LuaResult, Table, UserData, UserDataMethods, Value};

use crate::analyze::{self, Metadata};
use crate::blurhash::{self, Layout};
use crate::fetch::{Fetcher, Validators};
use crate::options::{self, PoolOptions, Raw};
use crate::pool::Pool;
use crate::source::LocalFile;

/// Expected failure: `nil, message, kind` (see [`crate::error::Error::kind`]).
type Outcome<T> = (Option<T>, Option<String>, Option<&'static str>);

fn outcome<T>(r: crate::error::Result<T>) -> Outcome<T> {
    match r {
        Ok(v) => (Some(v), None, None),
        Err(e) => (None, Some(e.to_string()), Some(e.kind())),
    }
}

/// Tables nested deeper than this (a host list's entries are at depth 1) are not looked into.
const MAX_DEPTH: usize = 1;

/// A Lua value as the option check sees it. A table whose keys are exactly 1..n is an array.
fn raw_of(value: &Value, depth: usize) -> Raw {
    match value {
        Value::Boolean(b) => Raw::Bool(*b),
        Value::Integer(i) => Raw::Int(*i),
        Value::Number(n) => Raw::Number(*n),
        Value::String(s) => Raw::Text(s.to_string_lossy()),
        Value::Table(t) if depth <= MAX_DEPTH => {
            let mut items: Vec<(i64, Value)> = Vec::new();
            for pair in t.pairs::<Value, Value>() {
                match pair {
                    Ok((Value::Integer(k), v)) if k >= 1 => items.push((k, v)),
                    _ => return Raw::Other("table"),
                }
            }
            items.sort_by_key(|(k, _)| *k);
            if items.iter().enumerate().any(|(i, (k, _))| *k != i as i64 + 1) {
                return Raw::Other("table"); // holes
            }
            Raw::List(items.iter().map(|(_, v)| raw_of(v, depth + 1)).collect())
        }
        other => Raw::Other(other.type_name()),
    }
}

/// The `(name, value)` pairs of an options table, as Lua values and as the check sees them.
fn pairs_of(table: Option<&Table>) -> LuaResult<Vec<(String, Value)>> {
    let Some(table) = table else { return Ok(Vec::new()) };
    table
        .pairs::<Value, Value>()
        .map(|pair| {
            let (key, value) = pair?;
            let name = match &key {
                Value::String(s) => s.to_string_lossy(),
                other => other.to_string().unwrap_or_else(|_| other.type_name().to_owned()),
            };
            Ok((name, value))
        })
        .collect()
}

fn raws(pairs: &[(String, Value)]) -> impl Iterator<Item = (String, Raw)> + '_ {
    pairs.iter().map(|(k, v)| (k.clone(), raw_of(v, 0)))
}

/// Reads an options table for `analyze` and `new_pool`; a refused value raises an error naming
/// it (the plugin passes what `check_options` accepted, so this is misuse).
pub fn options(opts: Option<Table>) -> LuaResult<PoolOptions> {
    let pairs = pairs_of(opts.as_ref())?;
    Ok(options::check_strict(raws(&pairs))?)
}

fn to_lua(lua: &Lua, raw: &Raw) -> LuaResult<Value> {
    Ok(match raw {
        Raw::Bool(b) => Value::Boolean(*b),
        Raw::Int(i) => Value::Integer(*i),
        Raw::Number(n) => Value::Number(*n),
        Raw::Text(s) => Value::String(lua.create_string(s)?),
        Raw::List(items) => {
            let t = lua.create_table_with_capacity(items.len(), 0)?;
            for item in items {
                t.push(to_lua(lua, item)?)?;
            }
            Value::Table(t)
        }
        Raw::Other(_) => Value::Nil,
    })
}

/// `check_options(tbl) -> clean, refused`: never raises for a bad value. `clean` has every
/// known option: the accepted value (whole numbers as integers, host lists without their bad
/// entries) or the default. `refused` is an array of `{ name=, value=, expected=, default= }`
/// (plus `entry=` for a dropped entry of a host list or of `formats`), sorted by name.
pub fn check_options(lua: &Lua, tbl: Option<Table>) -> LuaResult<(Table, Table)> {
    let pairs = pairs_of(tbl.as_ref())?;
    let checked = options::check(raws(&pairs));
    let clean = lua.create_table()?;
    for (name, value) in &checked.clean {
        clean.set(*name, to_lua(lua, value)?)?;
    }
    let refused = lua.create_table()?;
    for r in &checked.refused {
        let given = pairs.iter().find(|(k, _)| *k == r.name).map_or(Value::Nil, |(_, v)| v.clone());
        let value = match (r.entry, &given) {
            (Some(i), Value::Table(t)) => t.raw_get::<Value>(i)?,
            _ => given,
        };
        let entry = lua.create_table()?;
        entry.set("name", r.name.as_str())?;
        entry.set("value", value)?;
        entry.set("expected", r.expected.as_str())?;
        entry.set("default", r.default.as_ref().map(|d| to_lua(lua, d)).transpose()?)?;
        entry.set("entry", r.entry)?;
        refused.push(entry)?;
    }
    Ok((clean, refused))
}

/// `option_names`: every option name, sorted (for a misspelling warning).
pub fn option_names(lua: &Lua) -> LuaResult<Table> {
    lua.create_sequence_from(options::names())
}

/// Metadata as the table `analyze` returns: only the fields that are known.
fn metadata_table(lua: &Lua, m: &Metadata) -> LuaResult<Table> {
    let t = lua.create_table()?;
    t.set("bytes", m.bytes)?;
    t.set("type", m.mime.as_deref())?;
    t.set("width", m.width)?;
    t.set("height", m.height)?;
    t.set("blurhash", m.blurhash.as_deref())?;
    t.set("name", m.name.as_deref())?;
    t.set("date", m.date.as_deref())?;
    t.set("sha256", m.sha256.as_deref())?;
    t.set("thumbhash", m.thumbhash.as_deref())?;
    t.set("thumbnail", m.thumbnail.as_deref())?;
    t.set("thumbnail_width", m.thumbnail_width)?;
    t.set("thumbnail_height", m.thumbnail_height)?;
    t.set("length", m.length)?;
    t.set("animated", m.animated)?;
    t.set("etag", m.validators.etag.as_deref())?;
    t.set("last_modified", m.validators.last_modified.as_deref())?;
    if m.unchanged {
        t.set("unchanged", true)?;
    }
    t.set("note", m.note.as_deref())?;
    t.set("error_kind", m.error_kind)?;
    Ok(t)
}

/// `analyze(url [, opts])`: blocking; a table, or `nil, err, kind`.
pub fn analyze(lua: &Lua, (url, opts): (String, Option<Table>)) -> LuaResult<Outcome<Table>> {
    let opts = options(opts)?;
    let (meta, err, kind) = outcome(analyze::analyze(&Fetcher::new(opts.analysis), &url));
    Ok((meta.map(|m| metadata_table(lua, &m)).transpose()?, err, kind))
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
    let (px, err, kind) = outcome(blurhash::decode(&hash, w, h, punch.unwrap_or(1.0)));
    Ok((px.map(|p| lua.create_string(&p)).transpose()?, err, kind))
}

/// `new_pool(opts)`: a worker pool for Prosody.
pub fn new_pool(_: &Lua, opts: Option<Table>) -> LuaResult<LuaPool> {
    Ok(LuaPool(Pool::new(options(opts)?)?))
}

/// `submit_file(path, { name=, date=, type= })`: a local upload (see [`LocalFile`]).
fn local_file(path: String, record: Option<Table>) -> LuaResult<LocalFile> {
    let field = |k: &str| -> LuaResult<Option<String>> {
        record
            .as_ref()
            .map_or(Ok(None), |t| t.get::<Option<mlua::LuaString>>(k))
            .map(|v| v.map(|s| s.to_string_lossy()))
    };
    Ok(LocalFile { path: path.into(), name: field("name")?, date: field("date")?, content_type: field("type")? })
}

/// The pool as Lua userdata: `submit`, `submit_if_changed`, `submit_file`, `getfd`, `cancel`, `drain`, `close`.
pub struct LuaPool(Pool);

/// How long `close` waits for running analyses; longer would stall Prosody's main loop.
const CLOSE_GRACE: Duration = Duration::from_millis(200);

impl UserData for LuaPool {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method_mut("submit", |_, this, url: String| Ok(outcome(this.0.submit(&url))));
        methods.add_method_mut(
            "submit_if_changed",
            |_, this, (url, etag, last_modified): (String, Option<String>, Option<String>)| {
                Ok(outcome(this.0.submit_if_changed(&url, Validators { etag, last_modified })))
            },
        );
        methods.add_method_mut("submit_file", |_, this, (path, record): (String, Option<Table>)| {
            Ok(outcome(this.0.submit_file(local_file(path, record)?)))
        });
        methods.add_method("getfd", |_, this, ()| Ok(this.0.fd()));
        methods.add_method_mut("cancel", |_, this, id: u64| Ok(this.0.cancel(id)));
        methods.add_method_mut("drain", |lua, this, ()| {
            let list = lua.create_table()?;
            for c in this.0.drain() {
                let entry = lua.create_table()?;
                entry.set("id", c.id)?;
                if c.cached {
                    entry.set("cached", true)?;
                }
                match c.result {
                    Ok(m) => entry.set("result", metadata_table(lua, &m)?)?,
                    Err(e) => {
                        entry.set("err", e.to_string())?;
                        entry.set("kind", e.kind())?;
                    }
                }
                list.push(entry)?;
            }
            Ok(list)
        });
        methods.add_method_mut("close", |_, this, ()| Ok(this.0.close(CLOSE_GRACE)));
    }
}
