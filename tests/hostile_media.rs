//! The bad inputs of issue 15, through `describe()` as a fetched body: a box claiming 2^64
//! bytes, boxes nested 10,000 deep, a `moov` declaring 2^32 samples, an Ogg stream with no
//! last page, an SVG billion laughs and external entity, a HEIF with a 100000x100000 `ispe`.
//! Each must end quickly, in little memory, with a note (and the size and type kept), never
//! a panic. The allocator counts this process's heap, so the cases run one at a time.

mod common;

use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::peak_alloc::{peak_of, Counting};
use media_metadata::analyze::{describe, Metadata};
use media_metadata::fetch::Body;
use media_metadata::options::Options;

#[global_allocator]
static ALLOCATOR: Counting = Counting;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Heap a hostile container may take beyond its input (which the caller already holds).
const HEAP_BOUND: usize = 4 << 20;
const QUICK: Duration = Duration::from_secs(1);

fn bx(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut b = ((body.len() + 8) as u32).to_be_bytes().to_vec();
    b.extend_from_slice(kind);
    b.extend_from_slice(body);
    b
}

/// Describes `data` as a whole body; checks time, heap and that size and type are kept.
#[track_caller]
fn hostile(what: &str, data: Vec<u8>, mime: &str) -> Metadata {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let body = Body { complete: true, length: Some(data.len() as u64), sha256: Some([0; 32]), data, ..Body::default() };
    let t = Instant::now();
    let (m, peak) = peak_of(|| std::panic::catch_unwind(|| describe(&body, &Options::default())));
    let took = t.elapsed();
    let m = m.unwrap_or_else(|_| panic!("{what}: panicked")).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(took < QUICK, "{what}: took {took:?}");
    assert!(peak < HEAP_BOUND, "{what}: {peak} bytes of heap");
    assert_eq!((m.mime.as_deref(), m.bytes), (Some(mime), Some(body.data.len() as u64)), "{what}");
    eprintln!("{what}: {took:?}, {} KiB heap, note {:?}", peak / 1024, m.note);
    m
}

fn ftyp(brand: &[u8; 4]) -> Vec<u8> {
    bx(b"ftyp", &[&brand[..], b"\0\0\0\0", brand].concat())
}

#[test]
fn a_box_claiming_two_to_the_sixty_four_bytes() {
    let mut data = ftyp(b"isom");
    data.extend_from_slice(b"\0\0\0\x01moov\xff\xff\xff\xff\xff\xff\xff\xff");
    data.extend_from_slice(&[0; 1000]);
    let m = hostile("2^64 moov", data, "video/mp4");
    assert_eq!(m.length, None);
    assert!(m.note.unwrap_or_default().contains("moov"));
    let mut heif = ftyp(b"heic");
    heif.extend_from_slice(b"\0\0\0\x01meta\xff\xff\xff\xff\xff\xff\xff\xff\0\0\0\0");
    let m = hostile("2^64 meta", heif, "image/heic");
    assert_eq!(m.width, None);
    assert!(m.note.is_some());
}

#[test]
fn boxes_nested_ten_thousand_deep() {
    let mut nested = Vec::new();
    for _ in 0..10_000 {
        nested = bx(b"trak", &nested);
    }
    let m = hostile("moov/trak x 10000", [ftyp(b"isom"), bx(b"moov", &nested)].concat(), "video/mp4");
    assert_eq!((m.length, m.width), (None, None));
    let mut meta = Vec::new();
    for _ in 0..10_000 {
        meta = bx(b"meta", &[&[0u8; 4][..], &meta].concat());
    }
    let m = hostile("meta x 10000", [ftyp(b"heic"), meta].concat(), "image/heic");
    assert_eq!(m.width, None);
    assert!(m.note.is_some());
}

#[test]
fn a_moov_declaring_two_to_the_thirty_two_samples() {
    let ok = Command::new("ffmpeg").arg("-version").output().is_ok_and(|o| o.status.success());
    if !ok {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "ffmpeg not installed");
        eprintln!("SKIPPED: ffmpeg not installed (scripts/setup installs it)");
        return;
    }
    let path = std::env::temp_dir().join(format!("hostile-media-{}.m4a", std::process::id()));
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i", "sine=duration=2", "-c:a", "aac", "-movflags", "+faststart"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut m4a = std::fs::read(&path).unwrap();
    // stsz: version and flags, sample_size (0: one size a sample follows), sample_count.
    let at = m4a.windows(4).position(|w| w == b"stsz").unwrap() + 4;
    m4a[at + 8..at + 12].copy_from_slice(&u32::MAX.to_be_bytes());
    let stts = m4a.windows(4).position(|w| w == b"stts").unwrap() + 4;
    m4a[stts + 8..stts + 12].copy_from_slice(&u32::MAX.to_be_bytes()); // entry count too
    let m = hostile("stsz/stts 2^32 - 1", m4a, "audio/mp4");
    assert_eq!(m.length, None, "an error, not a duration from a half-read table");
    assert_eq!(m.error_kind, Some("undecodable"));
    assert!(m.note.unwrap_or_default().contains("declares 4294967295 entries"));
}

