//! The DC-only JPEG reader (src/jpeg_dc.rs) against jpeg-decoder at 1/8 scale, on every
//! layout libjpeg writes (tests/fixtures/make_jpegs.py), and on truncated and corrupted
//! copies of each: the fast path must give the same picture or decline, never panic.

use std::path::PathBuf;

mod common;

use common::trickle::Trickle;
use media_metadata::blurhash::Layout;
use media_metadata::jpeg_dc::{self, AtFrame, Streamed};

fn fixtures() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jpeg");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    files.sort();
    assert!(files.len() >= 14, "fixtures missing in {}", dir.display());
    files
}

/// jpeg-decoder's picture at 1/8 scale (its 1x1 IDCT is the block's DC, as ours), whether it
/// is grey, and the truth: the full-size decode averaged over each 8x8 block.
fn references(bytes: &[u8]) -> (u32, u32, bool, Vec<u8>, Vec<f64>) {
    let mut d = jpeg_decoder::Decoder::new(bytes);
    d.read_info().unwrap();
    let info = d.info().unwrap();
    let (w, h) = d.scale(info.width.div_ceil(8), info.height.div_ceil(8)).unwrap();
    let eighth = d.decode().unwrap();
    let grey = info.pixel_format == jpeg_decoder::PixelFormat::L8;
    let full = jpeg_decoder::Decoder::new(bytes).decode().unwrap();
    let (fw, fh, w, c) = (info.width as usize, info.height as usize, w as usize, if grey { 1 } else { 3 });
    let mut sums = vec![0f64; eighth.len()];
    let mut counts = vec![0f64; eighth.len() / c];
    for y in 0..fh {
        for x in 0..fw {
            let block = (y / 8) * w + x / 8;
            counts[block] += 1.0;
            for k in 0..c {
                sums[block * c + k] += full[(y * fw + x) * c + k] as f64;
            }
        }
    }
    let truth = sums.iter().enumerate().map(|(i, s)| s / counts[i / c]).collect();
    (w as u32, h as u32, grey, eighth, truth)
}

fn mean_distance(a: &[u8], b: impl Iterator<Item = f64>) -> f64 {
    a.iter().zip(b).map(|(&a, b)| (a as f64 - b).abs()).sum::<f64>() / a.len() as f64
}

#[test]
fn every_layout_libjpeg_writes_is_read_as_faithfully_as_jpeg_decoder_reads_it() {
    let mut read = 0;
    for (name, bytes) in fixtures() {
        let declined = name.starts_with("cmyk") || name.starts_with("stored-rgb");
        let Some(dc) = jpeg_dc::decode(&bytes, u64::MAX) else {
            assert!(declined, "{name}: jpeg_dc declined a layout it should read");
            continue;
        };
        assert!(!declined, "{name}: jpeg_dc read a layout it must leave to jpeg-decoder (not YCbCr)");
        read += 1;
        let (w, h, grey, eighth, truth) = references(&bytes);
        assert_eq!((dc.width, dc.height), (w, h), "{name}: size at 1/8 scale");
        assert_eq!(matches!(dc.layout, Layout::Luma), grey, "{name}: layout");
        assert_eq!(dc.pixels.len(), eighth.len(), "{name}");
        // Against jpeg-decoder: the same DC values, so only rounding and the chroma
        // interpolation differ (measured: mean <= 1.1, max 4).
        let to_decoder = mean_distance(&dc.pixels, eighth.iter().map(|&v| v as f64));
        let max = dc.pixels.iter().zip(&eighth).map(|(&a, &b)| a.abs_diff(b)).max().unwrap();
        // Against the truth, the fast path must be at least as close as jpeg-decoder's own
        // 1/8 scale (measured: 0.3-0.6 against 0.5-1.0 unsubsampled, 3.5-4.6 against 3.6-4.7
        // with 4:2:x chroma on this small, colourful picture).
        let ours = mean_distance(&dc.pixels, truth.iter().copied());
        let theirs = mean_distance(&eighth, truth.iter().copied());
        eprintln!("{name}: {w}x{h}; to jpeg-decoder: mean {to_decoder:.2}, max {max}; to the block means: ours {ours:.2}, jpeg-decoder {theirs:.2}");
        assert!(
            to_decoder <= 1.5 && max <= 8,
            "{name}: mean {to_decoder:.2} (<= 1.5), max {max} (<= 8) from jpeg-decoder"
        );
        assert!(ours <= theirs + 0.05, "{name}: {ours:.2} from the block means, jpeg-decoder {theirs:.2}");
    }
    assert_eq!(read, 12, "every YCbCr and grey layout takes the fast path");
}

