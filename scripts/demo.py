"""The demo driver (run by scripts/demo): a sandboxed Prosody with mod_muc_media_metadata,
a local media server with real images, a voice note and a video, and two occupants on
loopback.

alice posts each media URL in a room (jabber:x:oob); this prints the message bob receives,
then the module's load line from Prosody's log, and writes one HTML page with each image
beside the placeholders a client draws from that message (scripts/placeholders.py). Exits 1
if any expected metadata or standard element is missing. Everything runs in a temporary folder that is removed at the end, also after a
failure or Ctrl-C; Prosody is stopped.

Reuses the integration tests' harness (tests/integration): ProsodyServer, install_plugin,
MediaServer and the slixmpp Client.
"""

import argparse
import asyncio
import base64
import hashlib
import io
import os
import logging
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

from PIL import Image, ImageChops, ImageDraw  # noqa: E402

from media_server import MediaFile, MediaServer, make_files  # noqa: E402
from prosody_server import ProsodyServer, install_plugin, lua_str  # noqa: E402
from xmpp import NS_META, NS_OOB, Client  # noqa: E402

sys.path.insert(0, str(REPO / "scripts"))
from placeholders import Shared, page  # noqa: E402

DOMAIN = "chat.localhost"
PASSWORD = "demo password"
XML_NS = "http://www.w3.org/XML/1998/namespace"
NS_SFS, NS_FILE, NS_HASHES = "urn:xmpp:sfs:0", "urn:xmpp:file:metadata:0", "urn:xmpp:hashes:2"
NS_REFERENCE, NS_SIMS, NS_THUMBS = "urn:xmpp:reference:0", "urn:xmpp:sims:1", "urn:xmpp:thumbs:1"
PAGE = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / "demo" / "placeholders.html"


def say(text: str = "") -> None:
    print(text, flush=True)


# --- the media --------------------------------------------------------------------------

def portrait_jpeg() -> bytes:
    """A photo-like JPEG stored 1200x900 (landscape) with EXIF orientation 6: displayed as a
    900x1200 portrait, which is what the module must report."""
    w, h = 1200, 900
    sky = Image.linear_gradient("L").resize((w, h))
    red = ImageChops.invert(sky)
    noise = Image.effect_noise((w, h), 20)
    img = Image.merge("RGB", (red, ImageChops.multiply(noise, Image.new("L", (w, h), 200)), sky))
    ImageDraw.Draw(img).ellipse((450, 300, 750, 600), fill=(250, 240, 200))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    out = io.BytesIO()
    img.save(out, "JPEG", quality=85, exif=exif.tobytes())
    return out.getvalue()


