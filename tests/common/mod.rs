//! A real HTTP/1.1 server on 127.0.0.1 with scripted misbehaviour, and real test images.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use image::{DynamicImage, ImageEncoder, RgbImage, RgbaImage};

/// What the server does for a path.
#[derive(Clone)]
pub enum Reply {
    /// 200 with this Content-Type and body (Content-Length set).
    Ok(&'static str, Vec<u8>),
    /// These bytes, verbatim, then close.
    Raw(Vec<u8>),
    /// A 302 to this location.
    Redirect(String),
    /// Accept, read the request, never answer (for up to a minute).
    Hang,
    /// 200 with the body written one byte per interval.
    Slow(Vec<u8>, Duration),
    /// An endless body, without Content-Length.
    Endless,
}

pub struct Server {
    pub port: u16,
    pub accepts: Arc<AtomicUsize>,
    pub hits: Arc<Mutex<HashMap<String, usize>>>,
}

impl Server {
    /// Serves `routes` (path -> reply; 404 for others) until the test process ends.
    pub fn start(routes: Vec<(&str, Reply)>) -> Server {
        let routes: HashMap<String, Reply> = routes.into_iter().map(|(p, r)| (p.to_owned(), r)).collect();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepts = Arc::new(AtomicUsize::new(0));
        let hits = Arc::new(Mutex::new(HashMap::new()));
        let (a, h, routes) = (accepts.clone(), hits.clone(), Arc::new(routes));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                a.fetch_add(1, Ordering::SeqCst);
                let (h, routes) = (h.clone(), routes.clone());
                std::thread::spawn(move || serve(stream, &routes, &h));
            }
        });
        Server { port, accepts, hits }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub fn accepted(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }
}

fn serve(mut stream: TcpStream, routes: &HashMap<String, Reply>, hits: &Mutex<HashMap<String, usize>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
    loop {
        let mut h = String::new();
        match reader.read_line(&mut h) {
            Ok(0) | Err(_) => return,
            Ok(_) if h == "\r\n" => break,
            Ok(_) => {}
        }
    }
    *hits.lock().unwrap().entry(path.clone()).or_default() += 1;
    let head = |status: &str, ctype: &str, len: Option<usize>| {
        let len = len.map(|n| format!("Content-Length: {n}\r\n")).unwrap_or_default();
        format!("HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n{len}Connection: close\r\n\r\n").into_bytes()
    };
    let _ = match routes.get(&path).cloned() {
        None => stream.write_all(&head("404 Not Found", "text/plain", Some(0))),
        Some(Reply::Ok(ctype, body)) => {
            stream.write_all(&head("200 OK", ctype, Some(body.len()))).and_then(|_| stream.write_all(&body))
        }
        Some(Reply::Raw(bytes)) => stream.write_all(&bytes),
        Some(Reply::Redirect(to)) => stream.write_all(
            format!("HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        ),
        Some(Reply::Hang) => {
            std::thread::sleep(Duration::from_secs(60));
            Ok(())
        }
        Some(Reply::Slow(body, every)) => (|| {
            stream.write_all(&head("200 OK", "image/png", Some(body.len())))?;
            for b in body {
                stream.write_all(&[b])?;
                std::thread::sleep(every);
            }
            Ok(())
        })(),
        Some(Reply::Endless) => (|| {
            stream.write_all(&head("200 OK", "image/png", None))?;
            let png = png(&photo(64, 64));
            stream.write_all(&png[..png.len() / 2])?;
            let chunk = vec![0u8; 64 * 1024];
            loop {
                stream.write_all(&chunk)?;
            }
        })(),
    };
}

/// A picture with structure in both directions, so orientation and placement errors show.
pub fn photo(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
        let r = if fx < 0.3 && fy < 0.4 { 230.0 } else { 255.0 * fx };
        image::Rgb([r as u8, (255.0 * fy) as u8, (((x / 7 + y / 5) % 3) * 40 + 60) as u8])
    })
}

pub fn jpeg(img: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90).encode_image(img).unwrap();
    out
}

pub fn png(img: &RgbImage) -> Vec<u8> {
    encode_png(img.as_raw(), img.width(), img.height(), image::ExtendedColorType::Rgb8)
}

pub fn png_rgba(img: &RgbaImage) -> Vec<u8> {
    encode_png(img.as_raw(), img.width(), img.height(), image::ExtendedColorType::Rgba8)
}

pub fn encode_png(raw: &[u8], w: u32, h: u32, color: image::ExtendedColorType) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out).write_image(raw, w, h, color).unwrap();
    out
}

pub fn encode_as(img: &RgbImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    DynamicImage::ImageRgb8(img.clone()).into_rgba8().write_to(&mut out, format).unwrap();
    out.into_inner()
}

/// `jpeg` with an EXIF APP1 segment carrying `orientation`, right after SOI.
pub fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut tiff = b"MM\0*\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01".to_vec();
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]); // value padding, next IFD = none
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xff, 0xe1]);
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// Mean absolute difference per channel (0..255) of two hashes painted at 32x32.
pub fn hash_distance(a: &str, b: &str) -> f64 {
    let pa = media_metadata::blurhash::decode(a, 32, 32, 1.0).unwrap();
    let pb = media_metadata::blurhash::decode(b, 32, 32, 1.0).unwrap();
    pa.iter().zip(&pb).map(|(x, y)| (*x as f64 - *y as f64).abs()).sum::<f64>() / pa.len() as f64
}

/// The blurhash crate's encoder on the full-size picture: the reference we stay close to.
pub fn reference_hash(img: &RgbImage, cx: u32, cy: u32) -> String {
    let rgba = DynamicImage::ImageRgb8(img.clone()).into_rgba8();
    blurhash::encode(cx, cy, img.width(), img.height(), rgba.as_raw()).unwrap()
}

/// Hand-made image files: bombs, lies and variants encoders will not write.
pub mod craft;
/// Listeners that count connections, and servers that misbehave on a test's script.
pub mod hostile;
/// A counting global allocator with a ceiling, for the binaries that install it.
pub mod peak_alloc;
/// A reader that hands out a few bytes at a time.
pub mod trickle;
