//! Real audio, video and picture files made at test time by Debian's tools (ffmpeg,
//! heif-enc, avifenc, cjxl), their truths read at test time from ffprobe and exiftool, served
//! by a real HTTP server on 127.0.0.1 that answers Range as Prosody's mod_http_file_share
//! does (13: `bytes=N-` only, else 416; 0.12: the same with `bytes N-SIZE/SIZE`), or ignores
//! it, or lies, or sends more than asked.
//!
//! Without the tools (scripts/setup installs them) each test says so and passes; under
//! CI=true a missing tool fails it.

#[path = "common/tools.rs"]
mod tools;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use media_metadata::analyze::{analyze, Metadata};
use media_metadata::fetch::Fetcher;
use media_metadata::options::Options;
use tools::{have, run, workdir};

/// How the server answers a Range request.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Range {
    /// Prosody 13: `bytes=N-` with N > 0 is honoured with 206; any other Range gets 416.
    Prosody13,
    /// Prosody 0.12: as 13, but its Content-Range names the size as the last byte.
    Prosody012,
    /// 200 and the whole file, as if there were no Range header.
    Ignores,
    /// 206 with a Content-Range for other bytes than asked (and those bytes).
    Lies,
    /// 206 with the Content-Range asked for, and the whole file from its start.
    WholeAs206,
    /// 206 with a right Content-Range and the bytes asked for, then a megabyte more.
    SendsMore,
}

struct FileServer {
    port: u16,
    /// Body bytes written, over all requests.
    sent: Arc<AtomicU64>,
}

impl FileServer {
    fn start(body: Vec<u8>, content_type: &'static str, range: Range) -> FileServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let sent = Arc::new(AtomicU64::new(0));
        let (body, counter) = (Arc::new(body), sent.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (body, counter) = (body.clone(), counter.clone());
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut asked = None;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("range:") {
                            asked = Some(v.trim().to_owned());
                        }
                    }
                    let size = body.len() as u64;
                    let from =
                        asked.as_deref().and_then(|r| r.strip_prefix("bytes=")?.strip_suffix('-')?.parse::<u64>().ok());
                    let more: Vec<u8> = from
                        .filter(|&n| n < size)
                        .map_or_else(Vec::new, |n| [&body[n as usize..], &vec![0x55; 1 << 20][..]].concat());
                    let (status, extra, payload): (&str, String, &[u8]) = match (range, asked.is_some(), from) {
                        (Range::Ignores, _, _) | (_, false, _) => ("200 OK", String::new(), &body[..]),
                        (Range::Prosody13 | Range::Prosody012, true, Some(n)) if n > 0 && n < size => {
                            let last = if range == Range::Prosody13 { size - 1 } else { size };
                            (
                                "206 Partial Content",
                                format!("Content-Range: bytes {n}-{last}/{size}\r\n"),
                                &body[n as usize..],
                            )
                        }
                        (Range::Lies, true, Some(n)) if n > 1 => {
                            let m = n / 2;
                            (
                                "206 Partial Content",
                                format!("Content-Range: bytes {m}-{}/{size}\r\n", size - 1),
                                &body[m as usize..],
                            )
                        }
                        (Range::SendsMore, true, Some(n)) if n < size => (
                            "206 Partial Content",
                            format!("Content-Range: bytes {n}-{}/{size}\r\n", size - 1),
                            &more[..],
                        ),
                        (Range::WholeAs206, true, Some(n)) if n < size => (
                            "206 Partial Content",
                            format!("Content-Range: bytes {n}-{}/{size}\r\n", size - 1),
                            &body[..],
                        ),
                        _ => ("416 Range Not Satisfiable", String::new(), &[][..]),
                    };
                    let mut s = stream;
                    let head = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nAccept-Ranges: bytes\r\n{extra}Connection: close\r\n\r\n",
                        payload.len()
                    );
                    if s.write_all(head.as_bytes()).is_ok() {
                        for chunk in payload.chunks(16 * 1024) {
                            if s.write_all(chunk).is_err() {
                                break;
                            }
                            counter.fetch_add(chunk.len() as u64, Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        FileServer { port, sent }
    }

    fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }
}

fn ffmpeg(dir: &Path, out: &str, args: &[&str]) -> Vec<u8> {
    let path = dir.join(out);
    let mut all = vec!["-v", "error", "-y"];
    all.extend_from_slice(args);
    all.push(path.to_str().unwrap());
    run("ffmpeg", &all);
    std::fs::read(path).unwrap()
}

/// ffprobe's duration in ms, and the first video stream's displayed size (rotation applied).
fn ffprobe(dir: &Path, name: &str) -> (u64, Option<(u32, u32)>) {
    let path = dir.join(name);
    let p = path.to_str().unwrap();
    let duration: f64 = run("ffprobe", &["-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", p])
        .trim()
        .parse()
        .unwrap();
    let video = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=width,height:stream_side_data=rotation",
            "-of",
            "flat",
            p,
        ],
    );
    let field = |name: &str| {
        video
            .lines()
            .find(|l| l.contains(name))
            .and_then(|l| l.split('=').nth(1))
            .map(|v| v.trim_matches('"').parse::<i64>().unwrap())
    };
    let size = match (field(".width="), field(".height=")) {
        (Some(w), Some(h)) => {
            let turned = field("rotation").is_some_and(|r| r.rem_euclid(180) == 90);
            Some(if turned { (h as u32, w as u32) } else { (w as u32, h as u32) })
        }
        _ => None,
    };
    ((duration * 1000.0).round() as u64, size)
}

