"""The page of placeholders the demo writes: each shared image beside what a client would
draw before downloading it, decoded from the stanza the room sent (not from the image).

- BlurHash (the contract element's <blurhash>, SIMS `data:image/blurhash,...`): what Movim
  and Cheogram paint;
- ThumbHash (SIMS `data:image/thumbhash;base64,...`): keeps aspect ratio and alpha;
- the tiny PNG (XEP-0264 in the XEP-0447 file share): what Dino paints, scaled up.

Each is drawn in a box of the displayed aspect ratio (the metadata's width x height), as a
client would size its placeholder. The decoders here are written from the two formats'
descriptions (https://github.com/woltapp/blurhash, https://evanw.github.io/thumbhash/) so
that the page checks the module's output independently of the module's own encoders.
"""

import base64
import html
import io
import math
from dataclasses import dataclass, field

from PIL import Image

# --- BlurHash ------------------------------------------------------------------------------

_B83 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~"


def _b83(s: str) -> int:
    v = 0
    for ch in s:
        v = v * 83 + _B83.index(ch)
    return v


def _to_linear(c: int) -> float:
    v = c / 255
    return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4


def _to_srgb(v: float) -> int:
    v = min(1.0, max(0.0, v))
    return round((v * 12.92 if v <= 0.0031308 else 1.055 * v ** (1 / 2.4) - 0.055) * 255)