#[test]
fn an_ogg_stream_with_no_last_page() {
    // One page holding an OpusHead, and nothing after it.
    let mut page = b"OggS\0\x02".to_vec();
    page.extend_from_slice(&[0; 8]); // granule 0
    page.extend_from_slice(&7u32.to_le_bytes());
    page.extend_from_slice(&[0; 8]);
    page.push(1);
    page.push(19);
    page.extend_from_slice(b"OpusHead\x01\x01\x38\x01\x80\xbb\0\0\0\0\0");
    let m = hostile("Ogg, first page only", page.clone(), "audio/ogg");
    assert_eq!(m.length, None);
    assert!(m.note.unwrap_or_default().contains("last Ogg page"));
    // 10,000 bytes of "OggS" that are no pages: scanned, not trusted.
    let junk = [page, b"OggS".repeat(10_000)].concat();
    assert_eq!(hostile("OggS x 10000", junk, "audio/ogg").length, None);
}

#[test]
fn svg_billion_laughs_and_external_entities() {
    let mut laughs = String::from("<?xml version=\"1.0\"?><!DOCTYPE svg [<!ENTITY a \"lol\">");
    for i in 1..10 {
        let prev = if i == 1 { "a".to_owned() } else { format!("a{}", i - 1) };
        laughs.push_str(&format!("<!ENTITY a{i} \"{}\">", format!("&{prev};").repeat(10)));
    }
    laughs.push_str("]><svg width=\"&a9;\" height=\"10\"><text>&a9;</text></svg>");
    let m = hostile("billion laughs", laughs.into_bytes(), "image/svg+xml");
    assert_eq!(m.width, None);
    assert!(m.note.unwrap_or_default().contains("entities"));
    let external = br#"<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY x SYSTEM "file:///etc/passwd">]><svg width="&x;" height="1"/>"#;
    let m = hostile("external entity", external.to_vec(), "image/svg+xml");
    assert_eq!(m.width, None);
}

#[test]
fn a_heif_of_100000_by_100000_is_measured_not_decoded() {
    let ispe = bx(b"ispe", &[&[0u8; 4][..], &100_000u32.to_be_bytes(), &100_000u32.to_be_bytes()].concat());
    let ipma = [&[0u8, 0, 0, 0, 0, 0, 0, 1, 0, 1, 1][..], &[0x81]].concat();
    let iprp = bx(b"iprp", &[bx(b"ipco", &ispe), bx(b"ipma", &ipma)].concat());
    let meta = bx(b"meta", &[&[0u8; 4][..], &bx(b"pitm", &[0, 0, 0, 0, 0, 1]), &iprp].concat());
    let m = hostile("100000x100000 ispe", [ftyp(b"heic"), meta].concat(), "image/heic");
    assert_eq!((m.width, m.height, m.blurhash), (Some(100_000), Some(100_000), None));
}

/// Found by the mp4 fuzz target: a `hdlr` claiming 2 GiB inside a `mdia` of 469 bytes, which
/// mp4parse reserved before reading.
#[test]
fn a_box_larger_than_its_parent() {
    let data = std::fs::read("tests/fixtures/media/fuzz-mp4-reserve.m4a").unwrap();
    let m = hostile("hdlr of 2 GiB in a mdia", data, "audio/mp4");
    assert_eq!(m.length, None);
    assert!(refused_before_mp4parse(&m), "{:?}", m.note);
}

/// Found by the mp4 fuzz target too: a `moov` of 820 bytes inside a `udta`'s `meta` of 90.
#[test]
fn a_box_larger_than_its_parent_inside_meta() {
    let data = std::fs::read("tests/fixtures/media/fuzz-mp4-reserve-2.mp4").unwrap();
    let m = hostile("moov of 820 bytes in a meta", data, "video/mp4");
    assert_eq!(m.length, None);
    assert!(refused_before_mp4parse(&m), "{:?}", m.note);
}

/// Found by the mp4 fuzz target: an `elst` declaring 7,304,054 edits in 16 bytes.
#[test]
fn an_edit_list_longer_than_its_box() {
    let data = std::fs::read("tests/fixtures/media/fuzz-mp4-elst.m4a").unwrap();
    let m = hostile("elst of 7.3 M entries", data, "audio/mp4");
    assert_eq!(m.length, None);
    assert!(refused_before_mp4parse(&m), "{:?}", m.note);
}

/// Found by the mp4 fuzz target: a metadata item's `data` box claiming 2 GiB inside an `ilst`.
#[test]
fn a_metadata_item_larger_than_its_list() {
    let data = std::fs::read("tests/fixtures/media/fuzz-mp4-ilst.m4a").unwrap();
    let m = hostile("ilst item data of 2 GiB", data, "audio/mp4");
    assert_eq!(m.length, None);
    assert!(refused_before_mp4parse(&m), "{:?}", m.note);
}

/// Whether the note is one of the checks made before mp4parse runs (a fuzzed input may
/// break more than one rule; which is found first does not matter).
fn refused_before_mp4parse(m: &Metadata) -> bool {
    m.note.as_deref().is_some_and(|n| n.contains(" claims ") || n.contains(" declares "))
}

/// Found by the mp4 fuzz target: a `stsd` declaring 16,777,216 sample entries in 206 bytes.
#[test]
fn sample_descriptions_more_than_their_box_holds() {
    let data = std::fs::read("tests/fixtures/media/fuzz-mp4-stsd.mp4").unwrap();
    let m = hostile("stsd of 2^24 entries", data, "video/quicktime");
    assert_eq!(m.length, None);
    assert!(refused_before_mp4parse(&m), "{:?}", m.note);
}
