//! `media_metadata`: the native half of the Prosody module `mod_muc_media_metadata`.
//!
//! A URL shared in a MUC is fetched on a worker thread and described as bytes, media type,
//! upright dimensions, a BlurHash, and (for the XEP-0447 file share and the SIMS reference the
//! plugin builds) a safe file name, the date, a SHA-256 of the body, a ThumbHash and a tiny PNG.
//! The pieces, each plain Rust testable without Lua:
//!
//! - [`policy`]: where a URL is refused (schemes, denied hosts, private addresses);
//! - [`fetch`]: the HTTP GET under that policy (redirects, limits, framing);
//! - [`resolve`]: name lookups, each address checked by the policy, each lookup bounded in time;
//! - [`response`]: response heads and body framing, the final response after interim ones, and
//!   the file name (Content-Disposition) and date (Last-Modified) a head gives;
//! - [`name`]: a file name made safe to show and save, and the name in a URL;
//! - [`source`]: where the bytes come from: an HTTP GET, or this server's own upload on disk;
//! - [`sniff`]: the media type from the first bytes;
//! - [`decode`]: pixels from JPEG (scaled DCT), PNG, GIF and WebP under limits;
//! - [`png_rows`]: PNG a row at a time into the shrink, its ICC and text chunks unread;
//! - [`jpeg_markers`]: a JPEG's frame and scan count, and the kinds refused before decoding;
//! - [`jpeg_dc`]: large JPEGs at 1/8 scale from their DC coefficients alone, as they arrive;
//! - [`vp8`]: a still, opaque lossy WebP a macroblock row at a time into the shrink;
//! - [`webp`], [`vp8l`]: what image-webp will allocate for the other WebP files (alpha,
//!   lossless, animated), read from their chunks and lossless bitstream before it runs (it
//!   checks none of it);
//! - [`blurhash`]: the linear-light shrink (alpha kept beside) and the encoder;
//! - [`thumbnail`]: the ThumbHash and the tiny PNG, from the same shrunk picture;
//! - [`analyze`]: the steps above in order, for one URL;
//! - [`pool`]: worker threads, a bounded queue and the fd that wakes Prosody, one job per URL;
//! - [`cache`]: results by URL in memory, evicted in constant time;
//! - [`background`]: how the workers stay out of Prosody's way (SCHED_IDLE, yield points),
//!   and the time budget and cancel flag every analysis checks at those yield points;
//! - `lua`: the binding, the only module that knows Lua. This file registers it.

pub mod analyze;
pub mod audio;
pub mod background;
pub mod blurhash;
pub mod cache;
pub mod decode;
pub mod error;
pub mod fetch;
pub mod heif;
pub mod incoming;
pub mod isobmff;
pub mod jpeg_dc;
pub mod jpeg_markers;
pub mod jxl;
mod lua;
pub mod matroska;
pub mod measure;
pub mod media;
pub mod mp4;
pub mod name;
pub mod ogg;
pub mod options;
pub mod png_rows;
pub mod policy;
pub mod pool;
pub mod resolve;
pub mod response;
pub mod sniff;
pub mod source;
pub mod svg;
pub mod thumbnail;
pub mod vp8;
mod vp8_tables;
pub mod vp8l;
pub mod webp;

use mlua::{Lua, Result as LuaResult, Table};

/// The table `require "media_metadata"` returns.
pub fn exports(lua: &Lua) -> LuaResult<Table> {
    let t = lua.create_table()?;
    t.set("version", env!("CARGO_PKG_VERSION"))?;
    t.set("analyze", lua.create_function(lua::analyze)?)?;
    t.set("blurhash_encode", lua.create_function(lua::blurhash_encode)?)?;
    t.set("blurhash_decode", lua.create_function(lua::blurhash_decode)?)?;
    t.set("new_pool", lua.create_function(lua::new_pool)?)?;
    t.set("check_options", lua.create_function(lua::check_options)?)?;
    t.set("option_names", lua::option_names(lua)?)?;
    Ok(t)
}

#[cfg(feature = "module")]
#[mlua::lua_module]
fn media_metadata(lua: &Lua) -> LuaResult<Table> {
    exports(lua)
}