/// exiftool's displayed size of a picture (ImageWidth/ImageHeight, Rotation applied).
fn exiftool_size(dir: &Path, name: &str) -> (u32, u32) {
    let out =
        run("exiftool", &["-n", "-s3", "-ImageWidth", "-ImageHeight", "-Rotation", dir.join(name).to_str().unwrap()]);
    let v: Vec<i64> = out.lines().map(|l| l.trim().parse().unwrap()).collect();
    let turned = v.get(2).is_some_and(|r| r.rem_euclid(180) == 90);
    if turned {
        (v[1] as u32, v[0] as u32)
    } else {
        (v[0] as u32, v[1] as u32)
    }
}

fn opts(max_bytes: u64) -> Options {
    Options { allow_private: true, max_bytes, ..Options::default() }
}

fn fetch(body: &[u8], content_type: &'static str, range: Range, max_bytes: u64) -> (Metadata, u64) {
    let server = FileServer::start(body.to_vec(), content_type, range);
    let m = analyze(&Fetcher::new(opts(max_bytes)), &server.url("file")).unwrap();
    (m, server.sent.load(Ordering::SeqCst))
}

/// Durations agree within a few AAC/Opus frames (priming and padding are counted differently).
fn close(ours: Option<u64>, truth: u64) -> bool {
    ours.is_some_and(|l| l.abs_diff(truth) <= 60)
}

#[test]
fn voice_note_with_moov_at_the_end_through_range_tail_reads() {
    if !have(&["ffmpeg", "ffprobe"]) {
        return;
    }
    let dir = workdir("media-files", "m4a");
    // What ffmpeg writes without +faststart (and Android's MediaRecorder): moov after mdat.
    let m4a = ffmpeg(
        &dir,
        "voice.m4a",
        &["-f", "lavfi", "-i", "sine=frequency=440:duration=4.2", "-c:a", "aac", "-b:a", "64k"],
    );
    let moov = m4a.windows(4).position(|w| w == b"moov").unwrap();
    let mdat = m4a.windows(4).position(|w| w == b"mdat").unwrap();
    assert!(moov > mdat, "the moov must follow the mdat");
    let (truth, _) = ffprobe(&dir, "voice.m4a");

    // All of it within max_bytes: no Range needed.
    let (m, _) = fetch(&m4a, "audio/mp4", Range::Ignores, 32 << 20);
    assert_eq!(m.mime.as_deref(), Some("audio/mp4"));
    assert!(close(m.length, truth), "{:?} vs ffprobe {truth}", m.length);

    // max_bytes below the moov's offset: the tail comes from a Range request.
    let small = (moov as u64 / 2).max(1024);
    for range in [Range::Prosody13, Range::Prosody012, Range::SendsMore] {
        let (m, sent) = fetch(&m4a, "audio/mp4", range, small);
        assert!(close(m.length, truth), "{range:?}: {:?} vs ffprobe {truth} ({:?})", m.length, m.note);
        assert_eq!(m.bytes, Some(m4a.len() as u64));
        assert!(sent <= m4a.len() as u64 * 2 + (1 << 20), "{range:?}: {sent} bytes sent");
    }
    // A 206 that is really the whole file from its start: no moov where it should be.
    let (m, _) = fetch(&m4a, "audio/mp4", Range::WholeAs206, small);
    assert_eq!(m.length, None);
    assert!(m.note.unwrap_or_default().contains("no moov box at the end"));
    // A server that ignores Range or lies about it: no duration, a note, and the tail's
    // body is not read (the head read stopped at max_bytes, the tail at its status line).
    for range in [Range::Ignores, Range::Lies] {
        let (m, _) = fetch(&m4a, "audio/mp4", range, small);
        assert_eq!(m.length, None, "{range:?}");
        assert_eq!((m.mime.as_deref(), m.bytes), (Some("audio/mp4"), Some(m4a.len() as u64)), "{range:?}");
        let note = m.note.unwrap_or_default();
        assert!(note.contains("end of the file"), "{range:?}: {note}");
        assert_eq!(m.error_kind, Some("undecodable"), "{range:?}");
    }
}

