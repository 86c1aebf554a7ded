"""Serves the integration tests' real media on 127.0.0.1 for the busted specs.

Writes the Lua file named by its argument, describing each file as Pillow sees it (size,
SHA-256 in base64, upright dimensions, mean colour in linear light, transparency flattened
onto grey 128 as the library does), then serves until its standard input closes.
"""

import base64
import hashlib
import io
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "integration"))

from PIL import Image, ImageOps  # noqa: E402

from media_server import MediaFile, MediaServer, make_files  # noqa: E402


def note_wav(ms=1500, rate=8000):
    """A voice note of `ms` of silence, written by the standard library: the truth is its length."""
    import wave
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\0\0" * (rate * ms // 1000))
    return out.getvalue()


def _lin(c):
    v = c / 255
    return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4


def mean_linear(data):
    """Mean colour of the upright image in linear light, from exact per-channel histograms."""
    im = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    if im.mode in ("RGBA", "LA", "P"):
        grey = Image.new("RGBA", im.size, (128, 128, 128, 255))
        im = Image.alpha_composite(grey, im.convert("RGBA"))
    im = im.convert("RGB")
    n = im.width * im.height
    hist = im.histogram()
    return [sum(hist[c * 256 + v] * _lin(v) for v in range(256)) / n for c in range(3)]


def main():
    files = make_files()
    files["note.wav"] = MediaFile("note.wav", note_wav(), "audio/wav", None, None)
    lengths = {"note.wav": 1500}
    server = MediaServer(files).start()
    path = sys.argv[1]
    with open(path + ".part", "w") as out:
        out.write("return {\n")
        for name, f in files.items():
            out.write(f'  ["{name}"] = {{ url = "{server.url(name)}", size = {f.size}, type = "{f.content_type}"'
                      f', sha256 = "{base64.b64encode(hashlib.sha256(f.data).digest()).decode()}"')
            if f.width:
                r, g, b = mean_linear(f.data)
                out.write(f", width = {f.width}, height = {f.height}, mean = {{ {r!r}, {g!r}, {b!r} }}")
            if name in lengths:
                out.write(f", length = {lengths[name]}")
            out.write(" },\n")
        out.write("}\n")
    os.rename(path + ".part", path)  # the spec waits for this name
    sys.stdin.read()  # until the spec closes our stdin
    server.stop()
    os.unlink(path)


if __name__ == "__main__":
    main()
