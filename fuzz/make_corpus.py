#!/usr/bin/env python3
"""Writes the seed corpus in fuzz/corpus/: tiny valid files of every format and variant the
library decodes (and a few it only sniffs), and BlurHash inputs.

Made with Pillow (libjpeg, libpng/zlib, libwebp), so the seeds come from other encoders than
the image crate the tests use. PNG variants Pillow cannot write (16-bit colour, Adam7) are
built by hand below. Run from the repository root with a Python that has Pillow:

    python3 fuzz/make_corpus.py
"""
import io
import os
import struct
import zlib

from PIL import Image, ImageDraw

HERE = os.path.dirname(os.path.abspath(__file__))
IMAGES = os.path.join(HERE, "corpus", "sniff_decode")
HASHES = os.path.join(HERE, "corpus", "blurhash_decode")


def picture(w, h, mode="RGB"):
    """Structure in both directions: a red block top left, gradients, a blue stripe."""
    im = Image.new("RGB", (w, h))
    px = im.load()
    for y in range(h):
        for x in range(w):
            r = 230 if (x < w * 0.3 and y < h * 0.4) else 255 * x // max(w - 1, 1)
            px[x, y] = (r, 255 * y // max(h - 1, 1), 200 if x % 5 == 0 else 60)
    return im.convert(mode) if mode != "RGB" else im


def exif_orientation(o):
    ex = Image.Exif()
    ex[0x0112] = o
    return ex.tobytes()


def save(name, data):
    path = os.path.join(IMAGES, name)
    with open(path, "wb") as f:
        f.write(data)
    assert len(data) <= 2048, f"{name} is {len(data)} bytes"


def pil(im, fmt, **kw):
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_by_hand(w, h, depth, color, rows_of_pass, interlace=False):
    raw = b"".join(b"\0" + row for row in rows_of_pass)
    ihdr = struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, 1 if interlace else 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(raw, 9)) + png_chunk(b"IEND", b"")