def blurhash_image(hash_: str, width: int, height: int) -> Image.Image:
    """A BlurHash painted at width x height (RGB). Raises ValueError if malformed."""
    if len(hash_) < 6:
        raise ValueError("blurhash too short")
    size = _b83(hash_[0])
    nx, ny = size % 9 + 1, size // 9 + 1
    if len(hash_) != 4 + 2 * nx * ny:
        raise ValueError(f"blurhash of {len(hash_)} characters for {nx}x{ny} components")
    max_ac = (_b83(hash_[1]) + 1) / 166
    dc = _b83(hash_[2:6])
    colours = [tuple(_to_linear(c) for c in (dc >> 16, (dc >> 8) & 255, dc & 255))]
    sign_pow = lambda v: math.copysign(abs(v) ** 2, v)  # noqa: E731
    for i in range(1, nx * ny):
        v = _b83(hash_[4 + 2 * i:6 + 2 * i])
        colours.append(tuple(sign_pow((q - 9) / 9) * max_ac for q in (v // 361, v // 19 % 19, v % 19)))
    out = Image.new("RGB", (width, height))
    px = out.load()
    for y in range(height):
        for x in range(width):
            rgb = [0.0, 0.0, 0.0]
            for j in range(ny):
                fy = math.cos(math.pi * y * j / height)
                for i in range(nx):
                    f = math.cos(math.pi * x * i / width) * fy
                    c = colours[i + j * nx]
                    for k in range(3):
                        rgb[k] += c[k] * f
            px[x, y] = tuple(_to_srgb(v) for v in rgb)
    return out


# --- ThumbHash -----------------------------------------------------------------------------

def thumbhash_image(hash_: bytes) -> Image.Image:
    """A ThumbHash painted at its own size (32 px on the long side, its approximate aspect
    ratio), RGBA. Raises ValueError if malformed."""
    if len(hash_) < 5:
        raise ValueError("thumbhash too short")
    h24 = hash_[0] | hash_[1] << 8 | hash_[2] << 16
    h16 = hash_[3] | hash_[4] << 8
    l_dc, p_dc, q_dc = (h24 & 63) / 63, (h24 >> 6 & 63) / 31.5 - 1, (h24 >> 12 & 63) / 31.5 - 1
    l_scale, has_alpha = (h24 >> 18 & 31) / 31, h24 >> 23
    p_scale, q_scale, landscape = (h16 >> 3 & 63) / 63, (h16 >> 9 & 63) / 63, h16 >> 15
    lx = max(3, (5 if has_alpha else 7) if landscape else h16 & 7)
    ly = max(3, h16 & 7 if landscape else (5 if has_alpha else 7))
    if has_alpha and len(hash_) < 6:
        raise ValueError("thumbhash too short for its alpha")
    a_dc, a_scale = ((hash_[5] & 15) / 15, (hash_[5] >> 4) / 15) if has_alpha else (1.0, 0.0)
    start, index = 6 if has_alpha else 5, 0

    def channel(nx, ny, scale):
        nonlocal index
        ac = []
        for cy in range(ny):
            cx = 0 if cy else 1
            while cx * ny < nx * (ny - cy):
                byte = start + (index >> 1)
                if byte >= len(hash_):
                    raise ValueError("thumbhash too short for its components")
                ac.append(((hash_[byte] >> ((index & 1) << 2) & 15) / 7.5 - 1) * scale)
                index += 1
                cx += 1
        return ac

    l_ac = channel(lx, ly, l_scale)
    p_ac, q_ac = channel(3, 3, p_scale * 1.25), channel(3, 3, q_scale * 1.25)
    a_ac = channel(5, 5, a_scale) if has_alpha else []

    # Its approximate aspect ratio, as the format defines it: lx / ly of the luminance.
    rlx = (5 if has_alpha else 7) if landscape else hash_[3] & 7
    rly = hash_[3] & 7 if landscape else (5 if has_alpha else 7)
    ratio = rlx / rly
    w, h = (32, round(32 / ratio)) if ratio > 1 else (round(32 * ratio), 32)
    out = Image.new("RGBA", (w, h))
    px = out.load()
    cx_n, cy_n = max(lx, 5 if has_alpha else 3), max(ly, 5 if has_alpha else 3)
    for y in range(h):
        fy = [math.cos(math.pi / h * (y + 0.5) * c) for c in range(cy_n)]
        for x in range(w):
            fx = [math.cos(math.pi / w * (x + 0.5) * c) for c in range(cx_n)]
            l, p, q, a = l_dc, p_dc, q_dc, a_dc
            j = 0
            for cy in range(ly):
                cx = 0 if cy else 1
                while cx * ly < lx * (ly - cy):
                    l += l_ac[j] * fx[cx] * fy[cy] * 2
                    j += 1
                    cx += 1
            j = 0
            for cy in range(3):
                for cx in range(0 if cy else 1, 3 - cy):
                    f = fx[cx] * fy[cy] * 2
                    p += p_ac[j] * f
                    q += q_ac[j] * f
                    j += 1
            j = 0
            for cy in range(5 if has_alpha else 0):
                for cx in range(0 if cy else 1, 5 - cy):
                    a += a_ac[j] * fx[cx] * fy[cy] * 2
                    j += 1
            b = l - 2 / 3 * p
            r = (3 * l - b + q) / 2
            g = r - q
            px[x, y] = tuple(round(255 * min(1.0, max(0.0, v))) for v in (r, g, b, a))
    return out


# --- the page ------------------------------------------------------------------------------

@dataclass
class Shared:
    """One shared file as the receiving client saw it."""
    name: str
    url: str
    original: bytes | None  # the served file, for the side-by-side (images only)
    content_type: str
    width: int | None = None
    height: int | None = None
    size: int | None = None
    length: int | None = None  # ms, for audio and video
    blurhash: str | None = None
    thumbhash: str | None = None  # base64
    png: str | None = None  # base64 of the XEP-0264 thumbnail
    notes: list[str] = field(default_factory=list)


def _box(width: int, height: int, box: int) -> tuple[int, int]:
    """The placeholder's size: `box` on the long side, the displayed aspect ratio."""
    return (box, round(box * height / width)) if width >= height else (round(box * width / height), box)


def _png_uri(img: Image.Image) -> str:
    out = io.BytesIO()
    img.save(out, "PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


def _cell(title: str, inner: str, caption: str) -> str:
    return (f"<figure><figcaption>{html.escape(title)}</figcaption>{inner}"
            f"<small>{html.escape(caption)}</small></figure>")


def _duration(ms: int) -> str:
    return f"{ms // 60000}:{ms // 1000 % 60:02d}.{ms % 1000 // 100}"


def row(s: Shared, box: int = 180) -> str:
    """One file: the original beside its placeholders, each in a box of the displayed aspect;
    a file without a picture as the card a client shows for it."""
    if s.original is None:
        facts = [html.escape(s.content_type), f"{s.size if s.size is not None else '?'} bytes"]
        if s.length is not None:
            facts.append(_duration(s.length))
        inner = f"{html.escape(s.name)}<br><small>{', '.join(facts)}</small>"
        what = "no picture: name, type and size"
        if s.width and s.height:  # a video: its box at the displayed size, before any download
            w, h = _box(s.width, s.height, box)
            inner = f'<div class="file video" style="width:{w}px;height:{h}px">&#9654; {inner}</div>'
            what = f"a {s.width}x{s.height} box, {_duration(s.length or 0)} long"
        else:
            inner = f"<div class=file>{inner}</div>"
            if s.length is not None:
                what = f"a {_duration(s.length)} player, nothing downloaded"
        return (f"<section><h2>{html.escape(s.name)}</h2><div class=cells>"
                + _cell("what a client shows", inner, what) + "</div></section>")
    w, h = _box(s.width or 1, s.height or 1, box)
    style = f'style="width:{w}px;height:{h}px"'
    cells = []
    if s.original:
        uri = f"data:{s.content_type};base64," + base64.b64encode(s.original).decode()
        cells.append(_cell("the image", f'<img {style} src="{uri}">', f"{s.width}x{s.height}, {s.size} bytes"))
    if s.blurhash:
        img = blurhash_image(s.blurhash, 32, max(1, round(32 * s.height / s.width)))
        cells.append(_cell("BlurHash", f'<img {style} src="{_png_uri(img)}">', f"{len(s.blurhash)} characters"))
    if s.thumbhash:
        img = thumbhash_image(base64.b64decode(s.thumbhash))
        cells.append(_cell("ThumbHash", f'<img {style} src="{_png_uri(img)}">',
                           f"{len(base64.b64decode(s.thumbhash))} bytes"))
    if s.png:
        raw = base64.b64decode(s.png)
        pw, ph = Image.open(io.BytesIO(raw)).size
        cells.append(_cell("tiny PNG (Dino)", f'<img {style} src="data:image/png;base64,{s.png}">',
                           f"{pw}x{ph} px, {len(raw)} bytes"))
    notes = "".join(f"<p class=note>{html.escape(n)}</p>" for n in s.notes)
    return f"<section><h2>{html.escape(s.name)}</h2><div class=cells>{''.join(cells)}</div>{notes}</section>"


def page(shared: list[Shared], title: str) -> str:
    """The whole page: self-contained (every picture a data: URI), no script."""
    return f"""<!doctype html>
<html lang=en><meta charset=utf-8><title>{html.escape(title)}</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 24px; background: #f4f4f4; color: #222 }}
h1 {{ font-size: 18px }} h2 {{ font-size: 14px; margin: 0 0 6px }}
section {{ background: #fff; border-radius: 8px; padding: 12px 16px; margin: 0 0 14px }}
.cells {{ display: flex; gap: 18px; align-items: flex-end; flex-wrap: wrap }}
figure {{ margin: 0; display: flex; flex-direction: column; gap: 4px }}
figcaption {{ font-weight: 600 }} small {{ color: #666 }}
img {{ display: block; border-radius: 6px; background: repeating-conic-gradient(#ddd 0 25%, #fff 0 50%) 0 0 / 16px 16px }}
.file {{ border: 1px solid #ccc; border-radius: 6px; padding: 14px 18px }}
.video {{ box-sizing: border-box; background: #333; color: #eee; display: flex; flex-direction: column; justify-content: center; text-align: center }}
.video small {{ color: #bbb }}
.note {{ color: #a40; margin: 6px 0 0 }}
</style>
<h1>{html.escape(title)}</h1>
<p>Each image beside the placeholders a client draws before it downloads anything, decoded from the
stanza the room sent, each in a box of the displayed size's aspect ratio.</p>
{''.join(row(s) for s in shared)}
</html>
"""