#[test]
fn truncated_or_corrupted_files_are_declined_or_read_never_a_panic() {
    for (name, bytes) in fixtures() {
        let full = jpeg_dc::decode(&bytes, u64::MAX).map(|d| (d.width, d.height));
        let mut cuts: Vec<usize> = (0..bytes.len()).step_by(97).collect();
        cuts.extend([1, 2, 3, bytes.len() - 2, bytes.len() - 1]);
        for cut in cuts {
            let outcome =
                std::panic::catch_unwind(|| jpeg_dc::decode(&bytes[..cut], u64::MAX).map(|d| (d.width, d.height)));
            let got = outcome.unwrap_or_else(|_| panic!("{name}: panic on the first {cut} bytes"));
            // A file cut inside its scans is declined (the caller falls back to jpeg-decoder,
            // which reports the truncation); only a cut in the trailing bytes may still read.
            if cut + 2 < bytes.len() - 2 {
                assert!(got.is_none() || got == full, "{name}: cut at {cut} gave {got:?}");
            }
        }
        let mut state = 0x2545_f491u32;
        for i in 0..400 {
            let mut bad = bytes.clone();
            for _ in 0..1 + i % 4 {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                let at = state as usize % bad.len();
                bad[at] = (state >> 24) as u8;
            }
            let outcome = std::panic::catch_unwind(|| {
                jpeg_dc::decode(&bad, u64::MAX).map(|d| {
                    d.pixels.len() as u64
                        == d.width as u64 * d.height as u64 * if matches!(d.layout, Layout::Luma) { 1 } else { 3 }
                })
            });
            let consistent = outcome.unwrap_or_else(|_| panic!("{name}: panic on corruption {i}"));
            assert!(consistent.unwrap_or(true), "{name}: corruption {i} gave pixels of the wrong length");
        }
    }
}

/// Fuzz timeout af8bd652: a 422-byte JPEG declaring 65519 x 61683 grey pixels. Called
/// directly, the reader allocated 63 M blocks and decoded them (over 10 s); the limit is now
/// its own, checked at the frame header before any allocation.
#[test]
fn a_frame_over_the_pixel_limit_is_declined_before_anything_is_allocated() {
    let giant =
        std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/regression-jpeg-4gpx-header.jpg"))
            .unwrap();
    assert!(jpeg_dc::decode(&giant, 50_000_000).is_none());
    // The limit counts pixels, not blocks: a 203 x 157 file passes at 203 * 157, not one less.
    let (_, small) = fixtures().into_iter().find(|(n, _)| n == "grey.jpg").unwrap();
    assert!(jpeg_dc::decode(&small, 203 * 157).is_some());
    assert!(jpeg_dc::decode(&small, 203 * 157 - 1).is_none());
}

/// Issue 13: a 4.4 MB baseline JPEG whose 200,000 tiny DHT segments (every class and id)
/// come before the picture's own tables. The reader built a 16K-entry look-up table for each
/// AC table defined (4.2 s against jpeg-decoder's 83 ms); it now builds only the tables a
/// scan uses, once per definition. Timed against jpeg-decoder on the same bytes, not against
/// a clock: both are compiled alike, so the ratio holds in debug and release builds.
#[test]
fn a_flood_of_huffman_tables_costs_no_more_than_reading_it() {
    use std::time::{Duration, Instant};
    let clean = common::jpeg(&common::photo(256, 192));
    let crafted = common::craft::jpeg_dht_flood(&clean, 200_000);
    assert!(crafted.len() > 4_000_000, "{}", crafted.len());
    let best = |runs: usize, f: &dyn Fn()| {
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .min()
            .unwrap_or(Duration::MAX)
    };
    let reference = jpeg_dc::decode(&clean, u64::MAX).expect("the clean file takes the fast path");
    let flooded = jpeg_dc::decode(&crafted, u64::MAX).expect("the crafted file still takes the fast path");
    assert_eq!(
        (flooded.width, flooded.height, &flooded.pixels),
        (reference.width, reference.height, &reference.pixels)
    );
    let ours_clean = best(5, &|| assert!(jpeg_dc::decode(&clean, u64::MAX).is_some()));
    let ours = best(3, &|| assert!(jpeg_dc::decode(&crafted, u64::MAX).is_some()));
    let theirs = best(1, &|| {
        let mut d = jpeg_decoder::Decoder::new(&crafted[..]);
        d.scale(32, 24).unwrap();
        assert!(d.decode().is_ok());
    });
    eprintln!(
        "measured: DHT flood ({} bytes): jpeg_dc {ours:?} (clean file {ours_clean:?}), jpeg-decoder at 1/8 {theirs:?}",
        crafted.len()
    );
    assert!(ours < theirs, "jpeg_dc took {ours:?} on the crafted file, jpeg-decoder {theirs:?}");
    // The fuzz seed of the same shape (fuzz/make_corpus.py) is read, not declined.
    let seed =
        std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/sniff_decode/jpeg-dht-flood.jpg"));
    assert!(jpeg_dc::decode(&seed.unwrap(), u64::MAX).is_some(), "the fuzz seed jpeg-dht-flood.jpg");
}

