"""A real HTTP server on 127.0.0.1 serving real media files generated with Pillow.

It counts requests per path, and can be told to delay a path or to never answer it
(accept the connection and hang), for the deadline and off-the-main-loop tests. For the
load and fault tests it can also reset a connection mid-body, send an endless body or a
huge one, and `bomb_png()` makes a decompression bomb.
"""

import functools
import hashlib
import io
import os
import socket
import struct
import threading
import time
import uuid
import zlib
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from PIL import Image, ImageChops, ImageDraw


@dataclass(frozen=True)
class MediaFile:
    """One served file and what the module should report about it."""

    name: str
    data: bytes
    content_type: str
    width: int | None  # as displayed (after EXIF orientation); None if not an image
    height: int | None

    @property
    def size(self) -> int:
        return len(self.data)


def _photo_jpeg() -> bytes:
    """1600x1200 photo-like JPEG: red grows left to right, green top to bottom, noise."""
    w, h = 1600, 1200
    red = Image.linear_gradient("L").rotate(90)
    red = red.resize((w, h))  # 0 at the left, 255 at the right
    green = Image.linear_gradient("L").resize((w, h))  # 0 at the top, 255 at the bottom
    noise = Image.effect_noise((w, h), 24)
    blue = ImageChops.multiply(noise, Image.new("L", (w, h), 160))
    img = Image.merge("RGB", (red, green, blue))
    # Some shapes, so it is not just gradients.
    draw = ImageDraw.Draw(img)
    draw.ellipse((600, 400, 1000, 800), fill=(240, 220, 60))
    draw.rectangle((100, 900, 400, 1100), fill=(20, 20, 20))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=85)
    return out.getvalue()


def _rotated_jpeg() -> bytes:
    """Stored 640x480, left half red, right half blue, EXIF orientation 6.

    Orientation 6 means "rotate 90 degrees clockwise to display": displayed 480x640 with
    red on top and blue at the bottom.
    """
    img = Image.new("RGB", (640, 480), (30, 30, 200))
    ImageDraw.Draw(img).rectangle((0, 0, 319, 479), fill=(200, 30, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation
    out = io.BytesIO()
    img.save(out, "JPEG", quality=90, exif=exif.tobytes())
    return out.getvalue()


def _transparent_png() -> bytes:
    w, h = 300, 200
    img = Image.new("RGBA", (w, h), (0, 128, 255, 0))
    alpha = Image.linear_gradient("L").resize((w, h))
    img.putalpha(alpha)
    ImageDraw.Draw(img).ellipse((100, 50, 200, 150), fill=(255, 0, 0, 255))
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def _gif() -> bytes:
    frames = []
    for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255)):
        f = Image.new("RGB", (120, 80), colour)
        ImageDraw.Draw(f).rectangle((10, 10, 60, 40), fill=(255, 255, 255))
        frames.append(f.convert("P"))
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return out.getvalue()


def _webp() -> bytes:
    img = Image.new("RGB", (500, 400), (40, 160, 90))
    ImageDraw.Draw(img).rectangle((50, 50, 250, 350), fill=(250, 250, 250))
    out = io.BytesIO()
    img.save(out, "WEBP", quality=80)
    return out.getvalue()


def _pdf() -> bytes:
    body = (
        b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
        b"2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\n"
        b"trailer << /Root 1 0 R >>\n"
    )
    return body + b"%" + bytes(range(256)) * 8 + b"\n%%EOF\n"


@functools.lru_cache(maxsize=None)
def bomb_png(width: int, height: int, grey: bool = False) -> bytes:
    """A decompression bomb: a valid 8-bit RGB (or grey) PNG of zeros, width x height.

    About 1000 times smaller than its pixels (6000x6000 RGB: 108 MB of pixels in ~105 kB).
    Made row block by row block, so it never holds the pixels itself.
    """
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    row = bytes(1 + width * (1 if grey else 3))  # filter byte 0 + a row of zeros
    rows_per_block = max(1, (1 << 20) // len(row))
    z = zlib.compressobj(9)
    idat = []
    left = height
    while left:
        n = min(left, rows_per_block)
        idat.append(z.compress(row * n))
        left -= n
    idat.append(z.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0 if grey else 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(idat))
            + chunk(b"IEND", b""))


def make_files() -> dict[str, MediaFile]:
    files = [
        MediaFile("photo.jpg", _photo_jpeg(), "image/jpeg", 1600, 1200),
        MediaFile("rotated.jpg", _rotated_jpeg(), "image/jpeg", 480, 640),
        MediaFile("transparent.png", _transparent_png(), "image/png", 300, 200),
        MediaFile("anim.gif", _gif(), "image/gif", 120, 80),
        MediaFile("image.webp", _webp(), "image/webp", 500, 400),
        MediaFile("doc.pdf", _pdf(), "application/pdf", None, None),
    ]
    # Sanity: what Pillow reads back is what we claim (the JPEG's stored size is the
    # un-rotated one; its EXIF says 6).
    for f in files:
        if f.width is None:
            continue
        im = Image.open(io.BytesIO(f.data))
        if f.name == "rotated.jpg":
            assert im.size == (f.height, f.width) and im.getexif()[0x0112] == 6
        else:
            assert im.size == (f.width, f.height), (f.name, im.size)
    assert files[-1].data.startswith(b"%PDF-")
    return {f.name: f for f in files}


