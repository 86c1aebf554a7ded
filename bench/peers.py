"""The Python peers of the benchmark, each doing what a typical implementation does to get a
BlurHash of an image it holds as bytes, with blurhash-python (the C reference encoder) as the
encoder. One JSON object per line on stdout, like examples/bench.rs.

  peers.py time --runs N [--base URL] FILE...   from memory, then fetched with urllib (wall
                                                 and process CPU time, every thread)
  peers.py encode --runs N FILE...               the C reference encoder on full-size pixels
  peers.py versions
"""

import hashlib
import io
import json
import os
import sys
import time
import urllib.request

import blurhash
import PIL
import pyvips
from blurhash import _ffi, _lib  # the C reference encoder that blurhash.encode() wraps
from PIL import Image, features

pyvips.cache_set_max(0)  # else vips returns a cached thumbnail for the same buffer

SHRINK_TO = 64  # the long side our encoder sees (blurhash.rs SHRINK_TO)
DRAFT_TO = 2 * SHRINK_TO  # the long side our JPEG decode keeps at least (decode.rs)


def components(w, h):
    return (4, 3) if w >= h else (3, 4)


def pillow_plain(data):
    """Image.open + full decode (load) + thumbnail to 64 px + blurhash.encode."""
    im = Image.open(io.BytesIO(data))
    im.load()  # the full-size decode; after load() thumbnail() can no longer use draft()
    if im.mode != "RGB":
        im = im.convert("RGB")
    im.thumbnail((SHRINK_TO, SHRINK_TO))  # Pillow defaults: BICUBIC, reducing_gap=2.0
    return blurhash.encode(im, *components(*im.size))


def pillow_draft(data):
    """JPEG only: draft('RGB', (128, 128)) picks the DCT scale (1/8 for 12 MP, as ours does),
    then the same thumbnail and encoder."""
    im = Image.open(io.BytesIO(data))
    im.draft("RGB", (DRAFT_TO, DRAFT_TO))
    if im.mode != "RGB":
        im = im.convert("RGB")
    im.thumbnail((SHRINK_TO, SHRINK_TO))
    return blurhash.encode(im, *components(*im.size))


def vips(data):
    """pyvips.Image.thumbnail_buffer to fit 64x64 (shrink-on-load for JPEG and WebP), pixels
    to a Pillow image, the same encoder."""
    im = pyvips.Image.thumbnail_buffer(data, SHRINK_TO, height=SHRINK_TO)
    if im.hasalpha():
        im = im.flatten(background=[128, 128, 128])
    if im.bands == 1:
        im = im.colourspace("srgb")
    pil = Image.frombytes("RGB", (im.width, im.height), im.write_to_memory())
    return blurhash.encode(pil, *components(im.width, im.height))


METHODS = {"pillow_plain": pillow_plain, "pillow_draft": pillow_draft, "vips": vips}


def methods_for(name):
    jpeg = name.lower().endswith((".jpg", ".jpeg"))
    return [m for m in METHODS if jpeg or m != "pillow_draft"]


def emit(**kw):
    print(json.dumps(kw), flush=False)


def fetch(url):
    with urllib.request.urlopen(url) as r:
        return r.read()


def time_mode(runs, base, files):
    datas = {os.path.basename(f): open(f, "rb").read() for f in files}
    hashes = {}
    for name, data in datas.items():  # warm-up, and the hashes for the quality table
        for m in methods_for(name):
            hashes[(m, name)] = METHODS[m](data)
            if base:
                METHODS[m](fetch(f"{base}/{name}"))
    for (m, name), h in hashes.items():
        emit(mode="hash", impl=m, file=name, hash=h)
    for _ in range(runs):
        for name, data in datas.items():
            for m in methods_for(name):
                f = METHODS[m]
                c, t = time.process_time(), time.perf_counter()
                f(data)
                emit(mode="time", impl=m, via="memory", file=name, ms=(time.perf_counter() - t) * 1e3,
                     cpu_ms=(time.process_time() - c) * 1e3)
        if base:
            for name in datas:
                for m in methods_for(name):
                    f = METHODS[m]
                    c, t = time.process_time(), time.perf_counter()
                    f(fetch(f"{base}/{name}"))
                    emit(mode="time", impl=m, via="http", file=name, ms=(time.perf_counter() - t) * 1e3,
                         cpu_ms=(time.process_time() - c) * 1e3)
        sys.stdout.flush()


def c_encode(rgb, w, h):
    cx, cy = components(w, h)
    dest = _ffi.new("char[]", 2 + 4 + (9 * 9 - 1) * 2 + 1)
    out = _lib.create_hash_from_pixels(cx, cy, w, h, _ffi.from_buffer(rgb), w * 3, dest)
    return _ffi.string(out).decode()


def encode_mode(runs, api_runs, files):
    """Full-size Pillow decode (untimed), then the C reference encoder on all its pixels,
    called through blurhash-python's cffi binding on the RGB buffer. Files whose decoded
    pixels equal an earlier file's reuse its hash instead of spending seconds again."""
    seen = {}
    for f in files:
        name = os.path.basename(f)
        im = Image.open(f).convert("RGB")
        rgb = im.tobytes()
        digest = hashlib.sha256(rgb).hexdigest()
        if digest in seen:
            emit(mode="encode", impl="c_ref", file=name, ms=None, hash=seen[digest][1], same_pixels_as=seen[digest][0])
            continue
        n = runs if im.width * im.height <= 1_000_000 else 1  # ~0.4 s per megapixel
        for _ in range(n):
            t = time.perf_counter()
            h = c_encode(rgb, im.width, im.height)
            emit(mode="encode", impl="c_ref", file=name, ms=(time.perf_counter() - t) * 1e3, hash=h)
        seen[digest] = (name, h)
        if im.width * im.height <= 1_000_000:
            for _ in range(api_runs):  # the public API: builds a Python list of every value first
                copy = im.copy()  # encode() closes the image it is given
                t = time.perf_counter()
                h2 = blurhash.encode(copy, *components(im.width, im.height))
                emit(mode="encode", impl="py_api", file=name, ms=(time.perf_counter() - t) * 1e3, hash=h2)
        sys.stdout.flush()


def versions():
    try:
        import importlib.metadata as md
        bh = md.version("blurhash-python")
    except Exception:
        bh = getattr(blurhash, "__version__", "?")
    emit(mode="versions", python=sys.version.split()[0], pillow=PIL.__version__,
         libjpeg_turbo=features.version("libjpeg_turbo"), zlib=features.version("zlib"),
         libwebp=features.version("webp"), pyvips=pyvips.__version__,
         libvips=f"{pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)}",
         vips_concurrency=pyvips.concurrency_get(), blurhash_python=bh)


def main(argv):
    mode, rest = argv[0], argv[1:]
    runs, api_runs, base, files = 15, 3, None, []
    it = iter(rest)
    for a in it:
        if a == "--runs":
            runs = int(next(it))
        elif a == "--api-runs":
            api_runs = int(next(it))
        elif a == "--base":
            base = next(it).rstrip("/")
        else:
            files.append(a)
    if mode == "time":
        time_mode(runs, base, files)
    elif mode == "encode":
        encode_mode(runs, api_runs, files)
    elif mode == "versions":
        versions()
    else:
        sys.exit(f"unknown mode {mode!r}")
    sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