def recordings(work: Path) -> list[MediaFile]:
    """A voice note as phones record it (AAC in MP4, its moov after the media data, as
    Android's MediaRecorder and ffmpeg without +faststart write it) and a phone video stored
    320x240 with a 90-degree rotation in its track matrix, made by ffmpeg and exiftool
    (scripts/setup installs them)."""
    def ffmpeg(name, *args):
        subprocess.run(["ffmpeg", "-v", "error", "-y", *args, str(work / name)], check=True)
    ffmpeg("voice.m4a", "-f", "lavfi", "-i", "sine=frequency=440:duration=4.2", "-c:a", "aac", "-b:a", "32k")
    ffmpeg("video.mp4", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=10:duration=3", "-c:v", "mpeg4")
    subprocess.run(["exiftool", "-q", "-overwrite_original", "-Rotation=90", str(work / "video.mp4")], check=True)
    return [MediaFile("voice.m4a", (work / "voice.m4a").read_bytes(), "audio/mp4", None, None),
            MediaFile("video.mp4", (work / "video.mp4").read_bytes(), "video/mp4", 240, 320)]


# Durations the demo's recordings have, in ms (ffmpeg's AAC adds its priming frames).
LENGTHS = {"voice.m4a": 4200, "video.mp4": 3000}


def demo_files(work: Path) -> list[tuple[MediaFile, str]]:
    files = make_files()
    portrait = MediaFile("portrait.jpg", portrait_jpeg(), "image/jpeg", 900, 1200)
    voice, video = recordings(work)
    return [
        (files["photo.jpg"], "a photo (JPEG, 1600x1200)"),
        (files["transparent.png"], "a PNG with transparency (300x200)"),
        (portrait, "a portrait photo stored 1200x900 with EXIF orientation 6"),
        (files["doc.pdf"], "a PDF (type only: not an image)"),
        (voice, "a 4.2 s voice note (AAC in MP4, its moov box at the end)"),
        (video, "a phone video stored 320x240, rotated 90 degrees: displayed 240x320"),
    ]


def expected_metadata(f: MediaFile) -> dict[str, str | None]:
    """Field -> expected text (None: must be present, any value)."""
    want: dict[str, str | None] = {"bytes": str(f.size), "type": f.content_type}
    if f.width is not None:
        want.update(width=str(f.width), height=str(f.height))
    if f.name in LENGTHS:
        want["length"] = None  # checked against LENGTHS with a tolerance
    elif f.width is not None:
        want["blurhash"] = None
    return want


def thumbnails(msg: ET.Element) -> dict[str, str]:
    """The XEP-0264 thumbnails anywhere in `msg`, by kind: "png" and "thumbhash" (base64) and
    "blurhash", from their data: URIs."""
    out = {}
    for t in msg.iter(f"{{{NS_THUMBS}}}thumbnail"):
        uri = t.get("uri", "")
        for kind, prefix in (("png", "data:image/png;base64,"), ("thumbhash", "data:image/thumbhash;base64,"),
                             ("blurhash", "data:image/blurhash,")):
            if uri.startswith(prefix):
                out.setdefault(kind, uri[len(prefix):])
    return out


def client_elements_wrong(f: MediaFile, msg: ET.Element) -> list[str]:
    """What a client would miss: the XEP-0447 file share with the body's SHA-256 (Dino needs
    it), the SIMS reference, and for images the three thumbnails."""
    bad = []
    file = msg.find(f"{{{NS_SFS}}}file-sharing/{{{NS_FILE}}}file")
    digest = base64.b64encode(hashlib.sha256(f.data).digest()).decode()
    if file is None:
        bad.append("XEP-0447 file share")
    elif (file.findtext(f"{{{NS_HASHES}}}hash") or "").strip() != digest:
        bad.append("XEP-0447 sha-256 hash")
    if msg.find(f"{{{NS_REFERENCE}}}reference/{{{NS_SIMS}}}media-sharing") is None:
        bad.append("SIMS reference")
    if f.width is not None and f.name not in LENGTHS:  # a picture (a video is not decoded)
        bad += [f"{kind} thumbnail" for kind in ("png", "thumbhash", "blurhash") if kind not in thumbnails(msg)]
    return bad


def shared_as_received(f: MediaFile, url: str, metadata: dict[str, str], msg: ET.Element) -> Shared:
    """What bob's client learnt about `f`, for the page."""
    number = lambda k: int(metadata[k]) if metadata.get(k, "").isdigit() else None  # noqa: E731
    thumbs = thumbnails(msg)
    picture = f.content_type.startswith("image/")
    return Shared(name=f.name, url=url, original=f.data if picture else None,
                  content_type=metadata.get("type", "?"), width=number("width"), height=number("height"),
                  size=number("bytes"), length=number("length"),
                  blurhash=metadata.get("blurhash") or thumbs.get("blurhash"),
                  thumbhash=thumbs.get("thumbhash"), png=thumbs.get("png"))


# --- printing stanzas -------------------------------------------------------------------

def pretty(el: ET.Element, parent_ns: str | None = None, depth: int = 0) -> str:
    """XML as a client would see it on the wire: default namespaces, indented."""
    ns, _, name = el.tag[1:].partition("}") if el.tag.startswith("{") else ("", "", el.tag)
    attrs = []
    if ns != parent_ns:
        attrs.append(f"xmlns={quoteattr(ns)}")
    for k, v in el.attrib.items():
        if k.startswith("{" + XML_NS + "}"):
            k = "xml:" + k.split("}", 1)[1]
        attrs.append(f"{k}={quoteattr(v)}")
    pad = "  " * depth
    head = f"{pad}<{name}{''.join(' ' + a for a in attrs)}"
    text = (el.text or "").strip()
    children = list(el)
    if not children and not text:
        return head + "/>"
    if not children:
        return f"{head}>{escape(text)}</{name}>"
    lines = [head + ">"]
    if text:
        lines.append("  " * (depth + 1) + escape(text))
    lines += [pretty(c, ns, depth + 1) for c in children]
    lines.append(f"{pad}</{name}>")
    return "\n".join(lines)


# --- the demo ---------------------------------------------------------------------------

class DemoServer(ProsodyServer):
    """The tests' sandboxed Prosody plus one MUC component with the module's defaults, except
    that loopback is allowed (the media server is on 127.0.0.1)."""

    def write_config(self) -> Path:
        path = super().write_config()
        with open(path, "a") as f:
            f.write(f"""
Component {lua_str(DOMAIN)} "muc"
	modules_enabled = {{ "muc_mam"; "muc_media_metadata" }}
	muc_room_locking = false
	media_metadata_allow_private = true -- the demo's media server is on 127.0.0.1
""")
        return path


async def post_all(server: ProsodyServer, media: MediaServer, files, shared: list[Shared]) -> int:
    missing = 0
    alice = Client(f"alice@localhost/demo-{uuid.uuid4().hex[:4]}", PASSWORD)
    bob = Client(f"bob@localhost/demo-{uuid.uuid4().hex[:4]}", PASSWORD)
    try:
        await alice.start(server.c2s_port)
        await bob.start(server.c2s_port)
        room = f"demo@{DOMAIN}"
        await alice.join(room, "alice")
        await bob.join(room, "bob")
        say(f"demo: alice and bob joined {room}\n")
        for i, (f, what) in enumerate(files, 1):
            url = media.url(f.name, tag="demo")
            say(f"=== {i}/{len(files)}: {what}")
            say(f"alice posts {url}")
            body = f"{f.name} {uuid.uuid4().hex[:8]}"
            t0 = time.monotonic()
            alice.send_groupchat(room, body, f"<x xmlns='{NS_OOB}'><url>{escape(url)}</url></x>")
            got = await bob.wait_groupchat(room, body, timeout=30)
            say(f"bob receives (after {got.at - t0:.2f}s):")
            say(pretty(got.xml))
            md = got.xml.find(f"{{{NS_OOB}}}x/{{{NS_META}}}metadata")
            have = {} if md is None else {c.tag.split("}", 1)[1]: (c.text or "") for c in md}
            bad = [k for k, v in expected_metadata(f).items()
                   if k not in have or (v is not None and have[k] != v)]
            if "blurhash" in have and len(have["blurhash"]) != 28:  # 4 x 3 components
                bad.append("blurhash")
            if f.name in LENGTHS and not (have.get("length", "").isdigit()
                                          and abs(int(have["length"]) - LENGTHS[f.name]) <= 100):
                bad.append(f"length (about {LENGTHS[f.name]} ms)")
            bad += client_elements_wrong(f, got.xml)
            shared.append(shared_as_received(f, url, have, got.xml))
            if bad:
                missing += 1
                say(f"MISSING or wrong: {', '.join(bad)} (expected {expected_metadata(f)}, got {have})")
            else:
                say("ok: " + ", ".join(f"{k}={v}" for k, v in have.items()))
            say()
    finally:
        for c in (alice, bob):
            await c.stop()
    return missing


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prosody", choices=("0.12", "13"), default="0.12")
    ap.add_argument("--library", type=Path, required=True, help="the built libmedia_metadata.so")
    args = ap.parse_args()

    # slixmpp and asyncio log to stderr by default; the demo prints what matters itself.
    logging.basicConfig(level=logging.CRITICAL)

    # scripts/demo may be stopped with SIGTERM as well as Ctrl-C: clean up the same way.
    def _interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, _interrupt)
    # Ctrl-C stops the demo even when started from something that ignores SIGINT.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    work = Path(tempfile.mkdtemp(prefix="mmm-demo-"))
    media = server = None
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        files = demo_files(work)
        media = MediaServer({f.name: f for f, _ in files}).start()
        say(f"demo: media server on http://127.0.0.1:{media.port}/ serving "
            + ", ".join(f.name for f, _ in files))

        plugins = install_plugin(work / "plugins", REPO / "lua/mod_muc_media_metadata.lua", args.library)
        server = DemoServer(args.prosody, work, [plugins], with_plugin=True)
        server.start()
        for user in ("alice", "bob"):
            server.register(user, "localhost", PASSWORD)
        version = (server.prosody.parent.parent / "lib/prosody/prosody.version")
        say(f"demo: Prosody {version.read_text().strip() if version.exists() else args.prosody} "
            f"on 127.0.0.1:{server.c2s_port}, module installed as a plain copy in {plugins}")

        shared: list[Shared] = []
        missing = loop.run_until_complete(asyncio.wait_for(post_all(server, media, files, shared), 180))
        PAGE.parent.mkdir(parents=True, exist_ok=True)
        PAGE.write_text(page(shared, f"What bob's client can draw before downloading (Prosody {args.prosody})"))
        say(f"demo: wrote {PAGE}: each image beside its BlurHash, ThumbHash and tiny-PNG placeholders\n")

        say(f"=== Prosody's log, {DOMAIN}, when the module loaded:")
        info = [line for line in server.log_text().splitlines()
                if f"{DOMAIN}:muc_media_metadata\tinfo\t" in line]
        for line in info:
            say(re.sub(r"\t", "  ", line))
        if not info:
            say("MISSING: no info line from the module")
            missing += 1
        errors = [line for line in server.log_text().splitlines() if "\terror\t" in line]
        for line in errors:
            say("error in Prosody's log: " + line)
        say()
        if missing or errors:
            say(f"demo: FAILED: {missing} check(s) failed, {len(errors)} error(s) logged; Prosody's log:")
            say(server.tail(40))
            return 1
        say(f"demo: all {len(files)} messages carried the expected metadata, file share and SIMS reference")
        return 0
    except KeyboardInterrupt:
        say("\ndemo: interrupted")
        # A client interrupted half-way through its constructor complains when collected.
        sys.unraisablehook = lambda unraisable: None
        return 130
    except Exception as e:  # a set-up failure: say what, then clean up
        say(f"demo: FAILED: {type(e).__name__}: {e}")
        if server is not None:
            say(server.tail(40))
        return 1
    finally:
        # Clean-up is short and bounded (Prosody gets SIGTERM, then SIGKILL after 10 s): a
        # second Ctrl-C must not cut it short and leave Prosody or the folder behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if server is not None:
            server.stop()
        if media is not None:
            media.stop()
        shutil.rmtree(work, ignore_errors=True)
        # Let slixmpp's leftover tasks finish while the loop is still open (quiet exit).
        # A task that was interrupted holds the KeyboardInterrupt and raises it again here.
        try:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for t in pending:
                t.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        except BaseException:
            pass
        loop.close()
        say(f"demo: stopped Prosody and removed {work}")

if __name__ == "__main__":
    sys.exit(main())