class MediaServer:
    """HTTP server on 127.0.0.1 that serves `files` under any path ending in the file name.

    Every URL handed out by `url()` has a unique path, so per-path request counts are
    exact and a cache inside the module never hides a request.
    """

    HANG_MAX = 60.0  # a "never answering" request is released at the latest after this

    def __init__(self, files: dict[str, MediaFile]):
        self.files = files
        self._lock = threading.Lock()
        self._hits: dict[str, int] = {}
        self._hang: set[str] = set()
        self._delay: dict[str, float] = {}
        self._misbehave: dict[str, tuple[str, int]] = {}  # path -> (kind, size)
        self._sent: dict[str, int] = {}  # path -> body bytes written (misbehaving paths)
        self._stopping = threading.Event()
        self._only_agent: str | None = None  # requests from other User-Agents get a 403
        self.log: list[tuple[str, str, dict]] = []  # (method, path, headers)
        self._versioned: dict[str, str] = {}  # path -> the file it serves now, with an ETag
        self.answers: dict[str, list[int]] = {}  # path -> statuses sent (versioned paths)

        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args):  # quiet
                pass

            def _serve(self, with_body: bool):
                path = urlsplit(self.path).path
                with server._lock:
                    server._hits[path] = server._hits.get(path, 0) + 1
                    server.log.append((self.command, path, dict(self.headers)))
                    hang = path in server._hang
                    refuse = server._only_agent is not None and not self.headers.get(
                        "User-Agent", "").startswith(server._only_agent)
                    delay = server._delay.get(path, 0.0)
                    misbehave = server._misbehave.get(path)
                    versioned = server._versioned.get(path)
                if refuse:
                    self.send_error(403)
                    return
                if hang:
                    # Accept and never answer (until the server stops or HANG_MAX).
                    server._stopping.wait(server.HANG_MAX)
                    self.close_connection = True
                    return
                if delay and server._stopping.wait(delay):
                    return
                f = server.files.get(versioned or path.rsplit("/", 1)[-1])
                if f is None:
                    self.send_error(404)
                    return
                if misbehave is not None:
                    self._misbehave(path, f, *misbehave, with_body)
                    return
                etag = f'"{hashlib.sha256(f.data).hexdigest()[:16]}"' if versioned else None
                status = 304 if etag and self.headers.get("If-None-Match") == etag else 200
                if versioned:
                    with server._lock:
                        server.answers.setdefault(path, []).append(status)
                self.send_response(status)
                if etag:
                    self.send_header("ETag", etag)
                    self.send_header("Last-Modified", "Tue, 01 Dec 2026 10:00:00 GMT")
                if status == 304:
                    self.end_headers()
                    return
                self.send_header("Content-Type", f.content_type)
                self.send_header("Content-Length", str(f.size))
                self.end_headers()
                if with_body:
                    try:
                        self.wfile.write(f.data)
                    except (BrokenPipeError, ConnectionResetError):
                        pass  # the client stopped reading (allowed: e.g. a sniffed PDF)

            def _misbehave(self, path, f, kind, size, with_body):
                self.close_connection = True
                self.send_response(200)
                self.send_header("Content-Type", f.content_type)
                if kind == "reset":
                    self.send_header("Content-Length", str(f.size))
                elif kind == "huge":
                    self.send_header("Content-Length", str(size))
                # "endless": no Content-Length; an HTTP/1.0 body ends when the connection does
                self.end_headers()
                if not with_body:
                    return
                sent = 0
                try:
                    if kind == "reset":
                        half = f.data[: f.size // 2]
                        self.wfile.write(half)
                        sent = len(half)
                        # An RST, not a FIN: linger 0, then close the fd ourselves (detached,
                        # so that the server's own clean-up cannot close a reused fd number).
                        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                                   struct.pack("ii", 1, 0))
                        os.close(self.connection.detach())
                        return
                    # huge / endless: the real file, then zeros, until the client stops
                    # reading, `size` (or STREAM_MAX) bytes, HANG_MAX seconds or stop().
                    limit = size if kind == "huge" else server.STREAM_MAX
                    until = time.monotonic() + server.HANG_MAX
                    self.wfile.write(f.data)
                    sent = f.size
                    zeros = bytes(server.CHUNK)
                    while (sent < limit and time.monotonic() < until
                           and not server._stopping.is_set()):
                        n = min(len(zeros), limit - sent)
                        self.wfile.write(zeros[:n])
                        sent += n
                except OSError:
                    pass  # the client stopped reading: what a capped download does
                finally:
                    with server._lock:
                        server._sent[path] = server._sent.get(path, 0) + sent

            def do_GET(self):
                self._serve(True)

            def do_HEAD(self):
                self._serve(False)

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 128

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="media-http",
                                        kwargs={"poll_interval": 0.1}, daemon=True)

    def start(self) -> "MediaServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    # --- for tests --------------------------------------------------------------

    def url(self, name: str, host: str = "127.0.0.1", tag: str = "") -> str:
        """A fresh URL (unique path) for file `name` on this server."""
        token = (tag + "-" if tag else "") + uuid.uuid4().hex[:12]
        return f"http://{host}:{self.port}/{token}/{name}"

    @staticmethod
    def path_of(url: str) -> str:
        return urlsplit(url).path

    def hits(self, url_or_path: str) -> int:
        path = urlsplit(url_or_path).path if "://" in url_or_path else url_or_path
        with self._lock:
            return self._hits.get(path, 0)

    def serve_versioned(self, url: str, name: str) -> None:
        """This URL's path serves file `name` from now on, with an ETag (a hash of the file) and
        a Last-Modified; a GET whose If-None-Match is the current ETag is answered 304, and
        every status sent is kept in `answers`."""
        with self._lock:
            self._versioned[self.path_of(url)] = name

    def hang(self, url: str) -> None:
        """Requests for this URL's path are accepted and never answered."""
        with self._lock:
            self._hang.add(self.path_of(url))

    def delay(self, url: str, seconds: float) -> None:
        """Requests for this URL's path are answered after `seconds`."""
        with self._lock:
            self._delay[self.path_of(url)] = seconds

    def refuse_other_agents(self, user_agent_prefix: str) -> None:
        """From now on, requests whose User-Agent does not start with the prefix are logged and
        answered 403: a client's own download fails at once (its placeholder stays), and since
        nothing is left pending, no request of its waits in a per-host connection queue."""
        with self._lock:
            self._only_agent = user_agent_prefix

    # Misbehaviours for the load and fault tests. Each answers 200 with the file's type.
    STREAM_MAX = 1 << 30  # an endless body stops after this many bytes at the latest
    CHUNK = 64 * 1024

    def reset_mid_body(self, url: str) -> None:
        """Send the full Content-Length, half of the body, then a TCP reset."""
        with self._lock:
            self._misbehave[self.path_of(url)] = ("reset", 0)

    def endless(self, url: str) -> None:
        """No Content-Length; the file, then zeros until the client hangs up."""
        with self._lock:
            self._misbehave[self.path_of(url)] = ("endless", 0)

    def huge(self, url: str, size: int = 1 << 30) -> None:
        """Content-Length: `size`; the file, then zeros up to `size` or until the client hangs up."""
        with self._lock:
            self._misbehave[self.path_of(url)] = ("huge", size)

    def sent(self, url_or_path: str) -> int:
        """Body bytes written for a misbehaving path, over all its requests."""
        path = urlsplit(url_or_path).path if "://" in url_or_path else url_or_path
        with self._lock:
            return self._sent.get(path, 0)