#[test]
fn portrait_video_is_taller_than_wide() {
    if !have(&["ffmpeg", "ffprobe", "exiftool"]) {
        return;
    }
    let dir = workdir("media-files", "mp4");
    // A phone's portrait video: landscape frames and a track matrix turning them a quarter.
    // (ffmpeg 5.1 has no -display_rotation; exiftool writes the track matrix.)
    let args = ["-f", "lavfi", "-i", "testsrc=size=320x240:rate=10:duration=2.5", "-c:v", "mpeg4"];
    ffmpeg(&dir, "portrait.mp4", &args);
    let path = dir.join("portrait.mp4");
    run("exiftool", &["-q", "-overwrite_original", "-Rotation=90", path.to_str().unwrap()]);
    let mp4 = std::fs::read(&path).unwrap();
    let (truth, size) = ffprobe(&dir, "portrait.mp4");
    assert_eq!(size, Some((240, 320)), "ffprobe: the rotation is set");
    let (m, _) = fetch(&mp4, "video/mp4", Range::Prosody13, 32 << 20);
    assert_eq!((m.width, m.height), (Some(240), Some(320)));
    assert!(close(m.length, truth), "{:?} vs {truth}", m.length);
    // WebM (VP8), and a WebM voice note (Opus, as browsers record).
    let webm = ffmpeg(
        &dir,
        "clip.webm",
        &["-f", "lavfi", "-i", "testsrc=size=160x120:rate=10:duration=1.5", "-c:v", "libvpx", "-b:v", "100k"],
    );
    let (truth, size) = ffprobe(&dir, "clip.webm");
    let (m, _) = fetch(&webm, "video/webm", Range::Prosody13, 32 << 20);
    assert_eq!(m.mime.as_deref(), Some("video/webm"));
    assert_eq!(m.width.zip(m.height), size);
    assert!(close(m.length, truth), "{:?} vs {truth}", m.length);
    let voice = ffmpeg(&dir, "voice.webm", &["-f", "lavfi", "-i", "sine=duration=2.5", "-c:a", "libopus"]);
    let (truth, _) = ffprobe(&dir, "voice.webm");
    let (m, _) = fetch(&voice, "audio/webm", Range::Prosody13, 32 << 20);
    assert_eq!((m.mime.as_deref(), m.width), (Some("video/webm"), None));
    assert!(close(m.length, truth), "{:?} vs {truth}", m.length);
    // The same as QuickTime, faststart: moov first.
    let mov = ffmpeg(
        &dir,
        "clip.mov",
        &["-f", "lavfi", "-i", "testsrc=size=160x90:rate=10:duration=1", "-c:v", "mpeg4", "-movflags", "+faststart"],
    );
    let (truth, size) = ffprobe(&dir, "clip.mov");
    let (m, _) = fetch(&mov, "video/quicktime", Range::Ignores, 32 << 20);
    assert_eq!(m.mime.as_deref(), Some("video/quicktime"));
    assert_eq!(m.width.zip(m.height), size);
    assert!(close(m.length, truth), "{:?} vs {truth}", m.length);
}