def dht_flood(jpeg, count):
    """Issue 13: `count` one-code DHT segments cycling through every class and id, right after
    SOI (before the file's own tables, which its scans use). The 4 MB version that took the
    DC-only reader seconds is made by tests/common/craft.rs (jpeg_dht_flood)."""
    tables = b""
    for i in range(count):
        body = bytes([((i % 2) << 4) | ((i // 2) % 4), 1] + [0] * 15 + [0])
        tables += b"\xff\xc4" + struct.pack(">H", len(body) + 2) + body
    return jpeg[:2] + tables + jpeg[2:]


def rgba16_px(x, y, w, h):
    return struct.pack(">HHHH", 65535 * x // (w - 1), 65535 * y // (h - 1), 30000, 65535 - 4000 * x)


def main():
    os.makedirs(IMAGES, exist_ok=True)
    os.makedirs(HASHES, exist_ok=True)
    pic = picture(16, 12)

    # JPEG
    save("jpeg-baseline.jpg", pil(pic, "JPEG", quality=50))
    save("jpeg-progressive.jpg", pil(pic, "JPEG", quality=50, progressive=True))
    save("jpeg-420.jpg", pil(picture(24, 16), "JPEG", quality=40, subsampling=2))
    save("jpeg-grey.jpg", pil(pic.convert("L"), "JPEG", quality=50))
    save("jpeg-cmyk-red.jpg", pil(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", quality=90))
    save("jpeg-exif-orientation-6.jpg", pil(pic, "JPEG", quality=40, exif=exif_orientation(6)))
    save("jpeg-restart.jpg", pil(picture(32, 16), "JPEG", quality=30, restart_marker_blocks=2))
    save("jpeg-odd-size.jpg", pil(picture(7, 5), "JPEG", quality=50))
    baseline = pil(pic, "JPEG", quality=50)
    save("jpeg-dht-flood.jpg", dht_flood(baseline, (2048 - len(baseline)) // 22))

    # PNG
    save("png-rgb.png", pil(pic, "PNG"))
    save("png-rgba.png", pil(pic.convert("RGBA"), "PNG"))
    save("png-palette.png", pil(pic.convert("P", palette=Image.ADAPTIVE, colors=8), "PNG"))
    trns = pic.convert("P", palette=Image.ADAPTIVE, colors=4)
    save("png-palette-trns.png", pil(trns, "PNG", transparency=0))
    save("png-grey.png", pil(pic.convert("L"), "PNG"))
    save("png-grey-alpha.png", pil(pic.convert("LA"), "PNG"))
    save("png-1bit.png", pil(pic.convert("1"), "PNG"))
    save("png-exif-orientation-8.png", pil(pic, "PNG", exif=exif_orientation(8)))
    w, h = 6, 5
    save("png-rgba16.png", png_by_hand(w, h, 16, 6, [b"".join(rgba16_px(x, y, w, h) for x in range(w)) for y in range(h)]))
    # Adam7: the passes' rows, each pass's pixels in order (8-bit RGB).
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
    w, h = 11, 9
    src = picture(w, h).load()
    rows = []
    for x0, y0, dx, dy in passes:
        xs = range(x0, w, dx)
        if not xs:
            continue
        for y in range(y0, h, dy):
            rows.append(b"".join(bytes(src[x, y]) for x in xs))
    save("png-adam7.png", png_by_hand(w, h, 8, 2, rows, interlace=True))

    # GIF
    save("gif-static.gif", pil(pic.convert("P", palette=Image.ADAPTIVE, colors=16), "GIF"))
    frames = [Image.new("P", (10, 8), i) for i in range(3)]
    for f in frames:
        f.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 759)
    save("gif-animated.gif", pil(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0))
    t = pic.convert("P", palette=Image.ADAPTIVE, colors=4)
    save("gif-transparent.gif", pil(t, "GIF", transparency=1))
    save("gif-interlaced.gif", pil(picture(12, 10).convert("P", palette=Image.ADAPTIVE, colors=8), "GIF", interlace=True))

    # WebP
    save("webp-lossy.webp", pil(pic, "WEBP", quality=40))
    save("webp-lossless.webp", pil(pic, "WEBP", lossless=True))
    alpha = pic.convert("RGBA")
    ImageDraw.Draw(alpha).rectangle((0, 0, 5, 5), fill=(0, 0, 0, 0))
    save("webp-lossy-alpha.webp", pil(alpha, "WEBP", quality=40))
    save("webp-lossless-alpha.webp", pil(alpha, "WEBP", lossless=True))
    anim = [picture(8, 8), Image.new("RGB", (8, 8), (0, 0, 255))]
    save("webp-animated.webp", pil(anim[0], "WEBP", save_all=True, append_images=anim[1:], duration=50, lossless=True))
    save("webp-exif-orientation-3.webp", pil(pic, "WEBP", quality=40, exif=exif_orientation(3)))

    # Sniffed only (not decoded): the fuzzer still walks the signature code.
    save("sniff-pdf.bin", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    save("sniff-avif.bin", struct.pack(">I", 28) + b"ftypavif\0\0\0\0avifmif1miaf" + struct.pack(">I", 8) + b"free")
    save("sniff-webm.bin", b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm")
    save("sniff-tiff.bin", b"II*\0\x08\0\0\0\0\0")

    # BlurHash: 2 bytes of size (width, height = 1 + byte % 32), 4 of punch (f32, LE), the hash.
    for i, h in enumerate(["LEHV6nWB2yk8pyo0adR*.7kCMdnj", "00AAAA", "|rF?hV%2WCj[ayj[a|j[az_NaeWBj@ayfRayfQfQM{M|azj[azf6fQfQfQIpWXofj[ayj[j[fQayWCoeoeaya}j[ayfQa{oLj?j[WVj[ayayj[fQoff7azayj[ayj[j[ayofayayayj[fQj[ayayj[ayfjj[j[ayjuayj[", "L00000fQfQfQfQfQfQfQfQfQfQfQ"]):
        with open(os.path.join(HASHES, f"hash-{i}.bin"), "wb") as f:
            f.write(bytes([7, 5]) + struct.pack("<f", 1.0) + h.encode())


if __name__ == "__main__":
    main()
