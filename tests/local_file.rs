//! The local-upload source: a slot's file read from disk under the same limits as a fetch,
//! described like a body from HTTP; symlinks, FIFOs and missing files give an error, never
//! a read outside the file or a hang.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use common::*;
use media_metadata::error::Error;
use media_metadata::fetch::Fetcher;
use media_metadata::options::{Options, PoolOptions};
use media_metadata::pool::Pool;
use media_metadata::source::{self, LocalFile};
use sha2::{Digest, Sha256};

fn store() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mm-local-{}-{:?}", std::process::id(), std::thread::current().id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn upload(path: &Path, name: &str) -> LocalFile {
    LocalFile {
        path: path.to_owned(),
        name: Some(name.to_owned()),
        date: Some("2026-12-03T07:00:00Z".to_owned()),
        content_type: Some("image/png".to_owned()),
    }
}

fn analyse(file: &LocalFile, opts: Options) -> Result<media_metadata::analyze::Metadata, Error> {
    source::analyze(file, &Fetcher::new(opts), None)
}

#[test]
fn a_slot_file_is_described_with_the_upload_records_name_and_date() {
    let dir = store();
    let png_bytes = png(&photo(40, 30));
    let path = dir.join("abc123.bin");
    std::fs::write(&path, &png_bytes).unwrap();
    let m = analyse(&upload(&path, "../../etc/Holiday\u{202E}gpj.png"), Options::default()).unwrap();
    assert_eq!((m.width, m.height, m.bytes), (Some(40), Some(30), Some(png_bytes.len() as u64)));
    assert_eq!(m.mime.as_deref(), Some("image/png"));
    assert!(m.blurhash.is_some() && m.thumbhash.is_some());
    assert_eq!(m.name.as_deref(), Some("Holidaygpj.png"), "the uploader's name is made safe");
    assert_eq!(m.date.as_deref(), Some("2026-12-03T07:00:00Z"));
    let sha = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&png_bytes));
    assert_eq!(m.sha256, Some(sha));
}

#[test]
fn past_max_bytes_only_the_head_is_read() {
    let dir = store();
    let path = dir.join("big.bin");
    let png_bytes = png(&photo(300, 200));
    std::fs::write(&path, &png_bytes).unwrap();
    let opts = Options { max_bytes: 1000, ..Options::default() };
    let m = analyse(&upload(&path, "big.png"), opts).unwrap();
    assert_eq!(m.bytes, Some(png_bytes.len() as u64), "the size is the file's");
    assert_eq!((m.width, m.height), (Some(300), Some(200)), "the header is within the head");
    assert_eq!((m.blurhash, m.sha256), (None, None));
}

#[test]
fn a_symlink_a_fifo_or_a_missing_file_is_an_error_and_nothing_is_read() {
    let dir = store();
    let secret = dir.join("outside.png");
    std::fs::write(&secret, png(&photo(10, 10))).unwrap();
    let link = dir.join("link.bin");
    std::os::unix::fs::symlink(&secret, &link).unwrap();
    let fifo = dir.join("fifo.bin");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let t = Instant::now();
    for (path, why) in [
        (link, "a symlink, not followed"),
        (fifo, "not a regular file"),
        (dir.join("missing.bin"), "no such file"),
        (dir.clone(), "not a regular file"),
    ] {
        let e = analyse(&upload(&path, "x.png"), Options::default()).unwrap_err();
        assert!(matches!(&e, Error::File { why: w, .. } if w.starts_with(why)), "{}: {e}", path.display());
        assert_eq!(e.kind(), "file");
    }
    assert!(t.elapsed() < Duration::from_secs(2), "a FIFO must not block");
}

#[test]
fn the_pool_reads_local_uploads_once_for_all_waiters_and_caches_them() {
    let dir = store();
    let path = dir.join("slot.bin");
    std::fs::write(&path, png(&photo(16, 8))).unwrap();
    let mut p = Pool::new(PoolOptions { threads: 1, ..PoolOptions::default() }).unwrap();
    let a = p.submit_file(upload(&path, "a.png")).unwrap();
    let b = p.submit_file(upload(&path, "a.png")).unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    let mut done = Vec::new();
    while done.len() < 2 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
        done.extend(p.drain());
    }
    assert_eq!(done.len(), 2);
    for c in &done {
        assert!([a, b].contains(&c.id));
        assert_eq!(c.url, format!("file:{}", path.display()));
        assert_eq!(c.result.as_ref().unwrap().width, Some(16));
    }
    // Cached: answered even once the file is gone.
    std::fs::remove_file(&path).unwrap();
    p.submit_file(upload(&path, "a.png")).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let again = p.drain();
    assert!(again[0].cached && again[0].result.is_ok());
}

#[test]
fn a_tail_read_takes_the_end_of_the_slot_file() {
    use media_metadata::source::Source;
    let dir = store();
    let path = dir.join("tail.bin");
    let bytes: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
    std::fs::write(&path, &bytes).unwrap();
    let (file, fetcher) = (upload(&path, "a.m4a"), Fetcher::new(Options::default()));
    let t = file.tail(&fetcher, 900, 50).unwrap();
    assert_eq!((t.start, t.total, t.complete, &t.data[..]), (900, Some(1000), false, &bytes[900..950]));
    let t = file.tail(&fetcher, 950, 100).unwrap();
    assert_eq!((t.complete, &t.data[..]), (true, &bytes[950..]));
}