#[test]
fn ogg_mp3_flac_wav_durations() {
    if !have(&["ffmpeg", "ffprobe"]) {
        return;
    }
    let dir = workdir("media-files", "audio");
    let tone = ["-f", "lavfi", "-i", "sine=frequency=300:duration=3.3"];
    let cases: &[(&str, &[&str], &str)] = &[
        ("voice.ogg", &["-c:a", "libopus", "-b:a", "24k"], "audio/ogg"),
        ("vorbis.ogg", &["-c:a", "libvorbis"], "audio/ogg"),
        ("flac.oga", &["-c:a", "flac", "-f", "ogg"], "audio/ogg"),
        ("song.mp3", &["-c:a", "libmp3lame", "-b:a", "96k"], "audio/mpeg"),
        ("cbr.mp3", &["-c:a", "libmp3lame", "-b:a", "128k", "-write_xing", "0"], "audio/mpeg"),
        ("song.flac", &["-c:a", "flac"], "audio/flac"),
        ("note.wav", &["-c:a", "pcm_s16le"], "audio/wav"),
    ];
    for (name, codec, mime) in cases {
        let bytes = ffmpeg(&dir, name, &[&tone[..], codec].concat());
        let (truth, _) = ffprobe(&dir, name);
        let (m, _) = fetch(&bytes, "application/octet-stream", Range::Prosody13, 32 << 20);
        assert_eq!(m.mime.as_deref(), Some(*mime), "{name}");
        assert!(close(m.length, truth), "{name}: {:?} vs ffprobe {truth} ({:?})", m.length, m.note);
    }
    // An Ogg past max_bytes: its last page comes from a tail read.
    let long = ffmpeg(&dir, "long.ogg", &["-f", "lavfi", "-i", "sine=duration=20", "-c:a", "libopus", "-b:a", "64k"]);
    let (truth, _) = ffprobe(&dir, "long.ogg");
    let (m, _) = fetch(&long, "audio/ogg", Range::Prosody13, (long.len() / 4) as u64);
    assert!(close(m.length, truth), "{:?} vs {truth} ({:?})", m.length, m.note);
    // An Ogg stream cut before its last page (no page of it has a granule position at the
    // end): no duration, a note.
    let first_page_only = &long[..long.windows(4).skip(4).position(|w| w == b"OggS").unwrap() + 4];
    let (m, _) = fetch(first_page_only, "audio/ogg", Range::Prosody13, 32 << 20);
    assert_eq!(m.length, None);
    assert!(m.note.unwrap_or_default().contains("last Ogg page"));
}

#[test]
fn heic_avif_jxl_dimensions_from_headers() {
    if !have(&["ffmpeg", "heif-enc", "avifenc", "cjxl", "exiftool"]) {
        return;
    }
    let dir = workdir("media-files", "pictures");
    ffmpeg(&dir, "in.png", &["-f", "lavfi", "-i", "testsrc=size=300x200", "-frames:v", "1"]);
    let png = dir.join("in.png");
    let p = |n: &str| dir.join(n).to_str().unwrap().to_owned();
    run("heif-enc", &["-q", "50", "-o", &p("photo.heic"), png.to_str().unwrap()]);
    run("avifenc", &["-s", "10", png.to_str().unwrap(), &p("photo.avif")]);
    run("cjxl", &[png.to_str().unwrap(), &p("photo.jxl"), "-q", "50", "--quiet"]);
    for (name, mime) in [("photo.heic", "image/heic"), ("photo.avif", "image/avif"), ("photo.jxl", "image/jxl")] {
        let bytes = std::fs::read(dir.join(name)).unwrap();
        let truth = exiftool_size(&dir, name);
        let (m, _) = fetch(&bytes, "application/octet-stream", Range::Prosody13, 32 << 20);
        assert_eq!(m.mime.as_deref(), Some(mime), "{name}");
        assert_eq!(m.width.zip(m.height), Some(truth), "{name} ({:?})", m.note);
        assert_eq!(m.blurhash, None, "{name}: measured, never decoded");
    }
    // (A turned HEIC's irot is in heif.rs's unit tests: heif-enc 1.15 cannot write one.)
}

#[test]
fn reads_are_bounded_by_max_bytes_when_the_server_ignores_range() {
    if !have(&["ffmpeg"]) {
        return;
    }
    let dir = workdir("media-files", "bound");
    let m4a = ffmpeg(&dir, "short.m4a", &["-f", "lavfi", "-i", "sine=duration=1", "-c:a", "aac"]);
    // The real ftyp, an mdat of 64 MiB, then the real moov (its chunk offsets are wrong, which
    // only matters to a player).
    let (ftyp_end, moov) = (
        m4a.windows(4).position(|w| w == b"free" || w == b"mdat").unwrap() - 4,
        m4a.windows(4).position(|w| w == b"moov").unwrap() - 4,
    );
    let mdat_len = 64u32 << 20;
    let big =
        [&m4a[..ftyp_end], &mdat_len.to_be_bytes(), b"mdat", &vec![0; mdat_len as usize - 8], &m4a[moov..]].concat();
    let max = 256 * 1024;
    for (range, has_length) in [(Range::Ignores, false), (Range::Prosody13, true)] {
        let server = FileServer::start(big.clone(), "audio/mp4", range);
        let m = analyze(&Fetcher::new(opts(max)), &server.url("file")).unwrap();
        assert_eq!(m.length.is_some(), has_length, "{range:?}: {:?}", m.note);
        // Socket buffers take some of what the server writes before we close: far from 64 MiB.
        std::thread::sleep(std::time::Duration::from_millis(200));
        let sent = server.sent.load(Ordering::SeqCst);
        assert!(sent < 16 << 20, "{range:?}: the server wrote {sent} bytes");
    }
}