# --- BlurHash decoding (only what the assertions need) ------------------------------

BLURHASH_ALPHABET = (
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~"
)


def _b83(s: str) -> int:
    v = 0
    for c in s:
        v = v * 83 + BLURHASH_ALPHABET.index(c)
    return v


def blurhash_components(h: str) -> tuple[int, int, tuple[int, int, int], dict]:
    """(cx, cy, dc_srgb, ac) where ac[(i, j)] = (r, g, b) in -1..1 (linear, scaled)."""
    flag = _b83(h[0])
    cx, cy = flag % 9 + 1, flag // 9 + 1
    assert len(h) == 4 + 2 * cx * cy, f"length {len(h)} does not match {cx}x{cy} components"
    max_ac = (_b83(h[1]) + 1) / 166
    dc = _b83(h[2:6])
    dc_rgb = (dc >> 16, (dc >> 8) & 255, dc & 255)

    def sign_pow(v: float) -> float:
        return (1 if v >= 0 else -1) * abs(v) ** 2

    ac = {}
    for k in range(1, cx * cy):
        v = _b83(h[4 + 2 * k: 6 + 2 * k])
        q = (v // (19 * 19), (v // 19) % 19, v % 19)
        ac[(k % cx, k // cx)] = tuple(sign_pow((x - 9) / 9) * max_ac for x in q)
    return cx, cy, dc_rgb, ac


def _to_linear(c: int) -> float:
    v = c / 255
    return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4


def _to_srgb(v: float) -> int:
    v = max(0.0, min(1.0, v))
    return round((v * 12.92 if v <= 0.0031308 else 1.055 * v ** (1 / 2.4) - 0.055) * 255)


def mean_colour(data: bytes) -> tuple[int, int, int]:
    """The average colour (in linear light, as BlurHash's DC term) of an opaque image."""
    im = Image.open(io.BytesIO(data)).convert("RGB").resize((64, 48), Image.Resampling.BOX)
    raw = im.tobytes()
    px = [raw[i:i + 3] for i in range(0, len(raw), 3)]
    return tuple(_to_srgb(sum(_to_linear(p[i]) for p in px) / len(px)) for i in range(3))

