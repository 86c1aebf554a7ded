"""The benchmark's pictures: free photographs from a Debian package, turned into the six test
files once and cached in target/bench-media/ (nothing large is committed).

Source package: mate-backgrounds (Debian bookworm, GPL-2+, see its copyright file).
- abstract/Elephants_5640x3172.jpg: 2020, Wyng Stancikaite, a camera photograph (EXIF: SONY
  DSC-RX100M4) of a painting, 5640x3172 = 17.9 MP. Every large file is *downscaled* from it,
  so no file is upscaled.
- nature/Dune.jpg: 2007, Marco Cogoni (EXIF: Canon EOS DIGITAL REBEL), 1680x1050.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys

from PIL import Image

PACKAGE = "mate-backgrounds"
BIG = "usr/share/backgrounds/mate/abstract/Elephants_5640x3172.jpg"
SMALL = "usr/share/backgrounds/mate/nature/Dune.jpg"
# Bump when a recipe below changes, so cached files are made again.
RECIPE = 3


def _crop_to(im, ratio_w, ratio_h):
    """The largest centred crop of `im` with aspect ratio_w:ratio_h."""
    w, h = im.size
    if w * ratio_h > h * ratio_w:
        cw = h * ratio_w // ratio_h
        x0 = (w - cw) // 2
        return im.crop((x0, 0, x0 + cw, h))
    ch = w * ratio_h // ratio_w
    y0 = (h - ch) // 2
    return im.crop((0, y0, w, y0 + ch))


def _screenshot(photo, w=6016, h=3384):
    """A 6K screen (6016x3384, a Pro Display XDR's) of a photo viewer: a title bar, a sidebar
    of text-like stripes, the photo in the window; about 30 MiB as a PNG."""
    from PIL import ImageDraw
    canvas = Image.new("RGB", (w, h), (236, 236, 236))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((0, 0, w, 56), fill=(48, 48, 52))
    draw.rectangle((0, 56, 520, h), fill=(250, 250, 250))
    for y in range(90, h - 40, 44):
        for x0 in range(40, 460, 70):
            draw.rectangle((x0, y, x0 + 50, y + 10), fill=(90, 90, 96))
    shown = photo.resize((w - 600, (w - 600) * photo.height // photo.width), Image.LANCZOS)
    canvas.paste(shown.crop((0, 0, shown.width, min(shown.height, h - 140))), (560, 100))
    return canvas


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def ensure(media_dir, log=print):
    """Makes (once) and describes the six test files; returns the list of their entries."""
    os.makedirs(media_dir, exist_ok=True)
    manifest_path = os.path.join(media_dir, "SOURCES.json")
    if os.path.exists(manifest_path):
        with open(manifest_path) as f:
            manifest = json.load(f)
        if manifest.get("recipe") == RECIPE and all(
            os.path.exists(os.path.join(media_dir, e["file"])) for e in manifest["files"]
        ):
            return manifest

    debs = os.path.join(media_dir, "debs")
    os.makedirs(debs, exist_ok=True)
    if not any(n.startswith(PACKAGE + "_") and n.endswith(".deb") for n in os.listdir(debs)):
        log(f"downloading {PACKAGE} (apt-get download) ...")
        subprocess.run(["apt-get", "download", "-o", "APT::Sandbox::User=root", PACKAGE], cwd=debs, check=True,
                       stdout=subprocess.DEVNULL)
    deb = sorted(n for n in os.listdir(debs) if n.startswith(PACKAGE + "_") and n.endswith(".deb"))[-1]
    root = os.path.join(media_dir, "pkg")
    shutil.rmtree(root, ignore_errors=True)
    subprocess.run(["dpkg-deb", "-x", os.path.join(debs, deb), root], check=True)
    big_path, small_path = os.path.join(root, BIG), os.path.join(root, SMALL)

    log("deriving the test files with Pillow (once) ...")
    big = Image.open(big_path)
    big.load()
    big = big.convert("RGB")
    small = Image.open(small_path)
    small.load()
    small = small.convert("RGB")
    src_big = f"{deb}:/{BIG} ({big.width}x{big.height}, Wyng Stancikaite 2020, GPL-2+; camera photo of a painting)"
    src_small = f"{deb}:/{SMALL} ({small.width}x{small.height}, Marco Cogoni 2007, GPL-2+)"

    twelve = _crop_to(big, 4, 3).resize((4032, 3024), Image.LANCZOS)
    files = [
        ("12mp-baseline.jpg", "12 MP baseline JPEG", twelve,
         dict(format="JPEG", quality=90), "centre crop to 4:3, Lanczos downscale to 4032x3024, "
         "baseline JPEG q90 4:2:0 (Pillow/libjpeg-turbo)", src_big),
        ("12mp-progressive.jpg", "12 MP progressive JPEG", twelve,
         dict(format="JPEG", quality=90, progressive=True), "same pixels as the baseline file, "
         "progressive JPEG q90 4:2:0", src_big),
        ("5k.png", "5K PNG", big.resize((5120, 2880), Image.LANCZOS),
         dict(format="PNG"), "Lanczos downscale to 5120x2880 (same 16:9 aspect), RGB PNG, "
         "zlib level 6 (Pillow default)", src_big),
        ("4k.webp", "4K WebP", big.resize((3840, 2160), Image.LANCZOS),
         dict(format="WEBP", quality=80), "Lanczos downscale to 3840x2160, lossy WebP q80 "
         "(Pillow default)", src_big),
        ("screenshot.png", "30 MiB PNG screenshot", _screenshot(big),
         dict(format="PNG"), "a 6016x3384 screen of a photo viewer (title bar, sidebar of text-like "
         "stripes, the photo Lanczos-downscaled into the window), RGB PNG, zlib level 6", src_big),
        ("small.jpg", "small JPEG", _crop_to(small, 4, 3).resize((640, 480), Image.LANCZOS),
         dict(format="JPEG", quality=90), "centre crop to 4:3, Lanczos downscale to 640x480, "
         "baseline JPEG q90", src_small),
    ]
    entries = []
    for name, label, im, save, how, src in files:
        out = os.path.join(media_dir, name)
        im.save(out + ".tmp", **save)
        os.replace(out + ".tmp", out)
        entries.append(dict(file=name, label=label, width=im.width, height=im.height,
                            bytes=os.path.getsize(out), how=how, source=src, upscaled=False))
    manifest = dict(recipe=RECIPE, package=deb, sha256_big=_sha256(big_path), files=entries)
    with open(manifest_path, "w") as f:
        json.dump(manifest, f, indent=1)
    shutil.rmtree(root, ignore_errors=True)  # the .deb stays as the cache of the source
    return manifest


if __name__ == "__main__":
    print(json.dumps(ensure(sys.argv[1] if len(sys.argv) > 1 else "target/bench-media"), indent=1))