/// T.81 gives each component one first pass (one scan in a sequential frame). A file that
/// repeats its scans would have each one built for and decoded over the whole picture: the
/// reader declines it (jpeg-decoder then reads it, or reports it).
#[test]
fn a_second_first_pass_over_a_component_is_declined() {
    use common::craft::{dc_jpeg, JpegSpec};
    for progressive in [false, true] {
        let mut spec = JpegSpec::new(64, 48, 1);
        spec.progressive = progressive;
        let once = dc_jpeg(&spec, |_, x, y| (x + y) as u8);
        assert!(jpeg_dc::decode(&once, u64::MAX).is_some(), "progressive {progressive}: the file itself");
        let sos = once.windows(2).position(|m| m == [0xff, 0xda]).unwrap();
        let first_scan_end = sos + 2 + once[sos + 2..].windows(2).position(|m| m[0] == 0xff && m[1] != 0).unwrap();
        let mut twice = once[..first_scan_end].to_vec();
        twice.extend_from_slice(&once[sos..]);
        assert!(jpeg_dc::decode(&twice, u64::MAX).is_none(), "progressive {progressive}: the first scan twice");
    }
}

/// Reading as the file arrives, a few bytes a read (every window boundary falls somewhere in
/// a scan): the same picture as from memory, or the file back whole as far as read when the
/// reader leaves it to jpeg-decoder; `at_frame` sees the frame's size and EXIF orientation.
#[test]
fn a_file_read_as_it_arrives_gives_what_it_gives_from_memory() {
    let mut fixtures = fixtures();
    let rotated = common::with_exif_orientation(&fixtures[0].1, 6);
    fixtures.push(("rotated".into(), rotated));
    for (name, bytes) in fixtures {
        let (mut d, mut seen) = (jpeg_decoder::Decoder::new(&bytes[..]), None);
        d.read_info().unwrap();
        let info = d.info().unwrap();
        let streamed = jpeg_dc::stream(&mut Trickle(&bytes), u64::MAX, |w, h, o| {
            seen = Some((w, h, o));
            AtFrame::Decode
        });
        match jpeg_dc::decode(&bytes, u64::MAX) {
            Some(from_memory) => {
                assert_eq!(streamed, Streamed::Read(from_memory), "{name}");
                let orientation = if name == "rotated" { 6 } else { 1 };
                assert_eq!(seen, Some((info.width as u32, info.height as u32, orientation)), "{name}");
            }
            None => match streamed {
                Streamed::Whole(kept) => {
                    assert!(bytes.starts_with(&kept) && kept.len() > 100, "{name}: {}", kept.len())
                }
                other => panic!("{name}: declined from memory, {other:?} from a stream"),
            },
        }
        // A caller that wants the file whole (a small picture) gets it, as far as read.
        match jpeg_dc::stream(&mut Trickle(&bytes), u64::MAX, |_, _, _| AtFrame::Whole) {
            Streamed::Whole(kept) => assert!(bytes.starts_with(&kept), "{name}"),
            other => panic!("{name}: {other:?}"),
        }
        let stopped = jpeg_dc::stream(&mut Trickle(&bytes), u64::MAX, |_, _, _| AtFrame::Stop);
        assert!(matches!(stopped, Streamed::Stopped | Streamed::Whole(_)), "{name}: {stopped:?}");
    }
}

/// A stream that stops (the server's end, a reset): cut inside the scans it fails and says
/// so; cut before the frame header the bytes come back for the caller's fallback; never a panic.
#[test]
fn a_stream_that_stops_fails_with_the_reason_or_comes_back_whole() {
    for (name, bytes) in fixtures() {
        let Some(full) = jpeg_dc::decode(&bytes, u64::MAX) else { continue };
        let sof = bytes.windows(2).position(|m| matches!(m, [0xff, 0xc0..=0xc2])).unwrap();
        for cut in (0..bytes.len() - 2).step_by(61) {
            let cut_off = &bytes[..cut];
            let got = std::panic::catch_unwind(|| {
                jpeg_dc::stream(&mut Trickle(cut_off), u64::MAX, |_, _, _| AtFrame::Decode)
            })
            .unwrap_or_else(|_| panic!("{name}: panic on the first {cut} bytes"));
            match got {
                Streamed::Whole(kept) => assert!(cut < sof + 20 && kept == cut_off, "{name}: cut at {cut}"),
                Streamed::Failed(why) => assert!(cut > sof && !why.is_empty(), "{name}: cut at {cut}: {why}"),
                Streamed::Read(image) => assert_eq!(image, full, "{name}: cut at {cut} read a different picture"),
                Streamed::Stopped => panic!("{name}: stopped without being asked"),
            }
        }
        let at = bytes.len() * 2 / 3;
        let mut failing = std::io::Read::chain(&bytes[..at], FailingRead);
        let got = jpeg_dc::stream(&mut failing, u64::MAX, |_, _, _| AtFrame::Decode);
        assert_eq!(got, Streamed::Failed("the file ends inside its scans".into()), "{name}: a read failed");
    }
}

/// A reset after some bytes.
struct FailingRead;

impl std::io::Read for FailingRead {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        Err(std::io::ErrorKind::ConnectionReset.into())
    }
}
